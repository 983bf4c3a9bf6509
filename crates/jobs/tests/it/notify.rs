//! The alert notifier on both databases, with a real SMTP server (the testkit's `MailSink`) and
//! a local HTTP receiver standing in for webhooks. Time is driven by the `now` each round takes,
//! so back-offs, quiet hours and reminder periods pass without sleeping.

use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Duration, TimeZone as _, Utc};
use hmac::{KeyInit as _, Mac as _};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tds_domain::alerts::notice::{NoticeTenant, keys, test_notice};
use tds_domain::alerts::{Period, QuietHours, Rule, RuleKind, Severity, Target};
use tds_domain::{AlertId, Name, Role, TenantId};
use tds_jobs::{Notifier, NotifierOptions};
use tds_mail::Mailer;
use tds_store::Store;
use tds_store::alert_rules::NewAlertRule;
use tds_store::alerts::NewAlert;
use tds_store::notifications::{
    AlertPrefs, ChannelId, ChannelKind, ChannelSecret, NewChannel, NewOutbox, OutboxEvent, SeveritySet,
};
use tds_testkit::{MailSink, conformance, fixtures};

const SECRET: &str = "webhook-secret-1";

/// A webhook receiver on 127.0.0.1:0 that keeps every request and answers from a script
/// (then 200); a delay makes it slower than the notifier's timeout.
#[derive(Clone)]
struct Receiver {
    url: String,
    seen: Arc<Mutex<Vec<(HeaderMap, String)>>>,
}

impl Receiver {
    async fn start(script: Vec<u16>, delay: std::time::Duration) -> Self {
        let seen: Arc<Mutex<Vec<(HeaderMap, String)>>> = Arc::default();
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let (seen2, script2) = (seen.clone(), script.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let (seen, script) = (seen2.clone(), script2.clone());
                async move {
                    seen.lock().unwrap().push((headers, body));
                    tokio::time::sleep(delay).await;
                    let code = script.lock().unwrap().pop_front().unwrap_or(200);
                    StatusCode::from_u16(code).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, seen }
    }

    fn requests(&self) -> Vec<(HeaderMap, String)> {
        self.seen.lock().unwrap().clone()
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

/// The signature computed here, independently of the notifier's code.
fn expected_signature(body: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn notifier(mail: &MailSink) -> Notifier {
    let mut options = NotifierOptions::new("https://tds.example.com");
    options.send_timeout = std::time::Duration::from_secs(1);
    options.lease = std::time::Duration::from_mins(1);
    let mailer = Mailer::smtp(&mail.url(), "TDS <tds@example.com>").unwrap();
    Notifier::new(mailer, options).unwrap()
}

/// 2026-03-02 12:00 in São Paulo.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 15, 0, 0).unwrap()
}

struct Scene {
    tenant: TenantId,
    target: Target,
}

async fn scene(store: &Store) -> Scene {
    let t = fixtures::tenant(store, "Acme").await;
    let g = fixtures::gateway(store, t.id, "aa:bb:cc:dd:ee:01", "GW1").await;
    let d = fixtures::meter(store, t.id, &g, "D01").await;
    Scene { tenant: t.id, target: Target::Device(d.id) }
}

/// Raises an alert of a new rule on the scene's device at `at`.
async fn raise(store: &Store, s: &Scene, name: &str, severity: Severity, at: DateTime<Utc>) -> AlertId {
    let rule =
        Rule::new(severity, s.target, RuleKind::NoData(Period::new(3600).unwrap()), None, None).unwrap();
    let new_rule =
        NewAlertRule { name: Name::parse("name", name).unwrap(), rule, enabled: true, created_by: None };
    let r = store.alert_rules().create(s.tenant, &new_rule).await.unwrap();
    let new = NewAlert {
        rule: r.id,
        target: s.target,
        severity,
        message: format!("{name}: no data for 1 h"),
        value: Some(61.5),
        at,
    };
    store.alerts().raise(s.tenant, &new).await.unwrap().alert.id
}

async fn webhook(
    store: &Store,
    tenant: TenantId,
    name: &str,
    url: &str,
    severities: SeveritySet,
) -> ChannelId {
    let new = NewChannel {
        kind: ChannelKind::Webhook,
        name: Name::parse("name", name).unwrap(),
        config: serde_json::json!({"preset": "generic", "url": url}),
        secret: Some(ChannelSecret::new(SECRET.into()).unwrap()),
        severities,
        enabled: true,
        created_by: None,
    };
    store.notification_channels().create(tenant, &new).await.unwrap().id
}

async fn emails_reach_each_recipient_once_in_their_language(store: Store) {
    let s = scene(&store).await;
    let mail = MailSink::start();
    let n = notifier(&mail);
    let ana = fixtures::member(&store, s.tenant, "ana@acme.com.br", Role::Admin).await;
    let bob = fixtures::member(&store, s.tenant, "bob@acme.com", Role::Editor).await;
    store.users().set_profile(bob.id, &bob.display_name, "en").await.unwrap();
    fixtures::member(&store, s.tenant, "vera@acme.com.br", Role::Viewer).await;
    let alert = raise(&store, &s, "Silence", Severity::Warning, t0()).await;

    for i in 0..3 {
        let (fanned, sent) = n.round(&store, t0() + Duration::seconds(i)).await.unwrap();
        if i > 0 {
            assert_eq!((fanned.rows, sent.claimed), (0, 0), "a second round writes and sends nothing");
        }
    }
    let ana_mail = mail.wait_for("ana@acme.com.br").await;
    let bob_mail = mail.wait_for("bob@acme.com").await;
    assert!(ana_mail.contains("Severidade") && ana_mail.contains("Disparado em"), "{ana_mail}");
    assert!(ana_mail.contains("Disparado em: 02/03/2026 12:00 (America/Sao_Paulo)"), "{ana_mail}");
    assert!(ana_mail.contains(&format!("https://tds.example.com/alerts/{alert}")), "{ana_mail}");
    assert!(bob_mail.contains("Subject: [TDS] WARNING: Silence: no data for 1 h"), "{bob_mail}");
    assert!(bob_mail.contains("Raised at: 2026-03-02 12:00 (America/Sao_Paulo)"), "{bob_mail}");
    assert_eq!((mail.count_to("ana@acme.com.br"), mail.count_to("bob@acme.com")), (1, 1));
    assert_eq!(mail.count_to("vera@acme.com.br"), 0, "a viewer's defaults send no email");

    // The clear reaches the same people once more; an acknowledgement reaches nobody by email.
    store.alerts().acknowledge(s.tenant, alert, Some(ana.id), Some("on it"), t0()).await.unwrap();
    let rule = store.alerts().get(s.tenant, alert).await.unwrap().rule_id.unwrap();
    store.alerts().clear(s.tenant, rule, s.target, t0() + Duration::minutes(5)).await.unwrap();
    for i in 0..2 {
        n.round(&store, t0() + Duration::minutes(5 + i)).await.unwrap();
    }
    assert_eq!((mail.count_to("ana@acme.com.br"), mail.count_to("bob@acme.com")), (2, 2));
    let delivered = store.outbox().list_for_alert(s.tenant, alert).await.unwrap();
    assert_eq!(delivered.len(), 4);
    assert!(delivered.iter().all(|r| r.delivered_at.is_some() && r.attempts == 1));
}

async fn a_webhook_is_signed_retried_with_back_off_and_keeps_its_idempotency_key(store: Store) {
    let s = scene(&store).await;
    let mail = MailSink::start();
    let n = notifier(&mail);
    let hook = Receiver::start(vec![500, 500], std::time::Duration::ZERO).await;
    let channel = webhook(&store, s.tenant, "Ops hook", &hook.url, SeveritySet::ALL).await;
    let alert = raise(&store, &s, "Silence", Severity::Critical, t0()).await;

    let now = t0();
    let (_, first) = n.round(&store, now).await.unwrap();
    assert_eq!((first.delivered, first.failed), (0, 1));
    let row = store.outbox().list_for_alert(s.tenant, alert).await.unwrap().remove(0);
    assert_eq!(row.next_attempt_at, now + Duration::seconds(30), "the first retry after 30 s");
    assert!(store.notification_channels().get(s.tenant, channel).await.unwrap().is_failing());
    // Not due yet: nothing is sent.
    assert_eq!(n.round(&store, now + Duration::seconds(29)).await.unwrap().1.claimed, 0);
    let (_, second) = n.round(&store, now + Duration::seconds(30)).await.unwrap();
    assert_eq!(second.failed, 1);
    let row = store.outbox().get(s.tenant, row.id).await.unwrap();
    assert_eq!(row.next_attempt_at, now + Duration::seconds(90), "then after 60 s");
    let (_, third) = n.round(&store, now + Duration::seconds(90)).await.unwrap();
    assert_eq!(third.delivered, 1);

    let requests = hook.requests();
    assert_eq!(requests.len(), 3);
    let key = header(&requests[0].0, "idempotency-key").to_owned();
    assert!(!key.is_empty());
    for (headers, body) in &requests {
        assert_eq!(header(headers, "idempotency-key"), key, "the same key on every retry");
        assert_eq!(header(headers, "content-type"), "application/json");
        assert_eq!(header(headers, "x-tds-event"), "raised");
        assert_eq!(header(headers, "x-tds-signature"), expected_signature(body));
        assert!(header(headers, "x-tds-timestamp").parse::<i64>().is_ok());
        assert_eq!(body, &requests[0].1, "the same bytes on every retry");
    }
    let json: serde_json::Value = serde_json::from_str(&requests[0].1).unwrap();
    assert_eq!(json["schema"], "tds.alert.v1");
    assert_eq!(json["event"], "raised");
    assert_eq!(json["alert"]["id"], alert.get());
    assert_eq!(json["alert"]["severity"], "CRITICAL");
    assert_eq!(json["alert"]["value"], 61.5);
    assert_eq!(json["rule"]["kind"], "no_data");
    assert_eq!(json["target"]["kind"], "device");
    assert_eq!(json["target"]["device"]["code"], "D01");
    assert_eq!(json["target"]["gateway"]["mac"], "aa:bb:cc:dd:ee:01");
    assert_eq!(json["tenant"]["name"], "Acme");
    assert_eq!(json["links"]["alert"], format!("https://tds.example.com/alerts/{alert}"));
    let c = store.notification_channels().get(s.tenant, channel).await.unwrap();
    assert!(!c.is_failing() && c.last_error.as_deref().is_some_and(|e| e.contains("500")), "{c:?}");

    // An acknowledgement goes to the webhook (and by email to nobody).
    let user = fixtures::member(&store, s.tenant, "ana@acme.com.br", Role::Admin).await;
    store.alerts().acknowledge(s.tenant, alert, Some(user.id), Some("on it"), now).await.unwrap();
    n.round(&store, now + Duration::seconds(100)).await.unwrap();
    let requests = hook.requests();
    assert_eq!(requests.len(), 4);
    assert_eq!(header(&requests[3].0, "x-tds-event"), "acknowledged");
    let json: serde_json::Value = serde_json::from_str(&requests[3].1).unwrap();
    assert_eq!(json["alert"]["status"], "acknowledged");
    assert_eq!(json["alert"]["comment"], "on it");
    assert_eq!(mail.count_to("ana@acme.com.br"), 0);
}

async fn a_failing_channel_does_not_delay_another(store: Store) {
    let s = scene(&store).await;
    let mail = MailSink::start();
    let n = notifier(&mail);
    // Slower than the 1 s timeout, every time.
    let stuck = Receiver::start(vec![], std::time::Duration::from_secs(3)).await;
    let fine = Receiver::start(vec![], std::time::Duration::ZERO).await;
    let stuck_id = webhook(&store, s.tenant, "Stuck", &stuck.url, SeveritySet::ALL).await;
    webhook(&store, s.tenant, "Fine", &fine.url, SeveritySet::ALL).await;
    for name in ["One", "Two", "Three"] {
        raise(&store, &s, name, Severity::Critical, t0()).await;
    }
    let started = std::time::Instant::now();
    let (_, sent) = n.round(&store, t0()).await.unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(3), "one timeout at most, not three");
    assert_eq!(fine.requests().len(), 3, "the healthy channel got everything at once");
    assert_eq!(stuck.requests().len(), 1, "the stuck channel was tried once");
    assert_eq!((sent.delivered, sent.failed), (3, 1));
    let c = store.notification_channels().get(s.tenant, stuck_id).await.unwrap();
    assert_eq!(c.last_error.as_deref(), Some("no answer in time"));
    // Its other rows wait for its retry, unattempted.
    let mut waiting = 0;
    for alert in store.alerts().list(s.tenant, None, None, 10).await.unwrap() {
        for row in store.outbox().list_for_alert(s.tenant, alert.id).await.unwrap() {
            if row.channel_id == Some(stuck_id) && row.attempts == 0 {
                assert_eq!(row.next_attempt_at, t0() + Duration::seconds(30));
                waiting += 1;
            }
        }
    }
    assert_eq!(waiting, 2);
}

async fn quiet_hours_defer_a_warning_email_and_not_a_critical_one(store: Store) {
    let s = scene(&store).await;
    let mail = MailSink::start();
    let n = notifier(&mail);
    let ana = fixtures::member(&store, s.tenant, "ana@acme.com.br", Role::Admin).await;
    let hm = |h| chrono::NaiveTime::from_hms_opt(h, 0, 0).unwrap();
    let prefs = AlertPrefs {
        email: SeveritySet::at_least(Severity::Warning),
        in_app: SeveritySet::ALL,
        quiet_hours: Some(QuietHours::new(hm(22), hm(7)).unwrap()),
        reminder_hours: None,
    };
    store.alert_prefs().set(s.tenant, ana.id, &prefs).await.unwrap();
    // 23:00 in São Paulo.
    let night = Utc.with_ymd_and_hms(2026, 3, 3, 2, 0, 0).unwrap();
    let warning = raise(&store, &s, "Warm", Severity::Warning, night).await;
    raise(&store, &s, "Hot", Severity::Critical, night).await;
    n.round(&store, night).await.unwrap();
    let first = mail.wait_for("ana@acme.com.br").await;
    assert!(first.contains("Hot: no data"), "the critical one at once: {first}");
    assert_eq!(mail.count_to("ana@acme.com.br"), 1);
    let row = store.outbox().list_for_alert(s.tenant, warning).await.unwrap().remove(0);
    let seven = Utc.with_ymd_and_hms(2026, 3, 3, 10, 0, 0).unwrap();
    assert_eq!(row.next_attempt_at, seven, "07:00 in São Paulo");
    n.round(&store, seven - Duration::minutes(1)).await.unwrap();
    assert_eq!(mail.count_to("ana@acme.com.br"), 1, "still quiet");
    n.round(&store, seven).await.unwrap();
    assert_eq!(mail.count_to("ana@acme.com.br"), 2);
    assert!(mail.messages().last().unwrap().contains("Warm: no data"));
}

async fn a_reminder_is_sent_once_per_period(store: Store) {
    let s = scene(&store).await;
    let mail = MailSink::start();
    let n = notifier(&mail);
    let ana = fixtures::member(&store, s.tenant, "ana@acme.com.br", Role::Admin).await;
    let prefs = AlertPrefs { reminder_hours: Some(1), ..AlertPrefs::default_for(Role::Admin) };
    store.alert_prefs().set(s.tenant, ana.id, &prefs).await.unwrap();
    let alert = raise(&store, &s, "Flood", Severity::Critical, t0()).await;
    let count = || mail.count_to("ana@acme.com.br");
    for (minutes, expected) in [(1, 1), (59, 1), (61, 2), (62, 2), (90, 2), (121, 3), (150, 3)] {
        let (fanned, _) = n.round(&store, t0() + Duration::minutes(minutes)).await.unwrap();
        assert_eq!(count(), expected, "after {minutes} min");
        if minutes == 61 || minutes == 121 {
            assert_eq!(fanned.reminders, 1);
        } else {
            assert_eq!(fanned.reminders, 0, "after {minutes} min");
        }
    }
    let history = store.alerts().history(s.tenant, alert).await.unwrap();
    assert_eq!(history.iter().filter(|e| e.kind.as_str() == "reminded").count(), 2);
    // Acknowledged: no more reminders.
    store.alerts().acknowledge(s.tenant, alert, Some(ana.id), None, t0()).await.unwrap();
    n.round(&store, t0() + Duration::minutes(181)).await.unwrap();
    assert_eq!(count(), 3);
    assert!(mail.messages().iter().filter(|m| m.contains("ana@acme.com.br")).any(|m| m.contains("Lembrete")));
}

async fn running_the_fan_out_twice_writes_nothing_twice(store: Store) {
    let s = scene(&store).await;
    let mail = MailSink::start();
    let n = notifier(&mail);
    let ana = fixtures::member(&store, s.tenant, "ana@acme.com.br", Role::Admin).await;
    fixtures::member(&store, s.tenant, "bob@acme.com.br", Role::Editor).await;
    let hook = Receiver::start(vec![], std::time::Duration::ZERO).await;
    webhook(&store, s.tenant, "Hook", &hook.url, SeveritySet::ALL).await;
    let alert = raise(&store, &s, "Silence", Severity::Warning, t0()).await;
    // A fan-out that crashed after writing one row and before marking the event dispatched.
    let event = store.alerts().staff_undispatched(10).await.unwrap().remove(0);
    let partial = NewOutbox {
        alert_id: Some(alert),
        channel_id: None,
        user_id: Some(ana.id),
        event: OutboxEvent::Raised,
        idempotency_key: keys::event_to_user(event.id, ana.id.get()),
        payload: "{}".into(),
        next_attempt_at: t0() + Duration::days(1),
    };
    store.outbox().enqueue(s.tenant, &partial).await.unwrap().unwrap();
    let first = tds_jobs::notify::fan_out(&store, &n, t0()).await.unwrap();
    assert_eq!((first.events, first.rows), (1, 2), "the two rows that were missing");
    let again = tds_jobs::notify::fan_out(&store, &n, t0()).await.unwrap();
    assert_eq!((again.events, again.rows), (0, 0));
    let rows = store.outbox().list_for_alert(s.tenant, alert).await.unwrap();
    assert_eq!(rows.len(), 3, "ana, bob and the webhook, once each");
    let mut keys: Vec<_> = rows.iter().map(|r| r.idempotency_key.clone()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 3);
}

async fn a_row_claimed_by_a_sender_that_died_is_delivered_after_its_lease(store: Store) {
    let s = scene(&store).await;
    let mail = MailSink::start();
    let n = notifier(&mail);
    fixtures::member(&store, s.tenant, "ana@acme.com.br", Role::Admin).await;
    raise(&store, &s, "Silence", Severity::Warning, t0()).await;
    tds_jobs::notify::fan_out(&store, &n, t0()).await.unwrap();
    // Another sender claims the row and dies without a word.
    let lease = Duration::seconds(60);
    assert_eq!(store.outbox().staff_claim_due(t0(), lease, 10).await.unwrap().len(), 1);
    let sent = tds_jobs::notify::send_due(&store, &n, t0() + Duration::seconds(30)).await.unwrap();
    assert_eq!(sent.claimed, 0, "held by the dead sender's lease");
    let sent = tds_jobs::notify::send_due(&store, &n, t0() + Duration::seconds(61)).await.unwrap();
    assert_eq!(sent.delivered, 1);
    mail.wait_for("ana@acme.com.br").await;
    assert_eq!(mail.count_to("ana@acme.com.br"), 1);
}

async fn a_test_message_goes_the_same_way_as_alerts(store: Store) {
    let s = scene(&store).await;
    let mail = MailSink::start();
    let n = notifier(&mail);
    let hook = Receiver::start(vec![], std::time::Duration::ZERO).await;
    // Disabled: a test is how one checks a channel before enabling it.
    let channel = webhook(&store, s.tenant, "Hook", &hook.url, SeveritySet::NONE).await;
    store.notification_channels().set_enabled(s.tenant, channel, false).await.unwrap();
    let tenant = store.tenants().get(s.tenant).await.unwrap();
    let notice = test_notice(
        NoticeTenant {
            id: s.tenant.get(),
            name: tenant.name.to_string(),
            timezone: tenant.timezone.to_string(),
        },
        "https://tds.example.com",
        t0(),
    );
    store.outbox().enqueue(s.tenant, &NewOutbox::test(channel, &notice, "n1")).await.unwrap().unwrap();
    let (_, sent) = n.round(&store, t0()).await.unwrap();
    assert_eq!(sent.delivered, 1);
    let requests = hook.requests();
    assert_eq!(header(&requests[0].0, "x-tds-event"), "test");
    assert_eq!(header(&requests[0].0, "idempotency-key"), keys::test(channel.get(), "n1"));
    assert_eq!(header(&requests[0].0, "x-tds-signature"), expected_signature(&requests[0].1));
}

conformance!(
    emails_reach_each_recipient_once_in_their_language,
    a_webhook_is_signed_retried_with_back_off_and_keeps_its_idempotency_key,
    a_failing_channel_does_not_delay_another,
    quiet_hours_defer_a_warning_email_and_not_a_critical_one,
    a_reminder_is_sent_once_per_period,
    running_the_fan_out_twice_writes_nothing_twice,
    a_row_claimed_by_a_sender_that_died_is_delivered_after_its_lease,
    a_test_message_goes_the_same_way_as_alerts
);
