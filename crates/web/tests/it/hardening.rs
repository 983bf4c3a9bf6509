//! The findings of the hardening review (issue 19), each tried the way an attacker would: a
//! revocation reason that hides a certificate from the CRL, an open redirect after login, a
//! chart range of centuries, parallel password guesses, a shared proxy address, an oversized
//! anonymous body, a live stream that outlives its session, and more.

use crate::support::{Client, PASSWORD, TestApp};
use tds_domain::Role;
use tds_testkit::{TestDb, fixtures, per_backend};

async fn post_raw(c: &Client, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    let mut form: Vec<(&str, String)> = fields.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    form.push(("_csrf", c.csrf()));
    c.http.post(format!("{}{path}", c.base)).header("origin", &c.base).form(&form).send().await.unwrap()
}

async fn a_certificate_cannot_be_revoked_with_a_reason_that_keeps_it_out_of_the_crl(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("T").await;
    app.user("adm@example.com", Some((t.id, Role::Admin))).await;
    let g = fixtures::gateway(&app.store, t.id, "aa:bb:cc:00:00:01", "GW1").await;
    app.pki.issue(&app.store, &g, tds_pki::DeviceKeyKind::EcdsaP256, false).await.unwrap();
    let before = app.pki.current_crl(&app.store).await.unwrap();
    let cert = app.store.certificates().for_gateway(t.id, g.id).await.unwrap().pop().unwrap();
    let c = app.login("adm@example.com").await;
    c.get(&format!("/certificates/{}", cert.id)).await;
    for reason in ["remove_from_crl", "removeFromCRL", "ca_compromise", "aa_compromise", "certificate_hold"] {
        let resp = post_raw(&c, &format!("/certificates/{}/revoke", cert.id), &[("reason", reason)]).await;
        assert_eq!(resp.status(), 400, "{reason}");
    }
    assert!(app.store.certificates().staff_revoked().await.unwrap().is_empty(), "nothing revoked");
    let after = app.store.certificates().crl().await.unwrap().unwrap();
    assert_eq!(after.number, before.number, "no CRL re-issued");
    let page = c.get(&format!("/certificates/{}", cert.id)).await;
    assert!(!page.has("remove_from_crl") && !page.has("ca_compromise"), "the form does not offer them");
}

async fn the_page_after_login_is_never_another_site(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("T").await;
    app.user("vera@example.com", Some((t.id, Role::Viewer))).await;
    for next in [
        "/\t/evil.example",
        "/\n/evil.example",
        "/\r/evil.example",
        "/ /evil.example",
        "//evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "https://evil.example",
        "javascript:alert(1)",
    ] {
        assert_eq!(login_going_to(&app, next).await.as_deref(), Some("/"), "next={next:?}");
    }
    // A plain local path is still followed.
    assert_eq!(login_going_to(&app, "/gateways?page=2").await.as_deref(), Some("/gateways?page=2"));
}

/// Where a successful login of vera@example.com asking for `next` sends the browser.
async fn login_going_to(app: &TestApp, next: &str) -> Option<String> {
    let c = app.client();
    c.get("/login").await;
    let form = [("email", "vera@example.com"), ("password", PASSWORD), ("next", next), ("_csrf", &c.csrf())];
    let resp = c
        .no_redirect()
        .post(format!("{}/login", c.base))
        .header("origin", &c.base)
        .form(&form)
        .send()
        .await
        .unwrap();
    resp.headers().get("location").map(|v| v.to_str().unwrap().to_owned())
}

async fn a_chart_range_of_centuries_is_a_clear_error_not_a_long_computation(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("T").await;
    app.user("vera@example.com", Some((t.id, Role::Viewer))).await;
    let gw = fixtures::gateway(&app.store, t.id, "aa:00:00:00:00:01", "GW1").await;
    let d = fixtures::meter(&app.store, t.id, &gw, "D01").await;
    let c = app.login("vera@example.com").await;
    for (from, to) in
        [("2000-01-01", "9999-12-31"), ("1900-01-01", "2099-12-31"), ("2020-01-01", "2024-01-01")]
    {
        let url = format!("/telemetry/data?period=custom&device={}&from={from}&to={to}", d.id);
        let resp = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            c.http.get(format!("{}{url}", c.base)).send(),
        )
        .await
        .expect("answered at once")
        .unwrap();
        assert_eq!(resp.status(), 400, "{from}..{to}");
        let body = resp.text().await.unwrap();
        assert!(body.contains("1100"), "says the limit: {body}");
        let page = c.get(&format!("/telemetry?period=custom&device={}&from={from}&to={to}", d.id)).await;
        assert_eq!(page.status, 200);
        assert!(page.text_of("range-error").is_some_and(|e| e.contains("1100")), "{}", page.body);
        assert!(!page.has("id=\"telemetry\""), "no chart is drawn");
    }
    // Three years fit.
    let url = format!("/telemetry/data?period=custom&device={}&from=2021-01-01&to=2023-12-31", d.id);
    assert_eq!(c.http.get(format!("{}{url}", c.base)).send().await.unwrap().status(), 200);
}

/// Reads the open event stream until it ends; `false` if it is still open after `within`.
async fn stream_ends(mut resp: reqwest::Response, within: std::time::Duration) -> bool {
    tokio::time::timeout(within, async { while let Ok(Some(_)) = resp.chunk().await {} }).await.is_ok()
}

async fn a_live_stream_ends_when_its_session_or_membership_ends(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("T").await;
    let vera = app.user("vera@example.com", Some((t.id, Role::Viewer))).await;
    let open_stream = |c: &Client| {
        let req = c.http.get(format!("{}/events", c.base)).header("accept", "text/event-stream");
        async move {
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 200);
            resp
        }
    };
    let wait = tds_web::routes::telemetry::STREAM_RECHECK + std::time::Duration::from_secs(4);

    // Logged out everywhere from another browser.
    let laptop = app.login("vera@example.com").await;
    let phone = app.login("vera@example.com").await;
    let stream = open_stream(&laptop).await;
    phone.get("/profile").await;
    let done = phone.post("/logout/everywhere", &[]).await;
    assert!(done.url.ends_with("/login"), "{}", done.url);
    assert!(stream_ends(stream, wait).await, "the stream of a logged-out session ended");

    // Removed from the tenant while the page is open.
    let laptop = app.login("vera@example.com").await;
    let stream = open_stream(&laptop).await;
    app.store.memberships().remove(t.id, vera.id).await.unwrap();
    assert!(stream_ends(stream, wait).await, "the stream of a removed member ended");

    // An untouched session keeps its stream.
    app.store.memberships().add(t.id, vera.id, Role::Viewer, None).await.unwrap();
    let laptop = app.login("vera@example.com").await;
    let stream = open_stream(&laptop).await;
    assert!(!stream_ends(stream, wait).await, "a live session's stream stays open");
}

async fn audit_count(app: &TestApp, action: &str) -> i64 {
    let filter = tds_store::audit::AuditFilter { action_prefix: Some(action.into()), ..Default::default() };
    app.store.audit().staff_list(&filter, tds_store::Page::default()).await.unwrap().total
}

/// Posts the login form from `c` (which holds the page's CSRF cookie and token) as `xff` when set.
async fn try_login(c: &Client, email: &str, password: &str, xff: Option<&str>) -> u16 {
    let mut req = c.no_redirect().post(format!("{}/login", c.base)).header("origin", &c.base);
    if let Some(xff) = xff {
        req = req.header("x-forwarded-for", xff);
    }
    let form = [("email", email), ("password", password), ("_csrf", &c.csrf())];
    req.form(&form).send().await.unwrap().status().as_u16()
}

async fn parallel_password_guesses_cannot_pass_the_lockout_and_a_locked_client_writes_nothing(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("T").await;
    app.user("vera@example.com", Some((t.id, Role::Viewer))).await;
    let c = std::sync::Arc::new(app.client());
    c.get("/login").await;
    let guesses: Vec<_> = (0..24)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move {
                try_login(&c, "vera@example.com", &format!("guess number {i}"), None).await
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for g in guesses {
        statuses.push(g.await.unwrap());
    }
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let locked = statuses.iter().filter(|s| **s == 429).count();
    assert!(checked <= 5, "at most 5 guesses reached the password check, not {checked}: {statuses:?}");
    assert_eq!(checked + locked, 24, "{statuses:?}");
    assert_eq!(
        try_login(&c, "vera@example.com", PASSWORD, None).await,
        429,
        "locked, even with the password"
    );
    assert_eq!(audit_count(&app, "login.locked_out").await, 1, "the lockout is audited once");

    // Locked out: more attempts write nothing (no audit row, no failure row).
    let (failed, locked_out) =
        (audit_count(&app, "login.failed").await, audit_count(&app, "login.locked_out").await);
    for i in 0..10 {
        assert_eq!(try_login(&c, "vera@example.com", &format!("more {i}"), None).await, 429);
    }
    assert_eq!(audit_count(&app, "login.failed").await, failed);
    assert_eq!(audit_count(&app, "login.locked_out").await, locked_out);
}

async fn behind_a_trusted_proxy_clients_are_told_apart_and_others_cannot_pick_their_address(db: TestDb) {
    let app = TestApp::spawn_with(db, |c| {
        c.trusted_proxies = tds_web::proxy::parse_trusted(&["127.0.0.1".into()]).unwrap();
    })
    .await;
    let t = app.tenant("T").await;
    app.user("vera@example.com", Some((t.id, Role::Viewer))).await;
    app.user("ana@example.com", Some((t.id, Role::Viewer))).await;
    let attacker = app.client();
    attacker.get("/login").await;
    for i in 0..6 {
        let email = format!("someone{i}@example.com");
        try_login(&attacker, &email, "wrong password", Some("198.51.100.66")).await;
    }
    assert_eq!(
        try_login(&attacker, "x@example.com", "wrong password", Some("198.51.100.66")).await,
        429,
        "the attacker's address is locked out"
    );
    // Another client behind the same proxy still logs in.
    let ana = app.client();
    ana.get("/login").await;
    assert_eq!(
        try_login(&ana, "ana@example.com", PASSWORD, Some("203.0.113.10")).await,
        303,
        "another client is not locked out"
    );
    // Whoever sends the header through the proxy cannot pose as another address: the proxy's
    // own entry (the right-most) counts.
    assert_eq!(
        try_login(&attacker, "vera@example.com", PASSWORD, Some("203.0.113.10, 198.51.100.66")).await,
        429
    );
    let sessions =
        app.store.audit().staff_list(&Default::default(), tds_store::Page::default()).await.unwrap();
    assert!(
        sessions.items.iter().any(|e| e.ip.as_deref() == Some("198.51.100.66")),
        "the audit log has the client's address"
    );
}

async fn without_a_trusted_proxy_the_forwarded_header_is_ignored(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("T").await;
    app.user("vera@example.com", Some((t.id, Role::Viewer))).await;
    let c = app.client();
    c.get("/login").await;
    for i in 0..5 {
        try_login(&c, &format!("someone{i}@example.com"), "wrong password", Some(&format!("198.51.100.{i}")))
            .await;
    }
    assert_eq!(
        try_login(&c, "vera@example.com", PASSWORD, Some("203.0.113.99")).await,
        429,
        "a made-up X-Forwarded-For does not escape the lockout of the real address"
    );
}

async fn forgot_password_answers_alike_for_every_address_and_counts_where_it_records(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("T").await;
    app.user("vera@example.com", Some((t.id, Role::Viewer))).await;
    let ask = |email: &'static str| {
        let c = app.client();
        async move {
            c.get("/password/forgot").await;
            let resp = c
                .no_redirect()
                .post(format!("{}/password/forgot", c.base))
                .header("origin", &c.base)
                .form(&[("email", email), ("_csrf", &c.csrf())])
                .send()
                .await
                .unwrap();
            let location = resp.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
            (resp.status().as_u16(), location, resp.text().await.unwrap())
        }
    };
    let known = ask("vera@example.com").await;
    let unknown = ask("nobody@example.com").await;
    assert_eq!(known, unknown, "the same answer whether or not the account exists");
    app.mail.wait_for("vera@example.com").await;
    // Five requests for one address, then refusals: the count and the record use one key.
    for _ in 0..4 {
        assert_eq!(ask("vera@example.com").await.0, 303);
    }
    assert_eq!(ask("vera@example.com").await.0, 429, "the sixth request for one address is refused");
    for _ in 0..50 {
        if app.mail.count_to("vera@example.com") >= 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(app.mail.count_to("vera@example.com"), 5, "five links sent, no more");
}

async fn an_anonymous_body_is_refused_before_it_is_read_past_a_small_limit(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let c = app.client();
    c.get("/login").await;
    let big = "a".repeat(1024 * 1024);
    // Declared size over the limit: refused from the header.
    let resp = c
        .http
        .post(format!("{}/login", c.base))
        .header("origin", &c.base)
        .form(&[("email", big.as_str()), ("password", "x"), ("_csrf", &c.csrf())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    // Streamed without a length: refused once the limit is read.
    let chunks: Vec<Result<String, std::io::Error>> =
        (0..64).map(|_| Ok(format!("email={}&", "a".repeat(16 * 1024)))).collect();
    let resp = c
        .http
        .post(format!("{}/login", c.base))
        .header("origin", &c.base)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
}

async fn slow_or_too_many_connections_are_closed(db: TestDb) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_with(db, |c| {
        c.header_timeout = std::time::Duration::from_secs(1);
        c.body_timeout = std::time::Duration::from_secs(2);
        c.max_connections = 4;
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let closed_within = |mut s: tokio::net::TcpStream, secs: u64| async move {
        let mut buf = [0u8; 1024];
        tokio::time::timeout(std::time::Duration::from_secs(secs), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .is_ok()
    };
    // Slow headers: a request line and nothing more.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    assert!(closed_within(slow, 5).await, "a request whose headers never end is closed");
    // Slow body: headers promise 100 bytes, 10 come.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\nemail=abcd").await.unwrap();
    assert!(closed_within(slow, 6).await, "a body that never ends is cut off");
    // Four idle connections fill the server; a fifth is closed at once.
    let mut idle = Vec::new();
    for _ in 0..4 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /login HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        idle.push(s);
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let fifth = tokio::net::TcpStream::connect(&addr).await.unwrap();
    assert!(closed_within(fifth, 1).await, "a connection over the limit is closed at once");
    drop(idle);
    // Once they are gone, the server answers again.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(app.client().get("/login").await.status, 200);
}

async fn a_session_ends_at_its_absolute_lifetime_however_busy(db: TestDb) {
    let app = TestApp::spawn_with(db, |c| c.session_absolute = std::time::Duration::from_secs(3)).await;
    let t = app.tenant("T").await;
    app.user("vera@example.com", Some((t.id, Role::Viewer))).await;
    let c = app.login("vera@example.com").await;
    for _ in 0..3 {
        assert_eq!(c.get("/gateways").await.path(), "/gateways", "in use, still logged in");
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(c.get("/gateways").await.path().starts_with("/login"), "logged out after the absolute lifetime");
}

per_backend!(
    parallel_password_guesses_cannot_pass_the_lockout_and_a_locked_client_writes_nothing,
    behind_a_trusted_proxy_clients_are_told_apart_and_others_cannot_pick_their_address,
    without_a_trusted_proxy_the_forwarded_header_is_ignored,
    forgot_password_answers_alike_for_every_address_and_counts_where_it_records,
    an_anonymous_body_is_refused_before_it_is_read_past_a_small_limit,
    slow_or_too_many_connections_are_closed,
    a_session_ends_at_its_absolute_lifetime_however_busy,
    a_live_stream_ends_when_its_session_or_membership_ends,
    a_chart_range_of_centuries_is_a_clear_error_not_a_long_computation,
    a_certificate_cannot_be_revoked_with_a_reason_that_keeps_it_out_of_the_crl,
    the_page_after_login_is_never_another_site,
);
