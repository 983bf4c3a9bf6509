//! Alert notifications survive a crash: `tds serve` raises an alert from real readings, queues
//! its deliveries (emails to two members, two webhooks) while the SMTP server is down and the
//! webhook receiver refuses, and is killed with SIGKILL. Once both are back and the server is
//! restarted, every notification is delivered exactly once: none lost, none doubled.

use crate::support::{Server, Tds, free_port};
use axum::http::{HeaderMap, StatusCode};
use chrono::{Duration, Utc};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tds_domain::limits::Amount;
use tds_domain::{Name, Role, Unit};
use tds_store::notifications::{ChannelKind, ChannelSecret, NewChannel, SeveritySet};
use tds_store::readings::NewReading;
use tds_store::{DbOptions, Store};
use tds_testkit::{MailSink, TestDb, fixtures, per_backend};

/// Answers 503 until `accept` is set, then 200; counts the 200s per idempotency key.
#[derive(Clone, Default)]
struct Hook {
    accept: Arc<AtomicBool>,
    accepted: Arc<Mutex<BTreeMap<String, usize>>>,
    refused: Arc<Mutex<usize>>,
}

impl Hook {
    async fn start(&self) -> String {
        let me = self.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap| {
                let me = me.clone();
                async move {
                    if !me.accept.load(Ordering::SeqCst) {
                        *me.refused.lock().unwrap() += 1;
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let key = headers.get("idempotency-key").unwrap().to_str().unwrap().to_owned();
                    *me.accepted.lock().unwrap().entry(key).or_default() += 1;
                    StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }
}

async fn pending_and_delivered(store: &Store, tenant: tds_domain::TenantId) -> (usize, usize) {
    let mut rows = Vec::new();
    for alert in store.alerts().list(tenant, None, None, 50).await.unwrap() {
        rows.extend(store.outbox().list_for_alert(tenant, alert.id).await.unwrap());
    }
    let delivered = rows.iter().filter(|r| r.delivered_at.is_some()).count();
    (rows.len(), delivered)
}

async fn notifications_survive_a_crash_and_are_delivered_exactly_once(db: TestDb) {
    let tds = Tds::new(Some(&db.url));
    let smtp_port = free_port();
    let hook = Hook::default();
    let hook_url = hook.start().await;
    let env = [
        ("TDS_SMTP_URL", format!("smtp://127.0.0.1:{smtp_port}")),
        // Short timeouts make a short lease for rows a killed server had taken.
        ("TDS_ALERT_SEND_TIMEOUT_SECS", "1".to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start_with(&tds, &env).await;
    let store = Store::open(&db.url, &DbOptions::default()).await.unwrap();

    let t = fixtures::tenant(&store, "Acme").await;
    fixtures::member(&store, t.id, "ana@acme.com.br", Role::Admin).await;
    fixtures::member(&store, t.id, "bob@acme.com.br", Role::Editor).await;
    for name in ["Hook A", "Hook B"] {
        let channel = NewChannel {
            kind: ChannelKind::Webhook,
            name: Name::parse("name", name).unwrap(),
            config: serde_json::json!({"url": hook_url}),
            secret: Some(ChannelSecret::new("s3cret".into()).unwrap()),
            severities: SeveritySet::ALL,
            enabled: true,
            created_by: None,
        };
        store.notification_channels().create(t.id, &channel).await.unwrap();
    }
    // A meter with a daily threshold of 10 kWh, and readings 100 kWh apart: the server's rollup
    // and alert jobs raise a WARNING within seconds.
    let g = fixtures::gateway(&store, t.id, "aa:bb:cc:dd:ee:01", "GW1").await;
    let mut fields = fixtures::meter_fields("D01");
    fields.unit = Unit::parse("kWh").unwrap();
    fields.alarm_daily = Some(Amount::parse("alarm_daily", "10").unwrap());
    let d = store.devices().create(t.id, g.id, &fields, None).await.unwrap();
    let times = fixtures::instants_today(t.timezone, Utc::now(), Duration::minutes(4), 4);
    let readings: Vec<NewReading> = (0..4)
        .map(|i| NewReading {
            device_id: d.id,
            time: times[i],
            value: 100.0 * (i + 1) as f64,
            unit: "kWh".into(),
        })
        .collect();
    store.readings().insert(t.id, &readings).await.unwrap();

    // Four deliveries queued (ana, bob, two webhooks), each tried and failed at least once.
    let deadline = Instant::now() + std::time::Duration::from_mins(1);
    loop {
        let (rows, delivered) = pending_and_delivered(&store, t.id).await;
        if rows == 4 && *hook.refused.lock().unwrap() >= 2 {
            assert_eq!(delivered, 0);
            break;
        }
        assert!(Instant::now() < deadline, "no alert deliveries queued ({rows} rows)");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let killed = server.child.id();
    std::process::Command::new("kill").args(["-KILL", &killed.to_string()]).status().unwrap();
    let mut child = server.child;
    tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();

    // Everything comes back; the restarted server delivers what the dead one left.
    let mail = MailSink::start_at(smtp_port);
    hook.accept.store(true, Ordering::SeqCst);
    let server = Server::start_with(&tds, &env).await;
    let deadline = Instant::now() + std::time::Duration::from_mins(2);
    loop {
        let (rows, delivered) = pending_and_delivered(&store, t.id).await;
        if delivered == 4 {
            assert_eq!(rows, 4, "nothing queued twice");
            break;
        }
        assert!(Instant::now() < deadline, "{delivered} of {rows} deliveries made after the restart");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    // A little longer, to see that nothing arrives twice.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(mail.count_to("ana@acme.com.br"), 1);
    assert_eq!(mail.count_to("bob@acme.com.br"), 1);
    let accepted = hook.accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), 2, "two webhooks: {accepted:?}");
    assert!(accepted.values().all(|n| *n == 1), "each accepted once: {accepted:?}");
    server.stop().await;
}

per_backend!(notifications_survive_a_crash_and_are_delivered_exactly_once);
