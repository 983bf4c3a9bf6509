//! The Alertas page in a real browser: an alert raised by a reading published over MQTT (real
//! mTLS, the real rollup job evaluating the device's threshold) appears on the open page and in
//! the top bar's badge without a reload, and is acknowledged from the page.

use super::kit::Browser;
use super::{DESKTOP, WAIT};
use crate::support::TestApp;
use serde_json::json;
use std::process::Command;
use std::time::Instant;
use tds_domain::Role;
use tds_domain::limits::Amount;
use tds_testkit::{TestDb, fixtures};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_raised_by_a_published_reading_appears_live_and_is_acknowledged_from_the_page() {
    let app = TestApp::spawn(TestDb::sqlite().await).await;
    let t = app.tenant("Águas do Vale").await;
    app.user("edu@example.com", Some((t.id, Role::Editor))).await;
    let g = fixtures::gateway(&app.store, t.id, "aa:bb:cc:00:00:41", "GW-41").await;
    let mut fields = fixtures::meter_fields("D01");
    fields.alarm_daily = Some(Amount::parse("alarm_daily", "5").unwrap());
    let d = app.store.devices().create(t.id, g.id, &fields, None).await.unwrap();
    // Today's first reading, at 100 kWh: the baseline the published one is measured from.
    let now = chrono::Utc::now();
    let midnight = tds_domain::buckets::bucket_start(t.timezone, tds_domain::Bucket::Day, now);
    let first = midnight + (now - midnight) / 2;
    let baseline =
        tds_store::readings::NewReading { device_id: d.id, time: first, value: 100.0, unit: "kWh".into() };
    app.store.readings().insert(t.id, &[baseline]).await.unwrap();

    // The device endpoint on the application's bus, and the rollup job as `tds serve` runs it:
    // each round refreshes the rollups and evaluates the refreshed devices' rules.
    let mut config = tds_ingest::IngestConfig::new(([127, 0, 0, 1], 0).into());
    config.events = Some(app.events.clone());
    let endpoint = tds_ingest::Endpoint::bind(config, app.store.clone(), &app.pki.files).await.unwrap();
    let port = endpoint.local_addr().unwrap().port();
    tokio::spawn(endpoint.run(std::future::pending()));
    let (store, live) = (app.store.clone(), Some(app.events.clone()));
    let rollups = tokio::spawn(async move {
        let worker = tds_jobs::rollups::Worker::new(live, std::sync::Arc::default());
        loop {
            worker.round(&store).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    });
    let bundle = app.pki.issue(&app.store, &g, tds_pki::DeviceKeyKind::EcdsaP256, false).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), app.pki.files.ca.cert_pem()).unwrap();
    std::fs::write(dir.path().join("client.crt"), &bundle.certificate.cert_pem).unwrap();
    std::fs::write(dir.path().join("client.key"), bundle.certificate.key_pem.as_deref().unwrap()).unwrap();

    let Some(b) = Browser::open(&app, DESKTOP).await else { return };
    b.login("edu@example.com").await;
    b.goto("/alerts").await;
    b.until("the empty list", "return !!document.getElementById('no-alerts')").await;
    assert_eq!(
        b.js("return document.getElementById('alert-badge').classList.contains('d-none')").await,
        json!(true)
    );
    b.until("the live stream open", "return document.getElementById('alert-bell').dataset.live === 'true'")
        .await;

    // 110 kWh now: 10 kWh today, over the threshold of 5.
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let message = format!(
        r#"{{"gateway_mac":"aa:bb:cc:00:00:41","timestamp":"{at}","leituras":[{{"dispositivo_codigo":"D01","valor":110,"unidade":"kWh"}}]}}"#
    );
    let published = Instant::now();
    let cwd = dir.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("mosquitto_pub")
            .current_dir(cwd)
            .args(["-h", "localhost", "-p", &port.to_string(), "--cafile", "ca.crt", "--cert", "client.crt"])
            .args(["--key", "client.key", "-q", "1", "-i", "aa:bb:cc:00:00:41"])
            .args(["-t", "tds_new/gateway/aa:bb:cc:00:00:41/telemetria", "-m", &message])
            .output()
            .expect("Debian's mosquitto-clients are installed (scripts/test.sh installs them)")
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let row =
        "return [...document.querySelectorAll('#alerts-table tr')].some(r => r.textContent.includes('D01'))";
    while b.js(row).await != json!(true) {
        assert!(
            published.elapsed() < WAIT,
            "the alert did not appear on the open page{}",
            b.describe().await
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    eprintln!(
        "alert on the open page {:.1} s after the reading was published",
        published.elapsed().as_secs_f64()
    );
    b.until("the badge at 1", "return document.getElementById('alert-badge').textContent === '1' && !document.getElementById('alert-badge').classList.contains('d-none')").await;
    assert_eq!(b.js("return performance.getEntriesByType('navigation').length").await, json!(1), "no reload");

    // Acknowledged from the page, with a comment.
    let alert = app.store.alerts().list(t.id, None, None, 10).await.unwrap().remove(0);
    let form = format!("#alert-{} form.ack-form", alert.id);
    b.js(&format!(
        "document.querySelector('{form} input[name=comment]').value = 'equipe a caminho'; return true"
    ))
    .await;
    b.click(&format!("{form} button[type=submit]")).await;
    b.until("the notice", "return location.search.includes('done=acknowledged')").await;
    let acked = app.store.alerts().get(t.id, alert.id).await.unwrap();
    assert_eq!(acked.ack_comment.as_deref(), Some("equipe a caminho"));
    assert!(acked.acknowledged_by.is_some());
    b.until("the badge empty", "return document.getElementById('alert-badge').classList.contains('d-none')")
        .await;
    rollups.abort();
    b.close().await;
}
