//! Who may do what through the API: no token, a bad, revoked or expired token get 401; a viewer
//! cannot write and an editor cannot touch certificates (403); another tenant's MACs, codes and
//! ids are 404 on every route and change nothing; the session works too, with the CSRF header
//! for writes; a token over its rate gets 429 with `Retry-After`.

use super::{Api, token, token_expiring};
use crate::support::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::json;
use tds_domain::Role;
use tds_testkit::{TestDb, fixtures, per_backend};

/// Every route with another tenant's gateway, device, certificate or dead letter in it.
const FOREIGN: &[(&str, &str)] = &[
    ("GET", "/api/v1/gateways/02:00:00:00:00:0b"),
    ("PATCH", "/api/v1/gateways/02:00:00:00:00:0b"),
    ("DELETE", "/api/v1/gateways/02:00:00:00:00:0b"),
    ("GET", "/api/v1/gateways/02:00:00:00:00:0b/devices"),
    ("POST", "/api/v1/gateways/02:00:00:00:00:0b/devices"),
    ("GET", "/api/v1/gateways/02:00:00:00:00:0b/devices/M1"),
    ("PATCH", "/api/v1/gateways/02:00:00:00:00:0b/devices/M1"),
    ("DELETE", "/api/v1/gateways/02:00:00:00:00:0b/devices/M1"),
    ("GET", "/api/v1/readings?gateway=02:00:00:00:00:0b"),
    ("GET", "/api/v1/readings?gateway=02:00:00:00:00:0b&device=M1"),
    ("GET", "/api/v1/consumption?scope=gateway&gateway=02:00:00:00:00:0b&from=2026-11-01&to=2026-11-02"),
    (
        "GET",
        "/api/v1/consumption?scope=device&gateway=02:00:00:00:00:0b&device=M1&from=2026-11-01&to=2026-11-02",
    ),
    ("POST", "/api/v1/gateways/02:00:00:00:00:0b/certificate"),
    ("POST", "/api/v1/gateways/02:00:00:00:00:0b/certificate/csr"),
    ("POST", "/api/v1/gateways/02:00:00:00:00:0b/certificate/revoke"),
    ("POST", "/api/v1/gateways/02:00:00:00:00:0b/certificate/renew"),
    ("POST", "/api/v1/dead-letters/{letter}/replay"),
];

async fn another_tenants_resources_are_404_everywhere_and_unchanged(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let (a, b) = (app.tenant("A").await, app.tenant("B").await);
    let gb = fixtures::gateway(&app.store, b.id, "02:00:00:00:00:0b", "GW-B").await;
    let db_ = fixtures::meter(&app.store, b.id, &gb, "M1").await;
    app.pki.issue(&app.store, &gb, tds_pki::DeviceKeyKind::EcdsaP256, false).await.unwrap();
    let letter = app
        .store
        .rejected()
        .record(&[tds_store::rejected::NewRejected {
            tenant_id: Some(b.id),
            gateway_id: Some(gb.id),
            mac: Some(gb.mac),
            topic: "tds_new/gateway/02:00:00:00:00:0b/telemetria".into(),
            payload: b"{".to_vec(),
            payload_size: None,
            reading_index: None,
            reason_code: "invalid_json".into(),
            reason: "bad".into(),
            received_at: chrono::Utc::now(),
        }])
        .await
        .unwrap()[0];
    let before = (
        app.store.gateways().get(b.id, gb.id).await.unwrap(),
        app.store.devices().get(b.id, db_.id).await.unwrap(),
    );

    let attacker = Api::new(&app, &token(&app, a.id, "attacker", Role::Admin).await);
    let body = json!({"name": "pwned", "code": "M2", "reason": "key_compromise", "csr": "x"});
    for (method, path) in FOREIGN {
        let path = path.replace("{letter}", &letter.to_string());
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let body = (method != Method::GET && method != Method::DELETE).then(|| body.clone());
        let answer = attacker.call(method.clone(), &path, body).await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::NOT_FOUND, "not_found".to_owned()),
            "{method} {path}: {}",
            answer.text
        );
    }
    // Lists show only the caller's tenant.
    for list in [
        "/api/v1/gateways",
        "/api/v1/certificates",
        "/api/v1/dead-letters",
        "/api/v1/readings?from=2020-01-01T00:00:00Z",
    ] {
        let answer = attacker.get(list).await;
        assert_eq!(answer.status, StatusCode::OK, "{list}");
        assert_eq!(answer.json()["items"].as_array().unwrap().len(), 0, "{list}: {}", answer.text);
    }
    let after = (
        app.store.gateways().get(b.id, gb.id).await.unwrap(),
        app.store.devices().get(b.id, db_.id).await.unwrap(),
    );
    assert_eq!((after.0.name.as_str(), after.0.status), (before.0.name.as_str(), before.0.status));
    assert_eq!((after.1.name.as_str(), after.1.archived_at), (before.1.name.as_str(), None));
    let certs = app.store.certificates().for_gateway(b.id, gb.id).await.unwrap();
    assert_eq!(certs.len(), 1);
    assert_eq!(certs[0].status, tds_store::certificates::CertificateStatus::Active);
    assert!(app.store.rejected().get(b.id, letter).await.unwrap().replayed_at.is_none());
    assert!(app.store.renewals().for_gateway(b.id, gb.id, 5).await.unwrap().is_empty(), "no renewal started");
    assert!(
        app.store
            .audit()
            .list(b.id, &Default::default(), tds_store::Page::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

async fn tokens_roles_and_sessions_are_enforced(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("Acme").await;
    fixtures::gateway(&app.store, t.id, "02:00:00:00:00:01", "GW-A").await;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", app.base);

    let none = http.get(url("/api/v1/gateways")).send().await.unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert!(none.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    let body: serde_json::Value = none.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    for bad in ["Bearer tds_0000", "Basic dXNlcjpwYXNz", "Bearer "] {
        let r = http.get(url("/api/v1/gateways")).header("authorization", bad).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{bad}");
    }
    let expired = token_expiring(
        &app,
        t.id,
        "old",
        Role::Admin,
        Some(chrono::Utc::now() - chrono::Duration::seconds(1)),
    )
    .await;
    assert_eq!(Api::new(&app, &expired).get("/api/v1/tenant").await.status, StatusCode::UNAUTHORIZED);
    let revoked = token(&app, t.id, "gone", Role::Admin).await;
    let id = app.store.api_tokens().by_name(t.id, "gone").await.unwrap().id;
    assert_eq!(Api::new(&app, &revoked).get("/api/v1/tenant").await.status, StatusCode::OK);
    app.store.api_tokens().revoke(t.id, id).await.unwrap();
    assert_eq!(Api::new(&app, &revoked).get("/api/v1/tenant").await.status, StatusCode::UNAUTHORIZED);

    let viewer = Api::new(&app, &token(&app, t.id, "bi", Role::Viewer).await);
    assert_eq!(viewer.get("/api/v1/gateways/02:00:00:00:00:01").await.status, StatusCode::OK);
    let writes = [
        (Method::POST, "/api/v1/gateways"),
        (Method::PATCH, "/api/v1/gateways/02:00:00:00:00:01"),
        (Method::DELETE, "/api/v1/gateways/02:00:00:00:00:01"),
        (Method::POST, "/api/v1/gateways/02:00:00:00:00:01/devices"),
        (Method::POST, "/api/v1/gateways/02:00:00:00:00:01/certificate"),
        (Method::POST, "/api/v1/gateways/02:00:00:00:00:01/certificate/renew"),
        (Method::POST, "/api/v1/dead-letters/1/replay"),
    ];
    for (method, path) in &writes {
        let answer = viewer.call(method.clone(), path, Some(json!({"name": "x"}))).await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::FORBIDDEN, "forbidden".to_owned()),
            "{method} {path}"
        );
    }
    let posted = http
        .post(url("/api/v1/imports/gateways"))
        .bearer_auth(&viewer.token)
        .header("content-type", "text/csv")
        .body("mac,code,name\n02:00:00:00:00:07,G7,Sete\n")
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), StatusCode::FORBIDDEN);
    let editor = Api::new(&app, &token(&app, t.id, "erp", Role::Editor).await);
    assert_eq!(
        editor.post("/api/v1/gateways/02:00:00:00:00:01/certificate", json!({})).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        editor
            .post("/api/v1/gateways/02:00:00:00:00:01/certificate/renew", json!({"csr": true}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(app.store.tenants().usage(t.id).await.unwrap().gateways, 1, "no write went through");
    assert!(
        app.store
            .certificates()
            .for_gateway(
                t.id,
                app.store
                    .gateways()
                    .by_mac(t.id, tds_domain::Mac::parse("02:00:00:00:00:01").unwrap())
                    .await
                    .unwrap()
                    .id
            )
            .await
            .unwrap()
            .is_empty()
    );

    // A suspended tenant's tokens stop working.
    app.store.tenants().staff_set_active(t.id, false).await.unwrap();
    let off = viewer.get("/api/v1/tenant").await;
    assert_eq!((off.status, off.code().as_str()), (StatusCode::FORBIDDEN, "licence_inactive"));
    app.store.tenants().staff_set_active(t.id, true).await.unwrap();

    // The session works like a token of the member's role; writes need the CSRF header.
    app.user("ed@acme.example", Some((t.id, Role::Editor))).await;
    let browser = app.login("ed@acme.example").await;
    let page = browser.get("/api/v1/tenant").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let r = browser
        .no_redirect()
        .post(url("/api/v1/gateways"))
        .header("origin", &app.base)
        .json(&json!({"mac": "02:00:00:00:00:05", "code": "G5", "name": "Cinco"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "no CSRF header");
    browser.get("/").await;
    let r = browser
        .no_redirect()
        .post(url("/api/v1/gateways"))
        .header("origin", &app.base)
        .header("x-csrf-token", browser.csrf())
        .json(&json!({"mac": "02:00:00:00:00:05", "code": "G5", "name": "Cinco"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let entry = app
        .store
        .audit()
        .list(t.id, &Default::default(), tds_store::Page::default())
        .await
        .unwrap()
        .items
        .remove(0);
    assert_eq!(entry.actor, "ed@acme.example");

    // Unknown API paths answer JSON.
    let missing = viewer.get("/api/v1/nothing-here").await;
    assert_eq!((missing.status, missing.code().as_str()), (StatusCode::NOT_FOUND, "not_found"));
}

async fn a_token_over_its_rate_waits(db: TestDb) {
    let app = TestApp::spawn_with(db, |c| {
        c.api_rate_per_second = std::num::NonZeroU32::new(1).unwrap();
        c.api_burst = std::num::NonZeroU32::new(3).unwrap();
    })
    .await;
    let t = app.tenant("Acme").await;
    let (one, two) = (
        Api::new(&app, &token(&app, t.id, "one", Role::Viewer).await),
        Api::new(&app, &token(&app, t.id, "two", Role::Viewer).await),
    );
    for _ in 0..3 {
        assert_eq!(one.get("/api/v1/tenant").await.status, StatusCode::OK);
    }
    let limited = one.get("/api/v1/tenant").await;
    assert_eq!((limited.status, limited.code().as_str()), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"));
    let wait: u64 = limited.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    assert_eq!(two.get("/api/v1/tenant").await.status, StatusCode::OK, "another token is not slowed");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(one.get("/api/v1/tenant").await.status, StatusCode::OK, "after the wait");
}

per_backend!(
    another_tenants_resources_are_404_everywhere_and_unchanged,
    tokens_roles_and_sessions_are_enforced,
    a_token_over_its_rate_waits
);
