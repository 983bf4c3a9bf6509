//! Roles enforced on the server for every page and action, and CSRF protection on every form.

use crate::support::TestApp;
use tds_domain::Role;
use tds_testkit::{TestDb, fixtures, per_backend};

const NEW_GATEWAY: &[(&str, &str)] = &[
    ("mac", "aa:bb:cc:00:00:09"),
    ("code", "GW-NEW"),
    ("name", "Novo"),
    ("max_devices", "8"),
    ("expected_interval_s", "300"),
];

async fn a_viewer_reads_but_cannot_change_anything(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("T").await;
    app.user("vera@example.com", Some((t.id, Role::Viewer))).await;
    let gw = fixtures::gateway(&app.store, t.id, "aa:00:00:00:00:01", "GW1").await;
    let dev = fixtures::meter(&app.store, t.id, &gw, "D01").await;
    let c = app.login("vera@example.com").await;

    for path in ["/", "/gateways", &format!("/gateways/{}", gw.id), &format!("/devices/{}", dev.id)] {
        assert_eq!(c.get(path).await.status, 200, "{path}");
    }
    let page = c.get(&format!("/gateways/{}", gw.id)).await;
    assert!(
        !page.has("id=\"edit-gateway\"") && !page.has("id=\"new-device\""),
        "no edit buttons for a viewer"
    );
    for path in [
        "/gateways/new",
        &format!("/gateways/{}/edit", gw.id),
        &format!("/devices/{}/edit", dev.id),
        &format!("/gateways/{}/devices/new", gw.id),
    ] {
        assert_eq!(c.get(path).await.status, 403, "{path}");
    }
    c.get("/").await;
    assert_eq!(c.post("/gateways/new", NEW_GATEWAY).await.status, 403);
    assert_eq!(c.post(&format!("/gateways/{}/decommission", gw.id), &[]).await.status, 403);
    assert_eq!(c.post(&format!("/devices/{}/archive", dev.id), &[]).await.status, 403);
    let page = c
        .post(
            &format!("/gateways/{}/edit", gw.id),
            &[("code", "X"), ("name", "X"), ("max_devices", "8"), ("expected_interval_s", "60")],
        )
        .await;
    assert_eq!(page.status, 403);
    assert!(page.has("não permite"), "the refusal says why: {}", page.body);
    let list =
        app.store.gateways().list(t.id, &Default::default(), tds_store::Page::default()).await.unwrap();
    assert_eq!(list.total, 1, "nothing was created");
    assert_eq!(list.items[0].code.as_str(), "GW1", "nothing was changed");
    assert!(app.store.devices().get(t.id, dev.id).await.unwrap().archived_at.is_none());
}

async fn an_editor_creates_edits_and_archives(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("T").await;
    app.user("edu@example.com", Some((t.id, Role::Editor))).await;
    let c = app.login("edu@example.com").await;
    c.get("/gateways/new").await;
    let page = c.post("/gateways/new", NEW_GATEWAY).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.path().starts_with("/gateways/"), "{}", page.url);
    assert!(page.has("GW-NEW") && page.has("id=\"notice\""));
    let gw = app
        .store
        .gateways()
        .by_mac(t.id, tds_domain::Mac::parse("aa:bb:cc:00:00:09").unwrap())
        .await
        .unwrap();

    let page = c
        .post(
            &format!("/gateways/{}/devices/new", gw.id),
            &[
                ("code", "d01"),
                ("name", "Hidrômetro"),
                ("device_type", "MEDIDOR"),
                ("medium", "water"),
                ("kind", "counter"),
                ("unit", "m3"),
                ("scale_factor", "1"),
                ("slave_id", "1"),
                ("register", "40001"),
                ("mode", "AUTO"),
                ("status", "ATIVO"),
            ],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.path().starts_with("/devices/"), "{}", page.url);
    assert!(page.has("D01 · Hidrômetro"), "codes are upper-cased: {}", page.body);
    let id: i64 = page.path().trim_start_matches("/devices/").parse().unwrap();
    let page = c.post(&format!("/devices/{id}/archive"), &[]).await;
    assert_eq!(page.path(), format!("/gateways/{}", gw.id));
    assert!(
        app.store.devices().get(t.id, tds_domain::DeviceId::new(id)).await.unwrap().archived_at.is_some()
    );
    let audit = app.store.audit().list(t.id, &Default::default(), tds_store::Page::default()).await.unwrap();
    let actions: Vec<_> = audit.items.iter().map(|e| e.action.as_str()).collect();
    for a in ["gateway.created", "device.created", "device.archived"] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
}

async fn the_staff_console_is_invisible_to_tenant_users(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("T").await;
    app.user("adm@example.com", Some((t.id, Role::Admin))).await;
    let c = app.login("adm@example.com").await;
    for path in ["/staff", "/staff/gateways", "/staff/audit"] {
        assert_eq!(c.get(path).await.status, 404, "{path}");
    }
}

async fn forms_without_the_csrf_token_or_from_another_origin_are_refused(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("T").await;
    app.user("edu@example.com", Some((t.id, Role::Editor))).await;
    let c = app.login("edu@example.com").await;
    c.get("/gateways/new").await;
    let url = format!("{}/gateways/new", app.base);
    let cookie = c.session_cookie().unwrap();
    let raw = reqwest::Client::new();

    // No token.
    let r = raw
        .post(&url)
        .header("cookie", &cookie)
        .header("origin", &app.base)
        .form(NEW_GATEWAY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // A wrong token.
    let mut wrong: Vec<(&str, &str)> = NEW_GATEWAY.to_vec();
    wrong.push(("_csrf", "00000000000000000000000000000000000000000000000000000000000000000"));
    let r = raw
        .post(&url)
        .header("cookie", &cookie)
        .header("origin", &app.base)
        .form(&wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // The right token from another site.
    let token = c.csrf();
    let mut good: Vec<(&str, &str)> = NEW_GATEWAY.to_vec();
    good.push(("_csrf", &token));
    let r = raw
        .post(&url)
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .form(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("outro site"), "the page explains the refusal");
    // Neither Origin nor Referer.
    let r = raw.post(&url).header("cookie", &cookie).form(&good).send().await.unwrap();
    assert_eq!(r.status(), 403);
    // An htmx request carries the token in a header instead.
    let r = raw
        .post(&url)
        .header("cookie", &cookie)
        .header("origin", &app.base)
        .header("x-csrf-token", "nope")
        .form(NEW_GATEWAY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        app.store.gateways().list(t.id, &Default::default(), tds_store::Page::default()).await.unwrap().total,
        0
    );

    // And the same request done properly works.
    let r = raw
        .post(&url)
        .header("cookie", &cookie)
        .header("origin", &app.base)
        .form(&good)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(
        app.store.gateways().list(t.id, &Default::default(), tds_store::Page::default()).await.unwrap().total,
        1
    );

    // The login form needs its double-submit cookie too.
    let r = raw
        .post(format!("{}/login", app.base))
        .header("origin", &app.base)
        .form(&[("email", "edu@example.com"), ("password", "x"), ("_csrf", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

per_backend!(
    a_viewer_reads_but_cannot_change_anything,
    an_editor_creates_edits_and_archives,
    the_staff_console_is_invisible_to_tenant_users,
    forms_without_the_csrf_token_or_from_another_origin_are_refused,
);
