//! Rollups as the store keeps them: readings go in through `ReadingStore::insert`, the rollup
//! worker's `staff_refresh_dirty` runs until nothing is left, and the hour, day and month rows
//! read back through `RollupStore::for_device` must be the hand-computed ones of the domain's
//! meter corpus (`crates/domain/tests/corpus/meter_series.toml`), on both databases.
//!
//! Every corpus case is stored three ways: all readings in one insert; one insert per reading in
//! arrival order, refreshed after each, so that every late reading is an incremental recompute;
//! and one insert per reading with a single refresh at the end, so that the marks of several
//! commits merge. The rows of the case's granularity are compared with the literals; the other
//! granularities with the domain's own rollup of the stored series, and days and months with the
//! sums of the hours and days they are made of. Then targeted scenarios: a late reading before
//! rolled-up ones (in the same hour, and
//! the day and month before), the to-do list emptying, tenant isolation and completeness.

use crate::meter_series::{Case, Expected, Reading, parse};
use chrono::{DateTime, Utc};
use tds_domain::buckets::{bucket_len_seconds, bucket_start, expected_readings, next_bucket_start};
use tds_domain::consumption::Meter;
use tds_domain::limits::{Amount, ScaleFactor};
use tds_domain::rollup::{Rollup, rollup};
use tds_domain::{Bucket, DeviceId, DeviceType, MeasurementKind, Name, TenantId, TimeZone};
use tds_store::Store;
use tds_store::devices::{Device, DeviceFields};
use tds_store::gateways::Gateway;
use tds_store::readings::NewReading;
use tds_store::rollups::RollupRow;
use tds_store::tenants::{NewTenant, Tenant, TenantLimits};
use tds_testkit::{conformance, fixtures};

const CORPUS: &str = include_str!("../../../domain/tests/corpus/meter_series.toml");

/// The reporting interval of every gateway here (the default), for `expected`.
const INTERVAL_S: i64 = 300;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}")).with_timezone(&Utc)
}

/// Far enough either side of every reading here.
fn all_time() -> (DateTime<Utc>, DateTime<Utc>) {
    (utc("2000-01-01T00:00:00Z"), utc("2100-01-01T00:00:00Z"))
}

/// Sums are plain f64 and the store adds hours up into days: equal within a relative 1e-9, as
/// the domain's corpus test compares.
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn close_opt(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => close(a, b),
        (None, None) => true,
        _ => false,
    }
}

async fn tenant_in(store: &Store, name: &str, zone: TimeZone) -> Tenant {
    let new = NewTenant { timezone: zone, ..NewTenant::named(Name::parse("name", name).unwrap()) };
    store.tenants().staff_create(&new).await.unwrap()
}

/// A device metering like the case: its kind, medium, unit, scale factor and rollover value.
async fn device_like(store: &Store, tenant: TenantId, gateway: &Gateway, code: &str, case: &Case) -> Device {
    let fields = DeviceFields {
        device_type: if case.kind == MeasurementKind::Gauge { DeviceType::Sensor } else { DeviceType::Meter },
        medium: case.medium,
        kind: case.kind,
        unit: case.unit.clone(),
        scale_factor: ScaleFactor::new(case.scale).unwrap(),
        rollover_value: case.rollover.map(|r| Amount::new("rollover value", r).unwrap()),
        ..fixtures::meter_fields(code)
    };
    let device = store.devices().create(tenant, gateway.id, &fields, None).await.unwrap();
    assert_eq!(
        (device.kind, device.scale_factor, device.rollover_value),
        (case.kind, case.scale, case.rollover)
    );
    device
}

fn new_reading(device: &Device, (time, value): Reading) -> NewReading {
    NewReading { device_id: device.id, time, value, unit: device.unit.clone().into_cow() }
}

/// Runs the rollup worker's step until it has nothing left to do.
async fn refresh(store: &Store) {
    for _ in 0..100 {
        if store.rollups().staff_refresh_dirty(2).await.unwrap() == 0 {
            assert_eq!(store.rollups().staff_pending().await.unwrap(), 0);
            return;
        }
    }
    panic!("staff_refresh_dirty never reached 0");
}

async fn rows(store: &Store, tenant: TenantId, device: DeviceId, bucket: Bucket) -> Vec<RollupRow> {
    let (from, to) = all_time();
    store.rollups().for_device(tenant, device, bucket, from, to).await.unwrap()
}

/// (start, consumption) of each row, for short assertions.
fn consumption_by_start(rows: &[RollupRow]) -> Vec<(DateTime<Utc>, Option<f64>)> {
    rows.iter().map(|r| (r.start, r.consumption)).collect()
}

#[derive(Debug, Clone, Copy)]
enum Arrival {
    /// The baseline and all readings in one insert, then refreshed.
    AllAtOnce,
    /// One insert per reading in arrival order, refreshed after each.
    OneByOne,
    /// One insert per reading in arrival order, refreshed once at the end.
    OneByOneRefreshedOnce,
}

/// Stores the case's arrivals on a new device of a new tenant in the case's zone.
async fn store_case(store: &Store, index: usize, case: &Case, arrival: Arrival) -> (TenantId, DeviceId) {
    let tenant = tenant_in(store, &format!("Corpus {index}"), case.zone).await;
    let mac = format!("aa:bb:cc:00:00:{index:02x}");
    let gateway = fixtures::gateway(store, tenant.id, &mac, &format!("GW{index}")).await;
    let device = device_like(store, tenant.id, &gateway, "D01", case).await;
    let arrivals: Vec<NewReading> = case.arrivals().into_iter().map(|r| new_reading(&device, r)).collect();
    match arrival {
        Arrival::AllAtOnce => {
            store.readings().insert(tenant.id, &arrivals).await.unwrap();
            refresh(store).await;
        }
        Arrival::OneByOne => {
            for r in &arrivals {
                store.readings().insert(tenant.id, std::slice::from_ref(r)).await.unwrap();
                refresh(store).await;
            }
        }
        Arrival::OneByOneRefreshedOnce => {
            for r in &arrivals {
                store.readings().insert(tenant.id, std::slice::from_ref(r)).await.unwrap();
            }
            assert_eq!(store.rollups().staff_pending().await.unwrap(), 1, "{}", case.name);
            refresh(store).await;
        }
    }
    (tenant.id, device.id)
}

fn row_matches(got: &RollupRow, want: &Expected) -> bool {
    got.start == want.start
        && close_opt(got.consumption, want.consumption)
        && close_opt(got.min, want.min)
        && close_opt(got.avg, want.avg)
        && close_opt(got.max, want.max)
        && (got.count, got.resets) == (want.count, want.resets)
}

fn same_as_domain(got: &RollupRow, want: &Rollup) -> bool {
    got.start == want.start
        && close_opt(got.consumption, want.consumption)
        && close_opt(got.min, want.min)
        && close_opt(got.avg, want.avg)
        && close_opt(got.max, want.max)
        && (got.count, got.resets) == (want.count, want.resets)
}

/// Each coarse row is its fine rows added up, and every fine row is in a coarse one.
fn assert_made_of(name: &str, zone: TimeZone, coarse: &[RollupRow], fine: &[RollupRow]) {
    let Some(first) = coarse.first() else {
        assert!(fine.is_empty(), "{name}: finer rows without coarser ones");
        return;
    };
    let bucket = first.bucket;
    let mut starts: Vec<_> = fine.iter().map(|f| bucket_start(zone, bucket, f.start)).collect();
    starts.dedup();
    assert_eq!(starts, coarse.iter().map(|c| c.start).collect::<Vec<_>>(), "{name}: {bucket} rows");
    for c in coarse {
        let end = next_bucket_start(zone, bucket, c.start);
        let parts: Vec<&RollupRow> = fine.iter().filter(|f| (c.start..end).contains(&f.start)).collect();
        let consumption = parts.iter().filter_map(|p| p.consumption).reduce(|a, b| a + b);
        let count: u32 = parts.iter().map(|p| p.count).sum();
        let weighted = parts.iter().map(|p| p.avg.map(|a| a * f64::from(p.count))).sum::<Option<f64>>();
        let min = parts.iter().filter_map(|p| p.min).reduce(f64::min);
        let max = parts.iter().filter_map(|p| p.max).reduce(f64::max);
        assert!(close_opt(c.consumption, consumption), "{name}: {bucket} {} consumption", c.start);
        assert!(close_opt(c.avg, weighted.map(|w| w / f64::from(count))), "{name}: {bucket} {} avg", c.start);
        assert_eq!((c.min, c.max), (min, max), "{name}: {bucket} {}", c.start);
        assert_eq!(c.count, count, "{name}: {bucket} {} count", c.start);
        assert_eq!(c.resets, parts.iter().map(|p| p.resets).sum::<u32>(), "{name}: {bucket} {}", c.start);
    }
}

/// Stores every corpus case the given way and checks all its rollups.
async fn corpus_is_stored_as_hand_computed(store: &Store, arrival: Arrival) {
    let cases = parse(CORPUS);
    assert_eq!(cases.len(), 27, "cases in meter_series.toml");
    for (index, case) in cases.iter().enumerate() {
        let name = format!("{} ({arrival:?})", case.name);
        let (tenant, device) = store_case(store, index, case, arrival).await;
        check_case(store, &name, case, tenant, device).await;
    }
}

/// The stored rows of a corpus case are its literals, the domain's rollup and each other's sums.
async fn check_case(store: &Store, name: &str, case: &Case, tenant: TenantId, device: DeviceId) {
    {
        let stored = [
            rows(store, tenant, device, Bucket::Hour).await,
            rows(store, tenant, device, Bucket::Day).await,
            rows(store, tenant, device, Bucket::Month).await,
        ];
        // The case's own granularity: the literals.
        let got = &stored[Bucket::ALL.iter().position(|b| *b == case.bucket).unwrap()];
        let want = case.expected_with_baseline_stored();
        assert_eq!(got.len(), want.len(), "{name}: {got:#?}");
        for (g, w) in got.iter().zip(&want) {
            assert!(row_matches(g, w), "{name}:\n got {g:#?}\nwant {w:#?}");
        }
        // Every granularity: what the domain computes from the same stored readings, with as many
        // readings expected as the gateway's interval promises in the bucket.
        let meter = Meter::new(case.kind, case.scale, case.rollover).unwrap();
        for (bucket, got) in Bucket::ALL.iter().zip(&stored) {
            let want = rollup(meter, None, &case.arrivals(), case.zone, *bucket);
            assert_eq!(got.len(), want.len(), "{name}: {bucket}: {got:#?}");
            for (g, w) in got.iter().zip(&want) {
                assert!(same_as_domain(g, w), "{name}: {bucket}:\n got {g:#?}\nwant {w:#?}");
                let len = bucket_len_seconds(case.zone, *bucket, g.start);
                assert_eq!(g.expected, expected_readings(len, INTERVAL_S), "{name}: {bucket} {}", g.start);
            }
        }
        // Days are their hours added up, months their days.
        assert_made_of(name, case.zone, &stored[1], &stored[0]);
        assert_made_of(name, case.zone, &stored[2], &stored[1]);
    }
}

/// Every case stored before any refresh, then one round for all of them: on PostgreSQL the
/// devices' reads share statements, and no device may get another's readings or rows.
async fn corpus_series_refreshed_together_in_one_round_roll_up_to_the_hand_computed_buckets(store: Store) {
    let cases = parse(CORPUS);
    let mut stored = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        let tenant = tenant_in(&store, &format!("Corpus {index}"), case.zone).await;
        let mac = format!("aa:bb:cc:00:00:{index:02x}");
        let gateway = fixtures::gateway(&store, tenant.id, &mac, &format!("GW{index}")).await;
        let device = device_like(&store, tenant.id, &gateway, "D01", case).await;
        let arrivals: Vec<NewReading> =
            case.arrivals().into_iter().map(|r| new_reading(&device, r)).collect();
        store.readings().insert(tenant.id, &arrivals).await.unwrap();
        stored.push((tenant.id, device.id));
    }
    assert_eq!(store.rollups().staff_pending().await.unwrap(), cases.len() as i64);
    assert_eq!(store.rollups().staff_refresh_dirty(1000).await.unwrap(), cases.len(), "one round");
    assert_eq!(store.rollups().staff_pending().await.unwrap(), 0);
    for (case, (tenant, device)) in cases.iter().zip(stored) {
        check_case(&store, &format!("{} (one round)", case.name), case, tenant, device).await;
    }
}

async fn corpus_series_stored_in_one_insert_roll_up_to_the_hand_computed_buckets(store: Store) {
    corpus_is_stored_as_hand_computed(&store, Arrival::AllAtOnce).await;
}

async fn corpus_series_stored_a_reading_at_a_time_roll_up_to_the_hand_computed_buckets(store: Store) {
    corpus_is_stored_as_hand_computed(&store, Arrival::OneByOne).await;
}

async fn corpus_series_refreshed_once_after_many_inserts_roll_up_to_the_hand_computed_buckets(store: Store) {
    corpus_is_stored_as_hand_computed(&store, Arrival::OneByOneRefreshedOnce).await;
}

/// A tenant in São Paulo with a gateway reporting every 300 s and one energy counter.
async fn counter_setup(store: &Store, name: &str, mac: &str) -> (TenantId, Device) {
    let tenant = tenant_in(store, name, TimeZone::parse("America/Sao_Paulo").unwrap()).await;
    let gateway = fixtures::gateway(store, tenant.id, mac, "GW1").await;
    let device = fixtures::meter(store, tenant.id, &gateway, "D01").await;
    (tenant.id, device)
}

async fn insert(store: &Store, tenant: TenantId, device: &Device, readings: &[(&str, f64)]) {
    let batch: Vec<_> = readings.iter().map(|&(t, v)| new_reading(device, (utc(t), v))).collect();
    let report = store.readings().insert(tenant, &batch).await.unwrap();
    assert_eq!(report.inserted, batch.len() as u64, "{report:?}");
}

async fn a_late_reading_moves_consumption_out_of_the_next_readings_hour(store: Store) {
    let (t, d) = counter_setup(&store, "Acme", "aa:bb:cc:dd:ee:01").await;
    insert(&store, t, &d, &[("2026-03-10T10:00:00-03:00", 100.0), ("2026-03-10T11:30:00-03:00", 110.0)])
        .await;
    refresh(&store).await;
    let (h10, h11) = (utc("2026-03-10T10:00:00-03:00"), utc("2026-03-10T11:00:00-03:00"));
    let hours = rows(&store, t, d.id, Bucket::Hour).await;
    // 100 is the first reading and closes nothing; 110 - 100 belongs to 11:30.
    assert_eq!(consumption_by_start(&hours), [(h10, Some(0.0)), (h11, Some(10.0))]);

    // 104 at 10:45 arrives late: it closes 10:00-10:45 (4) and shortens 110's interval (6).
    insert(&store, t, &d, &[("2026-03-10T10:45:00-03:00", 104.0)]).await;
    assert_eq!(store.rollups().staff_pending().await.unwrap(), 1);
    refresh(&store).await;
    let hours = rows(&store, t, d.id, Bucket::Hour).await;
    assert_eq!(consumption_by_start(&hours), [(h10, Some(4.0)), (h11, Some(6.0))]);
    assert_eq!(
        hours.iter().map(|h| (h.count, h.min, h.max)).collect::<Vec<_>>(),
        [(2, Some(100.0), Some(104.0)), (1, Some(110.0), Some(110.0))]
    );
    // The day and month did not change their total, only their count.
    let day = rows(&store, t, d.id, Bucket::Day).await;
    assert_eq!(consumption_by_start(&day), [(utc("2026-03-10T00:00:00-03:00"), Some(10.0))]);
    assert_eq!(day[0].count, 3);
    let month = rows(&store, t, d.id, Bucket::Month).await;
    assert_eq!(consumption_by_start(&month), [(utc("2026-03-01T00:00:00-03:00"), Some(10.0))]);
    assert_eq!(month[0].count, 3);
}

async fn a_late_reading_before_midnight_moves_consumption_out_of_the_next_days_and_months_total(
    store: Store,
) {
    let (t, d) = counter_setup(&store, "Acme", "aa:bb:cc:dd:ee:01").await;
    insert(&store, t, &d, &[("2026-03-31T20:00:00-03:00", 100.0), ("2026-04-01T02:00:00-03:00", 130.0)])
        .await;
    refresh(&store).await;
    let (mar31, apr1) = (utc("2026-03-31T00:00:00-03:00"), utc("2026-04-01T00:00:00-03:00"));
    let (march, april) = (utc("2026-03-01T00:00:00-03:00"), apr1);
    // 130 - 100 belongs to 02:00 on April 1st.
    assert_eq!(
        consumption_by_start(&rows(&store, t, d.id, Bucket::Day).await),
        [(mar31, Some(0.0)), (apr1, Some(30.0))]
    );
    assert_eq!(
        consumption_by_start(&rows(&store, t, d.id, Bucket::Month).await),
        [(march, Some(0.0)), (april, Some(30.0))]
    );

    // 120 at 23:00 on March 31st arrives late: the mark spans only March 31st, yet it shortens
    // the interval of a reading of the next day and month. 120 - 100 and 130 - 120.
    insert(&store, t, &d, &[("2026-03-31T23:00:00-03:00", 120.0)]).await;
    refresh(&store).await;
    assert_eq!(
        consumption_by_start(&rows(&store, t, d.id, Bucket::Hour).await),
        [
            (utc("2026-03-31T20:00:00-03:00"), Some(0.0)),
            (utc("2026-03-31T23:00:00-03:00"), Some(20.0)),
            (utc("2026-04-01T02:00:00-03:00"), Some(10.0)),
        ]
    );
    assert_eq!(
        consumption_by_start(&rows(&store, t, d.id, Bucket::Day).await),
        [(mar31, Some(20.0)), (apr1, Some(10.0))]
    );
    assert_eq!(
        consumption_by_start(&rows(&store, t, d.id, Bucket::Month).await),
        [(march, Some(20.0)), (april, Some(10.0))]
    );
}

async fn after_a_refresh_nothing_is_pending(store: Store) {
    let (a, da) = counter_setup(&store, "Acme", "aa:bb:cc:dd:ee:01").await;
    let (b, db) = counter_setup(&store, "Beta", "aa:bb:cc:dd:ee:02").await;
    let gb = store.gateways().get(b, db.gateway_id).await.unwrap();
    let db2 = fixtures::meter(&store, b, &gb, "D02").await;
    assert_eq!(store.rollups().staff_pending().await.unwrap(), 0);
    assert_eq!(store.rollups().staff_refresh_dirty(10).await.unwrap(), 0, "nothing to do");
    let batch = [("2026-03-10T10:00:00-03:00", 1.0), ("2026-03-10T10:05:00-03:00", 2.0)];
    insert(&store, a, &da, &batch).await;
    insert(&store, b, &db, &batch).await;
    insert(&store, b, &db2, &batch).await;
    assert_eq!(store.rollups().staff_pending().await.unwrap(), 3, "one mark per device");
    // A batch at a time, oldest marks first.
    assert_eq!(store.rollups().staff_refresh_dirty(2).await.unwrap(), 2);
    assert_eq!(store.rollups().staff_pending().await.unwrap(), 1);
    assert_eq!(store.rollups().staff_refresh_dirty(2).await.unwrap(), 1);
    assert_eq!(store.rollups().staff_pending().await.unwrap(), 0);
    assert_eq!(store.rollups().staff_refresh_dirty(2).await.unwrap(), 0);
    for (t, d) in [(a, &da), (b, &db), (b, &db2)] {
        let hours = rows(&store, t, d.id, Bucket::Hour).await;
        assert_eq!(consumption_by_start(&hours), [(utc("2026-03-10T10:00:00-03:00"), Some(1.0))]);
    }
    // A resent batch stores nothing, and so marks nothing; nor does a conflicting value.
    let report = store.readings().insert(a, &[new_reading(&da, (utc(batch[0].0), 1.0))]).await.unwrap();
    assert_eq!(report.duplicates, 1);
    let report = store.readings().insert(a, &[new_reading(&da, (utc(batch[1].0), 9.0))]).await.unwrap();
    assert_eq!(report.conflicts.len(), 1);
    assert_eq!(store.rollups().staff_pending().await.unwrap(), 0);
}

async fn a_round_stops_taking_devices_at_its_row_budget(store: Store) {
    let (a, da) = counter_setup(&store, "Acme", "aa:bb:cc:dd:ee:01").await;
    let ga = store.gateways().get(a, da.gateway_id).await.unwrap();
    let da2 = fixtures::meter(&store, a, &ga, "D02").await;
    let batch = [("2026-03-10T10:00:00-03:00", 1.0), ("2026-03-10T11:05:00-03:00", 2.0)];
    insert(&store, a, &da, &batch).await;
    insert(&store, a, &da2, &batch).await;
    // Each device brings two hours, a day and a month: a budget of one row takes one device.
    assert_eq!(store.rollups().staff_refresh_round(10, 1).await.unwrap(), 1);
    assert_eq!(store.rollups().staff_pending().await.unwrap(), 1, "the other device stays marked");
    assert_eq!(store.rollups().staff_refresh_round(10, 1).await.unwrap(), 1);
    assert_eq!(store.rollups().staff_refresh_round(10, 1).await.unwrap(), 0);
    for d in [&da, &da2] {
        let hours = rows(&store, a, d.id, Bucket::Hour).await;
        assert_eq!(consumption_by_start(&hours)[1], (utc("2026-03-10T11:00:00-03:00"), Some(1.0)));
    }
}

/// Months of readings at once, as after an import or a long gap: more rows than one upsert
/// statement takes, all written and summed right.
async fn a_long_backlog_is_refreshed_in_several_statements(store: Store) {
    let (t, d) = counter_setup(&store, "Acme", "aa:bb:cc:dd:ee:01").await;
    let start = utc("2026-01-01T00:00:00-03:00");
    let hours = 24 * 120;
    let batch: Vec<_> = (0..=hours)
        .map(|h| new_reading(&d, (start + chrono::Duration::hours(h), 1000.0 + 2.5 * h as f64)))
        .collect();
    let report = store.readings().insert(t, &batch).await.unwrap();
    assert_eq!(report.inserted, batch.len() as u64);
    refresh(&store).await;
    let hour_rows = rows(&store, t, d.id, Bucket::Hour).await;
    assert_eq!(hour_rows.len(), hours as usize + 1);
    assert!(hour_rows[1..].iter().all(|h| h.consumption == Some(2.5) && h.count == 1));
    let days = rows(&store, t, d.id, Bucket::Day).await;
    assert_eq!(days.len(), 121);
    assert!(days[1..120].iter().all(|r| r.consumption == Some(60.0) && r.count == 24));
    let months = rows(&store, t, d.id, Bucket::Month).await;
    assert_eq!(
        consumption_by_start(&months),
        [
            (utc("2026-01-01T00:00:00-03:00"), Some(2.5 * (31.0 * 24.0 - 1.0))),
            (utc("2026-02-01T00:00:00-03:00"), Some(2.5 * 28.0 * 24.0)),
            (utc("2026-03-01T00:00:00-03:00"), Some(2.5 * 31.0 * 24.0)),
            (utc("2026-04-01T00:00:00-03:00"), Some(2.5 * 30.0 * 24.0)),
            (utc("2026-05-01T00:00:00-03:00"), Some(2.5 * 1.0)),
        ]
    );
}

async fn another_tenants_id_reads_none_of_a_devices_rollups(store: Store) {
    let (a, da) = counter_setup(&store, "Acme", "aa:bb:cc:dd:ee:01").await;
    let (b, db) = counter_setup(&store, "Beta", "aa:bb:cc:dd:ee:02").await;
    insert(&store, a, &da, &[("2026-03-10T10:00:00-03:00", 1.0), ("2026-03-10T11:00:00-03:00", 3.0)]).await;
    insert(&store, b, &db, &[("2026-03-10T10:00:00-03:00", 5.0), ("2026-03-10T11:00:00-03:00", 9.0)]).await;
    refresh(&store).await;
    for bucket in Bucket::ALL {
        assert!(!rows(&store, a, da.id, *bucket).await.is_empty(), "{bucket}");
        assert!(!rows(&store, b, db.id, *bucket).await.is_empty(), "{bucket}");
        assert_eq!(rows(&store, b, da.id, *bucket).await, [], "B reads A's device's {bucket} rows");
        assert_eq!(rows(&store, a, db.id, *bucket).await, [], "A reads B's device's {bucket} rows");
    }
    let day_a = rows(&store, a, da.id, Bucket::Day).await;
    assert_eq!((day_a[0].device_id, day_a[0].consumption), (da.id, Some(2.0)));
}

async fn completeness_is_readings_over_what_the_reporting_interval_promises(store: Store) {
    let (t, d) = counter_setup(&store, "Acme", "aa:bb:cc:dd:ee:01").await;
    let gateway = store.gateways().get(t, d.gateway_id).await.unwrap();
    assert_eq!(gateway.expected_interval_s, 300);
    // 10:00 to 10:55 every 5 minutes (12), then 11:00 to 11:25 (6).
    let start = utc("2026-03-10T10:00:00-03:00");
    let batch: Vec<_> = (0..18_i32)
        .map(|i| new_reading(&d, (start + chrono::Duration::minutes(5 * i64::from(i)), 100.0 + f64::from(i))))
        .collect();
    store.readings().insert(t, &batch).await.unwrap();
    refresh(&store).await;
    let hours = rows(&store, t, d.id, Bucket::Hour).await;
    let summary: Vec<_> = hours.iter().map(|h| (h.count, h.expected, h.completeness())).collect();
    assert_eq!(summary, [(12, 12, Some(1.0)), (6, 12, Some(0.5))]);
    let day = rows(&store, t, d.id, Bucket::Day).await;
    // A 24-hour day: 24 * 12 = 288 readings expected, 18 received.
    assert_eq!((day[0].count, day[0].expected, day[0].completeness()), (18, 288, Some(18.0 / 288.0)));
    let month = rows(&store, t, d.id, Bucket::Month).await;
    // March 2026 in São Paulo (no daylight saving since 2019): 31 * 288 = 8928.
    assert_eq!((month[0].count, month[0].expected), (18, 8928));

    // Days and months of a daylight-saving change expect what their length holds.
    let g2 = fixtures::gateway(&store, t, "aa:bb:cc:dd:ee:02", "GW2").await;
    let d2 = fixtures::meter(&store, t, &g2, "D02").await;
    insert(&store, t, &d2, &[("2018-11-04T12:00:00Z", 1.0), ("2019-02-16T12:00:00Z", 2.0)]).await;
    refresh(&store).await;
    let days: Vec<_> =
        rows(&store, t, d2.id, Bucket::Day).await.iter().map(|r| (r.start, r.expected)).collect();
    assert_eq!(
        days,
        [
            // 23 hours * 12
            (utc("2018-11-04T01:00:00-02:00"), 276),
            // 25 hours * 12
            (utc("2019-02-16T00:00:00-02:00"), 300),
        ]
    );
    let months: Vec<_> =
        rows(&store, t, d2.id, Bucket::Month).await.iter().map(|r| (r.start, r.expected)).collect();
    assert_eq!(
        months,
        [
            // (30 * 24 - 1) hours * 12
            (utc("2018-11-01T00:00:00-03:00"), 8628),
            // (28 * 24 + 1) hours * 12
            (utc("2019-02-01T00:00:00-02:00"), 8076),
        ]
    );
    let hours: Vec<_> = rows(&store, t, d2.id, Bucket::Hour).await.iter().map(|r| r.expected).collect();
    assert_eq!(hours, [12, 12]);
}

/// SPEC §2: a device's `last_seen` follows its readings' commits (set by the rollup refresh).
async fn a_refresh_moves_the_devices_last_seen_to_its_last_commit(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let g = fixtures::gateway(&store, t.id, "aa:bb:cc:dd:ee:01", "GW1").await;
    let d = fixtures::meter(&store, t.id, &g, "D01").await;
    assert_eq!(store.devices().get(t.id, d.id).await.unwrap().last_seen_at, None);
    let before = Utc::now() - chrono::Duration::seconds(1);
    let time = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().to_utc();
    store
        .readings()
        .insert(t.id, &[NewReading { device_id: d.id, time, value: 1.0, unit: "kWh".into() }])
        .await
        .unwrap();
    refresh(&store).await;
    let seen = store.devices().get(t.id, d.id).await.unwrap().last_seen_at.expect("seen");
    assert!(seen >= before && seen <= Utc::now(), "{seen}: the commit's time, not the reading's");
}

/// A round that cannot take every marked device takes those marked longest ago, even when later
/// commits moved their marks: under a steady load every device is in every commit, and rounds
/// that went by the latest commit's time took the same devices again and again.
async fn a_round_takes_the_devices_marked_longest_ago_first(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let g = fixtures::gateway(&store, t.id, "aa:bb:cc:dd:ee:01", "GW1").await;
    let a = fixtures::meter(&store, t.id, &g, "D01").await;
    let b = fixtures::meter(&store, t.id, &g, "D02").await;
    let at = |h: i64| utc("2026-03-01T00:00:00Z") + chrono::Duration::hours(h);
    let reading = |d: &Device, h: i64| NewReading {
        device_id: d.id,
        time: at(h),
        value: h as f64,
        unit: d.unit.clone().into_cow(),
    };
    store.readings().insert(t.id, &[reading(&a, 0), reading(&b, 0)]).await.unwrap();
    let first = store.rollups().staff_refresh_touched(1).await.unwrap();
    assert_eq!(first.len(), 1);
    let (taken, waiting) = if first[0].1 == a.id { (&a, &b) } else { (&b, &a) };
    // The device refreshed gets a new mark, then the one still waiting gets a later commit.
    store.readings().insert(t.id, &[reading(taken, 1)]).await.unwrap();
    store.readings().insert(t.id, &[reading(waiting, 1)]).await.unwrap();
    let second = store.rollups().staff_refresh_touched(1).await.unwrap();
    assert_eq!(second, vec![(t.id, waiting.id)], "the device marked first is refreshed first");
    let third = store.rollups().staff_refresh_touched(1).await.unwrap();
    assert_eq!(third, vec![(t.id, taken.id)]);
}

/// Stores `(device index, local time on 2026-03-10, value)` readings, a batch per tenant.
async fn store_each_tenants(
    store: &Store,
    tenants: [TenantId; 2],
    devices: &[(usize, Device)],
    readings: Vec<(usize, &str, f64)>,
) {
    for (which, tenant) in tenants.into_iter().enumerate() {
        let batch: Vec<_> = readings
            .iter()
            .filter(|(i, _, _)| devices[*i].0 == which)
            .map(|&(i, time, value)| {
                new_reading(&devices[i].1, (utc(&format!("2026-03-10T{time}:00-03:00")), value))
            })
            .collect();
        let report = store.readings().insert(tenant, &batch).await.unwrap();
        assert_eq!(report.inserted, batch.len() as u64);
    }
}

/// A round of many devices that go on from their stored hour with readings kept in memory (read
/// together, 500 at a time on SQLite) mixed with devices whose hour is recomputed (a late
/// reading) and devices refreshed for the first time: every device's rows are right, whichever
/// way its inputs were read. Two tenants' devices are interleaved by id.
async fn a_round_of_many_devices_read_together_rolls_each_up_right(store: Store) {
    let zone = TimeZone::parse("America/Sao_Paulo").unwrap();
    let limits = TenantLimits { max_devices: 1000, ..TenantLimits::default() };
    let mut tenants = Vec::new();
    for name in ["Acme", "Beta"] {
        let new =
            NewTenant { timezone: zone, limits, ..NewTenant::named(Name::parse("name", name).unwrap()) };
        tenants.push(store.tenants().staff_create(&new).await.unwrap());
    }
    // Eight meters a gateway (its limit): 69 gateways a tenant for its 550 meters.
    let mut gateways = [Vec::new(), Vec::new()];
    for (which, tenant) in tenants.iter().enumerate() {
        for g in 0..69 {
            let mac = format!("aa:bb:cc:{which:02x}:00:{g:02x}");
            gateways[which].push(fixtures::gateway(&store, tenant.id, &mac, &format!("GW{g}")).await);
        }
    }
    let mut devices: Vec<(usize, Device)> = Vec::new();
    for i in 0..1100 {
        let (which, g) = (i % 2, i / 16);
        let device =
            fixtures::meter(&store, tenants[which].id, &gateways[which][g], &format!("D{i:04}")).await;
        devices.push((which, device));
    }
    let ids = [tenants[0].id, tenants[1].id];
    let at = |s: &str| utc(&format!("2026-03-10T{s}:00-03:00"));
    // Devices 0..1000 get two readings and a first refresh; 1000.. none yet.
    let first = (0..1000).flat_map(|i| [(i, "10:00", 1000.0), (i, "11:05", 1000.0 + i as f64)]);
    store_each_tenants(&store, ids, &devices, first.collect()).await;
    assert_eq!(store.rollups().staff_refresh_dirty(2000).await.unwrap(), 1000);
    let before = store.rollup_feed_counts();
    // Then: most go on at 11:35 (+1); every tenth gets a late reading at 10:30 (its 11:00 hour
    // is recomputed); the last hundred get their first readings.
    let mut next = Vec::new();
    for i in 0..1000 {
        next.push(if i % 10 == 0 {
            (i, "10:30", 1000.0 + i as f64 / 2.0)
        } else {
            (i, "11:35", 1001.0 + i as f64)
        });
    }
    next.extend((1000..1100).flat_map(|i| [(i, "10:00", 1000.0), (i, "11:05", 1000.0 + i as f64)]));
    store_each_tenants(&store, ids, &devices, next).await;
    assert_eq!(store.rollups().staff_refresh_dirty(2000).await.unwrap(), 1100, "one round");
    assert_eq!(store.rollups().staff_pending().await.unwrap(), 0, "every mark cleared");
    let after = store.rollup_feed_counts();
    assert_eq!(after.fed - before.fed, 900, "those going on took their readings from memory");
    for (i, (which, d)) in devices.iter().enumerate() {
        let t = tenants[*which].id;
        let n = i as f64;
        let (hours, total) = match i {
            i if i >= 1000 || i % 10 != 0 => {
                let extra = if i < 1000 { 1.0 } else { 0.0 };
                (vec![(at("10:00"), Some(0.0)), (at("11:00"), Some(n + extra))], n + extra)
            }
            // The late reading closes half of 10:00-11:05 in the 10:00 hour.
            _ => (vec![(at("10:00"), Some(n / 2.0)), (at("11:00"), Some(n / 2.0))], n),
        };
        assert_eq!(consumption_by_start(&rows(&store, t, d.id, Bucket::Hour).await), hours, "device {i}");
        let days = rows(&store, t, d.id, Bucket::Day).await;
        assert_eq!(
            consumption_by_start(&days),
            [(utc("2026-03-10T00:00:00-03:00"), Some(total))],
            "device {i}"
        );
        let months = rows(&store, t, d.id, Bucket::Month).await;
        assert_eq!(
            consumption_by_start(&months),
            [(utc("2026-03-01T00:00:00-03:00"), Some(total))],
            "device {i}"
        );
    }
}

conformance!(
    a_round_of_many_devices_read_together_rolls_each_up_right,
    a_round_takes_the_devices_marked_longest_ago_first,
    a_refresh_moves_the_devices_last_seen_to_its_last_commit,
    corpus_series_stored_in_one_insert_roll_up_to_the_hand_computed_buckets,
    corpus_series_refreshed_together_in_one_round_roll_up_to_the_hand_computed_buckets,
    corpus_series_stored_a_reading_at_a_time_roll_up_to_the_hand_computed_buckets,
    corpus_series_refreshed_once_after_many_inserts_roll_up_to_the_hand_computed_buckets,
    a_late_reading_moves_consumption_out_of_the_next_readings_hour,
    a_late_reading_before_midnight_moves_consumption_out_of_the_next_days_and_months_total,
    after_a_refresh_nothing_is_pending,
    a_round_stops_taking_devices_at_its_row_budget,
    a_long_backlog_is_refreshed_in_several_statements,
    another_tenants_id_reads_none_of_a_devices_rollups,
    completeness_is_readings_over_what_the_reporting_interval_promises,
);
