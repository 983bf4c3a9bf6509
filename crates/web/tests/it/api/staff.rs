//! Staff tokens: a kind apart from the tenants' tokens. One manages tenants through
//! `/api/v1/staff/tenants` and nothing else; a tenant's token is refused there, a staff token is
//! refused on the tenant routes; revoked is 401; every write is audited as the staff token.

use super::{Api, token};
use crate::support::TestApp;
use reqwest::StatusCode;
use serde_json::json;
use tds_domain::{Name, Role};
use tds_testkit::{TestDb, per_backend};

async fn staff_tokens_manage_tenants_and_only_tenants(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let acme = app.tenant("Acme").await;
    let secret = tds_web::api_token::generate_staff();
    assert!(secret.secret.starts_with("tds_staff_"), "{}", secret.prefix);
    app.store
        .staff_tokens()
        .staff_create(&tds_store::staff_tokens::NewStaffToken {
            name: Name::parse("name", "ops").unwrap(),
            token_hash: secret.hash.clone(),
            prefix: secret.prefix.clone(),
            expires_at: None,
        })
        .await
        .unwrap();
    let staff = Api::new(&app, &secret.secret);

    let listed = staff.get("/api/v1/staff/tenants").await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    assert_eq!(listed.json()[0]["name"], "Acme");
    let created = staff
        .post("/api/v1/staff/tenants", json!({"name": "Beta", "timezone": "America/Manaus", "max_gateways": 5, "licence_valid_until": "2030-12-31"}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let beta = created.json();
    assert_eq!(
        (beta["timezone"].clone(), beta["limits"]["max_gateways"].clone(), beta["active"].clone()),
        (json!("America/Manaus"), json!(5), json!(true))
    );
    let id = beta["id"].as_i64().unwrap();
    for (body, field) in [
        (json!({"name": "Gama", "timezone": "Mars/Olympus"}), "timezone"),
        (json!({"name": "Gama", "max_devices": 0}), "max_devices"),
        (json!({"name": "Gama", "cnpj": "11.111.111/1111-11"}), "cnpj"),
        (json!({"name": ""}), "name"),
        (json!({"name": "Gama", "active": "yes"}), "active"),
    ] {
        let refused = staff.post("/api/v1/staff/tenants", body.clone()).await;
        assert_eq!(
            (refused.status, refused.json()["error"]["field"].clone()),
            (StatusCode::UNPROCESSABLE_ENTITY, json!(field)),
            "{body}: {}",
            refused.text
        );
    }
    let taken = staff.post("/api/v1/staff/tenants", json!({"name": "Acme"})).await;
    assert_eq!(taken.status, StatusCode::CONFLICT);

    // Suspending a tenant stops its own tokens at once.
    let acme_token = token(&app, acme.id, "erp", Role::Admin).await;
    let acme_api = Api::new(&app, &acme_token);
    assert_eq!(acme_api.get("/api/v1/tenant").await.status, StatusCode::OK);
    let off = staff
        .patch(
            &format!("/api/v1/staff/tenants/{}", acme.id),
            json!({"active": false, "max_users": 3, "retention_days": 0}),
        )
        .await;
    assert_eq!(off.status, StatusCode::OK, "{}", off.text);
    assert_eq!(
        (
            off.json()["active"].clone(),
            off.json()["limits"]["max_users"].clone(),
            off.json()["retention_days"].clone()
        ),
        (json!(false), json!(3), json!(0))
    );
    assert_eq!(acme_api.get("/api/v1/tenant").await.code(), "licence_inactive");
    let renamed = staff.patch(&format!("/api/v1/staff/tenants/{}", acme.id), json!({"name": "Other"})).await;
    assert_eq!(
        (renamed.status, renamed.json()["error"]["field"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("name")),
        "the tenant's own profile is its admin's"
    );
    assert_eq!(staff.get("/api/v1/staff/tenants/999999").await.status, StatusCode::NOT_FOUND);
    assert_eq!(staff.get(&format!("/api/v1/staff/tenants/{id}")).await.json()["name"], "Beta");

    // Each kind of token stays on its side.
    let tenant_on_staff = acme_api.get("/api/v1/staff/tenants").await;
    assert_eq!(
        (tenant_on_staff.status, tenant_on_staff.code().as_str()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    let staff_on_tenant = staff.get("/api/v1/gateways").await;
    assert_eq!(
        (staff_on_tenant.status, staff_on_tenant.code().as_str()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    let anonymous = reqwest::get(format!("{}/api/v1/staff/tenants", app.base)).await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    let audit =
        app.store.audit().list(acme.id, &Default::default(), tds_store::Page::default()).await.unwrap();
    assert!(
        audit.items.iter().any(|e| e.action == "staff.tenant_updated" && e.actor == "staff token ops"),
        "{:?}",
        audit.items
    );
    app.store.staff_tokens().staff_revoke("ops").await.unwrap();
    assert_eq!(staff.get("/api/v1/staff/tenants").await.status, StatusCode::UNAUTHORIZED);
}

per_backend!(staff_tokens_manage_tenants_and_only_tenants);
