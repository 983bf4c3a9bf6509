//! Alert rules: stored and read back whole, disabled, changed and deleted with their open alerts
//! cleared; a device's thresholds kept in step as rules; tenant isolation.

use crate::alerts::{daily, raise, rule};
use chrono::Utc;
use tds_domain::alerts::{ConsumptionLimit, GaugeBand, HoldTime, Hysteresis, NightFlow, Period};
use tds_domain::limits::Amount;
use tds_domain::{Medium, Name, Role, Rule, RuleKind, Severity, Target};
use tds_store::alert_rules::{AlertRuleFields, NewAlertRule, RuleSource};
use tds_store::alerts::{AlertEventKind, AlertStatus};
use tds_store::{Store, StoreError};
use tds_testkit::{conformance, fixtures};

fn name(s: &str) -> Name {
    Name::parse("name", s).unwrap()
}

fn amount(v: f64) -> Amount {
    Amount::new("threshold", v).unwrap()
}

async fn a_rule_is_stored_whole_and_listed_by_target(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let admin = fixtures::member(&store, t.id, "admin@acme.com", Role::Admin).await;
    let gw = fixtures::gateway(&store, t.id, "aa:00:00:00:00:01", "GW1").await;
    let d = fixtures::meter(&store, t.id, &gw, "D01").await;
    let band = RuleKind::GaugeBand(GaugeBand::new(Some(2.0), Some(6.0)).unwrap());
    let checked = Rule::new(
        Severity::Critical,
        Target::Device(d.id),
        band,
        Some(Hysteresis::new(0.5).unwrap()),
        Some(HoldTime::new(300).unwrap()),
    )
    .unwrap();
    let rules = store.alert_rules();
    let created = rules
        .create(
            t.id,
            &NewAlertRule {
                name: name("Pressure"),
                rule: checked,
                enabled: true,
                created_by: Some(admin.id),
            },
        )
        .await
        .unwrap();
    assert_eq!(created.rule, checked, "severity, target, kind, hysteresis and hold time round-trip");
    assert_eq!(
        (created.source, created.enabled, created.created_by),
        (RuleSource::User, true, Some(admin.id))
    );
    assert_eq!(rules.get(t.id, created.id).await.unwrap(), created);

    let night = Rule::new(
        Severity::Warning,
        Target::Medium(Medium::Water),
        RuleKind::NightFlow(NightFlow::new(0.05, 3).unwrap()),
        None,
        None,
    )
    .unwrap();
    let leak = rules
        .create(t.id, &NewAlertRule { name: name("Leak"), rule: night, enabled: true, created_by: None })
        .await
        .unwrap();
    assert_eq!(leak.rule.target(), Target::Medium(Medium::Water));
    let gateway_rule = rule(
        &store,
        t.id,
        "Offline",
        Target::Gateway(gw.id),
        RuleKind::GatewayOffline(Period::new(600).unwrap()),
    )
    .await;

    let names =
        |list: Vec<tds_store::alert_rules::AlertRule>| list.into_iter().map(|r| r.name).collect::<Vec<_>>();
    assert_eq!(names(rules.list(t.id, None).await.unwrap()), ["Leak", "Offline", "Pressure"]);
    assert_eq!(names(rules.list(t.id, Some(Target::Device(d.id))).await.unwrap()), ["Pressure"]);
    assert_eq!(names(rules.list(t.id, Some(Target::Medium(Medium::Water))).await.unwrap()), ["Leak"]);
    assert!(rules.list(t.id, Some(Target::Medium(Medium::Gas))).await.unwrap().is_empty());
    assert_eq!(rules.list(t.id, Some(Target::Gateway(gw.id))).await.unwrap()[0].id, gateway_rule.id);
}

async fn a_rule_cannot_watch_another_tenants_device_or_gateway(store: Store) {
    let a = fixtures::tenant(&store, "Alpha").await;
    let b = fixtures::tenant(&store, "Beta").await;
    let gb = fixtures::gateway(&store, b.id, "bb:00:00:00:00:01", "GWB").await;
    let db = fixtures::meter(&store, b.id, &gb, "D01").await;
    for (target, kind) in [
        (Target::Device(db.id), daily(10.0)),
        (Target::Gateway(gb.id), RuleKind::GatewayOffline(Period::new(600).unwrap())),
    ] {
        let checked = Rule::new(Severity::Warning, target, kind, None, None).unwrap();
        let r = store
            .alert_rules()
            .create(
                a.id,
                &NewAlertRule { name: name("Sneaky"), rule: checked, enabled: true, created_by: None },
            )
            .await;
        assert!(matches!(r, Err(StoreError::Invalid(_))), "{target}: {r:?}");
    }
    assert!(store.alert_rules().list(a.id, None).await.unwrap().is_empty());
}

async fn deleting_a_rule_clears_its_open_alerts_and_keeps_their_history(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let user = fixtures::member(&store, t.id, "ops@acme.com", Role::Editor).await;
    let r = rule(&store, t.id, "Silent", Target::Tenant, RuleKind::NoData(Period::new(3600).unwrap())).await;
    let other =
        rule(&store, t.id, "Other", Target::Tenant, RuleKind::NoData(Period::new(7200).unwrap())).await;
    let alerts = store.alerts();
    let one = alerts.raise(t.id, &raise(r.id, Target::Tenant, 1.0)).await.unwrap().alert;
    let two = alerts.raise(t.id, &raise(r.id, Target::Medium(Medium::Gas), 1.0)).await.unwrap().alert;
    let kept = alerts.raise(t.id, &raise(other.id, Target::Tenant, 1.0)).await.unwrap().alert;
    alerts.acknowledge(t.id, two.id, Some(user.id), None, Utc::now()).await.unwrap();

    store.alert_rules().delete(t.id, r.id, Some(user.id)).await.unwrap();
    assert!(matches!(store.alert_rules().get(t.id, r.id).await, Err(StoreError::NotFound)));
    for id in [one.id, two.id] {
        let alert = alerts.get(t.id, id).await.unwrap();
        assert_eq!(alert.status(), AlertStatus::Cleared);
        assert_eq!((alert.rule_id, alert.rule_name.as_str()), (None, "Silent"), "kept, unlinked");
        let last = alerts.history(t.id, id).await.unwrap().pop().unwrap();
        assert_eq!(last.kind, AlertEventKind::Cleared);
        assert_eq!((last.user_id, last.comment.as_deref()), (Some(user.id), Some("rule deleted")));
        assert!(last.dispatched_at.is_some(), "a deleted rule notifies nobody");
    }
    assert_eq!(
        alerts.get(t.id, kept.id).await.unwrap().status(),
        AlertStatus::Active,
        "other rules' alerts stay"
    );
    assert_eq!(alerts.list(t.id, None, None, 50).await.unwrap().len(), 3);
    assert!(matches!(store.alert_rules().delete(t.id, r.id, None).await, Err(StoreError::NotFound)));
}

async fn a_disabled_rule_is_not_evaluated_and_its_alerts_are_cleared(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let other = fixtures::tenant(&store, "Other").await;
    let r = rule(&store, t.id, "Silent", Target::Tenant, RuleKind::NoData(Period::new(3600).unwrap())).await;
    let on =
        rule(&store, t.id, "Offline", Target::Tenant, RuleKind::GatewayOffline(Period::new(600).unwrap()))
            .await;
    let elsewhere = rule(
        &store,
        other.id,
        "Offline",
        Target::Tenant,
        RuleKind::GatewayOffline(Period::new(600).unwrap()),
    )
    .await;
    let alert = store.alerts().raise(t.id, &raise(r.id, Target::Tenant, 1.0)).await.unwrap().alert;
    let rules = store.alert_rules();
    rules.set_enabled(t.id, r.id, false, None).await.unwrap();
    assert!(!rules.get(t.id, r.id).await.unwrap().enabled);
    let ids =
        |list: Vec<tds_store::alert_rules::AlertRule>| list.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(ids(rules.enabled(t.id).await.unwrap()), [on.id]);
    assert_eq!(ids(rules.staff_enabled().await.unwrap()), [on.id, elsewhere.id]);
    let cleared = store.alerts().get(t.id, alert.id).await.unwrap();
    assert_eq!(cleared.status(), AlertStatus::Cleared);
    let last = store.alerts().history(t.id, alert.id).await.unwrap().pop().unwrap();
    assert_eq!(last.comment.as_deref(), Some("rule disabled"));
    assert_eq!(rules.list(t.id, None).await.unwrap().len(), 2, "a disabled rule is still listed");
    rules.set_enabled(t.id, r.id, true, None).await.unwrap();
    assert_eq!(ids(rules.enabled(t.id).await.unwrap()), [r.id, on.id]);
}

async fn changing_what_a_rule_watches_clears_its_alerts_and_tuning_it_does_not(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let gw = fixtures::gateway(&store, t.id, "aa:00:00:00:00:01", "GW1").await;
    let d1 = fixtures::meter(&store, t.id, &gw, "D01").await;
    let d2 = fixtures::meter(&store, t.id, &gw, "D02").await;
    let r = rule(&store, t.id, "High use", Target::Device(d1.id), daily(100.0)).await;
    let alerts = store.alerts();
    let alert = alerts.raise(t.id, &raise(r.id, Target::Device(d1.id), 120.0)).await.unwrap().alert;
    let rules = store.alert_rules();

    let tuned = Rule::new(
        Severity::Critical,
        Target::Device(d1.id),
        daily(110.0),
        Some(Hysteresis::new(5.0).unwrap()),
        None,
    )
    .unwrap();
    let updated = rules
        .update(t.id, r.id, &AlertRuleFields { name: name("Very high use"), rule: tuned }, None)
        .await
        .unwrap();
    assert_eq!(updated.rule, tuned);
    let open = alerts.get(t.id, alert.id).await.unwrap();
    assert_eq!(open.status(), AlertStatus::Active, "new threshold: the next evaluation decides");
    assert_eq!(open.rule_name, "Very high use", "alerts show their rule's current name");

    let moved = Rule::new(Severity::Critical, Target::Device(d2.id), daily(110.0), None, None).unwrap();
    rules
        .update(t.id, r.id, &AlertRuleFields { name: name("Very high use"), rule: moved }, None)
        .await
        .unwrap();
    let closed = alerts.get(t.id, alert.id).await.unwrap();
    assert_eq!(closed.status(), AlertStatus::Cleared, "its device is no longer watched");
    let last = alerts.history(t.id, alert.id).await.unwrap().pop().unwrap();
    assert_eq!(last.comment.as_deref(), Some("rule changed"));

    let renamed_kind = Rule::new(
        Severity::Critical,
        Target::Device(d2.id),
        RuleKind::MonthlyConsumption(ConsumptionLimit::new(3000.0).unwrap()),
        None,
        None,
    )
    .unwrap();
    let again = alerts.raise(t.id, &raise(r.id, Target::Device(d2.id), 200.0)).await.unwrap().alert;
    rules
        .update(t.id, r.id, &AlertRuleFields { name: name("Monthly"), rule: renamed_kind }, None)
        .await
        .unwrap();
    assert_eq!(alerts.get(t.id, again.id).await.unwrap().status(), AlertStatus::Cleared, "another kind");
}

async fn a_devices_thresholds_are_rules_kept_in_step(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let gw = fixtures::gateway(&store, t.id, "aa:00:00:00:00:01", "GW1").await;
    let d = fixtures::meter(&store, t.id, &gw, "D01").await;
    let rules = store.alert_rules();

    let made = rules.sync_device_thresholds(t.id, d.id, Some(amount(100.0)), None).await.unwrap();
    assert_eq!(made.len(), 1);
    let daily_rule = &made[0];
    assert_eq!(daily_rule.source, RuleSource::DeviceAlarm);
    assert_eq!(
        daily_rule.rule,
        Rule::device_alarm(d.id, tds_domain::alerts::ConsumptionPeriod::Day, amount(100.0)).unwrap()
    );
    assert_eq!(daily_rule.rule.severity(), Severity::Warning);

    let again = rules.sync_device_thresholds(t.id, d.id, Some(amount(100.0)), None).await.unwrap();
    assert_eq!(again, made, "the same thresholds change nothing, not even updated_at");
    assert_eq!(rules.list(t.id, None).await.unwrap().len(), 1);

    let both =
        rules.sync_device_thresholds(t.id, d.id, Some(amount(150.0)), Some(amount(3000.0))).await.unwrap();
    assert_eq!(both.len(), 2);
    assert_eq!(both[0].id, daily_rule.id, "a changed threshold keeps its rule");
    assert_eq!(*both[0].rule.kind(), daily(150.0));
    assert_eq!(*both[1].rule.kind(), RuleKind::MonthlyConsumption(ConsumptionLimit::new(3000.0).unwrap()));
    let monthly = both[1].clone();

    // Not editable or deletable as a rule; it can be muted.
    let edit = rules
        .update(t.id, monthly.id, &AlertRuleFields { name: name("Mine"), rule: monthly.rule }, None)
        .await;
    assert!(matches!(edit, Err(StoreError::Conflict(_))), "{edit:?}");
    assert!(matches!(rules.delete(t.id, monthly.id, None).await, Err(StoreError::Conflict(_))));
    rules.set_enabled(t.id, monthly.id, false, None).await.unwrap();
    let kept =
        rules.sync_device_thresholds(t.id, d.id, Some(amount(150.0)), Some(amount(3500.0))).await.unwrap();
    assert!(!kept[1].enabled, "a muted threshold stays muted when the value changes");
    rules.set_enabled(t.id, monthly.id, true, None).await.unwrap();

    let alert =
        store.alerts().raise(t.id, &raise(monthly.id, Target::Device(d.id), 3600.0)).await.unwrap().alert;
    // Unset, and 0 (which would alert for ever), both remove the rule.
    let none = rules.sync_device_thresholds(t.id, d.id, None, Some(amount(0.0))).await.unwrap();
    assert!(none.is_empty());
    assert!(rules.list(t.id, None).await.unwrap().is_empty());
    let cleared = store.alerts().get(t.id, alert.id).await.unwrap();
    assert_eq!(cleared.status(), AlertStatus::Cleared);
    assert_eq!(cleared.rule_id, None);
    assert_eq!(
        store.alerts().history(t.id, alert.id).await.unwrap().pop().unwrap().comment.as_deref(),
        Some("device threshold removed")
    );
    assert!(rules.sync_device_thresholds(t.id, d.id, None, None).await.unwrap().is_empty(), "idempotent");

    // Each device has its own.
    let d2 = fixtures::meter(&store, t.id, &gw, "D02").await;
    rules.sync_device_thresholds(t.id, d.id, Some(amount(1.0)), None).await.unwrap();
    rules.sync_device_thresholds(t.id, d2.id, Some(amount(2.0)), None).await.unwrap();
    assert_eq!(rules.list(t.id, Some(Target::Device(d2.id))).await.unwrap().len(), 1);
    assert_eq!(rules.list(t.id, None).await.unwrap().len(), 2);
}

async fn another_tenant_cannot_read_change_or_delete_a_rule(store: Store) {
    let a = fixtures::tenant(&store, "Alpha").await;
    let b = fixtures::tenant(&store, "Beta").await;
    let gw = fixtures::gateway(&store, a.id, "aa:00:00:00:00:01", "GW1").await;
    let d = fixtures::meter(&store, a.id, &gw, "D01").await;
    let r = rule(&store, a.id, "High use", Target::Device(d.id), daily(100.0)).await;
    let rules = store.alert_rules();
    let not_found = |what: &str, r: Result<(), StoreError>| {
        assert!(matches!(r, Err(StoreError::NotFound)), "{what}: expected NotFound, got {r:?}");
    };
    not_found("get", rules.get(b.id, r.id).await.map(|_| ()));
    let tenant_wide = Rule::new(Severity::Info, Target::Tenant, daily(1.0), None, None).unwrap();
    not_found(
        "update",
        rules
            .update(b.id, r.id, &AlertRuleFields { name: name("Mine"), rule: tenant_wide }, None)
            .await
            .map(|_| ()),
    );
    not_found("disable", rules.set_enabled(b.id, r.id, false, None).await);
    not_found("delete", rules.delete(b.id, r.id, None).await);
    not_found(
        "thresholds",
        rules.sync_device_thresholds(b.id, d.id, Some(amount(5.0)), None).await.map(|_| ()),
    );
    assert!(rules.list(b.id, None).await.unwrap().is_empty());
    assert!(rules.enabled(b.id).await.unwrap().is_empty());
    assert_eq!(rules.get(a.id, r.id).await.unwrap(), r, "A's rule is unchanged");
}

/// The version the alert evaluation keeps rules by: every write to a tenant's rules moves it,
/// a write that changes nothing (the same thresholds saved again) or is refused does not, and
/// another tenant's never moves.
async fn every_rule_write_moves_its_tenants_version_and_no_other(store: Store) {
    let a = fixtures::tenant(&store, "Alpha").await;
    let b = fixtures::tenant(&store, "Beta").await;
    let gw = fixtures::gateway(&store, a.id, "aa:00:00:00:00:01", "GW1").await;
    let d = fixtures::meter(&store, a.id, &gw, "D01").await;
    let rules = store.alert_rules();
    let versions = || async {
        let all = store.alert_rules().staff_versions().await.unwrap();
        let of = |t| all.iter().find(|(id, _)| *id == t).map(|(_, v)| *v).unwrap();
        (of(a.id), of(b.id))
    };
    let (mut before, b_version) = versions().await;
    macro_rules! moved {
        ($what:expr, $now:expr) => {{
            let (now, other): (i64, i64) = $now;
            assert!(now > before, "{}: the version stayed at {before}", $what);
            assert_eq!(other, b_version, "{}: another tenant's version moved", $what);
            before = now;
        }};
    }

    let r = rule(&store, a.id, "High use", Target::Device(d.id), daily(100.0)).await;
    moved!("create", versions().await);
    let tenant_wide = Rule::new(Severity::Info, Target::Tenant, daily(1.0), None, None).unwrap();
    rules
        .update(a.id, r.id, &AlertRuleFields { name: name("Any use"), rule: tenant_wide }, None)
        .await
        .unwrap();
    moved!("update", versions().await);
    rules.set_enabled(a.id, r.id, false, None).await.unwrap();
    moved!("disable", versions().await);
    rules.set_enabled(a.id, r.id, true, None).await.unwrap();
    moved!("enable", versions().await);
    rules.sync_device_thresholds(a.id, d.id, Some(amount(5.0)), None).await.unwrap();
    moved!("threshold set", versions().await);
    rules.sync_device_thresholds(a.id, d.id, Some(amount(5.0)), None).await.unwrap();
    assert_eq!(versions().await.0, before, "the same threshold saved again changes nothing");
    rules.sync_device_thresholds(a.id, d.id, Some(amount(6.0)), None).await.unwrap();
    moved!("threshold changed", versions().await);
    rules.sync_device_thresholds(a.id, d.id, None, None).await.unwrap();
    moved!("threshold removed", versions().await);
    // Refused writes leave it: another tenant's rule, a device threshold edited as a rule.
    assert!(rules.delete(b.id, r.id, None).await.is_err());
    assert_eq!(versions().await, (before, b_version), "a refused delete");
    rules.delete(a.id, r.id, None).await.unwrap();
    moved!("delete", versions().await);
    assert_eq!(versions().await.0, before, "reading moves nothing");
}

conformance!(
    a_rule_is_stored_whole_and_listed_by_target,
    a_rule_cannot_watch_another_tenants_device_or_gateway,
    deleting_a_rule_clears_its_open_alerts_and_keeps_their_history,
    a_disabled_rule_is_not_evaluated_and_its_alerts_are_cleared,
    changing_what_a_rule_watches_clears_its_alerts_and_tuning_it_does_not,
    a_devices_thresholds_are_rules_kept_in_step,
    another_tenant_cannot_read_change_or_delete_a_rule,
    every_rule_write_moves_its_tenants_version_and_no_other
);
