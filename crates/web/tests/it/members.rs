//! Usuários: invitations through a real SMTP server, roles, removal, and the password reset.

use crate::support::{PASSWORD, TestApp, link_in};
use tds_domain::{Email, Role};
use tds_testkit::{TestDb, per_backend};

async fn an_admin_invites_someone_who_sets_a_password_and_gets_in(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("Águas do Vale").await;
    app.user("adm@example.com", Some((t.id, Role::Admin))).await;
    let adm = app.login("adm@example.com").await;
    adm.get("/members").await;

    // Field errors first.
    let page = adm.post("/members/invite", &[("email", "not an email"), ("role", "editor")]).await;
    assert_eq!(page.status, 422);
    assert!(page.text_of("email-error").unwrap().contains("E-mail inválido"));
    let page = adm.post("/members/invite", &[("email", "adm@example.com"), ("role", "editor")]).await;
    assert!(page.text_of("email-error").unwrap().contains("já é membro"));

    let page = adm.post("/members/invite", &[("email", "Nina@Example.com"), ("role", "editor")]).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.has("id=\"pending-invites\"") && page.has("nina@example.com"));
    let mail = app.mail.wait_for("nina@example.com").await;
    assert!(mail.contains("Águas do Vale") || mail.contains("=C3=81guas"), "{mail}");
    let link = link_in(&mail, &format!("{}/invite/", app.base));

    let nina = app.client();
    let page = nina.get(link.trim_start_matches(&app.base)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let path = link.trim_start_matches(&app.base).to_owned();
    let page = nina.post(&path, &[("name", "Nina"), ("password", "short"), ("confirm", "short")]).await;
    assert_eq!(page.status, 422);
    assert!(page.text_of("password-error").unwrap().contains("10 caracteres"));
    let page = nina
        .post(&path, &[("name", "Nina"), ("password", "a long passphrase"), ("confirm", "a long passphrasE")])
        .await;
    assert!(page.text_of("confirm-error").unwrap().contains("não conferem"));
    let page = nina
        .post(&path, &[("name", "Nina"), ("password", "a long passphrase"), ("confirm", "a long passphrase")])
        .await;
    assert_eq!(page.path(), "/login");
    assert!(page.has("id=\"notice\""));

    // The link works once.
    let again = nina.get(&path).await;
    assert_eq!(again.status, 404);
    assert!(again.has("id=\"link-gone\""));

    let page = nina.login("nina@example.com", "a long passphrase").await;
    assert_eq!(page.path(), "/");
    assert_eq!(
        app.store
            .memberships()
            .role(
                t.id,
                app.store.users().by_email(&Email::parse("nina@example.com").unwrap()).await.unwrap().id
            )
            .await
            .unwrap(),
        Some(Role::Editor)
    );
    let audit = app.store.audit().list(t.id, &Default::default(), tds_store::Page::default()).await.unwrap();
    let actions: Vec<_> = audit.items.iter().map(|e| e.action.as_str()).collect();
    assert!(actions.contains(&"invitation.sent") && actions.contains(&"invitation.accepted"), "{actions:?}");
}

async fn a_revoked_invitation_link_leads_nowhere(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("T").await;
    app.user("adm@example.com", Some((t.id, Role::Admin))).await;
    let adm = app.login("adm@example.com").await;
    adm.get("/members").await;
    adm.post("/members/invite", &[("email", "zed@example.com"), ("role", "viewer")]).await;
    let link = link_in(&app.mail.wait_for("zed@example.com").await, &format!("{}/invite/", app.base));
    let invite =
        app.store.user_tokens().pending_invites(t.id, chrono::Utc::now()).await.unwrap().pop().unwrap();
    adm.get("/members").await;
    let page = adm.post(&format!("/members/invites/{}/revoke", invite.id), &[]).await;
    assert!(!page.has("zed@example.com"));
    assert_eq!(app.client().get(link.trim_start_matches(&app.base)).await.status, 404);
}

async fn roles_change_and_the_last_admin_stays(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("T").await;
    let adm = app.user("adm@example.com", Some((t.id, Role::Admin))).await;
    let vic = app.user("vic@example.com", Some((t.id, Role::Viewer))).await;
    let c = app.login("adm@example.com").await;
    c.get("/members").await;
    c.post(&format!("/members/{}/role", vic.id), &[("role", "editor")]).await;
    assert_eq!(app.store.memberships().role(t.id, vic.id).await.unwrap(), Some(Role::Editor));
    let page = c.post(&format!("/members/{}/role", adm.id), &[("role", "viewer")]).await;
    assert!(page.text_of("notice").unwrap().contains("pelo menos um administrador"), "{}", page.body);
    assert_eq!(app.store.memberships().role(t.id, adm.id).await.unwrap(), Some(Role::Admin));
    c.post(&format!("/members/{}/remove", vic.id), &[]).await;
    assert_eq!(app.store.memberships().role(t.id, vic.id).await.unwrap(), None);

    // An editor sees the list but cannot manage it.
    app.user("edu@example.com", Some((t.id, Role::Editor))).await;
    let edu = app.login("edu@example.com").await;
    let page = edu.get("/members").await;
    assert_eq!(page.status, 200);
    assert!(!page.has("id=\"invite-form\""));
    assert_eq!(
        edu.post("/members/invite", &[("email", "x@example.com"), ("role", "admin")]).await.status,
        403
    );
    assert_eq!(edu.post(&format!("/members/{}/role", adm.id), &[("role", "viewer")]).await.status, 403);
    assert_eq!(app.mail.count_to("x@example.com"), 0);
}

async fn a_forgotten_password_is_reset_through_the_emailed_link(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("T").await;
    app.user("ana@example.com", Some((t.id, Role::Viewer))).await;
    let old_session = app.login("ana@example.com").await;

    let c = app.client();
    c.get("/password/forgot").await;
    let page = c.post("/password/forgot", &[("email", "ana@example.com")]).await;
    assert_eq!(page.path(), "/login");
    let unknown = c.post("/password/forgot", &[("email", "nobody@example.com")]).await;
    assert_eq!(unknown.path(), "/login");
    assert_eq!(unknown.text_of("notice"), page.text_of("notice"), "same answer for unknown emails");
    let link = link_in(&app.mail.wait_for("ana@example.com").await, &format!("{}/password/reset/", app.base));
    let path = link.trim_start_matches(&app.base).to_owned();
    c.get(&path).await;
    let bad = c.post(&path, &[("password", "tiny"), ("confirm", "tiny")]).await;
    assert_eq!(bad.status, 422);
    let done = c.post(&path, &[("password", "brand new secret"), ("confirm", "brand new secret")]).await;
    assert_eq!(done.path(), "/login");
    assert_eq!(c.get(&path).await.status, 404, "the link works once");
    assert_eq!(old_session.get("/").await.path(), "/login", "sessions with the old password are over");
    assert_eq!(c.login("ana@example.com", PASSWORD).await.status, 401);
    assert_eq!(c.login("ana@example.com", "brand new secret").await.path(), "/");
}

async fn changing_the_password_needs_the_current_one_and_ends_other_sessions(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("T").await;
    app.user("ana@example.com", Some((t.id, Role::Viewer))).await;
    let laptop = app.login("ana@example.com").await;
    let phone = app.login("ana@example.com").await;
    laptop.get("/profile").await;
    let page = laptop
        .post(
            "/profile/password",
            &[("current", "wrong one!!"), ("password", "another secret"), ("confirm", "another secret")],
        )
        .await;
    assert_eq!(page.status, 422);
    assert!(page.text_of("current-error").unwrap().contains("incorreta"));
    let page = laptop
        .post(
            "/profile/password",
            &[("current", PASSWORD), ("password", "another secret"), ("confirm", "another secret")],
        )
        .await;
    assert_eq!(page.path(), "/profile");
    assert_eq!(laptop.get("/").await.path(), "/", "this session stays");
    assert_eq!(phone.get("/").await.path(), "/login", "the others end");
}

per_backend!(
    an_admin_invites_someone_who_sets_a_password_and_gets_in,
    a_revoked_invitation_link_leads_nowhere,
    roles_change_and_the_last_admin_stays,
    a_forgotten_password_is_reset_through_the_emailed_link,
    changing_the_password_needs_the_current_one_and_ends_other_sessions,
);
