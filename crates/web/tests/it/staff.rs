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
        &[
            ("max_gateways", "1"),
            ("max_devices", "10"),
            ("max_users", "5"),
            ("licence_valid_until", ""),
            ("retention_days", "730"),
        ],
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

/// Deactivation logs the user out everywhere at once and keeps them out; reactivation restores
/// them with their tenant and role. Staff cannot deactivate themselves. Both are audited.
async fn staff_deactivate_and_reactivate_a_user(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("Acme").await;
    let ana = app.user("ana@acme.example", Some((t.id, Role::Editor))).await;
    let ops_user = app.user_with("ops@tds.example", None, true).await;
    let ops = app.login("ops@tds.example").await;
    let ana_session = app.login("ana@acme.example").await;
    assert_eq!(ana_session.get("/gateways").await.status, 200);

    let list = ops.get("/staff/users?q=acme").await;
    assert!(list.text_of(&format!("user-{}", ana.id)).is_some(), "{}", list.body);
    assert!(list.text_of(&format!("user-{}", ops_user.id)).is_none(), "the search applies");
    let done = ops.post(&format!("/staff/users/{}/active", ana.id), &[("active", "false")]).await;
    assert_eq!(done.path(), "/staff/users", "{}", done.body);
    let gone = ana_session.get("/gateways").await;
    assert_eq!(gone.path(), "/login", "the open session is closed at once");
    let again = app.client().login("ana@acme.example", crate::support::PASSWORD).await;
    assert_eq!(again.path(), "/login", "a deactivated user cannot log in");
    assert!(!app.store.users().get(ana.id).await.unwrap().active);

    let refused = ops.post(&format!("/staff/users/{}/active", ops_user.id), &[("active", "false")]).await;
    assert_eq!(refused.status, 400);
    assert!(app.store.users().get(ops_user.id).await.unwrap().active);

    ops.post(&format!("/staff/users/{}/active", ana.id), &[("active", "true")]).await;
    let back = app.login("ana@acme.example").await;
    assert_eq!(back.get("/gateways").await.status, 200, "reactivated with the same tenant and role");
    let audit = ops.get("/staff/audit?action=staff.user").await;
    assert!(audit.has("staff.user_deactivated") && audit.has("staff.user_reactivated"), "{}", audit.body);
}

/// Purging readings is for archived devices only, deletes their readings and rollups, and is
/// audited with the counts; other devices' readings stay.
async fn staff_purge_an_archived_devices_readings(db: TestDb) {
    use chrono::{Duration, TimeZone, Utc};
    let app = TestApp::spawn(db).await;
    let t = app.tenant("Acme").await;
    let g = fixtures::gateway(&app.store, t.id, "aa:bb:cc:00:04:01", "GW1").await;
    let old = fixtures::meter(&app.store, t.id, &g, "D01").await;
    let live = fixtures::meter(&app.store, t.id, &g, "D02").await;
    let t0 = Utc.with_ymd_and_hms(2026, 5, 1, 0, 0, 0).unwrap();
    for d in [&old, &live] {
        let rows: Vec<_> = (0..10)
            .map(|i| tds_store::readings::NewReading {
                device_id: d.id,
                time: t0 + Duration::hours(i),
                value: i as f64,
                unit: "kWh".into(),
            })
            .collect();
        app.store.readings().insert(t.id, &rows).await.unwrap();
    }
    app.user_with("ops@tds.example", None, true).await;
    let ops = app.login("ops@tds.example").await;

    // A live device is not listed and cannot be purged.
    let refused = ops.post(&format!("/staff/archived-devices/{}/purge", live.id), &[]).await;
    assert_eq!(refused.status, 404);
    app.store.devices().archive(t.id, old.id).await.unwrap();
    let list = ops.get("/staff/archived-devices").await;
    let row = list.text_of(&format!("archived-{}", old.id)).expect("the archived device is listed");
    assert!(row.contains("D01") && row.contains("10"), "{row}");
    assert!(list.text_of(&format!("archived-{}", live.id)).is_none());

    let done = ops.post(&format!("/staff/archived-devices/{}/purge", old.id), &[]).await;
    assert_eq!(done.path(), "/staff/archived-devices", "{}", done.body);
    let readings = app.store.readings();
    let count = |d| readings.for_device(t.id, d, t0, t0 + Duration::days(1), 100);
    assert!(count(old.id).await.unwrap().is_empty(), "the archived device's readings are gone");
    assert_eq!(count(live.id).await.unwrap().len(), 10, "other devices keep theirs");
    let audit = ops.get("/staff/audit?action=staff.device").await;
    assert!(
        audit.has("staff.device_readings_purged") && audit.has("&#34;readings&#34;:10"),
        "{}",
        audit.body
    );
}

/// A tenant's raw-reading retention is a staff setting, validated like every field.
async fn staff_set_a_tenants_retention(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("Acme").await;
    app.user_with("ops@tds.example", None, true).await;
    let ops = app.login("ops@tds.example").await;
    let page = ops.get(&format!("/staff/tenants/{}", t.id)).await;
    assert!(page.has("name=\"retention_days\" value=\"730\""), "{}", page.body);
    let form = |days: &'static str| {
        vec![
            ("max_gateways", "10"),
            ("max_devices", "100"),
            ("max_users", "10"),
            ("licence_valid_until", ""),
            ("retention_days", days),
            ("active", "on"),
        ]
    };
    let bad = ops.post(&format!("/staff/tenants/{}", t.id), &form("7")).await;
    assert_eq!(bad.status, 422);
    assert!(bad.text_of("retention_days-error").is_some(), "{}", bad.body);
    assert_eq!(app.store.tenants().get(t.id).await.unwrap().retention_days, 730, "nothing saved");
    ops.post(&format!("/staff/tenants/{}", t.id), &form("3650")).await;
    assert_eq!(app.store.tenants().get(t.id).await.unwrap().retention_days, 3650);
    ops.post(&format!("/staff/tenants/{}", t.id), &form("0")).await;
    assert_eq!(app.store.tenants().get(t.id).await.unwrap().retention(), None, "0 keeps readings for ever");
}

per_backend!(
    staff_create_a_tenant_whose_limits_apply_everywhere,
    staff_transfer_a_gateway_with_or_without_its_devices,
    staff_deactivate_and_reactivate_a_user,
    staff_purge_an_archived_devices_readings,
    staff_set_a_tenants_retention
);
