//! The staff console: tenants and their limits, gateway transfer, the audit log.

use crate::support::TestApp;
use tds_domain::{Mac, Role};
use tds_testkit::{TestDb, fixtures, per_backend};

async fn staff_create_a_tenant_whose_limits_apply_everywhere(db: TestDb) {
    let app = TestApp::spawn(db).await;
    app.user_with("ops@tds.example", None, true).await;
    let ops = app.login("ops@tds.example").await;
    let page = ops.get("/staff").await;
    assert_eq!(page.status, 200);
    let bad = ops
        .post(
            "/staff/tenants",
            &[
                ("name", ""),
                ("timezone", "Mars/Base"),
                ("max_gateways", "0"),
                ("max_devices", "10"),
                ("max_users", "5"),
                ("cnpj", "11.111.111/1111-11"),
            ],
        )
        .await;
    assert_eq!(bad.status, 422);
    for f in ["name", "timezone", "max_gateways", "cnpj"] {
        assert!(bad.text_of(&format!("{f}-error")).is_some(), "{f}: {}", bad.body);
    }
    let page = ops
        .post(
            "/staff/tenants",
            &[
                ("name", "Delta Gás"),
                ("timezone", "America/Manaus"),
                ("max_gateways", "1"),
                ("max_devices", "10"),
                ("max_users", "5"),
                ("active", "on"),
            ],
        )
        .await;
    assert!(page.path().starts_with("/staff/tenants/"), "{}", page.url);
    let tenant = app.store.tenants().staff_by_name("Delta Gás").await.unwrap();
    assert_eq!(tenant.limits.max_gateways, 1);
    assert_eq!(tenant.timezone.name(), "America/Manaus");

    // The staff member joins as admin and meets the limit in the tenant's own form.
    ops.post(&format!("/staff/tenants/{}/join", tenant.id), &[]).await;
    ops.get("/gateways/new").await;
    let first = ops
        .post(
            "/gateways/new",
            &[
                ("mac", "aa:00:00:00:00:01"),
                ("code", "G1"),
                ("name", "G1"),
                ("max_devices", "8"),
                ("expected_interval_s", "60"),
            ],
        )
        .await;
    assert!(first.path().starts_with("/gateways/"), "{}", first.body);
    ops.get("/gateways/new").await;
    let second = ops
        .post(
            "/gateways/new",
            &[
                ("mac", "aa:00:00:00:00:02"),
                ("code", "G2"),
                ("name", "G2"),
                ("max_devices", "8"),
                ("expected_interval_s", "60"),
            ],
        )
        .await;
    assert_eq!(second.status, 422);
    assert!(second.has("Limite atingido"), "{}", second.body);

    // Deactivating it puts its members behind the licence page.
    ops.get(&format!("/staff/tenants/{}", tenant.id)).await;
    ops.post(
        &format!("/staff/tenants/{}", tenant.id),
        &[("max_gateways", "1"), ("max_devices", "10"), ("max_users", "5"), ("licence_valid_until", "")],
    )
    .await;
    assert!(!app.store.tenants().get(tenant.id).await.unwrap().active);
    assert_eq!(ops.get("/gateways").await.path(), "/licence");
}

async fn staff_transfer_a_gateway_with_or_without_its_devices(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let a = app.tenant("A").await;
    let b = app.tenant("B").await;
    app.user_with("ops@tds.example", None, true).await;
    let g1 = fixtures::gateway(&app.store, a.id, "aa:00:00:00:00:01", "G1").await;
    let d1 = fixtures::meter(&app.store, a.id, &g1, "D01").await;
    let g2 = fixtures::gateway(&app.store, a.id, "aa:00:00:00:00:02", "G2").await;
    let d2 = fixtures::meter(&app.store, a.id, &g2, "D01").await;
    let ops = app.login("ops@tds.example").await;
    let page = ops.get("/staff/gateways").await;
    assert!(page.has("aa:00:00:00:00:01") && page.has("aa:00:00:00:00:02"));

    ops.get("/staff/gateways/aa:00:00:00:00:01/transfer").await;
    let page = ops
        .post(
            "/staff/gateways/aa:00:00:00:00:01/transfer",
            &[("tenant_id", &b.id.to_string()), ("with_devices", "on")],
        )
        .await;
    assert_eq!(page.path(), "/staff/gateways", "{}", page.body);
    assert_eq!(
        app.store.gateways().staff_by_mac(Mac::parse("aa:00:00:00:00:01").unwrap()).await.unwrap().tenant_id,
        b.id
    );
    assert_eq!(app.store.devices().get(b.id, d1.id).await.unwrap().gateway_id, g1.id);

    ops.get("/staff/gateways/aa:00:00:00:00:02/transfer").await;
    ops.post("/staff/gateways/aa:00:00:00:00:02/transfer", &[("tenant_id", &b.id.to_string())]).await;
    assert_eq!(
        app.store.gateways().staff_by_mac(Mac::parse("aa:00:00:00:00:02").unwrap()).await.unwrap().tenant_id,
        b.id
    );
    let left = app.store.devices().get(a.id, d2.id).await.unwrap();
    assert!(left.archived_at.is_some(), "without its devices, they stay archived in A");

    // A refusal is explained (G1 is already in B).
    ops.get("/staff/gateways/aa:00:00:00:00:01/transfer").await;
    let page =
        ops.post("/staff/gateways/aa:00:00:00:00:01/transfer", &[("tenant_id", &b.id.to_string())]).await;
    assert_eq!(page.status, 422);
    assert!(page.has("Transferência recusada"));

    let audit = ops.get("/staff/audit?action=staff.gateway").await;
    assert_eq!(audit.body.matches("staff.gateway_transferred").count(), 2, "{}", audit.body);
    assert!(!audit.has("<code>login.succeeded</code>"), "the filter applies");
    let logins = ops.get("/staff/audit?action=login.&actor=ops%40tds.example").await;
    assert!(logins.has("<code>login.succeeded</code>"));
    let _ = Role::Viewer;
}

per_backend!(
    staff_create_a_tenant_whose_limits_apply_everywhere,
    staff_transfer_a_gateway_with_or_without_its_devices
);
