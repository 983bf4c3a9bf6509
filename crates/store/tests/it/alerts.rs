//! The life of an alert: raised once however often evaluation finds it, acknowledged, cleared,
//! raised anew; lists by status in keyset pages; history; tenant isolation.

use chrono::{Duration, Utc};
use tds_domain::alerts::{ConsumptionLimit, Period};
use tds_domain::{AlertId, AlertRuleId, Medium, Name, Role, Rule, RuleKind, Severity, Target, TenantId};
use tds_store::alert_rules::{AlertRule, NewAlertRule};
use tds_store::alerts::{AlertEventKind, AlertStatus, NewAlert};
use tds_store::{Store, StoreError};
use tds_testkit::{conformance, fixtures};

pub(crate) fn daily(threshold: f64) -> RuleKind {
    RuleKind::DailyConsumption(ConsumptionLimit::new(threshold).unwrap())
}

pub(crate) async fn rule(
    store: &Store,
    tenant: TenantId,
    name: &str,
    target: Target,
    kind: RuleKind,
) -> AlertRule {
    let rule = Rule::new(Severity::Warning, target, kind, None, None).unwrap();
    store
        .alert_rules()
        .create(
            tenant,
            &NewAlertRule { name: Name::parse("name", name).unwrap(), rule, enabled: true, created_by: None },
        )
        .await
        .unwrap()
}

pub(crate) fn raise(rule: AlertRuleId, target: Target, value: f64) -> NewAlert {
    NewAlert {
        rule,
        target,
        severity: Severity::Warning,
        message: format!("consumption {value} kWh"),
        value: Some(value),
        at: Utc::now(),
    }
}

fn kinds(events: &[tds_store::alerts::AlertEvent]) -> Vec<AlertEventKind> {
    events.iter().map(|e| e.kind).collect()
}

async fn an_alert_is_raised_once_then_acknowledged_cleared_and_raised_anew(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let user = fixtures::member(&store, t.id, "ops@acme.com", Role::Editor).await;
    let gw = fixtures::gateway(&store, t.id, "aa:00:00:00:00:01", "GW1").await;
    let d = fixtures::meter(&store, t.id, &gw, "D01").await;
    let r = rule(&store, t.id, "High use", Target::Device(d.id), daily(100.0)).await;
    let alerts = store.alerts();
    let target = Target::Device(d.id);

    let first = alerts.raise(t.id, &raise(r.id, target, 120.0)).await.unwrap();
    assert!(first.new);
    assert_eq!(first.alert.status(), AlertStatus::Active);
    assert_eq!((first.alert.rule_id, first.alert.rule_name.as_str()), (Some(r.id), "High use"));
    assert_eq!(first.alert.target, target);
    let again = alerts.raise(t.id, &raise(r.id, target, 120.0)).await.unwrap();
    assert!(!again.new, "evaluating again finds the open alert");
    assert_eq!(again.alert.id, first.alert.id);
    assert_eq!(alerts.list(t.id, None, None, 50).await.unwrap().len(), 1, "one alert, not two");
    assert_eq!(kinds(&alerts.history(t.id, first.alert.id).await.unwrap()), [AlertEventKind::Raised]);
    assert_eq!(alerts.count_active(t.id).await.unwrap(), 1);

    let acked = alerts
        .acknowledge(t.id, first.alert.id, Some(user.id), Some("  checking the valve "), Utc::now())
        .await
        .unwrap();
    assert_eq!(acked.status(), AlertStatus::Acknowledged);
    assert_eq!(acked.acknowledged_by, Some(user.id));
    assert_eq!(acked.ack_comment.as_deref(), Some("checking the valve"));
    assert_eq!(alerts.count_active(t.id).await.unwrap(), 0, "the badge counts active alerts only");
    let twice = alerts.acknowledge(t.id, first.alert.id, Some(user.id), None, Utc::now()).await;
    assert!(matches!(twice, Err(StoreError::Conflict(_))), "{twice:?}");
    // Still open: evaluation keeps finding it, acknowledged.
    let held = alerts.raise(t.id, &raise(r.id, target, 130.0)).await.unwrap();
    assert!(!held.new);
    assert_eq!(held.alert.status(), AlertStatus::Acknowledged);
    assert_eq!(held.alert.value, Some(130.0));

    let cleared = alerts.clear(t.id, r.id, target, Utc::now()).await.unwrap().expect("an open alert");
    assert_eq!(cleared.id, first.alert.id);
    assert_eq!(cleared.status(), AlertStatus::Cleared);
    assert!(alerts.clear(t.id, r.id, target, Utc::now()).await.unwrap().is_none(), "nothing left to clear");
    let late = alerts.acknowledge(t.id, first.alert.id, Some(user.id), None, Utc::now()).await;
    assert!(matches!(late, Err(StoreError::Conflict(_))), "{late:?}");
    let history = alerts.history(t.id, first.alert.id).await.unwrap();
    assert_eq!(
        kinds(&history),
        [AlertEventKind::Raised, AlertEventKind::Acknowledged, AlertEventKind::Cleared]
    );
    assert_eq!(history[1].user_id, Some(user.id));
    assert_eq!(history[1].comment.as_deref(), Some("checking the valve"));

    let next = alerts.raise(t.id, &raise(r.id, target, 140.0)).await.unwrap();
    assert!(next.new, "after a clear the condition raises a new alert");
    assert_ne!(next.alert.id, first.alert.id);
    assert_eq!(alerts.get(t.id, first.alert.id).await.unwrap().status(), AlertStatus::Cleared);
    assert_eq!(alerts.list(t.id, None, None, 50).await.unwrap().len(), 2);
}

async fn a_raise_refreshes_the_open_alert_and_records_a_severity_change(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let gw = fixtures::gateway(&store, t.id, "aa:00:00:00:00:01", "GW1").await;
    let d = fixtures::meter(&store, t.id, &gw, "D01").await;
    let r = rule(&store, t.id, "High use", Target::Device(d.id), daily(100.0)).await;
    let alerts = store.alerts();
    let target = Target::Device(d.id);
    let first = alerts.raise(t.id, &raise(r.id, target, 101.0)).await.unwrap();
    let same = alerts.raise(t.id, &raise(r.id, target, 101.0)).await.unwrap();
    assert_eq!(same.alert.updated_at, first.alert.updated_at, "nothing changed, nothing written");
    let mut louder = raise(r.id, target, 150.0);
    louder.severity = Severity::Critical;
    let louder = alerts.raise(t.id, &louder).await.unwrap();
    assert!(!louder.new);
    assert_eq!((louder.alert.severity, louder.alert.value), (Severity::Critical, Some(150.0)));
    let history = alerts.history(t.id, first.alert.id).await.unwrap();
    assert_eq!(kinds(&history), [AlertEventKind::Raised, AlertEventKind::Updated]);
    assert_eq!(history[1].severity, Severity::Critical);
    // A value that is not a number is kept as none (SQLite cannot store NaN).
    let nan = alerts.raise(t.id, &raise(r.id, target, f64::NAN)).await.unwrap();
    assert_eq!(nan.alert.value, None);
}

async fn each_target_of_a_rule_has_its_own_open_alert(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let gw = fixtures::gateway(&store, t.id, "aa:00:00:00:00:01", "GW1").await;
    let d1 = fixtures::meter(&store, t.id, &gw, "D01").await;
    let d2 = fixtures::meter(&store, t.id, &gw, "D02").await;
    let r = rule(&store, t.id, "Silent", Target::Tenant, RuleKind::NoData(Period::new(3600).unwrap())).await;
    let alerts = store.alerts();
    // A device and a gateway may share a numeric id; a medium and the tenant have none.
    let same_number = Target::Gateway(tds_domain::GatewayId::new(d1.id.get()));
    let targets = [
        Target::Device(d1.id),
        Target::Device(d2.id),
        same_number,
        Target::Tenant,
        Target::Medium(Medium::Water),
    ];
    for target in targets {
        assert!(alerts.raise(t.id, &raise(r.id, target, 1.0)).await.unwrap().new, "{target}");
    }
    for target in targets {
        assert!(!alerts.raise(t.id, &raise(r.id, target, 1.0)).await.unwrap().new, "{target}");
    }
    let open = alerts.open_for_rule(t.id, r.id).await.unwrap();
    let mut found: Vec<Target> = open.iter().map(|a| a.target).collect();
    found.sort_by_key(ToString::to_string);
    let mut expected = targets.to_vec();
    expected.sort_by_key(ToString::to_string);
    assert_eq!(found, expected);
    let water = alerts.clear(t.id, r.id, Target::Medium(Medium::Water), Utc::now()).await.unwrap().unwrap();
    assert_eq!(water.target, Target::Medium(Medium::Water));
    assert!(alerts.clear(t.id, r.id, Target::Medium(Medium::Gas), Utc::now()).await.unwrap().is_none());
    assert_eq!(alerts.count_active(t.id).await.unwrap(), 4);
}

async fn alerts_are_listed_by_status_newest_first_in_keyset_pages(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let user = fixtures::member(&store, t.id, "ops@acme.com", Role::Editor).await;
    let r = rule(&store, t.id, "Silent", Target::Tenant, RuleKind::NoData(Period::new(3600).unwrap())).await;
    let alerts = store.alerts();
    let mut ids = Vec::new();
    for n in 1..=7 {
        let target = Target::Device(tds_domain::DeviceId::new(1000 + n));
        ids.push(alerts.raise(t.id, &raise(r.id, target, 1.0)).await.unwrap().alert.id);
    }
    // 2 acknowledged, 2 cleared (one of them acknowledged first), 3 active.
    alerts.acknowledge(t.id, ids[0], Some(user.id), None, Utc::now()).await.unwrap();
    alerts.acknowledge(t.id, ids[1], Some(user.id), None, Utc::now()).await.unwrap();
    alerts.acknowledge(t.id, ids[2], Some(user.id), None, Utc::now()).await.unwrap();
    alerts
        .clear(t.id, r.id, Target::Device(tds_domain::DeviceId::new(1003)), Utc::now())
        .await
        .unwrap()
        .unwrap();
    alerts
        .clear(t.id, r.id, Target::Device(tds_domain::DeviceId::new(1004)), Utc::now())
        .await
        .unwrap()
        .unwrap();
    let of = move |status| async move {
        alerts.list(t.id, status, None, 50).await.unwrap().into_iter().map(|a| a.id).collect::<Vec<AlertId>>()
    };
    assert_eq!(of(Some(AlertStatus::Active)).await, [ids[6], ids[5], ids[4]]);
    assert_eq!(of(Some(AlertStatus::Acknowledged)).await, [ids[1], ids[0]]);
    assert_eq!(of(Some(AlertStatus::Cleared)).await, [ids[3], ids[2]]);
    assert_eq!(alerts.count_active(t.id).await.unwrap(), 3);

    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let page = alerts.list(t.id, None, before, 3).await.unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        paged.extend(page.iter().map(|a| a.id));
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(paged, newest_first, "every alert once, newest first");
    let active_after = alerts.list(t.id, Some(AlertStatus::Active), Some(ids[6]), 1).await.unwrap();
    assert_eq!(active_after.iter().map(|a| a.id).collect::<Vec<_>>(), [ids[5]]);
}

/// Evaluators racing on one rule and target (PostgreSQL runs them at once; SQLite one after the
/// other): one of them opens the alert, the others find it.
async fn racing_raises_open_one_alert(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let r = rule(&store, t.id, "Silent", Target::Tenant, RuleKind::NoData(Period::new(3600).unwrap())).await;
    let alerts = store.alerts();
    // Open the pool's connections first, so that the raises run side by side instead of one
    // after the other while connections are being made.
    futures_util::future::join_all((0..8).map(|_| store.db().ping())).await;
    let attempts = (0..8).map(|n| {
        let new = raise(r.id, Target::Tenant, f64::from(n));
        async move { alerts.raise(t.id, &new).await.unwrap() }
    });
    let raised = futures_util::future::join_all(attempts).await;
    assert_eq!(raised.iter().filter(|r| r.new).count(), 1, "one raise opened it");
    assert!(raised.iter().all(|r| r.alert.id == raised[0].alert.id));
    let all = alerts.list(t.id, None, None, 50).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(kinds(&alerts.history(t.id, all[0].id).await.unwrap()), [AlertEventKind::Raised]);
}

async fn a_disabled_or_unknown_rule_raises_nothing(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let r = rule(&store, t.id, "Silent", Target::Tenant, RuleKind::NoData(Period::new(3600).unwrap())).await;
    store.alert_rules().set_enabled(t.id, r.id, false, None).await.unwrap();
    let disabled = store.alerts().raise(t.id, &raise(r.id, Target::Tenant, 1.0)).await;
    assert!(matches!(disabled, Err(StoreError::Conflict(_))), "{disabled:?}");
    let unknown = store.alerts().raise(t.id, &raise(AlertRuleId::new(9999), Target::Tenant, 1.0)).await;
    assert!(matches!(unknown, Err(StoreError::NotFound)), "{unknown:?}");
    assert!(store.alerts().list(t.id, None, None, 50).await.unwrap().is_empty());
}

async fn raises_clears_and_acknowledgements_wait_for_the_notifier_and_other_events_do_not(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let user = fixtures::member(&store, t.id, "ops@acme.com", Role::Editor).await;
    let r = rule(&store, t.id, "Silent", Target::Tenant, RuleKind::NoData(Period::new(3600).unwrap())).await;
    let alerts = store.alerts();
    let a = alerts.raise(t.id, &raise(r.id, Target::Tenant, 1.0)).await.unwrap().alert;
    alerts.note_reminder(t.id, a.id, Utc::now()).await.unwrap();
    alerts.acknowledge(t.id, a.id, Some(user.id), None, Utc::now()).await.unwrap();
    let reminder = alerts.note_reminder(t.id, a.id, Utc::now()).await;
    assert!(matches!(reminder, Err(StoreError::Conflict(_))), "an acknowledged alert is not reminded");
    alerts.clear(t.id, r.id, Target::Tenant, Utc::now()).await.unwrap().unwrap();
    let pending = alerts.staff_undispatched(100).await.unwrap();
    // An acknowledgement is told to webhooks; a reminder is already an outbox row.
    assert_eq!(
        kinds(&pending),
        [AlertEventKind::Raised, AlertEventKind::Acknowledged, AlertEventKind::Cleared]
    );
    assert!(pending.iter().all(|e| e.tenant_id == t.id && e.alert_id == a.id));
    alerts.mark_dispatched(t.id, pending[0].id, Utc::now()).await.unwrap();
    alerts.mark_dispatched(t.id, pending[1].id, Utc::now()).await.unwrap();
    assert_eq!(kinds(&alerts.staff_undispatched(100).await.unwrap()), [AlertEventKind::Cleared]);
    let history = alerts.history(t.id, a.id).await.unwrap();
    assert_eq!(
        kinds(&history),
        [
            AlertEventKind::Raised,
            AlertEventKind::Reminded,
            AlertEventKind::Acknowledged,
            AlertEventKind::Cleared
        ]
    );
}

async fn another_tenant_cannot_read_acknowledge_or_clear_an_alert(store: Store) {
    let a = fixtures::tenant(&store, "Alpha").await;
    let b = fixtures::tenant(&store, "Beta").await;
    let user_b = fixtures::member(&store, b.id, "ops@beta.com", Role::Admin).await;
    let gw = fixtures::gateway(&store, a.id, "aa:00:00:00:00:01", "GW1").await;
    let d = fixtures::meter(&store, a.id, &gw, "D01").await;
    let r = rule(&store, a.id, "High use", Target::Device(d.id), daily(100.0)).await;
    let alerts = store.alerts();
    let target = Target::Device(d.id);
    let alert = alerts.raise(a.id, &raise(r.id, target, 120.0)).await.unwrap().alert;

    let not_found = |what: &str, r: Result<(), StoreError>| {
        assert!(matches!(r, Err(StoreError::NotFound)), "{what}: expected NotFound, got {r:?}");
    };
    not_found("get", alerts.get(b.id, alert.id).await.map(|_| ()));
    not_found(
        "acknowledge",
        alerts.acknowledge(b.id, alert.id, Some(user_b.id), None, Utc::now()).await.map(|_| ()),
    );
    not_found("history", alerts.history(b.id, alert.id).await.map(|_| ()));
    not_found("reminder", alerts.note_reminder(b.id, alert.id, Utc::now()).await);
    let event = alerts.history(a.id, alert.id).await.unwrap()[0].id;
    not_found("dispatch", alerts.mark_dispatched(b.id, event, Utc::now()).await);
    not_found("raise", alerts.raise(b.id, &raise(r.id, target, 500.0)).await.map(|_| ()));
    assert!(alerts.clear(b.id, r.id, target, Utc::now()).await.unwrap().is_none());
    assert!(alerts.list(b.id, None, None, 50).await.unwrap().is_empty());
    assert!(alerts.open_for_rule(b.id, r.id).await.unwrap().is_empty());
    assert_eq!(alerts.count_active(b.id).await.unwrap(), 0);

    let still = alerts.get(a.id, alert.id).await.unwrap();
    assert_eq!(still, alert, "A's alert is unchanged");
    assert_eq!(alerts.history(a.id, alert.id).await.unwrap().len(), 1);
    assert!(still.raised_at <= Utc::now() + Duration::seconds(1));
}

conformance!(
    an_alert_is_raised_once_then_acknowledged_cleared_and_raised_anew,
    a_raise_refreshes_the_open_alert_and_records_a_severity_change,
    each_target_of_a_rule_has_its_own_open_alert,
    alerts_are_listed_by_status_newest_first_in_keyset_pages,
    racing_raises_open_one_alert,
    a_disabled_or_unknown_rule_raises_nothing,
    raises_clears_and_acknowledgements_wait_for_the_notifier_and_other_events_do_not,
    another_tenant_cannot_read_acknowledge_or_clear_an_alert
);
