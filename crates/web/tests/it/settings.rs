//! Configurações → API tokens: created with the secret shown once, listed without it, revoked
//! at once; every field validated.

use crate::support::TestApp;
use tds_domain::Role;
use tds_testkit::{TestDb, per_backend};

async fn an_admin_creates_a_token_sees_its_secret_once_and_revokes_it(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("Acme").await;
    app.user("adm@acme.example", Some((t.id, Role::Admin))).await;
    let c = app.login("adm@acme.example").await;
    let page = c.get("/settings").await;
    assert_eq!(page.status, 200);
    assert!(page.text_of("no-tokens").is_some());
    assert!(!page.has("placeholder"), "a real page");

    let created =
        c.post("/settings/tokens", &[("name", "erp"), ("role", "editor"), ("expires", "2031-01-31")]).await;
    assert_eq!(created.status, 200, "{}", created.body);
    let secret = created.text_of("new-token-secret").expect("the secret is shown");
    let secret = secret.trim();
    assert!(secret.starts_with("tds_") && secret.len() == 68, "{secret}");
    let now = chrono::Utc::now();
    let token = app.store.api_tokens().authenticate(&tds_web::api_token::hash(secret), now).await.unwrap();
    assert_eq!((token.name.as_str(), token.role, token.tenant_id), ("erp", Role::Editor, t.id));
    assert_eq!(
        token.expires_at.unwrap().to_rfc3339(),
        "2031-02-01T03:00:00+00:00",
        "to the end of the local day"
    );

    let again = c.get("/settings").await;
    assert!(!again.has(&secret[12..]), "shown only once");
    let row = again.text_of(&format!("token-{}", token.id)).unwrap();
    assert!(row.contains("erp") && row.contains(&secret[..12]), "{row}");

    for (form, field) in [
        (vec![("name", "erp"), ("role", "viewer"), ("expires", "")], "name"),
        (vec![("name", "bi"), ("role", "owner"), ("expires", "")], "role"),
        (vec![("name", "bi"), ("role", "viewer"), ("expires", "2020-01-01")], "expires"),
        (vec![("name", "bi"), ("role", "viewer"), ("expires", "31/01/2031")], "expires"),
        (vec![("name", ""), ("role", "viewer"), ("expires", "")], "name"),
    ] {
        let bad = c.post("/settings/tokens", &form).await;
        assert_eq!(bad.status, 422, "{form:?}");
        assert!(bad.text_of(&format!("{field}-error")).is_some(), "{form:?}: {}", bad.body);
    }
    assert_eq!(app.store.api_tokens().list(t.id).await.unwrap().len(), 1, "nothing else created");

    let done = c.post(&format!("/settings/tokens/{}/revoke", token.id), &[]).await;
    assert_eq!(done.path(), "/settings");
    assert!(app.store.api_tokens().authenticate(&tds_web::api_token::hash(secret), now).await.is_err());
    let audit = app.store.audit().list(t.id, &Default::default(), tds_store::Page::default()).await.unwrap();
    let actions: Vec<_> = audit.items.iter().map(|e| e.action.as_str()).collect();
    assert!(actions.contains(&"api_token.create") && actions.contains(&"api_token.revoke"), "{actions:?}");
}

/// Threshold defaults: saved per medium on Configurações (a wrong value names its field and
/// saves nothing); a device made afterwards without thresholds gets its medium's, and its rules;
/// one given 0 gets none.
async fn threshold_defaults_apply_to_new_devices(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("Acme").await;
    app.user("adm@acme.example", Some((t.id, Role::Admin))).await;
    let c = app.login("adm@acme.example").await;
    c.get("/settings").await;
    let wrong =
        c.post("/settings/alarm-defaults", &[("daily_water", "muito"), ("monthly_energy", "900")]).await;
    assert_eq!(wrong.status, 422);
    assert!(wrong.has("daily_water") && wrong.has("is-invalid"));
    assert!(app.store.alarm_defaults().list(t.id).await.unwrap().is_empty(), "nothing saved");
    let saved = c
        .post(
            "/settings/alarm-defaults",
            &[("daily_water", "2,5"), ("monthly_water", ""), ("monthly_energy", "900")],
        )
        .await;
    assert_eq!(saved.path(), "/settings");
    let defaults = app.store.alarm_defaults().list(t.id).await.unwrap();
    assert_eq!(defaults.len(), 2);

    let g = tds_testkit::fixtures::gateway(&app.store, t.id, "aa:bb:cc:00:00:09", "GW9").await;
    let mut water = tds_testkit::fixtures::meter_fields("W01");
    water.medium = tds_domain::Medium::Water;
    let w = app.store.devices().create(t.id, g.id, &water, None).await.unwrap();
    assert_eq!((w.alarm_daily, w.alarm_monthly), (Some(2.5), None));
    let rules =
        app.store.alert_rules().list(t.id, Some(tds_domain::alerts::Target::Device(w.id))).await.unwrap();
    assert_eq!(rules.len(), 1, "the default threshold is a rule");
    let mut none = tds_testkit::fixtures::meter_fields("W02");
    none.medium = tds_domain::Medium::Water;
    none.alarm_daily = Some(tds_domain::limits::Amount::parse("alarm_daily", "0").unwrap());
    let n = app.store.devices().create(t.id, g.id, &none, None).await.unwrap();
    assert!(
        app.store
            .alert_rules()
            .list(t.id, Some(tds_domain::alerts::Target::Device(n.id)))
            .await
            .unwrap()
            .is_empty()
    );
    let page = c.get("/settings").await;
    assert!(page.has("value=\"2.5\""), "the defaults are shown");
}

/// Configurações → notification channels: a generic webhook whose secret TDS makes and shows
/// once; a Telegram preset needing its chat id and token (each mistake at its field); an email
/// list; "send a test" queues a test message that the notifier delivers, and the channel's health
/// shows on the list (a failing one with its error); disable and delete, audited.
async fn an_admin_manages_notification_channels(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("Acme").await;
    app.user("adm@acme.example", Some((t.id, Role::Admin))).await;
    let c = app.login("adm@acme.example").await;
    assert!(c.get("/settings").await.has("no-channels"));
    c.get("/settings/channels/new").await;
    let made = c
        .post(
            "/settings/channels/new",
            &[
                ("kind", "webhook"),
                ("name", "ERP"),
                ("preset", "generic"),
                ("url", "http://127.0.0.1:9/hook"),
                ("sev_critical", "on"),
            ],
        )
        .await;
    assert_eq!(made.status, 200, "{}", made.body);
    let secret = made.text_of("channel-secret").unwrap();
    assert_eq!(secret.trim().len(), 64, "a generated secret, shown once: {secret}");
    let channels = app.store.notification_channels().list(t.id).await.unwrap();
    assert_eq!(channels[0].secret.as_ref().unwrap().expose(), secret.trim());
    assert!(
        !c.get(&format!("/settings/channels/{}", channels[0].id)).await.has(secret.trim()),
        "never shown again"
    );

    let telegram = c
        .post(
            "/settings/channels/new",
            &[
                ("kind", "webhook"),
                ("name", "Plantão"),
                ("preset", "telegram"),
                ("chat_id", ""),
                ("sev_warning", "on"),
            ],
        )
        .await;
    assert_eq!(telegram.status, 422);
    assert!(telegram.has("chat_id-error"), "{}", telegram.body);
    let no_token = c
        .post(
            "/settings/channels/new",
            &[
                ("kind", "webhook"),
                ("name", "Plantão"),
                ("preset", "telegram"),
                ("chat_id", "-1001"),
                ("sev_warning", "on"),
            ],
        )
        .await;
    assert!(no_token.has("secret-error"), "the bot token is needed");
    let bad_email = c
        .post(
            "/settings/channels/new",
            &[
                ("kind", "email"),
                ("name", "Diretoria"),
                ("addresses", "dir@acme\nok@acme.com.br"),
                ("sev_critical", "on"),
            ],
        )
        .await;
    assert!(bad_email.has("addresses-error"), "{}", bad_email.body);
    let email = c
        .post(
            "/settings/channels/new",
            &[
                ("kind", "email"),
                ("name", "Diretoria"),
                ("addresses", "dir@acme.com.br\nok@acme.com.br"),
                ("sev_critical", "on"),
            ],
        )
        .await;
    assert_eq!(email.path(), "/settings");

    // A test to each: the email arrives; the webhook (nothing listens on port 9) fails and says so.
    for ch in app.store.notification_channels().list(t.id).await.unwrap() {
        c.post(&format!("/settings/channels/{}/test", ch.id), &[]).await;
    }
    let mailer =
        tds_mail::Mailer::smtp(&format!("smtp://{}", app.mail.addr), "TDS <tds@example.com>").unwrap();
    let notifier =
        tds_jobs::notify::Notifier::new(mailer, tds_jobs::notify::NotifierOptions::new(app.base.clone()))
            .unwrap();
    notifier.round(&app.store, chrono::Utc::now()).await.unwrap();
    assert!(app.mail.wait_for("dir@acme.com.br").await.contains("[TDS]"));
    let page = c.get("/settings").await;
    let erp = channels[0].id;
    let row = page.text_of(&format!("channel-{erp}")).unwrap();
    assert!(
        row.contains("webhook") || row.contains("HTTP") || row.contains("reach"),
        "the failure shows: {row}"
    );
    assert!(page.body.contains(&format!("id=\"channel-{erp}\" class=\"table-danger\"")));

    c.post(&format!("/settings/channels/{erp}/enabled"), &[("enabled", "false")]).await;
    assert!(!app.store.notification_channels().get(t.id, erp).await.unwrap().enabled);
    c.post(&format!("/settings/channels/{erp}/delete"), &[]).await;
    assert!(app.store.notification_channels().get(t.id, erp).await.is_err());
    let audit = app.store.audit().list(t.id, &Default::default(), tds_store::Page::default()).await.unwrap();
    for action in ["channel.created", "channel.tested", "channel.disabled", "channel.deleted"] {
        assert!(audit.items.iter().any(|e| e.action == action), "{action}");
    }
    assert!(!format!("{:?}", audit.items).contains(secret.trim()), "the secret is not in the audit log");
}

per_backend!(
    an_admin_creates_a_token_sees_its_secret_once_and_revokes_it,
    threshold_defaults_apply_to_new_devices,
    an_admin_manages_notification_channels
);
