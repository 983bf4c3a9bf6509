//! Alert evaluation end to end on both databases: a device's daily threshold is a rule the moment
//! it is saved; a crossing in the rollups raises one alert however often the round runs; the next
//! local day clears it; a silent device raises a no-data alert from the clock alone; archiving
//! the device removes its threshold rules and clears their alerts. The rules are kept between
//! rounds as `tds serve` keeps them, and every write to them is seen by the next round.

use chrono::{Duration, TimeZone, Utc};
use tds_domain::alerts::{Period, Rule, RuleKind, Severity, Target};
use tds_domain::limits::Amount;
use tds_domain::{Name, Unit};
use tds_jobs::alerts::RuleCache;
use tds_store::Store;
use tds_store::alert_rules::NewAlertRule;
use tds_store::alerts::AlertStatus;
use tds_store::readings::NewReading;
use tds_testkit::{conformance, fixtures};

/// A tenant-wide no-data rule: silent for `seconds`.
fn silence(severity: Severity, seconds: i64) -> NewAlertRule {
    let rule =
        Rule::new(severity, Target::Tenant, RuleKind::NoData(Period::new(seconds).unwrap()), None, None)
            .unwrap();
    NewAlertRule { name: Name::parse("name", "silence").unwrap(), rule, enabled: true, created_by: None }
}

async fn thresholds_and_silence_raise_once_and_clear(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let g = fixtures::gateway(&store, t.id, "aa:bb:cc:dd:ee:01", "GW1").await;
    let mut fields = fixtures::meter_fields("D01");
    fields.unit = Unit::parse("kWh").unwrap();
    fields.alarm_daily = Some(Amount::parse("alarm_daily", "10").unwrap());
    let d = store.devices().create(t.id, g.id, &fields, None).await.unwrap();
    let rules = store.alert_rules().list(t.id, None).await.unwrap();
    assert_eq!(rules.len(), 1, "the threshold is a rule");
    assert!(matches!(rules[0].rule.kind(), RuleKind::DailyConsumption(_)));

    // 2026-11-10 in São Paulo: 08:00 to 11:00 local, 4 kWh an hour: 12 kWh by 11:00.
    let at = |h: u32| Utc.with_ymd_and_hms(2026, 11, 10, h + 3, 0, 0).unwrap();
    let rows: Vec<NewReading> = (8..=11)
        .map(|h| NewReading {
            device_id: d.id,
            time: at(h),
            value: 100.0 + 4.0 * f64::from(h - 8),
            unit: "kWh".into(),
        })
        .collect();
    store.readings().insert(t.id, &rows).await.unwrap();
    tds_jobs::rollups::drain(&store).await.unwrap();

    let kept = RuleCache::default();
    let now = at(11) + Duration::minutes(1);
    let first = tds_jobs::alerts::round(&store, &kept, now).await.unwrap();
    assert_eq!((first.raised, first.cleared), (1, 0));
    for _ in 0..3 {
        assert_eq!(tds_jobs::alerts::round(&store, &kept, now).await.unwrap().raised, 0, "never twice");
    }
    let open = store.alerts().list(t.id, Some(AlertStatus::Active), None, 10).await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(
        (open[0].target, open[0].severity, open[0].value),
        (Target::Device(d.id), Severity::Warning, Some(12.0))
    );
    assert!(
        open[0].message.contains("12 kWh today") && open[0].message.contains("D01"),
        "{}",
        open[0].message
    );
    assert_eq!(store.alerts().count_active(t.id).await.unwrap(), 1);

    // The next local day starts at 0: cleared, with its history.
    let tomorrow = Utc.with_ymd_and_hms(2026, 11, 11, 4, 0, 0).unwrap();
    let next = tds_jobs::alerts::round(&store, &kept, tomorrow).await.unwrap();
    assert_eq!((next.raised, next.cleared), (0, 1));
    let history = store.alerts().history(t.id, open[0].id).await.unwrap();
    let kinds: Vec<_> = history.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["raised", "cleared"]);

    // A no-data rule over the tenant raises for the silent device on the clock alone.
    store.alert_rules().create(t.id, &silence(Severity::Critical, 3600)).await.unwrap();
    // (Last seen is when its readings were committed: now, on the machine's clock.)
    let quiet = tds_jobs::alerts::round(&store, &kept, Utc::now() + Duration::minutes(30)).await.unwrap();
    assert_eq!(quiet.raised, 0, "half an hour of silence is within the hour");
    let quiet = tds_jobs::alerts::round(&store, &kept, Utc::now() + Duration::hours(2)).await.unwrap();
    assert_eq!(quiet.raised, 1, "silent for two hours");
    let critical = store.alerts().list(t.id, Some(AlertStatus::Active), None, 10).await.unwrap();
    assert!(critical[0].message.contains("no reading for"), "{}", critical[0].message);

    // Another tenant sees none of it.
    let other = fixtures::tenant(&store, "Other").await;
    assert_eq!(store.alerts().count_active(other.id).await.unwrap(), 0);

    // Archiving the device removes its threshold rule.
    store.devices().archive(t.id, d.id).await.unwrap();
    let left = store.alert_rules().list(t.id, None).await.unwrap();
    assert!(left.iter().all(|r| !matches!(r.rule.kind(), RuleKind::DailyConsumption(_))), "{left:?}");
}

/// The rollup round's own evaluation: the devices it refreshed, and only those, have their
/// consumption rules evaluated at once (no wait for the periodic round), and the badge's count
/// by severity follows.
async fn a_rollup_round_evaluates_the_devices_it_refreshed(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let g = fixtures::gateway(&store, t.id, "aa:bb:cc:dd:ee:02", "GW2").await;
    let mut devices = Vec::new();
    for code in ["D01", "D02"] {
        let mut fields = fixtures::meter_fields(code);
        fields.unit = Unit::parse("kWh").unwrap();
        fields.alarm_daily = Some(Amount::parse("alarm_daily", "5").unwrap());
        devices.push(store.devices().create(t.id, g.id, &fields, None).await.unwrap());
    }
    let now = Utc::now();
    let times = fixtures::instants_today(t.timezone, now, Duration::minutes(30), 3);
    let rows = |d: tds_domain::DeviceId, step: f64| -> Vec<NewReading> {
        (0..3)
            .map(|i| NewReading {
                device_id: d,
                time: times[i],
                value: 100.0 + step * i as f64,
                unit: "kWh".into(),
            })
            .collect()
    };
    // D01 uses 8 kWh (over 5), D02 1 kWh; only D01 is refreshed in this round.
    store.readings().insert(t.id, &rows(devices[0].id, 4.0)).await.unwrap();
    let touched = store.rollups().staff_refresh_touched(100).await.unwrap();
    assert_eq!(touched, vec![(t.id, devices[0].id)]);
    store.readings().insert(t.id, &rows(devices[1].id, 0.5)).await.unwrap();
    let kept = RuleCache::default();
    let done = tds_jobs::alerts::touched(&store, &kept, &touched, now).await.unwrap();
    assert_eq!((done.raised, done.cleared), (1, 0));
    assert!(done.tenants.contains(&t.id));
    let active = store.alerts().active_counts(t.id).await.unwrap();
    assert_eq!((active.info, active.warning, active.critical), (0, 1, 0));
    // Evaluating the same devices again changes nothing; D02, below its threshold, stays quiet.
    let touched = store.rollups().staff_refresh_touched(100).await.unwrap();
    assert_eq!(touched, vec![(t.id, devices[1].id)]);
    let again =
        tds_jobs::alerts::touched(&store, &kept, &[(t.id, devices[0].id), (t.id, devices[1].id)], now)
            .await
            .unwrap();
    assert_eq!((again.raised, again.cleared), (0, 0));
    assert!(again.tenants.is_empty());
}

/// The rollup job during a backlog: the rounds' devices are gathered, not evaluated, and their
/// rules are evaluated together by the first round that finds no backlog; nothing refreshed is
/// left unevaluated.
async fn a_backlog_gathers_the_refreshed_devices_for_one_evaluation(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let g = fixtures::gateway(&store, t.id, "aa:bb:cc:dd:ee:03", "GW3").await;
    let now = Utc::now();
    let times = fixtures::instants_today(t.timezone, now, Duration::minutes(30), 3);
    let mut devices = Vec::new();
    for code in ["D01", "D02", "D03"] {
        let mut fields = fixtures::meter_fields(code);
        fields.unit = Unit::parse("kWh").unwrap();
        fields.alarm_daily = Some(Amount::parse("alarm_daily", "5").unwrap());
        let d = store.devices().create(t.id, g.id, &fields, None).await.unwrap();
        // 8 kWh in the last half hour, today: over the threshold.
        let rows: Vec<NewReading> = (0..3)
            .map(|i| NewReading {
                device_id: d.id,
                time: times[i],
                value: 100.0 + 4.0 * i as f64,
                unit: "kWh".into(),
            })
            .collect();
        store.readings().insert(t.id, &rows).await.unwrap();
        devices.push(d);
    }
    let active = || async { store.alerts().count_active(t.id).await.unwrap() };
    // Rounds of one device: three devices waiting is a backlog.
    let worker = tds_jobs::rollups::Worker::with_batch(None, std::sync::Arc::default(), 1);
    let first = worker.round(&store).await.unwrap();
    assert!(matches!(first, tds_jobs::Next::After(_)), "a full batch is a backlog: {first:?}");
    for _ in 0..2 {
        assert!(matches!(worker.round(&store).await.unwrap(), tds_jobs::Next::After(_)));
    }
    assert_eq!(active().await, 0, "a backlog's rounds evaluate nothing");
    // Caught up: the round that finds nothing evaluates what waits.
    assert!(matches!(worker.round(&store).await.unwrap(), tds_jobs::Next::Period));
    assert_eq!(active().await, 3, "every refreshed device evaluated");
    let open = store.alerts().list(t.id, Some(AlertStatus::Active), None, 10).await.unwrap();
    let mut targets: Vec<_> = open.iter().map(|a| a.target).collect();
    targets.sort_by_key(|t| format!("{t:?}"));
    let mut expected: Vec<_> = devices.iter().map(|d| Target::Device(d.id)).collect();
    expected.sort_by_key(|t| format!("{t:?}"));
    assert_eq!(targets, expected);
}

/// The rules kept between rounds are the rules as stored after every kind of write to them,
/// through the store's own calls (a device's thresholds, the rule editor's), and one tenant's
/// writes never change what is kept of another's.
async fn kept_rules_follow_every_write(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let other = fixtures::tenant(&store, "Other").await;
    let g = fixtures::gateway(&store, t.id, "aa:bb:cc:dd:ee:04", "GW4").await;
    let og = fixtures::gateway(&store, other.id, "aa:bb:cc:dd:ee:05", "GW5").await;
    let mut fields = fixtures::meter_fields("D01");
    fields.unit = Unit::parse("kWh").unwrap();
    fields.alarm_daily = Some(Amount::parse("alarm_daily", "10").unwrap());
    let d = store.devices().create(t.id, g.id, &fields, None).await.unwrap();
    store.devices().create(other.id, og.id, &fields, None).await.unwrap();
    let kept = RuleCache::default();
    let check = |what: &'static str| {
        let (store, kept) = (&store, &kept);
        async move {
            let fresh = |tenant| async move { store.alert_rules().enabled(tenant).await.unwrap() };
            let all = kept.enabled(store, None).await.unwrap();
            for tenant in [t.id, other.id] {
                let found =
                    all.iter().find(|(id, _)| *id == tenant).map(|(_, r)| r.to_vec()).unwrap_or_default();
                assert_eq!(found, fresh(tenant).await, "{what}: the kept rules of tenant {tenant:?}");
            }
            // Asked for one tenant (a rollup round's), the same.
            let only = std::collections::HashSet::from([t.id]);
            let one = kept.enabled(store, Some(&only)).await.unwrap();
            assert!(one.iter().all(|(id, _)| *id == t.id), "{what}: only the tenant asked for");
            let found = one.first().map(|(_, r)| r.to_vec()).unwrap_or_default();
            assert_eq!(found, fresh(t.id).await, "{what}");
        }
    };
    check("first read").await;
    fields.alarm_daily = Some(Amount::parse("alarm_daily", "12").unwrap());
    fields.alarm_monthly = Some(Amount::parse("alarm_monthly", "300").unwrap());
    store.devices().update(t.id, d.id, &fields).await.unwrap();
    check("thresholds changed and added").await;
    let made = store.alert_rules().create(t.id, &silence(Severity::Critical, 3600)).await.unwrap();
    check("rule created").await;
    let longer = silence(Severity::Info, 7200);
    let fields_of = tds_store::alert_rules::AlertRuleFields { name: longer.name, rule: longer.rule };
    store.alert_rules().update(t.id, made.id, &fields_of, None).await.unwrap();
    check("rule changed").await;
    store.alert_rules().set_enabled(t.id, made.id, false, None).await.unwrap();
    check("rule disabled").await;
    store.alert_rules().set_enabled(t.id, made.id, true, None).await.unwrap();
    check("rule enabled").await;
    store.alert_rules().delete(t.id, made.id, None).await.unwrap();
    check("rule deleted").await;
    store.devices().archive(t.id, d.id).await.unwrap();
    check("device archived").await;
}

conformance!(
    thresholds_and_silence_raise_once_and_clear,
    a_rollup_round_evaluates_the_devices_it_refreshed,
    a_backlog_gathers_the_refreshed_devices_for_one_evaluation,
    kept_rules_follow_every_write
);
