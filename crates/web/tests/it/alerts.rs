//! Alertas: a device's threshold raises an alert through the evaluation job; the page lists it
//! with its severity, device and message; a viewer sees no acknowledge button, an editor
//! acknowledges it with a comment (audited); the API lists and acknowledges the same alerts.

use crate::api::{Api, token};
use crate::support::TestApp;
use chrono::Utc;
use reqwest::StatusCode;
use serde_json::json;
use tds_domain::Role;
use tds_domain::limits::Amount;
use tds_store::readings::NewReading;
use tds_testkit::{TestDb, fixtures, per_backend};

async fn a_threshold_crossing_is_listed_and_acknowledged(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("Acme").await;
    let g = fixtures::gateway(&app.store, t.id, "aa:bb:cc:00:00:01", "GW1").await;
    let mut fields = fixtures::meter_fields("D01");
    fields.alarm_daily = Some(Amount::parse("alarm_daily", "5").unwrap());
    let d = app.store.devices().create(t.id, g.id, &fields, None).await.unwrap();
    // 8 kWh today (two readings between local midnight and now): above the threshold of 5.
    let now = Utc::now();
    let midnight = tds_domain::buckets::bucket_start(t.timezone, tds_domain::Bucket::Day, now);
    let third = (now - midnight) / 3;
    let rows = [midnight + third, midnight + third * 2]
        .iter()
        .zip([100.0, 108.0])
        .map(|(time, value)| NewReading { device_id: d.id, time: *time, value, unit: "kWh".into() })
        .collect::<Vec<_>>();
    app.store.readings().insert(t.id, &rows).await.unwrap();
    while app.store.rollups().staff_refresh_dirty(100).await.unwrap() > 0 {}
    let round = tds_jobs::alerts::round(&app.store, now).await.unwrap();
    assert_eq!(round.raised, 1);

    app.user("vera@example.com", Some((t.id, Role::Viewer))).await;
    app.user("edu@example.com", Some((t.id, Role::Editor))).await;
    let viewer = app.login("vera@example.com").await;
    let page = viewer.get("/alerts").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.text_of("alerts-active").as_deref(), Some("1"));
    let alert = app.store.alerts().list(t.id, None, None, 10).await.unwrap().remove(0);
    let row = page.text_of(&format!("alert-{}", alert.id)).unwrap();
    assert!(row.contains("D01") && row.contains("Atenção") && row.contains("Consumo do dia"), "{row}");
    assert!(!page.has("ack-form"), "a viewer cannot acknowledge");
    let refused = viewer.post(&format!("/alerts/{}/ack", alert.id), &[("comment", "x")]).await;
    assert_eq!(refused.status, 403);

    let editor = app.login("edu@example.com").await;
    editor.get("/alerts").await;
    let done = editor.post(&format!("/alerts/{}/ack", alert.id), &[("comment", "fechando o registro")]).await;
    assert_eq!(done.path(), "/alerts");
    let acked = app.store.alerts().get(t.id, alert.id).await.unwrap();
    assert_eq!(acked.ack_comment.as_deref(), Some("fechando o registro"));
    let page = editor.get("/alerts?state=acknowledged").await;
    assert!(page.text_of(&format!("alert-{}", alert.id)).unwrap().contains("fechando o registro"));
    let audit = app.store.audit().list(t.id, &Default::default(), tds_store::Page::default()).await.unwrap();
    assert!(audit.items.iter().any(|e| e.action == "alert.acknowledged" && e.actor == "edu@example.com"));

    // The API: the same alert, named by MAC and code; acknowledging twice is a conflict.
    let api = Api::new(&app, &token(&app, t.id, "noc", Role::Editor).await);
    let listed = api.get("/api/v1/alerts?state=acknowledged").await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    let item = &listed.json()["items"][0];
    assert_eq!(
        (item["target"]["gateway"].clone(), item["target"]["device"].clone(), item["kind"].clone()),
        (json!("aa:bb:cc:00:00:01"), json!("D01"), json!("daily_consumption"))
    );
    let again = api.post(&format!("/api/v1/alerts/{}/ack", alert.id), json!({})).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(api.get("/api/v1/alerts?state=active").await.json()["items"].as_array().unwrap().len(), 0);
    let bad = api.get("/api/v1/alerts?state=burning").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // Another tenant's token: 404, nothing changes.
    let other = app.tenant("Other").await;
    let outsider = Api::new(&app, &token(&app, other.id, "x", Role::Admin).await);
    assert_eq!(
        outsider.post(&format!("/api/v1/alerts/{}/ack", alert.id), json!({})).await.status,
        StatusCode::NOT_FOUND
    );
    assert!(outsider.get("/api/v1/alerts").await.json()["items"].as_array().unwrap().is_empty());
}

per_backend!(a_threshold_crossing_is_listed_and_acknowledged);
