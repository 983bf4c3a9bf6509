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
        payload_size: None,
        reading_index: index,
        reason_code: code.into(),
        reason: format!("refused: {code}"),
        received_at: chrono::Utc::now(),
    }
}

/// One dead letter listing two refused readings of a batch (as ingest makes it).
fn listed(t: &tds_store::tenants::Tenant, g: &tds_store::gateways::Gateway) -> NewRejected {
    use tds_domain::dead_letter::{RefusedEntry, refused_list};
    let mac = Mac::parse("aa:bb:cc:00:00:01").unwrap();
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z").unwrap().to_utc();
    let entries: Vec<RefusedEntry> = [(2, "2026-11-20T10:00:00Z", 44), (5, "2026-11-20T11:00:00Z", 45)]
        .into_iter()
        .map(|(index, time, value)| RefusedEntry {
            index,
            code: "unknown_device".into(),
            reason: "no device with code D07 on this gateway".into(),
            raw: serde_json::json!({"dispositivo_codigo": "D07", "valor": value, "timestamp": time}),
        })
        .collect();
    let list = refused_list(mac, at, &entries, 65_536);
    NewRejected { payload: list.payload, reason: list.reason, ..letter(t, g, None, "", &list.code) }
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
            listed(&t, &g),
        ])
        .await
        .unwrap();

    let c = app.login("adm@example.com").await;
    let page = c.get("/dead-letters").await;
    assert_eq!(page.text_of("dead-total").as_deref(), Some("4"));
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
        vec![42.5, 43.0, 44.0, 45.0],
        "the single reading (at its own instant), the whole message and the listed readings"
    );
    let list = app.store.rejected().get(t.id, ids[3]).await.unwrap();
    assert!(list.replay_outcome.unwrap().starts_with("replayed: 2 stored"), "a list replays as a batch");
    let bad = app.store.rejected().get(t.id, ids[2]).await.unwrap();
    assert!(bad.replay_outcome.unwrap().contains("invalid_json"));
    // Replaying again stores nothing twice.
    c.get("/dead-letters").await;
    c.post(&format!("/dead-letters/{}/replay", ids[0]), &[]).await;
    assert_eq!(
        app.store.readings().for_device(t.id, d.id, since, chrono::Utc::now(), 10).await.unwrap().len(),
        4
    );

    let v = app.login("vera@example.com").await;
    assert_eq!(v.get("/dead-letters").await.status, 403);
    let other = app.tenant("Other").await;
    app.user("eve@example.com", Some((other.id, Role::Admin))).await;
    let eve = app.login("eve@example.com").await;
    assert_eq!(eve.get(&format!("/dead-letters/{}", ids[0])).await.status, 404);
    assert_eq!(eve.get("/dead-letters").await.text_of("dead-total").as_deref(), Some("0"));
}

/// SPEC §11: lists are bounded. The list shows each payload's first bytes and its size, and the
/// detail page the whole (kept) payload; a payload kept in part says so and is not replayed.
async fn the_list_shows_a_preview_and_the_size_and_a_cut_payload_says_so(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("T").await;
    app.user("adm@example.com", Some((t.id, Role::Admin))).await;
    let g = fixtures::gateway(&app.store, t.id, "aa:bb:cc:00:00:01", "GW1").await;
    let payload = format!(
        "{{\"gateway_mac\":\"aa:bb:cc:00:00:01\",\"pad\":\"{}\",\"end\":\"TAIL-MARK\"}}",
        "p".repeat(5_000)
    );
    let mut cut = letter(&t, &g, None, &payload[..1_000], "payload_too_large");
    cut.payload_size = Some(payload.len() as i64);
    let ids =
        app.store.rejected().record(&[letter(&t, &g, None, &payload, "invalid_json"), cut]).await.unwrap();
    let c = app.login("adm@example.com").await;
    let page = c.get("/dead-letters").await;
    assert!(page.has("{&#34;gateway_mac&#34;") || page.has("{\"gateway_mac\""), "the preview: {}", page.body);
    assert!(!page.has("TAIL-MARK"), "only a preview of the payload is listed");
    let n = payload.len();
    let sizes = [
        format!("{n} bytes"),
        format!("{}.{:03} bytes", n / 1000, n % 1000),
        format!("{},{:03} bytes", n / 1000, n % 1000),
    ];
    assert!(sizes.iter().any(|s| page.has(s)), "the size, one of {sizes:?}: {}", page.body);
    let whole = c.get(&format!("/dead-letters/{}", ids[0])).await;
    assert!(
        whole.text_of("raw-text").unwrap().contains("TAIL-MARK"),
        "the detail page has the whole payload"
    );
    let part = c.get(&format!("/dead-letters/{}", ids[1])).await;
    assert!(part.text_of("raw-truncated").is_some(), "{}", part.body);
    let page = c.post(&format!("/dead-letters/{}/replay", ids[1]), &[]).await;
    assert!(page.text_of("replay-outcome").unwrap().contains("only the first 1000"), "{}", page.body);
}

/// Replay all goes through the dead letters a page at a time, beyond one page.
async fn replay_all_replays_more_than_a_page_of_dead_letters(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("T").await;
    app.user("adm@example.com", Some((t.id, Role::Admin))).await;
    let g = fixtures::gateway(&app.store, t.id, "aa:bb:cc:00:00:01", "GW1").await;
    let letters: Vec<NewRejected> = (0..120)
        .map(|i| {
            let whole = format!(
                r#"{{"gateway_mac":"aa:bb:cc:00:00:01","timestamp":"2026-11-20T00:00:00Z","leituras":[{{"dispositivo_codigo":"D07","valor":{i},"timestamp":"2026-11-20T{:02}:{:02}:00Z"}}]}}"#,
                i / 60,
                i % 60
            );
            letter(&t, &g, None, &whole, "unknown_device")
        })
        .collect();
    app.store.rejected().record(&letters).await.unwrap();
    let mut fields = fixtures::meter_fields("D07");
    fields.code = tds_domain::DeviceCode::parse("D07").unwrap();
    let d = app.store.devices().create(t.id, g.id, &fields, None).await.unwrap();
    let c = app.login("adm@example.com").await;
    c.get("/dead-letters").await;
    c.post("/dead-letters/replay", &[("reason", "unknown_device")]).await;
    let since = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().to_utc();
    let stored = app.store.readings().for_device(t.id, d.id, since, chrono::Utc::now(), 500).await.unwrap();
    assert_eq!(stored.len(), 120);
    let ids = app.store.rejected().pending_ids(t.id, None, "replayed:", None, 500).await.unwrap();
    assert!(ids.is_empty(), "every one replayed: {ids:?}");
}

per_backend!(
    a_dead_letter_is_replayed_once_its_device_exists,
    the_list_shows_a_preview_and_the_size_and_a_cut_payload_says_so,
    replay_all_replays_more_than_a_page_of_dead_letters
);
