use chrono::{DateTime, Duration, TimeZone, Utc};
use tds_domain::TenantId;
use tds_store::readings::NewReading;
use tds_store::{Store, StoreError};
use tds_testkit::{conformance, fixtures};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 2, 15, 14, 30, 0).unwrap()
}

fn reading(device: tds_domain::DeviceId, minutes: i64, value: f64) -> NewReading {
    NewReading { device_id: device, time: t0() + Duration::minutes(minutes), value, unit: "kWh".into() }
}

async fn setup(store: &Store) -> (TenantId, tds_store::devices::Device, tds_store::devices::Device) {
    let t = fixtures::tenant(store, "Acme").await;
    let g = fixtures::gateway(store, t.id, "aa:bb:cc:dd:ee:01", "GW1").await;
    let d1 = fixtures::meter(store, t.id, &g, "D01").await;
    let d2 = fixtures::meter(store, t.id, &g, "D02").await;
    (t.id, d1, d2)
}

async fn a_resent_batch_stores_nothing_twice(store: Store) {
    let (t, d1, d2) = setup(&store).await;
    let batch: Vec<_> =
        (0..10).flat_map(|i| [reading(d1.id, i * 5, 100.0 + i as f64), reading(d2.id, i * 5, 7.5)]).collect();
    let first = store.readings().insert(t, &batch).await.unwrap();
    assert_eq!((first.inserted, first.duplicates, first.conflicts.len()), (20, 0, 0));
    let again = store.readings().insert(t, &batch).await.unwrap();
    assert_eq!((again.inserted, again.duplicates, again.conflicts.len()), (0, 20, 0));
    let stored = store.readings().for_device(t, d1.id, t0(), t0() + Duration::days(1), 100).await.unwrap();
    assert_eq!(stored.len(), 10);
    assert_eq!(stored[0].gateway_id, d1.gateway_id, "gateway is taken from the device");
    assert_eq!(stored[3].value, 103.0);
}

async fn a_different_value_for_a_stored_instant_is_a_conflict_and_the_first_stays(store: Store) {
    let (t, d1, _) = setup(&store).await;
    store.readings().insert(t, &[reading(d1.id, 0, 10.0)]).await.unwrap();
    let mixed = [
        reading(d1.id, 0, 11.0),
        reading(d1.id, 5, 12.0),
        reading(d1.id, 5, 12.0),
        reading(d1.id, 10, 1.0),
        reading(d1.id, 10, 2.0),
    ];
    let report = store.readings().insert(t, &mixed).await.unwrap();
    assert_eq!(report.inserted, 2, "{report:?}");
    assert_eq!(report.duplicates, 1, "{report:?}");
    let conflicts: Vec<(usize, f64, f64)> =
        report.conflicts.iter().map(|c| (c.index, c.stored_value, c.sent_value)).collect();
    assert_eq!(conflicts, vec![(0, 10.0, 11.0), (4, 1.0, 2.0)]);
    let stored = store.readings().for_device(t, d1.id, t0(), t0() + Duration::hours(1), 10).await.unwrap();
    assert_eq!(stored.iter().map(|r| r.value).collect::<Vec<_>>(), vec![10.0, 12.0, 1.0]);
}

async fn large_batches_are_split_and_counted_exactly(store: Store) {
    let (t, d1, d2) = setup(&store).await;
    let batch: Vec<_> =
        (0..2_500).flat_map(|i| [reading(d1.id, i, i as f64), reading(d2.id, i, 1.0)]).collect();
    let report = store.readings().insert(t, &batch).await.unwrap();
    assert_eq!(report.inserted, 5_000);
    let half: Vec<_> = batch.iter().step_by(2).cloned().collect();
    let again = store.readings().insert(t, &half).await.unwrap();
    assert_eq!((again.inserted, again.duplicates), (0, 2_500));
}

async fn groups_of_several_tenants_commit_together(store: Store) {
    let (a, da, _) = setup(&store).await;
    let b = fixtures::tenant(&store, "Beta").await;
    let gb = fixtures::gateway(&store, b.id, "aa:bb:cc:dd:ee:02", "GW1").await;
    let db = fixtures::meter(&store, b.id, &gb, "D01").await;
    let ra = [reading(da.id, 0, 1.0)];
    let rb = [reading(db.id, 0, 2.0), reading(db.id, 1, 3.0)];
    let reports = store.readings().insert_groups(&[(a, &ra), (b.id, &rb)]).await.unwrap();
    assert_eq!(reports.iter().map(|r| r.inserted).collect::<Vec<_>>(), vec![1, 2]);
    // One bad group refuses the whole call: nothing of the good group is written.
    let rc = [reading(da.id, 30, 9.0)];
    let bad = [reading(da.id, 31, 9.0)];
    let err = store.readings().insert_groups(&[(a, &rc), (b.id, &bad)]).await;
    assert!(matches!(err, Err(StoreError::NotFound)));
    assert_eq!(store.readings().latest(a, da.id, 10).await.unwrap().len(), 1);
    // A device id that does not exist at all is refused the same way.
    let ghost = [reading(tds_domain::DeviceId::new(987_654), 0, 1.0)];
    assert!(matches!(store.readings().insert(a, &ghost).await, Err(StoreError::NotFound)));
}

/// On PostgreSQL a commit is first written expecting only new readings; a resent one aborts
/// that try and the commit is written again expecting duplicates. Nothing of the first try may
/// stay: not the earlier group's readings twice, not a second rollup row for the commit.
async fn a_resend_in_a_later_group_writes_the_whole_commit_once(store: Store) {
    let (a, da, _) = setup(&store).await;
    let b = fixtures::tenant(&store, "Beta").await;
    let gb = fixtures::gateway(&store, b.id, "aa:bb:cc:dd:ee:02", "GW1").await;
    let db = fixtures::meter(&store, b.id, &gb, "D01").await;
    store.readings().insert(b.id, &[reading(db.id, 0, 2.0)]).await.unwrap();
    assert_eq!(store.rollups().staff_fold().await.unwrap(), 1);
    let ra: Vec<_> = (0..300).map(|i| reading(da.id, i, i as f64)).collect();
    let rb = [reading(db.id, 1, 3.0), reading(db.id, 0, 2.0), reading(db.id, 2, 4.0)];
    let reports = store.readings().insert_groups(&[(a, &ra), (b.id, &rb)]).await.unwrap();
    let counts: Vec<_> = reports.iter().map(|r| (r.inserted, r.duplicates, r.conflicts.len())).collect();
    assert_eq!(counts, vec![(300, 0, 0), (2, 1, 0)]);
    assert_eq!(store.readings().latest(a, da.id, 1000).await.unwrap().len(), 300);
    assert_eq!(store.readings().latest(b.id, db.id, 10).await.unwrap().len(), 3);
    assert_eq!(store.rollups().staff_fold().await.unwrap(), 1, "one rollup row for the commit");
    // The same commit again: all duplicates, and no rollup row (nothing new).
    let reports = store.readings().insert_groups(&[(a, &ra), (b.id, &rb)]).await.unwrap();
    let counts: Vec<_> = reports.iter().map(|r| (r.inserted, r.duplicates)).collect();
    assert_eq!(counts, vec![(0, 300), (0, 3)]);
    assert_eq!(store.rollups().staff_fold().await.unwrap(), 0);
}

/// A commit of new readings is marked for the rollups by one row, which on PostgreSQL the last
/// group's insert writes: every group's devices are in it, with their exact spans, whichever
/// group is the last with readings.
async fn a_new_commit_marks_every_groups_devices_in_one_row(store: Store) {
    let (a, da, da2) = setup(&store).await;
    let b = fixtures::tenant(&store, "Beta").await;
    let gb = fixtures::gateway(&store, b.id, "aa:bb:cc:dd:ee:02", "GW1").await;
    let db = fixtures::meter(&store, b.id, &gb, "D01").await;
    let at = |m: i64| t0() + Duration::minutes(m);
    let ra = [reading(da.id, 3, 1.0), reading(da2.id, 1, 1.0), reading(da.id, 7, 2.0)];
    let rb = [reading(db.id, 5, 2.0)];
    // The last group is empty: the one before it carries the row.
    let reports = store.readings().insert_groups(&[(a, &ra), (b.id, &rb), (a, &[])]).await.unwrap();
    assert_eq!(reports.iter().map(|r| r.inserted).collect::<Vec<_>>(), vec![3, 1, 0]);
    let mut marks = store.rollups().staff_marks().await.unwrap();
    marks.sort_by_key(|m| m.0);
    let mut expected = vec![(da.id, at(3), at(7)), (da2.id, at(1), at(1)), (db.id, at(5), at(5))];
    expected.sort_by_key(|m| m.0);
    assert_eq!(marks, expected);
    assert_eq!(store.rollups().staff_fold().await.unwrap(), 1, "one row for the commit");
    // A stranger's device in the last group: nothing stored, nothing marked, no row.
    let stray = [reading(da.id, 9, 3.0)];
    let err = store.readings().insert_groups(&[(b.id, &[reading(db.id, 6, 2.5)]), (b.id, &stray)]).await;
    assert!(matches!(err, Err(StoreError::NotFound)));
    assert_eq!(store.rollups().staff_fold().await.unwrap(), 0);
    assert_eq!(store.readings().latest(b.id, db.id, 10).await.unwrap().len(), 1);
}

/// A large group of new readings (PostgreSQL copies it, see `readings/copy.rs`): every field
/// stored as given, each reading with its own device's gateway, marked and logged in one row;
/// a resend of it told apart reading by reading; a stranger's device refusing the whole commit.
async fn a_large_new_group_is_stored_exactly_with_each_devices_gateway(store: Store) {
    let (a, d1, _) = setup(&store).await;
    let g2 = fixtures::gateway(&store, a, "aa:bb:cc:dd:ee:03", "GW2").await;
    let d3 = fixtures::meter(&store, a, &g2, "D03").await;
    let micro = |i: i64| t0() + Duration::seconds(i) + Duration::microseconds(i % 1000 + 1);
    let big: Vec<NewReading> = (0..1_500)
        .flat_map(|i| {
            [
                NewReading { device_id: d1.id, time: micro(i), value: i as f64 * 0.1, unit: "m³".into() },
                NewReading {
                    device_id: d3.id,
                    time: micro(i),
                    value: -(i as f64 + 1.0) / 3.0,
                    unit: "kWh".into(),
                },
            ]
        })
        .collect();
    let before = Utc::now();
    let report = store.readings().insert(a, &big).await.unwrap();
    assert_eq!((report.inserted, report.duplicates, report.conflicts.len()), (3_000, 0, 0));
    let to = t0() + Duration::days(1);
    let stored = store.readings().for_device(a, d1.id, t0(), to, 5_000).await.unwrap();
    assert_eq!(stored.len(), 1_500);
    for (i, r) in stored.iter().enumerate() {
        let i = i as i64;
        assert_eq!((r.time, r.value, r.unit.as_str()), (micro(i), i as f64 * 0.1, "m³"));
        assert_eq!((r.gateway_id, r.tenant_id, r.device_id), (d1.gateway_id, a, d1.id));
        assert!(r.ingested_at >= before - Duration::seconds(1) && r.ingested_at <= Utc::now());
    }
    let stored3 = store.readings().for_device(a, d3.id, t0(), to, 5_000).await.unwrap();
    assert!(
        stored3.iter().enumerate().all(|(i, r)| r.gateway_id == g2.id && r.value == -(i as f64 + 1.0) / 3.0)
    );
    let mut marks = store.rollups().staff_marks().await.unwrap();
    marks.sort_by_key(|m| m.0);
    let mut expected = vec![(d1.id, micro(0), micro(1_499)), (d3.id, micro(0), micro(1_499))];
    expected.sort_by_key(|m| m.0);
    assert_eq!(marks, expected);
    assert_eq!(store.rollups().staff_fold().await.unwrap(), 1, "one row for the commit");
    // Resent with one new reading: the copy meets a stored key, the commit is written again.
    let mut again = big.clone();
    again.push(NewReading { device_id: d1.id, time: micro(5_000), value: 1.0, unit: "m³".into() });
    let report = store.readings().insert(a, &again).await.unwrap();
    assert_eq!((report.inserted, report.duplicates, report.conflicts.len()), (1, 3_000, 0));
    // Two large groups in one commit, the second naming another tenant's device: nothing of
    // either is stored or marked.
    store.rollups().staff_fold().await.unwrap();
    let b = fixtures::tenant(&store, "Beta").await;
    let gb = fixtures::gateway(&store, b.id, "aa:bb:cc:dd:ee:02", "GW1").await;
    let db = fixtures::meter(&store, b.id, &gb, "D01").await;
    let fresh = |d: tds_domain::DeviceId| -> Vec<NewReading> {
        (10_000..12_500)
            .map(|i| NewReading { device_id: d, time: micro(i), value: 2.0, unit: "kWh".into() })
            .collect()
    };
    let mut stray = fresh(db.id);
    stray[1_000].device_id = d1.id;
    let err = store.readings().insert_groups(&[(a, &fresh(d1.id)), (b.id, &stray)]).await;
    assert!(matches!(err, Err(StoreError::NotFound)), "{err:?}");
    assert!(store.readings().latest(b.id, db.id, 10).await.unwrap().is_empty());
    assert_eq!(store.readings().for_device(a, d1.id, t0(), to, 5_000).await.unwrap().len(), 1_501);
    assert_eq!(store.rollups().staff_fold().await.unwrap(), 0, "no row for the refused commit");
    // Without the stranger both are stored, in one commit with one row.
    let reports = store.readings().insert_groups(&[(a, &fresh(d1.id)), (b.id, &fresh(db.id))]).await.unwrap();
    assert_eq!(reports.iter().map(|r| r.inserted).collect::<Vec<_>>(), vec![2_500, 2_500]);
    assert_eq!(store.rollups().staff_fold().await.unwrap(), 1);
}

async fn a_group_naming_another_tenants_device_writes_none_of_its_readings(store: Store) {
    let (a, da, _) = setup(&store).await;
    let b = fixtures::tenant(&store, "Beta").await;
    let gb = fixtures::gateway(&store, b.id, "aa:bb:cc:dd:ee:02", "GW1").await;
    let db = fixtures::meter(&store, b.id, &gb, "D01").await;
    // New readings of the tenant's own device around one of the other tenant's, in one group and
    // past a chunk of the multi-row insert: the insert leaves the foreign reading out, and the
    // call must still refuse the whole group, not store the rest.
    let mut group: Vec<_> = (0..1_500).map(|i| reading(da.id, i, 1.0)).collect();
    group.insert(1_200, reading(db.id, 0, 2.0));
    assert!(matches!(store.readings().insert(a, &group).await, Err(StoreError::NotFound)));
    assert!(store.readings().latest(a, da.id, 10).await.unwrap().is_empty());
    assert!(store.readings().latest(b.id, db.id, 10).await.unwrap().is_empty());
    assert!(store.rollups().staff_marks().await.unwrap().is_empty(), "nothing marked either");
    // The same group without the stranger is stored whole.
    group.remove(1_200);
    assert_eq!(store.readings().insert(a, &group).await.unwrap().inserted, 1_500);
}

async fn one_resent_reading_in_a_large_new_batch_is_told_apart(store: Store) {
    let (t, d1, d2) = setup(&store).await;
    store.readings().insert(t, &[reading(d2.id, 2_000, 4.0)]).await.unwrap();
    // 2,400 new readings over several chunks, with a duplicate and a conflict of the stored one
    // in the last chunk: every new reading is written once, in the batch's order.
    let mut batch: Vec<_> =
        (0..1_200).flat_map(|i| [reading(d1.id, i, i as f64), reading(d2.id, i, 1.0)]).collect();
    batch.push(reading(d2.id, 2_000, 4.0));
    batch.push(reading(d2.id, 2_000, 5.0));
    let report = store.readings().insert(t, &batch).await.unwrap();
    assert_eq!((report.inserted, report.duplicates), (2_400, 1), "{report:?}");
    let conflicts: Vec<(usize, f64, f64)> =
        report.conflicts.iter().map(|c| (c.index, c.stored_value, c.sent_value)).collect();
    assert_eq!(conflicts, vec![(2_401, 4.0, 5.0)]);
    let stored = store.readings().for_device(t, d1.id, t0(), t0() + Duration::days(2), 5_000).await.unwrap();
    assert_eq!(stored.len(), 1_200);
    assert!(stored.iter().enumerate().all(|(i, r)| r.value == i as f64 && r.gateway_id == d1.gateway_id));
}

async fn an_archived_devices_readings_stay_readable(store: Store) {
    let (t, d1, _) = setup(&store).await;
    store.readings().insert(t, &[reading(d1.id, 0, 5.0), reading(d1.id, 1, 6.0)]).await.unwrap();
    store.devices().archive(t, d1.id).await.unwrap();
    let kept = store.readings().for_device(t, d1.id, t0(), t0() + Duration::hours(1), 10).await.unwrap();
    assert_eq!(kept.len(), 2);
    let range =
        store.readings().for_tenant(t, None, t0(), t0() + Duration::hours(1), None, 10).await.unwrap();
    assert_eq!(range.len(), 2, "archived devices stay reportable");
}

async fn tenant_range_queries_page_by_time_and_device(store: Store) {
    let (t, d1, d2) = setup(&store).await;
    let batch: Vec<_> = (0..6).flat_map(|i| [reading(d1.id, i, 1.0), reading(d2.id, i, 2.0)]).collect();
    store.readings().insert(t, &batch).await.unwrap();
    let (from, to) = (t0(), t0() + Duration::minutes(5));
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.readings().for_tenant(t, None, from, to, after, 4).await.unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|r| (r.time, r.device_id));
        seen.extend(page.into_iter().map(|r| (r.time, r.device_id)));
    }
    assert_eq!(seen.len(), 10, "[from, to) excludes the 6th minute");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "ordered by (time, device) without repeats");
    let gw = store.readings().for_tenant(t, Some(d1.gateway_id), from, to, None, 100).await.unwrap();
    assert_eq!(gw.len(), 10);
    assert_eq!(store.readings().count_since(t, t0() + Duration::minutes(3)).await.unwrap(), 6);
    let latest = store.readings().latest(t, d2.id, 2).await.unwrap();
    assert_eq!(latest[0].time, t0() + Duration::minutes(5));
}

async fn times_round_trip_to_the_microsecond(store: Store) {
    let (t, d1, _) = setup(&store).await;
    let when = Utc.timestamp_micros(1_771_165_800_123_456).unwrap();
    let r = NewReading { device_id: d1.id, time: when, value: 0.1 + 0.2, unit: "kWh".into() };
    store.readings().insert(t, &[r]).await.unwrap();
    let back = store.readings().latest(t, d1.id, 1).await.unwrap();
    assert_eq!(back[0].time, when);
    assert_eq!(back[0].value.to_bits(), (0.1f64 + 0.2).to_bits());
}

/// Refreshes rollups until no device is marked.
async fn clear_marks(store: &Store) {
    while store.rollups().staff_refresh_dirty(100).await.unwrap() > 0 {}
    assert!(store.rollups().staff_marks().await.unwrap().is_empty());
}

async fn a_batch_with_duplicates_marks_only_its_new_readings_for_the_rollups(store: Store) {
    let (t, d1, d2) = setup(&store).await;
    // A day of readings every 5 minutes on both devices.
    let day: Vec<_> =
        (0..288).flat_map(|i| [reading(d1.id, i * 5, i as f64), reading(d2.id, i * 5, 1.0)]).collect();
    store.readings().insert(t, &day).await.unwrap();
    clear_marks(&store).await;

    // A resend of the day's first and last readings (one of them with another value) around one
    // new reading in the middle of the day and one after it, and the same instant twice.
    let batch = [
        reading(d1.id, 0, 0.0),
        reading(d1.id, 700, 999.0),
        reading(d1.id, 1437, 1.5),
        reading(d1.id, 1435, 287.0),
        reading(d2.id, 2000, 2.0),
        reading(d2.id, 2000, 3.0),
    ];
    let report = store.readings().insert(t, &batch).await.unwrap();
    assert_eq!((report.inserted, report.duplicates), (2, 2), "{report:?}");
    let conflicts: Vec<(usize, f64, f64)> =
        report.conflicts.iter().map(|c| (c.index, c.stored_value, c.sent_value)).collect();
    assert_eq!(conflicts, vec![(1, 140.0, 999.0), (5, 2.0, 3.0)]);
    let at = |m: i64| t0() + Duration::minutes(m);
    let mut marks = store.rollups().staff_marks().await.unwrap();
    marks.sort_by_key(|m| m.0);
    assert_eq!(
        marks,
        vec![(d1.id, at(1437), at(1437)), (d2.id, at(2000), at(2000))],
        "only the instants inserted are marked, not the span of the batch"
    );

    // A batch of duplicates only marks nothing.
    clear_marks(&store).await;
    store.readings().insert(t, &day[..20]).await.unwrap();
    assert!(store.rollups().staff_marks().await.unwrap().is_empty());
}

/// The two steps of a group commit: nothing is visible or marked before the `COMMIT`, and a
/// prepared commit that is dropped leaves nothing behind.
async fn a_prepared_commit_stores_nothing_until_committed_and_nothing_when_dropped(store: Store) {
    let (t, d1, _) = setup(&store).await;
    let batch: Vec<_> = (0..5).map(|i| reading(d1.id, i * 5, i as f64)).collect();
    let end = t0() + Duration::days(1);
    let dropped = store.readings().prepare_groups(&[(t, &batch)]).await.unwrap();
    drop(dropped);
    assert!(store.readings().for_device(t, d1.id, t0(), end, 100).await.unwrap().is_empty());
    assert!(store.rollups().staff_marks().await.unwrap().is_empty(), "a dropped commit marks nothing");

    let prepared = store.readings().prepare_groups(&[(t, &batch)]).await.unwrap();
    assert!(
        store.readings().for_device(t, d1.id, t0(), end, 100).await.unwrap().is_empty(),
        "not visible before its COMMIT"
    );
    let (reports, _) = prepared.commit().await.unwrap();
    assert_eq!((reports[0].inserted, reports[0].duplicates), (5, 0));
    assert_eq!(store.readings().for_device(t, d1.id, t0(), end, 100).await.unwrap().len(), 5);
    let at = |m: i64| t0() + Duration::minutes(m);
    assert_eq!(store.rollups().staff_marks().await.unwrap(), vec![(d1.id, at(0), at(20))]);
}

/// The device endpoint's overlap on PostgreSQL: the next batch is written while the one before
/// it commits. A reading the next one resends waits for the first's `COMMIT` (PostgreSQL's unique
/// check on an uncommitted row; on SQLite the second waits for the write connection) and is then
/// told apart as a duplicate or a conflict, the first value staying.
async fn a_commit_prepared_while_the_one_before_commits_tells_its_resends_apart(store: Store) {
    let (t, d1, d2) = setup(&store).await;
    let first: Vec<_> = (0..10).map(|i| reading(d1.id, i * 5, i as f64)).collect();
    let mut second = vec![reading(d1.id, 40, 8.0), reading(d1.id, 45, 99.0)];
    second.extend((0..10).map(|i| reading(d2.id, i * 5, 1.0)));
    let a = store.readings().prepare_groups(&[(t, &first)]).await.unwrap();
    let b = tokio::spawn({
        let store = store.clone();
        async move { store.readings().prepare_groups(&[(t, &second)]).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!b.is_finished(), "the second waits for the first's COMMIT");
    let (a, _) = a.commit().await.unwrap();
    assert_eq!((a[0].inserted, a[0].duplicates), (10, 0));
    let (b, _) = b.await.unwrap().unwrap().commit().await.unwrap();
    assert_eq!((b[0].inserted, b[0].duplicates), (10, 1), "{b:?}");
    let conflicts: Vec<(usize, f64, f64)> =
        b[0].conflicts.iter().map(|c| (c.index, c.stored_value, c.sent_value)).collect();
    assert_eq!(conflicts, vec![(1, 9.0, 99.0)]);
    let end = t0() + Duration::days(1);
    let stored = store.readings().for_device(t, d1.id, t0(), end, 100).await.unwrap();
    assert_eq!(
        stored.iter().map(|r| r.value).collect::<Vec<_>>(),
        (0..10).map(f64::from).collect::<Vec<_>>()
    );
}

conformance!(
    a_prepared_commit_stores_nothing_until_committed_and_nothing_when_dropped,
    a_commit_prepared_while_the_one_before_commits_tells_its_resends_apart,
    a_batch_with_duplicates_marks_only_its_new_readings_for_the_rollups,
    a_resent_batch_stores_nothing_twice,
    a_different_value_for_a_stored_instant_is_a_conflict_and_the_first_stays,
    large_batches_are_split_and_counted_exactly,
    groups_of_several_tenants_commit_together,
    a_resend_in_a_later_group_writes_the_whole_commit_once,
    a_new_commit_marks_every_groups_devices_in_one_row,
    a_large_new_group_is_stored_exactly_with_each_devices_gateway,
    a_group_naming_another_tenants_device_writes_none_of_its_readings,
    one_resent_reading_in_a_large_new_batch_is_told_apart,
    tenant_range_queries_page_by_time_and_device,
    times_round_trip_to_the_microsecond,
    an_archived_devices_readings_stay_readable,
);

/// PostgreSQL only: a large group of new readings, sent in the order its messages came (meters
/// taking turns), is copied in key order, each meter's readings after one another in the table
/// (and so in its primary key's leaves, one after another).
#[tokio::test]
async fn postgres_copies_a_large_group_in_key_order() {
    let Some(db) = tds_testkit::TestDb::postgres().await else { return };
    let (t, d1, d2) = setup(&db.store).await;
    let turns: Vec<_> = (0..1_200)
        .flat_map(|i| [reading(d2.id, 1_200 - i, i as f64), reading(d1.id, 1_200 - i, i as f64)])
        .collect();
    let report = db.store.readings().insert(t, &turns).await.unwrap();
    assert_eq!(report.inserted, 2_400);
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let rows: Vec<(i64, DateTime<Utc>)> =
        sqlx::query_as("SELECT device_id, time FROM readings ORDER BY ctid").fetch_all(&pool).await.unwrap();
    let mut sorted = rows.clone();
    sorted.sort();
    assert_eq!(rows.len(), 2_400);
    assert!(rows == sorted, "stored in the order given: {:?}", &rows[..4]);
}

/// PostgreSQL only: a fold merging new commits into the devices' marks writes each mark's new
/// version on the page the old one was on (a HOT update, no new index entry), which the room
/// kept on `rollup_dirty`'s pages allows; on full pages nearly every one went to another page.
#[tokio::test]
async fn postgres_merged_marks_stay_on_their_pages() {
    let Some(db) = tds_testkit::TestDb::postgres().await else { return };
    let t = fixtures::tenant(&db.store, "Acme").await.id;
    let mut meters = Vec::new();
    // At most 8 meters a gateway (the default limit).
    for g in 0..38 {
        let gateway =
            fixtures::gateway(&db.store, t, &format!("aa:bb:cc:dd:ee:{g:02x}"), &format!("GW{g}")).await;
        for i in 0..8 {
            meters.push(fixtures::meter(&db.store, t, &gateway, &format!("M{i}")).await);
        }
    }
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    meters.truncate(300);
    let mut pages = Vec::new();
    for minute in 0..2 {
        let batch: Vec<_> = meters.iter().map(|m| reading(m.id, minute, minute as f64)).collect();
        db.store.readings().insert(t, &batch).await.unwrap();
        db.store.rollups().staff_fold().await.unwrap();
        // The page of each mark's current version (ctid is "(page,item)").
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT device_id, ctid::text FROM rollup_dirty WHERE to_time = $1 ORDER BY device_id",
        )
        .bind(t0() + Duration::minutes(minute))
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(rows.len(), 300, "every mark merged");
        pages.push(
            rows.into_iter()
                .map(|(d, c)| (d, c.trim_start_matches('(').split(',').next().unwrap().to_owned())),
        );
    }
    let after: Vec<_> = pages.pop().unwrap().collect();
    let before: Vec<_> = pages.pop().unwrap().collect();
    let stayed = before.iter().zip(&after).filter(|(b, a)| b == a).count();
    assert!(stayed >= 270, "{stayed} of 300 marks stayed on their page");
}

/// SQLite only: the WAL is copied into the database file by the background checkpointer, long
/// before the writer's own threshold (40,000 pages) would.
#[tokio::test]
async fn sqlite_commits_reach_the_database_file_without_the_writer_checkpointing() {
    let db = tds_testkit::TestDb::sqlite().await;
    let (t, d1, _) = setup(&db.store).await;
    let path = std::path::PathBuf::from(db.url.trim_start_matches("sqlite://"));
    // ~600 pages of readings: far below the writer's threshold.
    for chunk in 0..10 {
        let batch: Vec<_> = (0..5_000).map(|i| reading(d1.id, chunk * 5_000 + i, i as f64)).collect();
        db.store.readings().insert(t, &batch).await.unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let file = std::fs::metadata(&path).unwrap().len();
        if file > 2_000_000 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "database file still {file} bytes after 10 s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The SQLite linked into TDS is built without its global memory statistics
/// (`.cargo/config.toml`): with them every allocation SQLite makes takes one process-wide
/// mutex, which the writer's, the readers' and the checkpoint's threads fight over (under a
/// 10,000-meter load the writer slept on it hundreds of times a second). A build that lost the
/// setting (run from outside the repository, say) fails here.
#[tokio::test]
async fn sqlite_is_built_without_global_memory_statistics() {
    let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap();
    let options: Vec<String> = sqlx::query_scalar("SELECT compile_options FROM pragma_compile_options")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"), "SQLite's compile options: {options:?}");
}

/// PostgreSQL only: group commits prepared back to back (the device endpoint's writer) have the
/// next one's transaction begun ahead. One the server closes while it waits (as an
/// idle-in-transaction limit or an administrator would) makes the next commit begin again, not
/// fail; one left waiting is rolled back within a second or so, and at once when released.
#[tokio::test]
async fn postgres_begins_the_next_commit_ahead_and_survives_losing_it() {
    let Some(db) = tds_testkit::TestDb::postgres().await else { return };
    let store = &db.store;
    let tds_store::Db::Postgres(pg) = store.db() else { unreachable!() };
    let (t, d1, _) = setup(store).await;
    let waiting = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND state = 'idle in transaction'",
        )
        .fetch_one(pg)
        .await
        .unwrap()
    };
    let settles_at = |want: i64, within: std::time::Duration| async move {
        let until = std::time::Instant::now() + within;
        loop {
            let now = waiting().await;
            if now == want || std::time::Instant::now() > until {
                return now;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    let commit = |from: i64| async move {
        let batch: Vec<_> = (from..from + 5).map(|i| reading(d1.id, i, i as f64)).collect();
        let prepared = store.readings().prepare_groups_back_to_back(&[(t, &batch)]).await.unwrap();
        prepared.commit().await.unwrap().0[0].inserted
    };
    // A transaction begun ahead shows for a second (`FRESH`) before it is rolled back; a loaded
    // machine may take far longer than a commit to begin it (a new connection of the pool).
    let appears = std::time::Duration::from_secs(5);
    // Well under `FRESH`: released is rolled back at once, not when it would have gone stale.
    let short = std::time::Duration::from_millis(500);

    assert_eq!(commit(0).await, 5);
    assert_eq!(settles_at(1, appears).await, 1, "the next commit's transaction is begun and waits");
    let closed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND state = 'idle in transaction'",
    )
    .fetch_all(pg)
    .await
    .unwrap();
    assert_eq!(closed, vec![true]);
    assert_eq!(commit(5).await, 5, "a commit whose transaction begun ahead was closed begins again");

    assert_eq!(settles_at(1, appears).await, 1);
    assert_eq!(
        settles_at(0, std::time::Duration::from_secs(3)).await,
        0,
        "a transaction begun ahead and never taken is rolled back"
    );
    assert_eq!(commit(10).await, 5);
    assert_eq!(settles_at(1, appears).await, 1);
    store.readings().release_ahead();
    assert_eq!(settles_at(0, short).await, 0, "released: rolled back at once");

    let end = t0() + Duration::days(1);
    let stored = store.readings().for_device(t, d1.id, t0(), end, 100).await.unwrap();
    assert_eq!(stored.len(), 15, "every commit stored once");
}
