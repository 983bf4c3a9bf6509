//! Logging in and out: the happy path, wrong passwords, lockout per email and per IP, session
//! rotation, logout and logout everywhere.

use crate::support::{Client, PASSWORD, TestApp};
use tds_domain::Role;
use tds_testkit::{TestDb, per_backend};

async fn login_opens_the_home_page_of_the_only_tenant(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("Águas do Vale").await;
    app.user("ana@example.com", Some((t.id, Role::Viewer))).await;
    let c = app.client();

    let page = c.get("/").await;
    assert_eq!(page.path(), "/login", "anonymous visitors are sent to the login page");
    let page = c.login("ana@example.com", PASSWORD).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.path(), "/");
    assert!(page.has("id=\"home-figures\""), "{}", page.body);
    assert!(page.has("Águas do Vale"), "the tenant is shown in the top bar");

    // The login remembers where the visitor was going.
    let c = app.client();
    c.get("/gateways?view=table").await;
    let page = c
        .post(
            "/login",
            &[("email", "ANA@example.com"), ("password", PASSWORD), ("next", "/gateways?view=table")],
        )
        .await;
    assert_eq!(page.path(), "/gateways");
    assert!(page.url.ends_with("view=table"));
    // …but never to another site.
    let c = app.client();
    c.get("/login").await;
    let page = c
        .post("/login", &[("email", "ana@example.com"), ("password", PASSWORD), ("next", "//evil.example/x")])
        .await;
    assert_eq!(page.path(), "/");
}

async fn a_wrong_password_says_so_without_telling_which_part_was_wrong(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("T").await;
    app.user("ana@example.com", Some((t.id, Role::Viewer))).await;
    let c = app.client();
    let wrong_password = c.login("ana@example.com", "not the password").await;
    let unknown_user = c.login("nobody@example.com", PASSWORD).await;
    assert_eq!(wrong_password.status, 401);
    assert_eq!(unknown_user.status, 401);
    assert_eq!(wrong_password.text_of("login-error"), Some("E-mail ou senha incorretos.".into()));
    assert_eq!(unknown_user.text_of("login-error"), wrong_password.text_of("login-error"));
    assert!(wrong_password.has("value=\"ana@example.com\""), "the email is kept in the form");
    let audit = app.store.audit().staff_list(&Default::default(), tds_store::Page::default()).await.unwrap();
    assert_eq!(audit.items.iter().filter(|e| e.action == "login.failed").count(), 2);
}

async fn five_failures_lock_the_email_for_fifteen_minutes(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("T").await;
    app.user("ana@example.com", Some((t.id, Role::Viewer))).await;
    let c = app.client();
    for _ in 0..5 {
        assert_eq!(c.login("ana@example.com", "wrong password!").await.status, 401);
    }
    // Even the right password is refused now, with a message that says why and for how long.
    let locked = c.login("ana@example.com", PASSWORD).await;
    assert_eq!(locked.status, 429);
    let msg = locked.text_of("login-error").unwrap();
    assert!(msg.contains("15 minutos"), "{msg}");
    assert_eq!(locked.path(), "/login");
    assert!(
        app.store
            .audit()
            .staff_list(&Default::default(), tds_store::Page::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|e| e.action == "login.locked_out")
    );
}

async fn five_failures_from_one_ip_lock_that_ip_for_every_email(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("T").await;
    app.user("bia@example.com", Some((t.id, Role::Viewer))).await;
    let c = app.client();
    for i in 0..5 {
        c.login(&format!("guess{i}@example.com"), "whatever pass").await;
    }
    // bia never failed, but the address did (all tests come from 127.0.0.1).
    assert_eq!(c.login("bia@example.com", PASSWORD).await.status, 429);
}

async fn logout_ends_the_session_on_the_server(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("T").await;
    app.user("ana@example.com", Some((t.id, Role::Viewer))).await;
    let c = app.login("ana@example.com").await;
    let cookie = session_cookie(&c, &app.base);
    c.post("/logout", &[]).await;
    assert_eq!(c.get("/").await.path(), "/login");
    // Replaying the old cookie does not bring the session back.
    let replay = reqwest::Client::new()
        .get(format!("{}/gateways", app.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.url().path(), "/login");
}

async fn logging_in_again_issues_a_new_session_token(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("T").await;
    app.user("ana@example.com", Some((t.id, Role::Viewer))).await;
    let c = app.login("ana@example.com").await;
    let first = session_cookie(&c, &app.base);
    c.login("ana@example.com", PASSWORD).await;
    let second = session_cookie(&c, &app.base);
    assert_ne!(first, second);
    let replay =
        reqwest::Client::new().get(format!("{}/", app.base)).header("cookie", first).send().await.unwrap();
    assert_eq!(replay.url().path(), "/login", "the previous token is dead");
}

async fn logout_everywhere_ends_every_session_of_the_user(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("T").await;
    app.user("ana@example.com", Some((t.id, Role::Viewer))).await;
    app.user("bob@example.com", Some((t.id, Role::Viewer))).await;
    let laptop = app.login("ana@example.com").await;
    let phone = app.login("ana@example.com").await;
    let bob = app.login("bob@example.com").await;
    laptop.get("/profile").await;
    laptop.post("/logout/everywhere", &[]).await;
    assert_eq!(laptop.get("/").await.path(), "/login");
    assert_eq!(phone.get("/").await.path(), "/login");
    assert_eq!(bob.get("/").await.path(), "/", "other users keep their sessions");
}

async fn the_session_cookie_is_http_only_and_same_site(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("T").await;
    app.user("ana@example.com", Some((t.id, Role::Viewer))).await;
    let c = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let login = c.get(format!("{}/login", app.base)).send().await.unwrap();
    let anon = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    let token = anon.split(';').next().unwrap().split('=').nth(1).unwrap().to_owned();
    let resp = c
        .post(format!("{}/login", app.base))
        .header("origin", &app.base)
        .header("cookie", format!("tds_csrf={token}"))
        .form(&[("email", "ana@example.com"), ("password", PASSWORD), ("_csrf", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let cookies: Vec<String> =
        resp.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    let session = cookies.iter().find(|c| c.starts_with("tds_session=")).expect("session cookie");
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax") && session.contains("Path=/"),
        "{session}"
    );
    let headers = resp.headers();
    assert!(headers["content-security-policy"].to_str().unwrap().contains("default-src 'self'"));
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["x-content-type-options"], "nosniff");
}

fn session_cookie(c: &Client, _base: &str) -> String {
    c.session_cookie().expect("a session cookie")
}

per_backend!(
    login_opens_the_home_page_of_the_only_tenant,
    a_wrong_password_says_so_without_telling_which_part_was_wrong,
    five_failures_lock_the_email_for_fifteen_minutes,
    five_failures_from_one_ip_lock_that_ip_for_every_email,
    logout_ends_the_session_on_the_server,
    logging_in_again_issues_a_new_session_token,
    logout_everywhere_ends_every_session_of_the_user,
    the_session_cookie_is_http_only_and_same_site,
);
