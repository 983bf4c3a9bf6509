//! Renewal through the API: `POST /api/v1/gateways/{mac}/certificate/renew` starts one renewal
//! now (server key by default for an ESP32, CSR on request), a second one while it is open is a
//! conflict, and the certificates list says where each certificate stands in its renewal.

use super::{Api, token};
use crate::support::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::json;
use tds_domain::Role;
use tds_domain::renewal::RenewalState;
use tds_testkit::{TestDb, fixtures, per_backend};

async fn a_renewal_is_started_through_the_api_and_listed(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("Acme").await;
    let g1 = fixtures::gateway(&app.store, t.id, "02:00:00:00:00:01", "GW-1").await;
    let g2 = fixtures::gateway(&app.store, t.id, "02:00:00:00:00:02", "GW-2").await;
    let g3 = fixtures::gateway(&app.store, t.id, "02:00:00:00:00:03", "GW-3").await;
    app.pki.issue(&app.store, &g1, tds_pki::DeviceKeyKind::Rsa2048, false).await.unwrap();
    app.pki.issue(&app.store, &g2, tds_pki::DeviceKeyKind::EcdsaP256, false).await.unwrap();
    let admin = Api::new(&app, &token(&app, t.id, "ops", Role::Admin).await);

    // No body: the gateway's own mode (server key for a gateway without a model).
    let started =
        admin.call(Method::POST, "/api/v1/gateways/02:00:00:00:00:01/certificate/renew", None).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.text);
    let body = started.json();
    assert_eq!((body["mode"].clone(), body["state"].clone()), (json!("server_key"), json!("issued")));
    assert_eq!(body["gateway"], "02:00:00:00:00:01");
    let serial = body["new_certificate_serial"].as_str().unwrap().to_owned();
    let again = admin.post("/api/v1/gateways/02:00:00:00:00:01/certificate/renew", json!({})).await;
    assert_eq!((again.status, again.code().as_str()), (StatusCode::CONFLICT, "conflict"), "{}", again.text);

    let csr = admin.post("/api/v1/gateways/02-00-00-00-00-02/certificate/renew", json!({"csr": true})).await;
    assert_eq!(csr.status, StatusCode::ACCEPTED, "{}", csr.text);
    assert_eq!(
        (csr.json()["state"].clone(), csr.json()["new_certificate_serial"].clone()),
        (json!("offered"), json!(null))
    );
    let r = app.store.renewals().for_gateway(t.id, g2.id, 1).await.unwrap().remove(0);
    assert_eq!((r.id.get(), r.state), (csr.json()["id"].as_i64().unwrap(), RenewalState::Offered));

    // Refusals: no certificate to renew, a bad body, an unknown gateway.
    let none = admin.post("/api/v1/gateways/02:00:00:00:00:03/certificate/renew", json!({})).await;
    assert_eq!(none.status, StatusCode::CONFLICT, "{}", none.text);
    assert!(app.store.renewals().for_gateway(t.id, g3.id, 1).await.unwrap().is_empty());
    let bad =
        admin.post("/api/v1/gateways/02:00:00:00:00:03/certificate/renew", json!({"mode": "csr"})).await;
    assert_eq!(
        (bad.status, bad.json()["error"]["field"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("mode"))
    );
    let bad = admin.post("/api/v1/gateways/02:00:00:00:00:03/certificate/renew", json!({"csr": "yes"})).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.text);
    let missing = admin.post("/api/v1/gateways/02:00:00:00:00:99/certificate/renew", json!({})).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    // The list: the successor is `issued`, the others never renewed; none used yet.
    let listed = admin.get("/api/v1/certificates").await.json();
    let states: Vec<(String, serde_json::Value)> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["serial"].as_str().unwrap().to_owned(), c["renewal_state"].clone()))
        .collect();
    assert_eq!(states.len(), 3, "{listed}");
    assert_eq!(states.iter().filter(|(s, st)| *s == serial && *st == json!("issued")).count(), 1, "{listed}");
    assert_eq!(states.iter().filter(|(_, st)| st.is_null()).count(), 2, "{listed}");
    let never = admin.get("/api/v1/certificates?never_used=true").await.json();
    assert_eq!(never["items"].as_array().unwrap().len(), 3);
    app.store.certificates().mark_used(&serial, chrono::Utc::now()).await.unwrap();
    let never = admin.get("/api/v1/certificates?never_used=true").await.json();
    assert_eq!(never["items"].as_array().unwrap().len(), 2);

    let audit = app.store.audit().list(t.id, &Default::default(), tds_store::Page::default()).await.unwrap();
    let renews: Vec<_> = audit.items.iter().filter(|e| e.action == "cert.renew").collect();
    assert_eq!(renews.len(), 2);
    assert!(renews.iter().all(|e| e.actor == "token ops"), "{renews:?}");
}

per_backend!(a_renewal_is_started_through_the_api_and_listed);
