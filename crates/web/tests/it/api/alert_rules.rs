//! `/api/v1/alert-rules` through a token: create (targets by MAC and code), read, page, change,
//! disable, preview and delete; validation answers with the field; a device's own threshold only
//! toggles; another tenant's MAC is not a target and its rules are 404; viewers read only.

use super::{Api, token};
use crate::support::TestApp;
use reqwest::StatusCode;
use serde_json::json;
use tds_domain::Role;
use tds_domain::limits::Amount;
use tds_testkit::{TestDb, fixtures, per_backend};

async fn an_integrator_manages_alert_rules(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("Acme").await;
    let g = fixtures::gateway(&app.store, t.id, "02:00:00:00:00:01", "GW-A").await;
    let mut fields = fixtures::meter_fields("D01");
    fields.alarm_daily = Some(Amount::parse("alarm_daily", "50").unwrap());
    app.store.devices().create(t.id, g.id, &fields, None).await.unwrap();
    let api = Api::new(&app, &token(&app, t.id, "noc", Role::Editor).await);

    let body = json!({
        "name": "Vazamento",
        "kind": "night_flow",
        "params": {"level": 0.05, "nights": 3},
        "severity": "CRITICAL",
        "target": {"kind": "device", "gateway": "02:00:00:00:00:01", "device": "D01"},
        "hysteresis": 0.01
    });
    let created = api.post("/api/v1/alert-rules", body.clone()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let rule = created.json();
    assert_eq!((rule["kind"].clone(), rule["params"]["nights"].clone()), (json!("night_flow"), json!(3)));
    assert_eq!(rule["target"], json!({"kind": "device", "gateway": "02:00:00:00:00:01", "device": "D01"}));
    assert_eq!((rule["enabled"].clone(), rule["source"].clone()), (json!(true), json!("user")));
    let id = rule["id"].as_i64().unwrap();

    // Mistakes name their field.
    for (change, field) in [
        (json!({"params": {"level": -1, "nights": 3}}), "params"),
        (json!({"severity": "LOUD"}), "severity"),
        (json!({"target": {"kind": "device", "gateway": "02:00:00:00:00:09", "device": "D01"}}), "target"),
        (json!({"colour": "red"}), "colour"),
    ] {
        let mut wrong = body.clone();
        wrong.as_object_mut().unwrap().extend(change.as_object().unwrap().clone());
        let refused = api.post("/api/v1/alert-rules", wrong).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.text);
        assert_eq!(refused.json()["error"]["field"], field, "{}", refused.text);
    }

    let page = api.get("/api/v1/alert-rules?limit=1").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_eq!(page.json()["items"][0]["source"], "device_alarm", "the device's threshold is listed first");
    let cursor = page.json()["next_cursor"].as_str().unwrap().to_owned();
    let next = api.get(&format!("/api/v1/alert-rules?limit=1&cursor={cursor}")).await;
    assert_eq!(next.json()["items"][0]["id"], id);

    let changed = api
        .patch(
            &format!("/api/v1/alert-rules/{id}"),
            json!({"params": {"level": 0.1, "nights": 2}, "hysteresis": null, "enabled": false}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    assert_eq!(changed.json()["params"]["level"], 0.1);
    assert_eq!(
        (changed.json()["hysteresis"].clone(), changed.json()["enabled"].clone()),
        (json!(null), json!(false))
    );
    assert_eq!(api.get(&format!("/api/v1/alert-rules/{id}")).await.json()["enabled"], false);

    let threshold = page.json()["items"][0]["id"].as_i64().unwrap();
    let refused =
        api.patch(&format!("/api/v1/alert-rules/{threshold}"), json!({"severity": "CRITICAL"})).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text);
    let muted = api.patch(&format!("/api/v1/alert-rules/{threshold}"), json!({"enabled": false})).await;
    assert_eq!(muted.status, StatusCode::OK, "{}", muted.text);

    let preview = api.post("/api/v1/alert-rules/preview", json!({"kind": "daily_consumption", "params": {"threshold": 1}, "severity": "WARNING", "target": {"kind": "tenant"}})).await;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.text);
    assert_eq!(
        (preview.json()["raised"].clone(), preview.json()["replayed"].clone()),
        (json!(0), json!(true))
    );
    assert_eq!(preview.json()["looked_at"], 1);

    // Viewers read; another tenant sees nothing and cannot aim at this tenant's gateway.
    let viewer = Api::new(&app, &token(&app, t.id, "tv", Role::Viewer).await);
    assert_eq!(viewer.get(&format!("/api/v1/alert-rules/{id}")).await.status, StatusCode::OK);
    assert_eq!(viewer.post("/api/v1/alert-rules", body.clone()).await.status, StatusCode::FORBIDDEN);
    assert_eq!(viewer.delete(&format!("/api/v1/alert-rules/{id}")).await.status, StatusCode::FORBIDDEN);
    let other = app.tenant("Other").await;
    let outsider = Api::new(&app, &token(&app, other.id, "x", Role::Admin).await);
    assert_eq!(outsider.get(&format!("/api/v1/alert-rules/{id}")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(outsider.delete(&format!("/api/v1/alert-rules/{id}")).await.status, StatusCode::NOT_FOUND);
    let aimed = outsider.post("/api/v1/alert-rules", body.clone()).await;
    assert_eq!(
        (aimed.status, aimed.json()["error"]["field"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("target"))
    );

    assert_eq!(api.delete(&format!("/api/v1/alert-rules/{id}")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(api.get(&format!("/api/v1/alert-rules/{id}")).await.status, StatusCode::NOT_FOUND);
    let audit = app.store.audit().list(t.id, &Default::default(), tds_store::Page::default()).await.unwrap();
    for action in ["alert_rule.created", "alert_rule.updated", "alert_rule.deleted"] {
        assert!(audit.items.iter().any(|e| e.action == action && e.actor == "token noc"), "{action}");
    }
}

per_backend!(an_integrator_manages_alert_rules);
