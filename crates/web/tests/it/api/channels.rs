//! `/api/v1/notification-channels` through an admin token: create (config validated with the
//! field named, the secret required and never answered), list, change, test, delete; editors and
//! other tenants are refused.

use super::{Api, token};
use crate::support::TestApp;
use reqwest::StatusCode;
use serde_json::json;
use tds_domain::Role;
use tds_testkit::{TestDb, per_backend};

async fn an_admin_manages_channels_through_the_api(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("Acme").await;
    let api = Api::new(&app, &token(&app, t.id, "ops", Role::Admin).await);
    let body = json!({
        "kind": "webhook",
        "name": "ERP",
        "config": {"preset": "generic", "url": "https://erp.example.com/tds"},
        "secret": "s3cret",
        "severities": ["WARNING", "CRITICAL"]
    });
    let created = api.post("/api/v1/notification-channels", body.clone()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert!(!created.text.contains("s3cret"), "the secret is never answered");
    assert_eq!(created.json()["has_secret"], true);
    let id = created.json()["id"].as_i64().unwrap();

    for (change, field) in [
        (json!({"config": {"preset": "generic", "url": "ftp://erp"}}), "config.url"),
        (json!({"config": {"preset": "telegram"}}), "config.chat_id"),
        (json!({"severities": ["LOUD"]}), "severities"),
        (json!({"secret": null}), "secret"),
    ] {
        let mut wrong = body.clone();
        wrong.as_object_mut().unwrap().extend(change.as_object().unwrap().clone());
        let refused = api.post("/api/v1/notification-channels", wrong).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.text);
        assert_eq!(refused.json()["error"]["field"], field, "{}", refused.text);
    }

    let changed = api
        .patch(
            &format!("/api/v1/notification-channels/{id}"),
            json!({"severities": ["CRITICAL"], "enabled": false, "secret": "n3w"}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    assert_eq!(
        (changed.json()["severities"].clone(), changed.json()["enabled"].clone()),
        (json!(["CRITICAL"]), json!(false))
    );
    let stored = app.store.notification_channels().list(t.id).await.unwrap().remove(0);
    assert_eq!(stored.secret.unwrap().expose(), "n3w");
    assert_eq!(api.get("/api/v1/notification-channels").await.json()["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        api.post_raw(&format!("/api/v1/notification-channels/{id}/test"), "application/json", "")
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        app.store
            .outbox()
            .staff_due(chrono::Utc::now() + chrono::Duration::minutes(1), 10)
            .await
            .unwrap()
            .len(),
        1
    );

    let editor = Api::new(&app, &token(&app, t.id, "ed", Role::Editor).await);
    assert_eq!(editor.get("/api/v1/notification-channels").await.status, StatusCode::FORBIDDEN);
    let other = app.tenant("Other").await;
    let outsider = Api::new(&app, &token(&app, other.id, "x", Role::Admin).await);
    assert_eq!(
        outsider.get(&format!("/api/v1/notification-channels/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        outsider.delete(&format!("/api/v1/notification-channels/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.delete(&format!("/api/v1/notification-channels/{id}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert!(api.get("/api/v1/notification-channels").await.json()["items"].as_array().unwrap().is_empty());
}

per_backend!(an_admin_manages_channels_through_the_api);
