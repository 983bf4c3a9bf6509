//! Incremental rollups (issue 20): a device whose new readings all come after the last one
//! rolled up has them added to its latest hour row instead of its hour being read again. The
//! rows must be exactly, bit for bit, those of a recomputation from all the readings; a late
//! reading must still recompute from the raw readings; an edited meter recomputes its hour; and
//! an overtaken refresh cannot write an older row over a newer one. On both databases.

use chrono::{DateTime, Duration, Utc};
use tds_domain::limits::ScaleFactor;
use tds_domain::{Bucket, DeviceType, MeasurementKind, Medium, Name, TimeZone, Unit};
use tds_store::Store;
use tds_store::devices::{Device, DeviceFields};
use tds_store::readings::NewReading;
use tds_store::rollups::RollupRow;
use tds_store::tenants::NewTenant;
use tds_testkit::{TestDb, fixtures, per_backend};

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

async fn refresh(store: &Store) {
    while store.rollups().staff_refresh_dirty(100).await.unwrap() > 0 {}
    assert_eq!(store.rollups().staff_pending().await.unwrap(), 0);
}

/// Every row of the device, all granularities, without the device id (two devices compared).
async fn all_rows(store: &Store, tenant: tds_domain::TenantId, device: &Device) -> Vec<RollupRow> {
    let (from, to) = (utc("2000-01-01T00:00:00Z"), utc("2100-01-01T00:00:00Z"));
    let mut out = Vec::new();
    for bucket in Bucket::ALL {
        for mut row in store.rollups().for_device(tenant, device.id, *bucket, from, to).await.unwrap() {
            row.device_id = tds_domain::DeviceId::new(0);
            out.push(row);
        }
    }
    out
}

fn fields(code: &str, kind: MeasurementKind, scale: f64) -> DeviceFields {
    let gauge = kind == MeasurementKind::Gauge;
    DeviceFields {
        device_type: if gauge { DeviceType::Sensor } else { DeviceType::Meter },
        medium: if gauge { Medium::Other } else { Medium::Energy },
        unit: Unit::parse(if gauge { "°C" } else { "kWh" }).unwrap(),
        kind,
        scale_factor: ScaleFactor::new(scale).unwrap(),
        ..fixtures::meter_fields(code)
    }
}

/// Values that do not add up exactly in binary (so that a different order of additions shows),
/// with a counter reset and, for interval devices, a negative report.
fn value(kind: MeasurementKind, i: u32) -> f64 {
    let wobble = f64::from((i * 7919) % 1000) / 10.3;
    match kind {
        MeasurementKind::Counter if i < 500 => 1000.0 + f64::from(i) * 0.37 + wobble / 1000.0,
        MeasurementKind::Counter => f64::from(i - 500) * 0.41,
        MeasurementKind::Interval if i == 321 => -2.5,
        MeasurementKind::Interval | MeasurementKind::Gauge => wobble,
    }
}

async fn a_device_reporting_in_order_gets_exactly_the_rows_of_a_recomputation(db: TestDb) {
    let store = db.store.clone();
    let new = NewTenant {
        timezone: TimeZone::parse("America/Sao_Paulo").unwrap(),
        ..NewTenant::named(Name::parse("name", "Acme").unwrap())
    };
    let t = store.tenants().staff_create(&new).await.unwrap().id;
    let g = fixtures::gateway(&store, t, "aa:bb:cc:dd:ee:01", "GW1").await;
    // ~30 hours every 137 s from 20:00 local: across midnight, hours and a month end.
    let start = utc("2026-03-31T20:00:00-03:00");
    let times: Vec<DateTime<Utc>> = (0..800).map(|i| start + Duration::seconds(137 * i)).collect();
    for (n, (kind, scale)) in
        [(MeasurementKind::Counter, 0.001), (MeasurementKind::Interval, 0.1), (MeasurementKind::Gauge, 0.5)]
            .into_iter()
            .enumerate()
    {
        let devices = store.devices();
        let live = devices.create(t, g.id, &fields(&format!("L{n}"), kind, scale), None).await.unwrap();
        let bulk = devices.create(t, g.id, &fields(&format!("B{n}"), kind, scale), None).await.unwrap();
        let reading = |d: &Device, i: usize| NewReading {
            device_id: d.id,
            time: times[i],
            value: value(kind, u32::try_from(i).unwrap()),
            unit: d.unit.clone().into_cow(),
        };
        // The live device: a few readings per commit, refreshed after each, as under load.
        for chunk in (0..times.len()).collect::<Vec<_>>().chunks(7) {
            let batch: Vec<_> = chunk.iter().map(|&i| reading(&live, i)).collect();
            store.readings().insert(t, &batch).await.unwrap();
            refresh(&store).await;
        }
        // The other: everything at once, one recomputation.
        let batch: Vec<_> = (0..times.len()).map(|i| reading(&bulk, i)).collect();
        store.readings().insert(t, &batch).await.unwrap();
        refresh(&store).await;
        let (got, want) = (all_rows(&store, t, &live).await, all_rows(&store, t, &bulk).await);
        assert_eq!(got.len(), want.len(), "{kind:?}");
        assert!(got.iter().filter(|r| r.bucket == Bucket::Hour).count() >= 30, "{kind:?}: {got:#?}");
        for (a, b) in got.iter().zip(&want) {
            // Bit for bit: `RollupRow`'s equality compares the floats exactly.
            assert_eq!(a, b, "{kind:?}");
        }
    }
}

/// A tenant with one gateway and one energy counter.
async fn one_meter(store: &Store) -> (tds_domain::TenantId, Device) {
    let t = fixtures::tenant(store, "Acme").await.id;
    let g = fixtures::gateway(store, t, "aa:bb:cc:dd:ee:01", "GW1").await;
    (t, fixtures::meter(store, t, &g, "D01").await)
}

/// `m` minutes after 13:00 UTC on a day of the tests below.
fn at(m: i64) -> DateTime<Utc> {
    utc("2026-03-10T13:00:00Z") + Duration::minutes(m)
}

/// Runs `sql` on the test database directly (to mark a stored row).
async fn execute(db: &TestDb, sql: &str) {
    match db.store.db() {
        tds_store::Db::Postgres(_) => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await.unwrap();
        }
        tds_store::Db::Sqlite(_) => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await.unwrap();
        }
    }
}

/// Sets a column of the device's stored hour rows directly (to mark or age them).
async fn set_hour_rows(db: &TestDb, device: &Device, assignment: &str) {
    let sql = format!(
        "UPDATE rollups SET {assignment} WHERE device_id = {} AND granularity = 'hour'",
        device.id.get()
    );
    execute(db, &sql).await;
}

async fn an_in_order_reading_goes_on_from_the_stored_hour_and_a_late_one_recomputes_it(db: TestDb) {
    let store = db.store.clone();
    let (t, d) = one_meter(&store).await;
    let put = |m: i64, v: f64| NewReading { device_id: d.id, time: at(m), value: v, unit: "kWh".into() };
    store
        .readings()
        .insert(t, &(0..6).map(|i: i32| put(5 * i64::from(i), 100.0 + f64::from(i))).collect::<Vec<_>>())
        .await
        .unwrap();
    refresh(&store).await;
    let rollups = store.rollups();
    let (from, to) = (at(0), at(60));
    let rows = || rollups.for_device(t, d.id, Bucket::Hour, from, to);
    let hour = |rows: Vec<RollupRow>| (rows[0].count, rows[0].consumption, rows[0].max);
    assert_eq!(hour(rows().await.unwrap()), (6, Some(5.0), Some(105.0)));
    // A mark no reading could make: only a refresh that goes on from the stored row keeps it,
    // one that reads the hour's readings again loses it. How the two paths are told apart here.
    set_hour_rows(&db, &d, "max_value = 999").await;
    // In order (after the last rolled-up reading): added to the stored hour.
    store.readings().insert(t, &[put(30, 106.0)]).await.unwrap();
    refresh(&store).await;
    assert_eq!(hour(rows().await.unwrap()), (7, Some(6.0), Some(999.0)), "went on from the stored hour");
    // Late (before the last rolled-up reading): the hour is recomputed from its readings.
    store.readings().insert(t, &[put(27, 105.5)]).await.unwrap();
    refresh(&store).await;
    assert_eq!(hour(rows().await.unwrap()), (8, Some(6.0), Some(106.0)), "recomputed from the raw readings");
    // And in order again from there.
    store.readings().insert(t, &[put(35, 107.0)]).await.unwrap();
    refresh(&store).await;
    assert_eq!(hour(rows().await.unwrap()), (9, Some(7.0), Some(107.0)));
    let day = store.rollups().for_device(t, d.id, Bucket::Day, at(-24 * 60), at(24 * 60)).await.unwrap();
    assert_eq!((day[0].count, day[0].consumption), (9, Some(7.0)), "the day is its hours");
}

/// A refresh overtaken by another (two refreshers at once) must not write its older state over
/// the newer one: a row counting fewer readings than the stored one is not written.
async fn a_row_counting_fewer_readings_does_not_replace_the_stored_one(db: TestDb) {
    let store = db.store.clone();
    let (t, d) = one_meter(&store).await;
    let put = |m: i64, v: f64| NewReading { device_id: d.id, time: at(m), value: v, unit: "kWh".into() };
    store.readings().insert(t, &[put(0, 100.0), put(10, 110.0)]).await.unwrap();
    refresh(&store).await;
    // As if a faster refresh had already stored the hour with more readings than this one sees.
    set_hour_rows(&db, &d, "reading_count = 50").await;
    store.readings().insert(t, &[put(5, 105.0)]).await.unwrap();
    refresh(&store).await;
    let hour = store.rollups().for_device(t, d.id, Bucket::Hour, at(0), at(60)).await.unwrap();
    assert_eq!((hour[0].count, hour[0].min), (50, Some(100.0)), "the stored row stands");
    assert_eq!(store.rollups().staff_pending().await.unwrap(), 0);
}

/// A device edited to another scale factor has its current hour recomputed with it, not the
/// new readings added to a row made with the old one.
async fn an_edited_meter_recomputes_its_current_hour(db: TestDb) {
    let store = db.store.clone();
    let (t, d) = one_meter(&store).await;
    let put = |m: i64, v: f64| NewReading { device_id: d.id, time: at(m), value: v, unit: "kWh".into() };
    store.readings().insert(t, &[put(0, 100.0), put(10, 110.0)]).await.unwrap();
    refresh(&store).await;
    let mut fields = fixtures::meter_fields("D01");
    fields.scale_factor = ScaleFactor::new(2.0).unwrap();
    store.devices().update(t, d.id, &fields).await.unwrap();
    store.readings().insert(t, &[put(20, 120.0)]).await.unwrap();
    refresh(&store).await;
    let hour = store.rollups().for_device(t, d.id, Bucket::Hour, at(0), at(60)).await.unwrap();
    // (110 - 100) * 2 + (120 - 110) * 2, not 10 + 20.
    assert_eq!((hour[0].count, hour[0].consumption, hour[0].max), (3, Some(40.0), Some(240.0)));
}

/// A commit landing while a round runs (after it took the marks, before it read the readings)
/// is rolled up by the round its own mark is taken in, so that round still goes on from the
/// stored hour: the earlier round reads only what its marks' commits stored.
async fn a_commit_during_a_round_waits_for_its_own_mark_and_the_hour_goes_on(db: TestDb) {
    let store = db.store.clone();
    let (t, d) = one_meter(&store).await;
    let put = |m: i64, v: f64| NewReading { device_id: d.id, time: at(m), value: v, unit: "kWh".into() };
    store.readings().insert(t, &[put(0, 100.0), put(5, 101.0)]).await.unwrap();
    refresh(&store).await;
    // The going-on path keeps this mark; a recomputation loses it (see the test above).
    set_hour_rows(&db, &d, "max_value = 999").await;
    store.readings().insert(t, &[put(10, 102.0)]).await.unwrap();
    store.readings().insert(t, &[put(15, 103.0)]).await.unwrap();
    // The second commit's mark is held back, as if it had committed after the round took the
    // marks: its reading is stored, but the round must not roll it up yet.
    execute(
        &db,
        "CREATE TABLE held AS SELECT * FROM rollup_pending WHERE id = (SELECT MAX(id) FROM rollup_pending)",
    )
    .await;
    execute(&db, "DELETE FROM rollup_pending WHERE id IN (SELECT id FROM held)").await;
    refresh(&store).await;
    let hour = || async { store.rollups().for_device(t, d.id, Bucket::Hour, at(0), at(60)).await.unwrap() };
    let h = hour().await;
    assert_eq!(
        (h[0].count, h[0].consumption, h[0].max),
        (3, Some(2.0), Some(999.0)),
        "only its marks' readings"
    );
    // Its mark comes: the round goes on from the stored hour, not from its readings.
    execute(&db, "INSERT INTO rollup_pending SELECT * FROM held").await;
    refresh(&store).await;
    let h = hour().await;
    assert_eq!((h[0].count, h[0].consumption, h[0].max), (4, Some(3.0), Some(999.0)), "went on");
}

per_backend!(
    a_commit_during_a_round_waits_for_its_own_mark_and_the_hour_goes_on,
    a_device_reporting_in_order_gets_exactly_the_rows_of_a_recomputation,
    an_edited_meter_recomputes_its_current_hour,
    an_in_order_reading_goes_on_from_the_stored_hour_and_a_late_one_recomputes_it,
    a_row_counting_fewer_readings_does_not_replace_the_stored_one,
);
