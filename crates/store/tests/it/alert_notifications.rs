//! What alert notifications keep: channels with their failures, the outbox (one row per
//! idempotency key, retried until delivered or given up), and user preferences with the defaults
//! of SPEC §5; tenant isolation of each.

use crate::alerts::{raise, rule};
use chrono::{Duration, NaiveTime, Utc};
use serde_json::json;
use tds_domain::alerts::Period;
use tds_domain::{Name, Role, RuleKind, Severity, Target};
use tds_store::notifications::{
    AlertPrefs, ChannelFields, ChannelKind, ChannelSecret, NewChannel, NewOutbox, OutboxEvent, QuietHours,
    SeveritySet,
};
use tds_store::{Store, StoreError};
use tds_testkit::{conformance, fixtures};

fn webhook(name: &str) -> NewChannel {
    NewChannel {
        kind: ChannelKind::Webhook,
        name: Name::parse("name", name).unwrap(),
        config: json!({"url": "https://hooks.example.com/tds", "preset": "generic"}),
        secret: Some(ChannelSecret::new("s3cr3t-hmac-key".into()).unwrap()),
        severities: SeveritySet::ALL,
        enabled: true,
        created_by: None,
    }
}

fn email(name: &str) -> NewChannel {
    NewChannel {
        kind: ChannelKind::Email,
        name: Name::parse("name", name).unwrap(),
        config: json!({"addresses": ["plant@acme.com"]}),
        secret: None,
        severities: SeveritySet::at_least(Severity::Warning),
        enabled: true,
        created_by: None,
    }
}

fn message(
    key: &str,
    channel: Option<tds_store::notifications::ChannelId>,
    alert: tds_domain::AlertId,
) -> NewOutbox {
    NewOutbox {
        alert_id: Some(alert),
        channel_id: channel,
        user_id: None,
        event: OutboxEvent::Raised,
        idempotency_key: key.into(),
        payload: r#"{"event":"raised"}"#.into(),
        next_attempt_at: Utc::now() - Duration::seconds(1),
    }
}

async fn channels_are_kept_per_tenant_with_their_last_failure(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let channels = store.notification_channels();
    let hook = channels.create(t.id, &webhook("Telegram")).await.unwrap();
    assert_eq!(hook.secret.as_ref().map(ChannelSecret::expose), Some("s3cr3t-hmac-key"));
    assert!(!format!("{hook:?}").contains("s3cr3t"), "the secret stays out of Debug");
    assert!(!serde_json::to_string(&hook).unwrap().contains("s3cr3t"), "and out of JSON");
    let mail = channels.create(t.id, &email("Plant")).await.unwrap();
    assert_eq!(mail.severities.severities(), [Severity::Warning, Severity::Critical]);
    assert!(matches!(channels.create(t.id, &webhook("Telegram")).await, Err(StoreError::Conflict(_))));
    let mut bare = webhook("Bare");
    bare.secret = None;
    assert!(matches!(channels.create(t.id, &bare).await, Err(StoreError::Invalid(_))), "a webhook signs");
    let mut keyed = email("Keyed");
    keyed.secret = Some(ChannelSecret::new("x".into()).unwrap());
    assert!(matches!(channels.create(t.id, &keyed).await, Err(StoreError::Invalid(_))));
    let mut list = webhook("List");
    list.config = json!(["not", "an", "object"]);
    assert!(matches!(channels.create(t.id, &list).await, Err(StoreError::Invalid(_))));

    assert!(!hook.is_failing());
    let t0 = Utc::now();
    channels.record_failure(t.id, hook.id, "HTTP 502 from hooks.example.com", t0).await.unwrap();
    let failing = channels.get(t.id, hook.id).await.unwrap();
    assert!(failing.is_failing());
    assert_eq!(failing.last_error.as_deref(), Some("HTTP 502 from hooks.example.com"));
    channels.record_success(t.id, hook.id, t0 + Duration::seconds(30)).await.unwrap();
    assert!(!channels.get(t.id, hook.id).await.unwrap().is_failing(), "a later success ends the failure");

    let fields = ChannelFields {
        name: Name::parse("name", "Telegram ops").unwrap(),
        config: json!({"url": "https://hooks.example.com/ops"}),
        severities: SeveritySet::of(&[Severity::Critical]),
    };
    let updated = channels.update(t.id, hook.id, &fields).await.unwrap();
    assert_eq!(
        (updated.name.as_str(), updated.config["url"].as_str()),
        ("Telegram ops", Some("https://hooks.example.com/ops"))
    );
    assert!(
        updated.severities.contains(Severity::Critical) && !updated.severities.contains(Severity::Warning)
    );
    channels.set_secret(t.id, hook.id, &ChannelSecret::new("rotated".into()).unwrap()).await.unwrap();
    assert_eq!(channels.get(t.id, hook.id).await.unwrap().secret.unwrap().expose(), "rotated");
    let no_secret = channels.set_secret(t.id, mail.id, &ChannelSecret::new("x".into()).unwrap()).await;
    assert!(matches!(no_secret, Err(StoreError::Invalid(_))), "{no_secret:?}");
    channels.set_enabled(t.id, mail.id, false).await.unwrap();
    assert!(!channels.get(t.id, mail.id).await.unwrap().enabled);
    let names: Vec<String> = channels.list(t.id).await.unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["Plant", "Telegram ops"]);
    channels.delete(t.id, mail.id).await.unwrap();
    assert!(matches!(channels.get(t.id, mail.id).await, Err(StoreError::NotFound)));
}

async fn the_outbox_keeps_one_row_per_key_and_retries_until_delivered_or_given_up(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let user = fixtures::member(&store, t.id, "ops@acme.com", Role::Editor).await;
    let r = rule(&store, t.id, "Silent", Target::Tenant, RuleKind::NoData(Period::new(3600).unwrap())).await;
    let alert = store.alerts().raise(t.id, &raise(r.id, Target::Tenant, 1.0)).await.unwrap().alert;
    let hook = store.notification_channels().create(t.id, &webhook("Hook")).await.unwrap();
    let outbox = store.outbox();

    let first = outbox.enqueue(t.id, &message("event-1/channel", Some(hook.id), alert.id)).await.unwrap();
    let first = first.expect("a new row");
    assert_eq!(
        outbox.enqueue(t.id, &message("event-1/channel", Some(hook.id), alert.id)).await.unwrap(),
        None,
        "the same message twice is one row"
    );
    let mut to_user = message("event-1/user", None, alert.id);
    to_user.user_id = Some(user.id);
    let second = outbox.enqueue(t.id, &to_user).await.unwrap().unwrap();
    let mut later = message("event-1/later", Some(hook.id), alert.id);
    later.next_attempt_at = Utc::now() + Duration::hours(8);
    outbox.enqueue(t.id, &later).await.unwrap().unwrap();
    let mut nobody = message("nobody", None, alert.id);
    nobody.user_id = None;
    assert!(matches!(outbox.enqueue(t.id, &nobody).await, Err(StoreError::Invalid(_))));
    let mut no_alert = message("no-alert", Some(hook.id), alert.id);
    no_alert.alert_id = None;
    assert!(matches!(outbox.enqueue(t.id, &no_alert).await, Err(StoreError::Invalid(_))));
    no_alert.event = OutboxEvent::Test;
    assert!(outbox.enqueue(t.id, &no_alert).await.unwrap().is_some(), "a test message has no alert");

    let now = Utc::now();
    let due: Vec<_> = outbox.staff_due(now, 10).await.unwrap().into_iter().map(|i| i.id).collect();
    assert_eq!(due.len(), 3, "the row waiting for quiet hours to end is not due");
    assert!(due.contains(&first) && due.contains(&second));

    let retry_at = now + Duration::minutes(1);
    outbox.mark_failed(t.id, first, "HTTP 503", now, Some(retry_at)).await.unwrap();
    let failed = outbox.get(t.id, first).await.unwrap();
    assert_eq!((failed.attempts, failed.last_error.as_deref()), (1, Some("HTTP 503")));
    assert_eq!(failed.idempotency_key, "event-1/channel", "a retry carries the same key");
    assert!(!outbox.staff_due(now, 10).await.unwrap().iter().any(|i| i.id == first));
    assert!(outbox.staff_due(retry_at, 10).await.unwrap().iter().any(|i| i.id == first));

    outbox.mark_delivered(t.id, first, retry_at).await.unwrap();
    outbox.mark_delivered(t.id, first, retry_at + Duration::minutes(5)).await.unwrap();
    let delivered = outbox.get(t.id, first).await.unwrap();
    assert_eq!(
        (delivered.attempts, delivered.delivered_at.map(|d| d.timestamp_micros())),
        (2, Some(retry_at.timestamp_micros()))
    );
    assert!(!outbox.staff_due(retry_at + Duration::days(2), 10).await.unwrap().iter().any(|i| i.id == first));
    let after = outbox.mark_failed(t.id, first, "late", now, None).await;
    assert!(matches!(after, Err(StoreError::Conflict(_))), "{after:?}");

    outbox.mark_failed(t.id, second, "mailbox full", now, None).await.unwrap();
    let given_up = outbox.get(t.id, second).await.unwrap();
    assert!(given_up.failed_at.is_some());
    assert!(!outbox.staff_due(now + Duration::days(2), 10).await.unwrap().iter().any(|i| i.id == second));

    // Claiming takes the due rows for a lease: another sender does not see them until it ends.
    let claimed = outbox.staff_claim_due(now, Duration::minutes(5), 10).await.unwrap();
    assert_eq!(claimed.len(), 1, "only the test message is still due");
    assert!(outbox.staff_claim_due(now, Duration::minutes(5), 10).await.unwrap().is_empty());
    assert_eq!(
        outbox.staff_claim_due(now + Duration::minutes(6), Duration::minutes(5), 10).await.unwrap().len(),
        1
    );

    assert_eq!(outbox.list_for_alert(t.id, alert.id).await.unwrap().len(), 3);
    assert_eq!(outbox.staff_purge_finished_before(now + Duration::days(3)).await.unwrap(), 2);
    assert!(matches!(outbox.get(t.id, first).await, Err(StoreError::NotFound)));
    // Deleting a channel takes its rows with it.
    store.notification_channels().delete(t.id, hook.id).await.unwrap();
    assert!(outbox.list_for_alert(t.id, alert.id).await.unwrap().is_empty());
}

async fn preferences_are_the_role_defaults_until_a_member_sets_them(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let admin = fixtures::member(&store, t.id, "admin@acme.com", Role::Admin).await;
    let viewer = fixtures::member(&store, t.id, "viewer@acme.com", Role::Viewer).await;
    let stranger = fixtures::user(&store, "stranger@else.com").await;
    let prefs = store.alert_prefs();

    let defaults = prefs.effective(t.id, admin.id).await.unwrap();
    assert_eq!(defaults.email.severities(), [Severity::Warning, Severity::Critical]);
    assert_eq!(defaults.in_app, SeveritySet::ALL);
    assert_eq!(prefs.effective(t.id, viewer.id).await.unwrap().email, SeveritySet::NONE);
    assert_eq!(prefs.get(t.id, admin.id).await.unwrap(), None, "defaults are not rows");
    assert!(matches!(prefs.effective(t.id, stranger.id).await, Err(StoreError::NotFound)));

    let night = QuietHours::new(
        NaiveTime::from_hms_opt(22, 0, 0).unwrap(),
        NaiveTime::from_hms_opt(7, 0, 0).unwrap(),
    )
    .unwrap();
    assert!(night.contains(NaiveTime::from_hms_opt(23, 30, 0).unwrap()));
    assert!(night.contains(NaiveTime::from_hms_opt(6, 59, 0).unwrap()));
    assert!(!night.contains(NaiveTime::from_hms_opt(7, 0, 0).unwrap()));
    let noon = NaiveTime::from_hms_opt(12, 0, 0).unwrap();
    assert!(QuietHours::new(noon, noon).is_err());
    let mine = AlertPrefs {
        email: SeveritySet::of(&[Severity::Critical]),
        in_app: SeveritySet::at_least(Severity::Warning),
        quiet_hours: Some(night),
        reminder_hours: Some(4),
    };
    prefs.set(t.id, admin.id, &mine).await.unwrap();
    assert_eq!(prefs.get(t.id, admin.id).await.unwrap(), Some(mine));
    assert_eq!(prefs.effective(t.id, admin.id).await.unwrap(), mine);
    let changed = AlertPrefs { reminder_hours: None, quiet_hours: None, ..mine };
    prefs.set(t.id, admin.id, &changed).await.unwrap();
    assert_eq!(prefs.effective(t.id, admin.id).await.unwrap(), changed, "set again replaces");
    let too_often = AlertPrefs { reminder_hours: Some(0), ..mine };
    assert!(matches!(prefs.set(t.id, admin.id, &too_often).await, Err(StoreError::Invalid(_))));
    assert!(matches!(prefs.set(t.id, stranger.id, &mine).await, Err(StoreError::NotFound)));

    let recipients = prefs.recipients(t.id).await.unwrap();
    assert_eq!(recipients.len(), 2);
    assert_eq!(
        (recipients[0].user_id, recipients[0].customised, recipients[0].prefs),
        (admin.id, true, changed)
    );
    assert_eq!(
        (recipients[1].user_id, recipients[1].role, recipients[1].customised),
        (viewer.id, Role::Viewer, false)
    );
    assert_eq!(recipients[1].prefs, AlertPrefs::default_for(Role::Viewer));

    prefs.reset(t.id, admin.id).await.unwrap();
    assert_eq!(prefs.effective(t.id, admin.id).await.unwrap(), AlertPrefs::default_for(Role::Admin));
}

async fn another_tenant_cannot_reach_a_channel_an_outbox_row_or_preferences(store: Store) {
    let a = fixtures::tenant(&store, "Alpha").await;
    let b = fixtures::tenant(&store, "Beta").await;
    let user_a = fixtures::member(&store, a.id, "ops@alpha.com", Role::Admin).await;
    let user_b = fixtures::member(&store, b.id, "ops@beta.com", Role::Admin).await;
    let r = rule(&store, a.id, "Silent", Target::Tenant, RuleKind::NoData(Period::new(3600).unwrap())).await;
    let alert = store.alerts().raise(a.id, &raise(r.id, Target::Tenant, 1.0)).await.unwrap().alert;
    let channels = store.notification_channels();
    let hook = channels.create(a.id, &webhook("Hook")).await.unwrap();
    let row = store.outbox().enqueue(a.id, &message("k1", Some(hook.id), alert.id)).await.unwrap().unwrap();

    let not_found = |what: &str, r: Result<(), StoreError>| {
        assert!(matches!(r, Err(StoreError::NotFound)), "{what}: expected NotFound, got {r:?}");
    };
    let now = Utc::now();
    not_found("get", channels.get(b.id, hook.id).await.map(|_| ()));
    let fields = ChannelFields {
        name: Name::parse("name", "Mine").unwrap(),
        config: json!({}),
        severities: SeveritySet::ALL,
    };
    not_found("update", channels.update(b.id, hook.id, &fields).await.map(|_| ()));
    not_found("secret", channels.set_secret(b.id, hook.id, &ChannelSecret::new("x".into()).unwrap()).await);
    not_found("disable", channels.set_enabled(b.id, hook.id, false).await);
    not_found("failure", channels.record_failure(b.id, hook.id, "x", now).await);
    not_found("success", channels.record_success(b.id, hook.id, now).await);
    not_found("delete", channels.delete(b.id, hook.id).await);
    assert!(channels.list(b.id).await.unwrap().is_empty());

    let outbox = store.outbox();
    not_found("outbox get", outbox.get(b.id, row).await.map(|_| ()));
    not_found("delivered", outbox.mark_delivered(b.id, row, now).await);
    not_found("failed", outbox.mark_failed(b.id, row, "x", now, None).await);
    assert!(outbox.list_for_alert(b.id, alert.id).await.unwrap().is_empty());
    // B cannot queue messages about A's alert, to A's channel or to A's user.
    let mut about_a = message("k2", None, alert.id);
    about_a.user_id = Some(user_b.id);
    not_found("enqueue alert", outbox.enqueue(b.id, &about_a).await.map(|_| ()));
    let b_rule =
        rule(&store, b.id, "Silent", Target::Tenant, RuleKind::NoData(Period::new(3600).unwrap())).await;
    let b_alert = store.alerts().raise(b.id, &raise(b_rule.id, Target::Tenant, 1.0)).await.unwrap().alert;
    not_found(
        "enqueue channel",
        outbox.enqueue(b.id, &message("k3", Some(hook.id), b_alert.id)).await.map(|_| ()),
    );
    let mut to_a_user = message("k4", None, b_alert.id);
    to_a_user.user_id = Some(user_a.id);
    not_found("enqueue user", outbox.enqueue(b.id, &to_a_user).await.map(|_| ()));

    let prefs = store.alert_prefs();
    not_found("prefs set", prefs.set(b.id, user_a.id, &AlertPrefs::default_for(Role::Admin)).await);
    not_found("prefs effective", prefs.effective(b.id, user_a.id).await.map(|_| ()));
    assert!(prefs.recipients(b.id).await.unwrap().iter().all(|r| r.user_id != user_a.id));

    let unchanged = channels.get(a.id, hook.id).await.unwrap();
    assert_eq!(unchanged, hook, "A's channel is unchanged");
    let row = outbox.get(a.id, row).await.unwrap();
    assert_eq!((row.attempts, row.delivered_at, row.failed_at), (0, None, None), "A's row is unchanged");
}

/// What the notifier needs beyond enqueue and claim: acknowledgement rows, a read-only look for
/// a key, putting back a row it took but did not try, and every tenant's active critical alerts.
async fn the_notifier_can_queue_acknowledgements_look_up_keys_and_put_rows_back(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let other = fixtures::tenant(&store, "Beta").await;
    let user = fixtures::member(&store, t.id, "ops@acme.com", Role::Editor).await;
    let r = rule(&store, t.id, "Silent", Target::Tenant, RuleKind::NoData(Period::new(3600).unwrap())).await;
    let mut new = raise(r.id, Target::Tenant, 1.0);
    new.severity = Severity::Critical;
    let alert = store.alerts().raise(t.id, &new).await.unwrap().alert;
    let r2 = rule(&store, t.id, "Quiet", Target::Tenant, RuleKind::NoData(Period::new(7200).unwrap())).await;
    store.alerts().raise(t.id, &raise(r2.id, Target::Tenant, 1.0)).await.unwrap();
    let critical = store.alerts().staff_active_critical(10).await.unwrap();
    assert_eq!(critical.iter().map(|a| a.id).collect::<Vec<_>>(), [alert.id], "only the critical one");

    let hook = store.notification_channels().create(t.id, &webhook("Hook")).await.unwrap();
    let outbox = store.outbox();
    let mut ack = message("event-9/channel", Some(hook.id), alert.id);
    ack.event = OutboxEvent::Acknowledged;
    let id = outbox.enqueue(t.id, &ack).await.unwrap().unwrap();
    assert_eq!(outbox.get(t.id, id).await.unwrap().event, OutboxEvent::Acknowledged);
    assert!(outbox.has_key("event-9/channel").await.unwrap());
    assert!(!outbox.has_key("event-10/channel").await.unwrap());

    let now = Utc::now();
    assert_eq!(outbox.staff_claim_due(now, Duration::minutes(5), 10).await.unwrap().len(), 1);
    outbox.release(t.id, id, now + Duration::seconds(30)).await.unwrap();
    outbox.release(other.id, id, now).await.unwrap();
    let back = outbox.get(t.id, id).await.unwrap();
    assert_eq!(
        (back.attempts, back.next_attempt_at.timestamp()),
        (0, (now + Duration::seconds(30)).timestamp())
    );
    assert!(outbox.staff_claim_due(now, Duration::minutes(5), 10).await.unwrap().is_empty());
    assert_eq!(
        outbox.staff_claim_due(now + Duration::seconds(31), Duration::minutes(5), 10).await.unwrap().len(),
        1
    );

    store.alerts().acknowledge(t.id, alert.id, Some(user.id), None, now).await.unwrap();
    assert!(store.alerts().staff_active_critical(10).await.unwrap().is_empty());
}

conformance!(
    the_notifier_can_queue_acknowledgements_look_up_keys_and_put_rows_back,
    channels_are_kept_per_tenant_with_their_last_failure,
    the_outbox_keeps_one_row_per_key_and_retries_until_delivered_or_given_up,
    preferences_are_the_role_defaults_until_a_member_sets_them,
    another_tenant_cannot_reach_a_channel_an_outbox_row_or_preferences
);
