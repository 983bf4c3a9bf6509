//! Alertas: a device's threshold raises an alert through the evaluation job; the page lists it
//! with its severity, device and message; a viewer sees no acknowledge button, an editor
//! acknowledges it with a comment (audited); the API lists and acknowledges the same alerts.

use crate::api::{Api, token};
use crate::support::TestApp;
use chrono::Utc;
use reqwest::StatusCode;
use serde_json::json;
use tds_domain::Role;
use tds_domain::limits::Amount;
use tds_store::readings::NewReading;
use tds_testkit::{TestDb, fixtures, per_backend};

async fn a_threshold_crossing_is_listed_and_acknowledged(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("Acme").await;
    let g = fixtures::gateway(&app.store, t.id, "aa:bb:cc:00:00:01", "GW1").await;
    let mut fields = fixtures::meter_fields("D01");
    fields.alarm_daily = Some(Amount::parse("alarm_daily", "5").unwrap());
    let d = app.store.devices().create(t.id, g.id, &fields, None).await.unwrap();
    // 8 kWh today (two readings between local midnight and now): above the threshold of 5.
    let now = Utc::now();
    let midnight = tds_domain::buckets::bucket_start(t.timezone, tds_domain::Bucket::Day, now);
    let third = (now - midnight) / 3;
    let rows = [midnight + third, midnight + third * 2]
        .iter()
        .zip([100.0, 108.0])
        .map(|(time, value)| NewReading { device_id: d.id, time: *time, value, unit: "kWh".into() })
        .collect::<Vec<_>>();
    app.store.readings().insert(t.id, &rows).await.unwrap();
    while app.store.rollups().staff_refresh_dirty(100).await.unwrap() > 0 {}
    let round = tds_jobs::alerts::round(&app.store, &Default::default(), now).await.unwrap();
    assert_eq!(round.raised, 1);

    app.user("vera@example.com", Some((t.id, Role::Viewer))).await;
    app.user("edu@example.com", Some((t.id, Role::Editor))).await;
    let viewer = app.login("vera@example.com").await;
    let page = viewer.get("/alerts").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.text_of("alerts-active").as_deref(), Some("1"));
    let alert = app.store.alerts().list(t.id, None, None, 10).await.unwrap().remove(0);
    let row = page.text_of(&format!("alert-{}", alert.id)).unwrap();
    assert!(row.contains("D01") && row.contains("Atenção") && row.contains("Consumo do dia"), "{row}");
    assert!(!page.has("ack-form"), "a viewer cannot acknowledge");
    let refused = viewer.post(&format!("/alerts/{}/ack", alert.id), &[("comment", "x")]).await;
    assert_eq!(refused.status, 403);

    let editor = app.login("edu@example.com").await;
    editor.get("/alerts").await;
    let done = editor.post(&format!("/alerts/{}/ack", alert.id), &[("comment", "fechando o registro")]).await;
    assert_eq!(done.path(), "/alerts");
    let acked = app.store.alerts().get(t.id, alert.id).await.unwrap();
    assert_eq!(acked.ack_comment.as_deref(), Some("fechando o registro"));
    let page = editor.get("/alerts?state=acknowledged").await;
    assert!(page.text_of(&format!("alert-{}", alert.id)).unwrap().contains("fechando o registro"));
    let audit = app.store.audit().list(t.id, &Default::default(), tds_store::Page::default()).await.unwrap();
    assert!(audit.items.iter().any(|e| e.action == "alert.acknowledged" && e.actor == "edu@example.com"));

    // The API: the same alert, named by MAC and code; acknowledging twice is a conflict.
    let api = Api::new(&app, &token(&app, t.id, "noc", Role::Editor).await);
    let listed = api.get("/api/v1/alerts?state=acknowledged").await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    let item = &listed.json()["items"][0];
    assert_eq!(
        (item["target"]["gateway"].clone(), item["target"]["device"].clone(), item["kind"].clone()),
        (json!("aa:bb:cc:00:00:01"), json!("D01"), json!("daily_consumption"))
    );
    let filtered = api.get("/api/v1/alerts?severity=WARNING&gateway=aa:bb:cc:00:00:01&device=D01").await;
    assert_eq!(filtered.json()["items"].as_array().unwrap().len(), 1, "{}", filtered.text);
    assert!(api.get("/api/v1/alerts?severity=CRITICAL").await.json()["items"].as_array().unwrap().is_empty());
    let later = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert!(
        api.get(&format!("/api/v1/alerts?from={later}")).await.json()["items"].as_array().unwrap().is_empty()
    );
    assert_eq!(api.get("/api/v1/alerts?device=D01").await.status, StatusCode::BAD_REQUEST);
    let again = api.post(&format!("/api/v1/alerts/{}/ack", alert.id), json!({})).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(api.get("/api/v1/alerts?state=active").await.json()["items"].as_array().unwrap().len(), 0);
    let bad = api.get("/api/v1/alerts?state=burning").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // Another tenant's token: 404, nothing changes.
    let other = app.tenant("Other").await;
    let outsider = Api::new(&app, &token(&app, other.id, "x", Role::Admin).await);
    assert_eq!(
        outsider.post(&format!("/api/v1/alerts/{}/ack", alert.id), json!({})).await.status,
        StatusCode::NOT_FOUND
    );
    assert!(outsider.get("/api/v1/alerts").await.json()["items"].as_array().unwrap().is_empty());
}

/// The rule editor: a mistake is shown at its field; the preview replays a rule over the stored
/// rollups ("would have raised 3"); a saved rule is listed, edited, disabled and deleted, each
/// audited; a device's own threshold is listed but edited on the device's form; the filters of
/// the list and an alert's page with its timeline.
async fn the_rule_editor_previews_saves_and_filters(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("Acme").await;
    let g = fixtures::gateway(&app.store, t.id, "aa:bb:cc:00:00:02", "GW2").await;
    let mut fields = fixtures::meter_fields("D01");
    fields.alarm_daily = Some(Amount::parse("alarm_daily", "1000").unwrap());
    let d = app.store.devices().create(t.id, g.id, &fields, None).await.unwrap();
    // Three past local days with 22 kWh each (01:00 to 23:00, one kWh an hour), nothing since.
    let today = tds_domain::buckets::bucket_start(t.timezone, tds_domain::Bucket::Day, Utc::now());
    let mut rows = Vec::new();
    let mut value = 0.0;
    for days_ago in [7, 6, 5] {
        let midnight = tds_domain::buckets::bucket_start(
            t.timezone,
            tds_domain::Bucket::Day,
            today - chrono::Duration::days(days_ago) + chrono::Duration::hours(12),
        );
        for h in 1..=23 {
            rows.push(NewReading {
                device_id: d.id,
                time: midnight + chrono::Duration::hours(h),
                value,
                unit: "kWh".into(),
            });
            value += 1.0;
        }
    }
    app.store.readings().insert(t.id, &rows).await.unwrap();
    while app.store.rollups().staff_refresh_dirty(100).await.unwrap() > 0 {}
    app.user("edu@example.com", Some((t.id, Role::Editor))).await;
    app.user("vera@example.com", Some((t.id, Role::Viewer))).await;
    let editor = app.login("edu@example.com").await;
    let target = format!("device:{}", d.id);

    let page = editor.get("/alerts/rules").await;
    assert!(
        page.has("device threshold") || page.has("limite do dispositivo"),
        "the device's own rule is listed"
    );
    editor.get("/alerts/rules/new").await;
    let wrong = editor
        .post(
            "/alerts/rules/new",
            &[
                ("name", ""),
                ("kind", "daily_consumption"),
                ("severity", "WARNING"),
                ("target", &target),
                ("threshold", "dez"),
            ],
        )
        .await;
    assert_eq!(wrong.status, 422);
    assert!(wrong.has("threshold-error") && wrong.has("name-error"), "{}", wrong.body);

    let rule = [
        ("name", "Consumo alto"),
        ("kind", "daily_consumption"),
        ("severity", "CRITICAL"),
        ("target", target.as_str()),
        ("threshold", "10"),
        ("enabled", "on"),
    ];
    let preview = editor.post("/alerts/rules/preview", &rule).await;
    assert!(preview.has("data-raised=\"3\""), "{}", preview.body);
    let viewer = app.login("vera@example.com").await;
    viewer.get("/alerts/rules").await;
    assert!(
        viewer.post("/alerts/rules/preview", &rule).await.has("data-raised=\"3\""),
        "viewers preview too"
    );
    assert_eq!(viewer.post("/alerts/rules/new", &rule).await.status, 403);

    let saved = editor.post("/alerts/rules/new", &rule).await;
    assert_eq!(saved.path(), "/alerts/rules");
    let rules = app.store.alert_rules().list(t.id, None).await.unwrap();
    let mine = rules.iter().find(|r| r.name == "Consumo alto").unwrap();
    assert_eq!(mine.rule.severity(), tds_domain::alerts::Severity::Critical);
    let mut edited = rule;
    edited[4] = ("threshold", "12,5");
    editor.get(&format!("/alerts/rules/{}", mine.id)).await;
    assert_eq!(editor.post(&format!("/alerts/rules/{}", mine.id), &edited).await.path(), "/alerts/rules");
    let again = app.store.alert_rules().get(t.id, mine.id).await.unwrap();
    assert!(
        matches!(again.rule.kind(), tds_domain::alerts::RuleKind::DailyConsumption(l) if l.threshold() == 12.5)
    );
    editor.post(&format!("/alerts/rules/{}/enabled", mine.id), &[("enabled", "false")]).await;
    assert!(!app.store.alert_rules().get(t.id, mine.id).await.unwrap().enabled);
    // A device threshold's "edit" leads to the device's form; deleting it as a rule is refused.
    let threshold = rules.iter().find(|r| r.name != "Consumo alto").unwrap();
    let to_device = editor.get(&format!("/alerts/rules/{}", threshold.id)).await;
    assert_eq!(to_device.path(), format!("/devices/{}/edit", d.id));
    assert_eq!(editor.post(&format!("/alerts/rules/{}/delete", threshold.id), &[]).await.status, 403);
    editor.get("/alerts/rules").await;
    editor.post(&format!("/alerts/rules/{}/delete", mine.id), &[]).await;
    assert!(app.store.alert_rules().get(t.id, mine.id).await.is_err());
    let audit = app.store.audit().list(t.id, &Default::default(), tds_store::Page::default()).await.unwrap();
    for action in ["alert_rule.created", "alert_rule.updated", "alert_rule.disabled", "alert_rule.deleted"] {
        assert!(audit.items.iter().any(|e| e.action == action), "{action} audited");
    }

    // Filters and an alert's page: a critical alert raised on D01, acknowledged with a comment.
    let critical = tds_domain::alerts::Rule::new(
        tds_domain::alerts::Severity::Critical,
        tds_domain::alerts::Target::Device(d.id),
        tds_domain::alerts::RuleKind::NoData(tds_domain::alerts::Period::new(3600).unwrap()),
        None,
        None,
    )
    .unwrap();
    let silence = app
        .store
        .alert_rules()
        .create(
            t.id,
            &tds_store::alert_rules::NewAlertRule {
                name: tds_domain::Name::parse("name", "Silêncio").unwrap(),
                rule: critical,
                enabled: true,
                created_by: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        tds_jobs::alerts::round(&app.store, &Default::default(), Utc::now() + chrono::Duration::hours(2))
            .await
            .unwrap()
            .raised,
        1
    );
    let alert = app.store.alerts().list(t.id, None, None, 10).await.unwrap().remove(0);
    assert_eq!(alert.rule_id, Some(silence.id));
    // Início, the gateway's and the device's pages list it; Início counts it by severity.
    let home = editor.get("/").await;
    assert!(home.has(&format!("open-alert-{}", alert.id)));
    assert!(home.text_of("fig-critical").unwrap().ends_with(": 1"), "{:?}", home.text_of("fig-critical"));
    assert!(editor.get(&format!("/gateways/{}", g.id)).await.has(&format!("open-alert-{}", alert.id)));
    assert!(editor.get(&format!("/devices/{}", d.id)).await.has(&format!("open-alert-{}", alert.id)));
    let page = editor.get(&format!("/alerts?severity=CRITICAL&gateway={}", g.id)).await;
    assert!(page.has(&format!("alert-{}", alert.id)));
    assert!(!editor.get("/alerts?severity=INFO").await.has(&format!("alert-{}", alert.id)));
    let tomorrow = (Utc::now() + chrono::Duration::days(2)).format("%Y-%m-%d").to_string();
    assert!(!editor.get(&format!("/alerts?from={tomorrow}")).await.has(&format!("alert-{}", alert.id)));
    editor.post(&format!("/alerts/{}/ack", alert.id), &[("comment", "verificando"), ("back", "alert")]).await;
    let show = editor.get(&format!("/alerts/{}", alert.id)).await;
    assert_eq!(show.status, 200);
    let timeline = show.text_of("alert-timeline").unwrap();
    assert!(timeline.contains("verificando") && timeline.contains("Reconhecido"), "{timeline}");
    // Another tenant's administrator: 404 for the alert and the rule.
    let other = app.tenant("Other").await;
    app.user("eve@example.com", Some((other.id, Role::Admin))).await;
    let eve = app.login("eve@example.com").await;
    assert_eq!(eve.get(&format!("/alerts/{}", alert.id)).await.status, 404);
    assert_eq!(eve.get(&format!("/alerts/rules/{}", silence.id)).await.status, 404);
}

/// Meu perfil → Alertas: the role's defaults until the member chooses; choices are kept per
/// member and tenant, a wrong time is shown at its field, and the badge counts only the
/// severities the member sees in the app.
async fn alert_preferences_are_kept_per_member(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("Acme").await;
    let g = fixtures::gateway(&app.store, t.id, "aa:bb:cc:00:00:03", "GW3").await;
    let d = fixtures::meter(&app.store, t.id, &g, "D01").await;
    let vera = app.user("vera@example.com", Some((t.id, Role::Viewer))).await;
    let viewer = app.login("vera@example.com").await;
    let page = viewer.get("/profile/alerts").await;
    assert_eq!(page.status, 200);
    assert!(page.text_of("prefs-origin").unwrap().contains("padrão"), "{:?}", page.text_of("prefs-origin"));
    assert!(
        !page.has("id=\"email_WARNING\" value=\"on\" aria-label=\"Por e-mail WARNING\" checked"),
        "viewers get no email by default"
    );

    let wrong = viewer
        .post(
            "/profile/alerts",
            &[("email_CRITICAL", "on"), ("quiet_start", "22:00"), ("quiet_end", "25:99")],
        )
        .await;
    assert_eq!(wrong.status, 422);
    let fields = [
        ("email_CRITICAL", "on"),
        ("app_WARNING", "on"),
        ("app_CRITICAL", "on"),
        ("quiet_start", "22:00"),
        ("quiet_end", "07:00"),
        ("reminder_hours", "4"),
    ];
    assert_eq!(viewer.post("/profile/alerts", &fields).await.path(), "/profile/alerts");
    let prefs = app.store.alert_prefs().effective(t.id, vera.id).await.unwrap();
    assert_eq!(prefs.email.severities(), [tds_domain::Severity::Critical]);
    assert_eq!(prefs.in_app.severities(), [tds_domain::Severity::Warning, tds_domain::Severity::Critical]);
    assert_eq!(prefs.reminder_hours, Some(4));
    let quiet = prefs.quiet_hours.unwrap();
    assert_eq!((quiet.start().to_string(), quiet.end().to_string()), ("22:00:00".into(), "07:00:00".into()));

    // An INFO alert is not in Vera's badge; a WARNING one is.
    for (severity, name) in [(tds_domain::Severity::Info, "info"), (tds_domain::Severity::Warning, "warn")] {
        let rule = tds_domain::alerts::Rule::new(
            severity,
            tds_domain::alerts::Target::Device(d.id),
            tds_domain::alerts::RuleKind::NoData(tds_domain::alerts::Period::new(3600).unwrap()),
            None,
            None,
        )
        .unwrap();
        let rule = app
            .store
            .alert_rules()
            .create(
                t.id,
                &tds_store::alert_rules::NewAlertRule {
                    name: tds_domain::Name::parse("name", name).unwrap(),
                    rule,
                    enabled: true,
                    created_by: None,
                },
            )
            .await
            .unwrap();
        let new = tds_store::alerts::NewAlert {
            rule: rule.id,
            target: tds_domain::alerts::Target::Device(d.id),
            severity,
            message: name.into(),
            value: None,
            at: Utc::now(),
        };
        app.store.alerts().raise(t.id, &new).await.unwrap();
    }
    assert_eq!(viewer.get("/alerts").await.text_of("alert-badge").as_deref(), Some("1"));
    viewer.post("/profile/alerts/reset", &[]).await;
    assert!(app.store.alert_prefs().get(t.id, vera.id).await.unwrap().is_none());
    assert_eq!(
        viewer.get("/alerts").await.text_of("alert-badge").as_deref(),
        Some("2"),
        "the defaults show all"
    );
}

per_backend!(
    a_threshold_crossing_is_listed_and_acknowledged,
    the_rule_editor_previews_saves_and_filters,
    alert_preferences_are_kept_per_member
);
