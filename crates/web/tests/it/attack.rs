//! The attack suite: every route the router serves, tried as every kind of caller (nobody, each
//! role of tenant A, a staff member, and tenant B's administrator holding tenant A's real ids).
//!
//! The routes come from the router itself: [`tds_web::routes::table`] lists every path it was
//! built with, and an `OPTIONS` request to each path returns axum's `405` with the `Allow`
//! methods. A route that is served but missing from [`MATRIX`] fails the test, and so does a
//! matrix entry that is no longer served: a new route cannot ship without saying who may use it.
//!
//! Writes are tried only by those who must be refused; tenant A's data is compared before and
//! after, and must not have changed.

use crate::support::{Client, TestApp};
use axum::http::Method;
use tds_domain::{Email, Mac, Role};
use tds_store::rejected::NewRejected;
use tds_testkit::{TestDb, fixtures, per_backend};

/// Who may use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Anyone, logged in or not: the login and password-reset pages, invitation links, assets.
    Public,
    /// Any logged-in user, with or without a tenant: the tenant picker, the profile, logout.
    User,
    /// A member of the session's tenant with at least this role.
    Member(Role),
    /// Platform staff only (everyone else gets 404: the console is not advertised).
    Staff,
}

use Access::{Member, Public, Staff, User};
const VIEWER: Access = Member(Role::Viewer);
const EDITOR: Access = Member(Role::Editor);
const ADMIN: Access = Member(Role::Admin);

/// Every (method, path) the router serves and who may use it.
const MATRIX: &[(&str, &str, Access)] = &[
    ("GET", "/", VIEWER),
    ("GET", "/login", Public),
    ("POST", "/login", Public),
    ("POST", "/logout", User),
    ("POST", "/logout/everywhere", User),
    ("POST", "/language", Public),
    ("GET", "/tenants", User),
    ("POST", "/tenants", User),
    ("GET", "/licence", User),
    ("GET", "/gateways", VIEWER),
    ("GET", "/gateways/new", EDITOR),
    ("POST", "/gateways/new", EDITOR),
    ("GET", "/gateways/{id}", VIEWER),
    ("GET", "/gateways/{id}/edit", EDITOR),
    ("POST", "/gateways/{id}/edit", EDITOR),
    ("POST", "/gateways/{id}/decommission", EDITOR),
    ("GET", "/gateways/{gid}/devices/new", EDITOR),
    ("POST", "/gateways/{gid}/devices/new", EDITOR),
    ("GET", "/devices/{id}", VIEWER),
    ("GET", "/devices/{id}/edit", EDITOR),
    ("POST", "/devices/{id}/edit", EDITOR),
    ("POST", "/devices/{id}/archive", EDITOR),
    ("GET", "/import", EDITOR),
    ("POST", "/import/{kind}", EDITOR),
    ("GET", "/certificates", ADMIN),
    ("GET", "/certificates/{id}", ADMIN),
    ("POST", "/certificates/{id}/revoke", ADMIN),
    ("POST", "/gateways/{id}/certificate", ADMIN),
    ("POST", "/gateways/{id}/certificate/csr", ADMIN),
    ("GET", "/staff/certificates", Staff),
    ("POST", "/gateways/{id}/certificate/renew", ADMIN),
    ("POST", "/certificates/campaign", ADMIN),
    ("POST", "/staff/tenants/{id}/renewal-campaign", Staff),
    ("GET", "/dead-letters", ADMIN),
    ("POST", "/dead-letters/replay", ADMIN),
    ("GET", "/dead-letters/{id}", ADMIN),
    ("POST", "/dead-letters/{id}/replay", ADMIN),
    ("GET", "/staff/dead-letters", Staff),
    ("GET", "/account", VIEWER),
    ("POST", "/account", ADMIN),
    ("GET", "/settings", ADMIN),
    ("POST", "/settings/tokens", ADMIN),
    ("POST", "/settings/tokens/{id}/revoke", ADMIN),
    ("GET", "/profile", User),
    ("POST", "/profile", User),
    ("POST", "/profile/password", User),
    ("POST", "/profile/logout-others", User),
    ("GET", "/password/forgot", Public),
    ("POST", "/password/forgot", Public),
    ("GET", "/password/reset/{token}", Public),
    ("POST", "/password/reset/{token}", Public),
    ("GET", "/members", VIEWER),
    ("POST", "/members/invite", ADMIN),
    ("POST", "/members/{user}/role", ADMIN),
    ("POST", "/members/{user}/remove", ADMIN),
    ("POST", "/members/invites/{id}/revoke", ADMIN),
    ("GET", "/invite/{token}", Public),
    ("POST", "/invite/{token}", Public),
    ("GET", "/staff", Staff),
    ("POST", "/staff/tenants", Staff),
    ("GET", "/staff/tenants/{id}", Staff),
    ("POST", "/staff/tenants/{id}", Staff),
    ("POST", "/staff/tenants/{id}/join", Staff),
    ("GET", "/staff/gateways", Staff),
    ("GET", "/staff/gateways/{mac}/transfer", Staff),
    ("POST", "/staff/gateways/{mac}/transfer", Staff),
    ("GET", "/staff/audit", Staff),
    ("GET", "/staff/users", Staff),
    ("POST", "/staff/users/{id}/active", Staff),
    ("GET", "/staff/archived-devices", Staff),
    ("POST", "/staff/archived-devices/{id}/purge", Staff),
    ("GET", "/telemetry", VIEWER),
    ("GET", "/telemetry/data", VIEWER),
    ("GET", "/events", VIEWER),
    ("GET", "/alerts", VIEWER),
    ("GET", "/alerts/{id}", VIEWER),
    ("POST", "/alerts/{id}/ack", EDITOR),
    ("POST", "/settings/alarm-defaults", ADMIN),
    ("GET", "/settings/channels/new", ADMIN),
    ("POST", "/settings/channels/new", ADMIN),
    ("GET", "/settings/channels/{id}", ADMIN),
    ("POST", "/settings/channels/{id}", ADMIN),
    ("POST", "/settings/channels/{id}/enabled", ADMIN),
    ("POST", "/settings/channels/{id}/test", ADMIN),
    ("POST", "/settings/channels/{id}/delete", ADMIN),
    ("GET", "/profile/alerts", VIEWER),
    ("POST", "/profile/alerts", VIEWER),
    ("POST", "/profile/alerts/reset", VIEWER),
    ("GET", "/alerts/rules", VIEWER),
    ("GET", "/alerts/rules/new", EDITOR),
    ("POST", "/alerts/rules/new", EDITOR),
    ("POST", "/alerts/rules/preview", VIEWER),
    ("GET", "/alerts/rules/{id}", VIEWER),
    ("POST", "/alerts/rules/{id}", EDITOR),
    ("POST", "/alerts/rules/{id}/enabled", EDITOR),
    ("POST", "/alerts/rules/{id}/delete", EDITOR),
    ("GET", "/reports", VIEWER),
    ("GET", "/reports/export", VIEWER),
    ("GET", "/reports/readings", VIEWER),
    ("POST", "/reports/definitions", EDITOR),
    ("POST", "/reports/definitions/{id}/run", EDITOR),
    ("POST", "/reports/definitions/{id}/delete", EDITOR),
    ("GET", "/reports/runs/{id}/file", VIEWER),
    ("GET", "/assets/{*path}", Public),
    ("GET", "/favicon.ico", Public),
];

/// Tenant A's objects, whose ids the attackers use.
struct Targets {
    tenant: i64,
    gateway: i64,
    mac: String,
    device: i64,
    certificate: i64,
    dead_letter: i64,
    member: i64,
    invite: i64,
    token: i64,
    alert: i64,
    rule: i64,
    channel: i64,
    definition: i64,
    run: i64,
}

impl Targets {
    /// `path` with its parameters replaced by tenant A's ids (or harmless values for tokens).
    fn fill(&self, path: &str) -> String {
        let mut out = Vec::new();
        let segments: Vec<&str> = path.split('/').collect();
        for (i, seg) in segments.iter().enumerate() {
            if !seg.starts_with('{') {
                out.push((*seg).to_owned());
                continue;
            }
            let before = if i > 0 { segments[i - 1] } else { "" };
            let value = match (before, *seg) {
                ("gateways", "{mac}") => self.mac.clone(),
                ("gateways", _) => self.gateway.to_string(),
                ("devices" | "archived-devices", _) => self.device.to_string(),
                ("certificates", _) => self.certificate.to_string(),
                ("dead-letters", _) => self.dead_letter.to_string(),
                ("members" | "users", _) => self.member.to_string(),
                ("invites", _) => self.invite.to_string(),
                ("tokens", _) => self.token.to_string(),
                ("alerts", _) => self.alert.to_string(),
                ("rules", _) => self.rule.to_string(),
                ("channels", _) => self.channel.to_string(),
                ("definitions", _) => self.definition.to_string(),
                ("runs", _) => self.run.to_string(),
                ("tenants", _) => self.tenant.to_string(),
                ("invite" | "reset", _) => "0".repeat(64),
                ("import", _) => "gateways".to_owned(),
                ("assets", _) => "app/tds.css".to_owned(),
                _ => panic!("no value for {seg} in {path}: teach Targets::fill"),
            };
            out.push(value);
        }
        out.join("/")
    }
}

/// Whether a path names one of tenant A's objects by id (then another tenant must get 404).
fn names_an_object(path: &str) -> bool {
    ["{id}", "{gid}", "{user}", "{mac}"].iter().any(|p| path.contains(p)) && !path.starts_with("/staff")
}

/// Tenant A's state as its pages would show it, to compare before and after the attacks.
async fn digest(app: &TestApp, a: tds_domain::TenantId, t: &Targets) -> String {
    let s = &app.store;
    let gateways = s.gateways().list(a, &Default::default(), tds_store::Page::default()).await.unwrap();
    let devices = s.devices().list(a).await.unwrap();
    let certs = s.certificates().for_gateway(a, tds_domain::GatewayId::new(t.gateway)).await.unwrap();
    let members = s.memberships().members(a).await.unwrap();
    let invites = s.user_tokens().pending_invites(a, chrono::Utc::now()).await.unwrap();
    let tokens = s.api_tokens().list(a).await.unwrap();
    let tenant = s.tenants().get(a).await.unwrap();
    let letter = s.rejected().get(a, tds_domain::RejectedId::new(t.dead_letter)).await.unwrap();
    let tenants = s.tenants().staff_list().await.unwrap().len();
    let alert = s.alerts().get(a, tds_domain::AlertId::new(t.alert)).await.unwrap();
    let rules = s.alert_rules().list(a, None).await.unwrap();
    let channels = s.notification_channels().list(a).await.unwrap();
    let outbox = s.outbox().staff_due(chrono::Utc::now() + chrono::Duration::days(1), 100).await.unwrap();
    let renewals = s.renewals().for_gateway(a, tds_domain::GatewayId::new(t.gateway), 10).await.unwrap();
    let paused = s.renewals().is_paused(a).await.unwrap();
    let reports = s.report_definitions().list(a).await.unwrap();
    let runs = s.report_runs().list(a, None, 100).await.unwrap();
    format!(
        "{:?}\n{devices:?}\n{certs:?}\n{members:?}\n{invites:?}\n{tokens:?}\n{tenant:?}\n{letter:?}\n{tenants}\n{alert:?}\n{rules:?}\n{channels:?}\n{outbox:?}\n{renewals:?}\n{paused}\n{reports:?}\n{runs:?}",
        gateways.items
    )
}

/// The status of `method path` from `c` (no redirects followed) and, for a redirect, where to.
async fn attempt(c: &Client, method: &str, path: &str) -> (u16, String, String) {
    let url = format!("{}{path}", c.base);
    let req = if method == "GET" {
        c.no_redirect().get(url).header("accept", "text/html")
    } else {
        c.no_redirect().post(url).header("origin", &c.base).form(&[("_csrf", c.csrf())])
    };
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let location = resp.headers().get("location").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let body = if path == "/events" { String::new() } else { resp.text().await.unwrap_or_default() };
    (status, location, body)
}

async fn every_route_refuses_whoever_its_access_excludes_and_another_tenants_ids(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let a = app.tenant("Alfa").await;
    let b = app.tenant("Beta").await;
    let gw = fixtures::gateway(&app.store, a.id, "aa:00:00:00:00:01", "SECRET-A").await;
    let dev = fixtures::meter(&app.store, a.id, &gw, "D01").await;
    app.pki.issue(&app.store, &gw, tds_pki::DeviceKeyKind::EcdsaP256, false).await.unwrap();
    let cert = app.store.certificates().for_gateway(a.id, gw.id).await.unwrap().pop().unwrap();
    let letter = NewRejected {
        tenant_id: Some(a.id),
        gateway_id: Some(gw.id),
        mac: Some(Mac::parse("aa:00:00:00:00:01").unwrap()),
        topic: "tds_new/gateway/aa:00:00:00:00:01/telemetria".into(),
        payload: br#"{"leituras":[{"dispositivo_codigo":"D09","valor":1}]}"#.to_vec(),
        payload_size: None,
        reading_index: None,
        reason_code: "unknown_device".into(),
        reason: "unknown device D09".into(),
        received_at: chrono::Utc::now(),
    };
    let dead_letter = app.store.rejected().record(&[letter]).await.unwrap()[0];
    let invite = app
        .store
        .user_tokens()
        .create_invite(
            a.id,
            &Email::parse("new@example.com").unwrap(),
            Role::Viewer,
            &"ab".repeat(32),
            chrono::Utc::now() + chrono::Duration::days(1),
            None,
        )
        .await
        .unwrap();
    let token = app
        .store
        .api_tokens()
        .create(
            a.id,
            &tds_store::api_tokens::NewApiToken {
                name: tds_domain::Name::parse("name", "erp").unwrap(),
                role: Role::Viewer,
                token_hash: "cd".repeat(32),
                prefix: "tds_cdcdcdcd".into(),
                expires_at: None,
                created_by: None,
            },
        )
        .await
        .unwrap();
    let rule = tds_domain::alerts::Rule::new(
        tds_domain::alerts::Severity::Critical,
        tds_domain::alerts::Target::Tenant,
        tds_domain::alerts::RuleKind::NoData(tds_domain::alerts::Period::new(3600).unwrap()),
        None,
        None,
    )
    .unwrap();
    let rule = app
        .store
        .alert_rules()
        .create(
            a.id,
            &tds_store::alert_rules::NewAlertRule {
                name: tds_domain::Name::parse("name", "silence").unwrap(),
                rule,
                enabled: true,
                created_by: None,
            },
        )
        .await
        .unwrap();
    let alert = app
        .store
        .alerts()
        .raise(
            a.id,
            &tds_store::alerts::NewAlert {
                rule: rule.id,
                target: tds_domain::alerts::Target::Device(dev.id),
                severity: tds_domain::alerts::Severity::Critical,
                message: "device D01 of SECRET-A: no reading for 2 h".into(),
                value: Some(7200.0),
                at: chrono::Utc::now(),
            },
        )
        .await
        .unwrap()
        .alert;
    let channel = app
        .store
        .notification_channels()
        .create(
            a.id,
            &tds_store::notifications::NewChannel {
                kind: tds_store::notifications::ChannelKind::Webhook,
                name: tds_domain::Name::parse("name", "ops").unwrap(),
                config: serde_json::json!({"url": "https://hooks.example.com/tds"}),
                secret: Some(tds_store::notifications::ChannelSecret::new("s3cret".into()).unwrap()),
                severities: tds_store::notifications::SeveritySet::ALL,
                enabled: true,
                created_by: None,
            },
        )
        .await
        .unwrap();
    let definition = app
        .store
        .report_definitions()
        .create(
            a.id,
            &tds_store::report_defs::NewDefinition {
                name: tds_domain::Name::parse("name", "Mensal SECRET-A").unwrap(),
                spec: r#"{"scope":"tenant","period":"previous_month","bucket":"day"}"#.into(),
                format: "csv".into(),
                lang: "pt-BR".into(),
                recipients: vec!["a@example.com".into()],
                schedule: None,
                next_run_at: None,
                created_by: None,
            },
        )
        .await
        .unwrap();
    let run = app.store.report_runs().enqueue_manual(a.id, definition.id).await.unwrap();
    let file = tds_store::report_defs::RunFile {
        period_from: chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
        period_to: chrono::NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
        file_name: "consumo.csv".into(),
        content_type: "text/csv".into(),
        bytes: b"gateway_mac\n".to_vec(),
    };
    app.store.report_runs().set_file(a.id, run, &file).await.unwrap();
    let viewer = app.user("vera@example.com", Some((a.id, Role::Viewer))).await;
    app.user("edu@example.com", Some((a.id, Role::Editor))).await;
    app.user("adm@example.com", Some((a.id, Role::Admin))).await;
    app.user("eve@example.com", Some((b.id, Role::Admin))).await;
    app.user_with("ops@tds.example", None, true).await;
    let t = Targets {
        tenant: a.id.get(),
        gateway: gw.id.get(),
        mac: "aa:00:00:00:00:01".into(),
        device: dev.id.get(),
        certificate: cert.id.get(),
        dead_letter: dead_letter.get(),
        member: viewer.id.get(),
        invite: invite.id.get(),
        token: token.id.get(),
        alert: alert.id.get(),
        rule: rule.id.get(),
        channel: channel.id.get(),
        definition: definition.id,
        run,
    };

    // What the router serves, from the router.
    let anonymous = app.client();
    anonymous.get("/login").await;
    let mut served = Vec::new();
    for path in tds_web::routes::table() {
        let resp = anonymous
            .http
            .request(Method::OPTIONS, format!("{}{}", app.base, t.fill(path)))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 405, "OPTIONS {path}");
        let allow =
            resp.headers().get("allow").unwrap_or_else(|| panic!("no Allow for {path}")).to_str().unwrap();
        for method in allow.split(',').map(str::trim).filter(|m| *m != "HEAD") {
            served.push((method.to_owned(), path));
        }
    }
    for (method, path) in &served {
        assert!(
            MATRIX.iter().any(|(m, p, _)| m == method && p == path),
            "{method} {path} is served but missing from the attack matrix: say who may use it"
        );
    }
    for (method, path, _) in MATRIX {
        assert!(
            served.iter().any(|(m, p)| m == method && p == path),
            "{method} {path} is in the matrix but not served"
        );
    }

    let viewer_c = app.login("vera@example.com").await;
    let editor_c = app.login("edu@example.com").await;
    let admin_c = app.login("adm@example.com").await;
    let outsider = app.login("eve@example.com").await;
    let staff = app.login("ops@tds.example").await;
    for c in [&viewer_c, &editor_c, &admin_c, &outsider] {
        c.get("/").await;
    }
    staff.get("/staff").await;
    let before = digest(&app, a.id, &t).await;
    let members = [(Role::Viewer, &viewer_c), (Role::Editor, &editor_c), (Role::Admin, &admin_c)];

    let mut failures = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            failures.push(what);
        }
    };
    for (method, template, access) in MATRIX {
        let path = t.fill(template);
        let (status, location, _) = attempt(&anonymous, method, &path).await;
        let to_login = status == 303 && location.starts_with("/login");
        match access {
            Public => check(status < 500, format!("anonymous {method} {path}: {status}")),
            _ => check(to_login, format!("anonymous {method} {path}: {status} {location}")),
        }
        match access {
            Public | User => {}
            Member(required) => {
                for (role, c) in &members {
                    if role.allows(*required) && *method != "GET" {
                        // Writes by those allowed are the features' own tests.
                        continue;
                    }
                    let (status, location, _) = attempt(c, method, &path).await;
                    if !role.allows(*required) {
                        check(status == 403, format!("{role:?} {method} {path}: {status} {location}"));
                    } else if *method == "GET" {
                        check(
                            status == 200 || (status == 303 && !location.starts_with("/login")),
                            format!("{role:?} may {method} {path}: {status} {location}"),
                        );
                    }
                }
                let (status, location, body) = attempt(&outsider, method, &path).await;
                if names_an_object(template) {
                    check(status == 404, format!("tenant B's admin {method} {path}: {status} {location}"));
                }
                check(
                    !body.contains("SECRET-A"),
                    format!("tenant B's admin {method} {path} sees tenant A's gateway"),
                );
            }
            Staff => {
                for (role, c) in &members {
                    let (status, _, _) = attempt(c, method, &path).await;
                    check(status == 404, format!("{role:?} {method} {path}: {status}"));
                }
                let (status, _, _) = attempt(&outsider, method, &path).await;
                check(status == 404, format!("tenant B's admin {method} {path}: {status}"));
                if *method == "GET" {
                    let (status, _, _) = attempt(&staff, method, &path).await;
                    check(status == 200, format!("staff {method} {path}: {status}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} refusals missing:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(digest(&app, a.id, &t).await, before, "tenant A's data changed");
}

per_backend!(every_route_refuses_whoever_its_access_excludes_and_another_tenants_ids);
