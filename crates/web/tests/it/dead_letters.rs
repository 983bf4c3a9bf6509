//! Dead letters in the web UI: list, inspect, replay after the cause is fixed.

use crate::support::TestApp;
use tds_domain::{Mac, Role};
use tds_store::rejected::NewRejected;
use tds_testkit::{TestDb, fixtures, per_backend};

fn letter(
    t: &tds_store::tenants::Tenant,
    g: &tds_store::gateways::Gateway,
    index: Option<i64>,
    payload: &str,
    code: &str,
) -> NewRejected {
    NewRejected {
        tenant_id: Some(t.id),
        gateway_id: Some(g.id),
        mac: Some(Mac::parse("aa:bb:cc:00:00:01").unwrap()),
        topic: "tds_new/gateway/aa:bb:cc:00:00:01/telemetria".into(),
        payload: payload.as_bytes().to_vec(),
        reading_index: index,
        reason_code: code.into(),
        reason: format!("refused: {code}"),
        received_at: chrono::Utc::now(),
    }
}

async fn a_dead_letter_is_replayed_once_its_device_exists(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("T").await;
    app.user("adm@example.com", Some((t.id, Role::Admin))).await;
    app.user("vera@example.com", Some((t.id, Role::Viewer))).await;
    let g = fixtures::gateway(&app.store, t.id, "aa:bb:cc:00:00:01", "GW1").await;
    let reading = r#"{"dispositivo_codigo":"D07","valor":42.5,"timestamp":"2026-11-20T08:00:00+00:00"}"#;
    let whole = r#"{"gateway_mac":"aa:bb:cc:00:00:01","timestamp":"2026-11-20T09:00:00Z","leituras":[{"dispositivo_codigo":"D07","valor":43}]}"#;
    let ids = app
        .store
        .rejected()
        .record(&[
            letter(&t, &g, Some(0), reading, "unknown_device"),
            letter(&t, &g, None, whole, "unknown_device"),
            letter(&t, &g, None, "{bad", "invalid_json"),
        ])
        .await
        .unwrap();

    let c = app.login("adm@example.com").await;
    let page = c.get("/dead-letters").await;
    assert_eq!(page.text_of("dead-total").as_deref(), Some("3"));
    let page = c.get("/dead-letters?reason=invalid_json").await;
    assert_eq!(page.text_of("dead-total").as_deref(), Some("1"));
    let page = c.get(&format!("/dead-letters/{}", ids[0])).await;
    assert!(page.text_of("raw-text").unwrap().contains("D07"));

    // Replaying before the device exists changes nothing and says why.
    let page = c.post(&format!("/dead-letters/{}/replay", ids[0]), &[]).await;
    assert!(page.text_of("replay-outcome").unwrap().contains("unknown_device"), "{}", page.body);

    // Register the device, then replay everything.
    let mut fields = fixtures::meter_fields("D07");
    fields.code = tds_domain::DeviceCode::parse("D07").unwrap();
    let d = app.store.devices().create(t.id, g.id, &fields, None).await.unwrap();
    c.get("/dead-letters").await;
    let page = c.post("/dead-letters/replay", &[("reason", "")]).await;
    assert!(page.has("id=\"notice\""), "{}", page.body);
    let since = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().to_utc();
    let stored = app.store.readings().for_device(t.id, d.id, since, chrono::Utc::now(), 10).await.unwrap();
    let values: Vec<f64> = stored.iter().map(|r| r.value).collect();
    assert_eq!(
        values,
        vec![42.5, 43.0],
        "both the single reading (at its own instant) and the whole message"
    );
    let bad = app.store.rejected().get(t.id, ids[2]).await.unwrap();
    assert!(bad.replay_outcome.unwrap().contains("invalid_json"));
    // Replaying again stores nothing twice.
    c.get("/dead-letters").await;
    c.post(&format!("/dead-letters/{}/replay", ids[0]), &[]).await;
    assert_eq!(
        app.store.readings().for_device(t.id, d.id, since, chrono::Utc::now(), 10).await.unwrap().len(),
        2
    );

    let v = app.login("vera@example.com").await;
    assert_eq!(v.get("/dead-letters").await.status, 403);
    let other = app.tenant("Other").await;
    app.user("eve@example.com", Some((other.id, Role::Admin))).await;
    let eve = app.login("eve@example.com").await;
    assert_eq!(eve.get(&format!("/dead-letters/{}", ids[0])).await.status, 404);
    assert_eq!(eve.get("/dead-letters").await.text_of("dead-total").as_deref(), Some("0"));
}

per_backend!(a_dead_letter_is_replayed_once_its_device_exists);
