//! Tenants: choosing and switching, the licence page, and URL guessing across tenants.

use crate::support::{PASSWORD, TestApp};
use tds_domain::{GatewayCode, Name, Role};
use tds_testkit::{TestDb, fixtures, per_backend};

async fn a_member_of_two_tenants_picks_one_and_can_switch(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let a = app.tenant("Alfa Saneamento").await;
    let b = app.tenant("Beta Energia").await;
    let u = app.user("ana@example.com", Some((a.id, Role::Admin))).await;
    app.store.memberships().add(b.id, u.id, Role::Viewer, None).await.unwrap();
    fixtures::gateway(&app.store, a.id, "aa:00:00:00:00:01", "ALFA-GW").await;
    fixtures::gateway(&app.store, b.id, "bb:00:00:00:00:01", "BETA-GW").await;

    let c = app.client();
    let page = c.login("ana@example.com", PASSWORD).await;
    assert_eq!(page.path(), "/tenants", "several tenants: choose first");
    assert!(page.has("Alfa Saneamento") && page.has("Beta Energia"));
    let page = c.post("/tenants", &[("tenant_id", &b.id.to_string()), ("next", "/gateways")]).await;
    assert_eq!(page.path(), "/gateways");
    assert!(page.has("BETA-GW") && !page.has("ALFA-GW"), "only the chosen tenant's gateways");
    assert!(!page.has("id=\"new-gateway\""), "a viewer in Beta gets no create button");

    c.get("/tenants").await;
    let page = c.post("/tenants", &[("tenant_id", &a.id.to_string()), ("next", "/gateways")]).await;
    assert!(page.has("ALFA-GW") && !page.has("BETA-GW"));
    assert!(page.has("id=\"new-gateway\""), "an admin in Alfa may create gateways");
}

async fn choosing_a_tenant_one_does_not_belong_to_is_not_found(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let a = app.tenant("A").await;
    let b = app.tenant("B").await;
    app.user("ana@example.com", Some((a.id, Role::Admin))).await;
    let c = app.login("ana@example.com").await;
    c.get("/").await;
    let page = c.post("/tenants", &[("tenant_id", &b.id.to_string())]).await;
    assert_eq!(page.status, 404);
    assert!(c.get("/").await.has("id=\"home-figures\""), "still in A");
}

async fn another_tenants_urls_answer_not_found_and_change_nothing(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let a = app.tenant("A").await;
    let b = app.tenant("B").await;
    app.user("eve@example.com", Some((b.id, Role::Admin))).await;
    let gw = fixtures::gateway(&app.store, a.id, "aa:00:00:00:00:01", "SECRET-GW").await;
    let dev = fixtures::meter(&app.store, a.id, &gw, "D01").await;
    let eve = app.login("eve@example.com").await;

    for path in [
        format!("/gateways/{}", gw.id),
        format!("/gateways/{}/edit", gw.id),
        format!("/gateways/{}/devices/new", gw.id),
        format!("/devices/{}", dev.id),
        format!("/devices/{}/edit", dev.id),
    ] {
        let page = eve.get(&path).await;
        assert_eq!(page.status, 404, "{path}");
        assert!(!page.has("SECRET-GW") && !page.has("aa:00:00:00:00:01"), "{path} leaks data");
    }
    eve.get("/").await;
    let id = gw.id;
    assert_eq!(
        eve.post(
            &format!("/gateways/{id}/edit"),
            &[("code", "HACKED"), ("name", "x"), ("max_devices", "8"), ("expected_interval_s", "60")]
        )
        .await
        .status,
        404
    );
    assert_eq!(eve.post(&format!("/gateways/{id}/decommission"), &[]).await.status, 404);
    assert_eq!(eve.post(&format!("/devices/{}/archive", dev.id), &[]).await.status, 404);
    assert_eq!(
        eve.post(&format!("/gateways/{id}/devices/new"), &[("code", "D99"), ("name", "x")]).await.status,
        404
    );
    let after = app.store.gateways().get(a.id, gw.id).await.unwrap();
    assert_eq!(after.code, GatewayCode::parse("SECRET-GW").unwrap());
    assert_eq!(after.status, gw.status);
    assert!(app.store.devices().get(a.id, dev.id).await.unwrap().archived_at.is_none());
    assert_eq!(app.store.devices().list_for_gateway(a.id, gw.id, true).await.unwrap().len(), 1);
}

async fn an_inactive_or_expired_tenant_shows_only_the_licence_page(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("Gama").await;
    app.user("ana@example.com", Some((t.id, Role::Admin))).await;
    let gw = fixtures::gateway(&app.store, t.id, "aa:00:00:00:00:01", "GW1").await;
    let c = app.login("ana@example.com").await;

    app.store.tenants().staff_set_active(t.id, false).await.unwrap();
    for path in ["/", "/gateways", &format!("/gateways/{}", gw.id)] {
        let page = c.get(path).await;
        assert_eq!(page.path(), "/licence", "{path}");
        assert!(page.has("id=\"licence-page\"") && page.has("desativada"), "{}", page.body);
        assert!(!page.has("GW1"));
    }
    app.store.tenants().staff_set_active(t.id, true).await.unwrap();
    let yesterday = chrono::Utc::now().date_naive() - chrono::Days::new(2);
    app.store.tenants().staff_set_licence(t.id, Some(yesterday)).await.unwrap();
    let page = c.get("/gateways").await;
    assert_eq!(page.path(), "/licence");
    assert!(page.has("venceu"), "{}", page.body);
    app.store.tenants().staff_set_licence(t.id, None).await.unwrap();
    assert_eq!(c.get("/gateways").await.path(), "/gateways");
    let _ = Name::parse("x", "y");
}

per_backend!(
    a_member_of_two_tenants_picks_one_and_can_switch,
    choosing_a_tenant_one_does_not_belong_to_is_not_found,
    another_tenants_urls_answer_not_found_and_change_nothing,
    an_inactive_or_expired_tenant_shows_only_the_licence_page,
);
