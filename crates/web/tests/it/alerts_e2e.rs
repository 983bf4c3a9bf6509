//! Alerts end to end, on both databases: a reading published over MQTT (real mutual TLS, the
//! real endpoint) takes a meter over its daily threshold; the rollup job's evaluation raises
//! exactly one alert; the notifier sends one email to each member in their own language through
//! a real SMTP server and a webhook whose HMAC-SHA256 signature Python's own `hmac` verifies; the
//! receiver refuses twice and then takes it, with the same `Idempotency-Key` every time; the
//! alert is acknowledged from the page; the next local day, below the threshold, clears it and
//! the clear is told too. Time is the jobs' explicit `now`, not waiting.

use crate::support::TestApp;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use chrono::{Duration, Utc};
use std::process::Command;
use std::sync::{Arc, Mutex};
use tds_domain::limits::Amount;
use tds_domain::{Name, Role, Severity};
use tds_store::alerts::AlertStatus;
use tds_store::notifications::{ChannelKind, ChannelSecret, NewChannel, SeveritySet};
use tds_testkit::{TestDb, fixtures, per_backend};

/// What the webhook receiver got: (headers, body) of every request, and how many to refuse.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    refuse: Arc<Mutex<usize>>,
}

impl Receiver {
    async fn start(refuse: usize) -> (Self, String) {
        let me = Self { refuse: Arc::new(Mutex::new(refuse)), ..Self::default() };
        let state = me.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move {
                    state.got.lock().unwrap().push((headers, body));
                    let mut refuse = state.refuse.lock().unwrap();
                    if *refuse > 0 {
                        *refuse -= 1;
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (me, url)
    }

    fn requests(&self) -> Vec<(HeaderMap, Bytes)> {
        self.got.lock().unwrap().clone()
    }
}

/// Checks `X-TDS-Signature` with Python's standard library, not with our code.
fn python_verifies(secret: &str, body: &[u8], header: &str) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("body");
    std::fs::write(&path, body).unwrap();
    let script = "import hmac, hashlib, sys\n\
                  body = open(sys.argv[2], 'rb').read()\n\
                  want = 'sha256=' + hmac.new(sys.argv[1].encode(), body, hashlib.sha256).hexdigest()\n\
                  sys.exit(0 if hmac.compare_digest(want, sys.argv[3]) else 1)";
    Command::new("python3").args(["-c", script, secret]).arg(&path).arg(header).status().unwrap().success()
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

async fn a_published_reading_raises_notifies_is_acknowledged_and_clears(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("Acme").await;
    let edu = app.user("edu@example.com", Some((t.id, Role::Editor))).await;
    app.store.users().set_profile(edu.id, &Name::parse("name", "Edu").unwrap(), "en").await.unwrap();
    app.user("ana@example.com", Some((t.id, Role::Admin))).await;
    app.user("vera@example.com", Some((t.id, Role::Viewer))).await;
    let g = fixtures::gateway(&app.store, t.id, "aa:bb:cc:00:00:51", "GW-51").await;
    let mut fields = fixtures::meter_fields("D01");
    fields.alarm_daily = Some(Amount::parse("alarm_daily", "5").unwrap());
    let d = app.store.devices().create(t.id, g.id, &fields, None).await.unwrap();
    let (receiver, url) = Receiver::start(2).await;
    app.store
        .notification_channels()
        .create(
            t.id,
            &NewChannel {
                kind: ChannelKind::Webhook,
                name: Name::parse("name", "ops").unwrap(),
                config: serde_json::json!({"url": url}),
                secret: Some(ChannelSecret::new("s3cret".into()).unwrap()),
                severities: SeveritySet::at_least(Severity::Warning),
                enabled: true,
                created_by: None,
            },
        )
        .await
        .unwrap();

    // Today's first reading, 100 kWh; then 110 kWh published over MQTT: 10 kWh today, over 5.
    let t0 = Utc::now();
    let midnight = tds_domain::buckets::bucket_start(t.timezone, tds_domain::Bucket::Day, t0);
    let baseline = tds_store::readings::NewReading {
        device_id: d.id,
        time: midnight + (t0 - midnight) / 2,
        value: 100.0,
        unit: "kWh".into(),
    };
    app.store.readings().insert(t.id, &[baseline]).await.unwrap();
    tds_jobs::rollups::drain(&app.store).await.unwrap();
    let mut config = tds_ingest::IngestConfig::new(([127, 0, 0, 1], 0).into());
    config.events = Some(app.events.clone());
    let endpoint = tds_ingest::Endpoint::bind(config, app.store.clone(), &app.pki.files).await.unwrap();
    let port = endpoint.local_addr().unwrap().port();
    tokio::spawn(endpoint.run(std::future::pending()));
    let bundle = app.pki.issue(&app.store, &g, tds_pki::DeviceKeyKind::EcdsaP256, false).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), app.pki.files.ca.cert_pem()).unwrap();
    std::fs::write(dir.path().join("client.crt"), &bundle.certificate.cert_pem).unwrap();
    std::fs::write(dir.path().join("client.key"), bundle.certificate.key_pem.as_deref().unwrap()).unwrap();
    let at = t0.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let message = format!(
        r#"{{"gateway_mac":"aa:bb:cc:00:00:51","timestamp":"{at}","leituras":[{{"dispositivo_codigo":"D01","valor":110,"unidade":"kWh"}}]}}"#
    );
    let cwd = dir.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("mosquitto_pub")
            .current_dir(cwd)
            .args(["-h", "localhost", "-p", &port.to_string(), "--cafile", "ca.crt", "--cert", "client.crt"])
            .args(["--key", "client.key", "-q", "1", "-i", "aa:bb:cc:00:00:51"])
            .args(["-t", "tds_new/gateway/aa:bb:cc:00:00:51/telemetria", "-m", &message])
            .output()
            .expect("Debian's mosquitto-clients are installed (scripts/test.sh installs them)")
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The rollup job as `tds serve` runs it: refresh, then the refreshed devices' rules.
    let mut alerts = Vec::new();
    let rules = std::sync::Arc::new(tds_jobs::alerts::RuleCache::default());
    let worker = tds_jobs::rollups::Worker::new(None, rules.clone());
    for _ in 0..50 {
        worker.round(&app.store).await.unwrap();
        alerts = app.store.alerts().list(t.id, None, None, 10).await.unwrap();
        if !alerts.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(alerts.len(), 1, "exactly one alert");
    let alert = alerts.remove(0);
    assert_eq!((alert.value, alert.severity), (Some(10.0), Severity::Warning));
    // Evaluating again, by either job, raises nothing more.
    assert_eq!(tds_jobs::alerts::round(&app.store, &rules, t0).await.unwrap().raised, 0);

    // The notifier: one email per member who gets WARNING by email (the editor and the admin,
    // not the viewer), each in their language; the webhook refused once.
    let mailer =
        tds_mail::Mailer::smtp(&format!("smtp://{}", app.mail.addr), "TDS <tds@example.com>").unwrap();
    let options = tds_jobs::notify::NotifierOptions::new(app.base.clone());
    let notifier = tds_jobs::notify::Notifier::new(mailer, options).unwrap();
    notifier.round(&app.store, t0).await.unwrap();
    let english = app.mail.wait_for("edu@example.com").await;
    assert!(english.contains("[TDS] WARNING") && english.contains("Alert raised"), "{english}");
    assert!(english.contains(&format!("{}/alerts/{}", app.base, alert.id)), "a link to the alert: {english}");
    let portuguese = app.mail.wait_for("ana@example.com").await;
    assert!(portuguese.contains("Alerta disparado"), "{portuguese}");
    assert_eq!(app.mail.count_to("vera@example.com"), 0, "viewers get no email by default");
    assert_eq!(receiver.requests().len(), 1);
    // Twice more: refused again, then taken (back-off 30 s, then 1 min).
    notifier.round(&app.store, t0 + Duration::seconds(31)).await.unwrap();
    notifier.round(&app.store, t0 + Duration::seconds(95)).await.unwrap();
    let got = receiver.requests();
    assert_eq!(got.len(), 3, "refused twice, then delivered");
    let key = header(&got[0].0, "idempotency-key").to_owned();
    assert!(!key.is_empty());
    for (headers, body) in &got {
        assert_eq!(header(headers, "idempotency-key"), key, "the same key on every retry");
        assert!(python_verifies("s3cret", body, header(headers, "x-tds-signature")), "signature");
        let notice: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(
            (notice["event"].clone(), notice["alert"]["id"].clone()),
            ("raised".into(), alert.id.get().into())
        );
        assert_eq!(notice["target"]["device"]["code"], "D01", "{notice}");
    }
    assert_eq!(
        (app.mail.count_to("edu@example.com"), app.mail.count_to("ana@example.com")),
        (1, 1),
        "no email twice"
    );

    // Acknowledged from the page, with a comment.
    let editor = app.login("edu@example.com").await;
    editor.get("/alerts").await;
    editor.post(&format!("/alerts/{}/ack", alert.id), &[("comment", "team on site")]).await;
    assert_eq!(app.store.alerts().get(t.id, alert.id).await.unwrap().status(), AlertStatus::Acknowledged);

    // The next local day, nothing consumed yet: cleared, and the clear is told.
    let tomorrow = tds_domain::buckets::next_bucket_start(t.timezone, tds_domain::Bucket::Day, t0)
        + Duration::minutes(30);
    let next = tds_jobs::alerts::round(&app.store, &rules, tomorrow).await.unwrap();
    assert_eq!(next.cleared, 1);
    notifier.round(&app.store, tomorrow).await.unwrap();
    for _ in 0..100 {
        if app.mail.count_to("edu@example.com") == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!((app.mail.count_to("edu@example.com"), app.mail.count_to("ana@example.com")), (2, 2));
    let events: Vec<String> =
        receiver.requests().iter().map(|(h, _)| header(h, "x-tds-event").to_owned()).collect();
    assert!(
        events.contains(&"acknowledged".to_owned()) && events.contains(&"cleared".to_owned()),
        "{events:?}"
    );
    let deliveries = app.store.outbox().list_for_alert(t.id, alert.id).await.unwrap();
    assert!(deliveries.iter().all(|d| d.delivered_at.is_some()), "every delivery made: {deliveries:?}");
    // The alert's page lists them.
    let page = editor.get(&format!("/alerts/{}", alert.id)).await;
    assert!(page.text_of("alert-deliveries").unwrap().contains("ana@example.com"));
}

per_backend!(a_published_reading_raises_notifies_is_acknowledged_and_clears);
