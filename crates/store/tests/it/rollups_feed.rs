//! The rollup feed (issue 20): a device whose mark is made only of this store's commits goes on
//! from its stored hour with its new readings taken from memory instead of read back. The rows
//! must be exactly those of a recomputation from all the readings, whoever wrote, folded and
//! refreshed: another store on the same database (a second instance) writing the same device,
//! folding this store's commits, or clearing a mark this store kept. On both databases.

use chrono::{DateTime, Duration, Utc};
use tds_domain::{Bucket, TenantId};
use tds_store::Store;
use tds_store::devices::Device;
use tds_store::readings::NewReading;
use tds_store::rollups::{FeedCounts, RollupRow};
use tds_testkit::{TestDb, fixtures, per_backend};

fn at(i: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-10T13:00:00Z").unwrap().with_timezone(&Utc)
        + Duration::seconds(97 * i)
}

/// A value that does not add up exactly in binary, so that a reading counted twice or missed
/// changes the sums.
fn value(i: i64) -> f64 {
    1000.0 + i as f64 * 0.37 + ((i * 7919) % 1000) as f64 / 10_300.0
}

async fn refresh(store: &Store) {
    while store.rollups().staff_refresh_dirty(100).await.unwrap() > 0 {}
}

/// Every row of the device, all granularities, without the device id (two devices compared).
async fn all_rows(store: &Store, tenant: TenantId, device: &Device) -> Vec<RollupRow> {
    let (from, to) = (at(-100_000), at(100_000));
    let mut out = Vec::new();
    for bucket in Bucket::ALL {
        for mut row in store.rollups().for_device(tenant, device.id, *bucket, from, to).await.unwrap() {
            row.device_id = tds_domain::DeviceId::new(0);
            out.push(row);
        }
    }
    out
}

/// Two stores on one database (two instances) and a tenant with two meters: the one under test
/// and one given all the same readings at once at the end, to compare with.
struct Setup {
    a: Store,
    b: Store,
    tenant: TenantId,
    live: Device,
    whole: Device,
}

impl Setup {
    async fn new(db: &TestDb) -> Self {
        let a = db.store.clone();
        let b = Store::open(&db.url, &tds_store::DbOptions { max_connections: 4, ..Default::default() })
            .await
            .unwrap();
        let tenant = fixtures::tenant(&a, "Acme").await.id;
        let g = fixtures::gateway(&a, tenant, "aa:bb:cc:dd:ee:01", "GW1").await;
        let live = fixtures::meter(&a, tenant, &g, "LIVE").await;
        let whole = fixtures::meter(&a, tenant, &g, "WHOLE").await;
        Self { a, b, tenant, live, whole }
    }

    /// Readings `range` of the live meter, committed by `store`.
    async fn put(&self, store: &Store, range: std::ops::Range<i64>) {
        let batch: Vec<NewReading> = range
            .map(|i| NewReading { device_id: self.live.id, time: at(i), value: value(i), unit: "kWh".into() })
            .collect();
        store.readings().insert(self.tenant, &batch).await.unwrap();
    }

    /// Gives the other meter readings `0..n` in one commit and checks the live meter's rows
    /// against its rows, bit for bit.
    async fn check(&self, n: i64) {
        let batch: Vec<NewReading> = (0..n)
            .map(|i| NewReading {
                device_id: self.whole.id,
                time: at(i),
                value: value(i),
                unit: "kWh".into(),
            })
            .collect();
        self.b.readings().insert(self.tenant, &batch).await.unwrap();
        refresh(&self.b).await;
        let (got, want) = (
            all_rows(&self.a, self.tenant, &self.live).await,
            all_rows(&self.a, self.tenant, &self.whole).await,
        );
        assert!(got.iter().filter(|r| r.bucket == Bucket::Hour).count() >= 2, "{got:#?}");
        assert_eq!(got, want);
    }
}

fn counts(fed: u64, read: u64) -> FeedCounts {
    FeedCounts { fed, read }
}

async fn a_device_going_on_from_its_hour_takes_its_readings_from_memory(db: TestDb) {
    let s = Setup::new(&db).await;
    // The first round computes the hour from the database; every later one goes on from it
    // with the readings this store kept. Commits of 7 readings, each hour holding ~37.
    s.put(&s.a, 0..7).await;
    refresh(&s.a).await;
    assert_eq!(s.a.rollup_feed_counts(), counts(0, 1));
    for k in 1..20 {
        s.put(&s.a, k * 7..k * 7 + 7).await;
        refresh(&s.a).await;
    }
    assert_eq!(s.a.rollup_feed_counts(), counts(19, 1));
    // Several commits in one mark, folded by two folds: the second goes on from the first.
    s.put(&s.a, 140..150).await;
    s.a.rollups().staff_fold().await.unwrap();
    s.put(&s.a, 150..160).await;
    s.put(&s.a, 160..170).await;
    refresh(&s.a).await;
    assert_eq!(s.a.rollup_feed_counts(), counts(20, 1));
    s.check(170).await;
}

async fn commits_of_another_instance_in_the_mark_are_read_back(db: TestDb) {
    let s = Setup::new(&db).await;
    s.put(&s.a, 0..10).await;
    refresh(&s.a).await;
    // The other store commits readings of the same device: its mark is no longer only ours.
    s.put(&s.b, 10..20).await;
    s.put(&s.a, 20..30).await;
    refresh(&s.a).await;
    assert_eq!(s.a.rollup_feed_counts(), counts(0, 2));
    // Folded first with only ours, then the other's commit merged in by the next fold.
    s.put(&s.a, 30..40).await;
    s.a.rollups().staff_fold().await.unwrap();
    s.put(&s.b, 40..50).await;
    refresh(&s.a).await;
    assert_eq!(s.a.rollup_feed_counts(), counts(0, 3));
    // Ours alone again: from memory.
    s.put(&s.a, 50..60).await;
    refresh(&s.a).await;
    assert_eq!(s.a.rollup_feed_counts(), counts(1, 3));
    // The other store's fold merges its commit into the mark we kept; ours then goes on from
    // the mark as stored, not as we kept it.
    s.put(&s.a, 60..70).await;
    s.a.rollups().staff_fold().await.unwrap();
    s.put(&s.b, 70..80).await;
    s.b.rollups().staff_fold().await.unwrap();
    s.put(&s.a, 80..90).await;
    refresh(&s.a).await;
    assert_eq!(s.a.rollup_feed_counts(), counts(1, 4));
    s.check(90).await;
}

async fn the_other_instance_folding_or_refreshing_our_commits_reads_them_back(db: TestDb) {
    let s = Setup::new(&db).await;
    s.put(&s.a, 0..10).await;
    refresh(&s.a).await;
    // The other store folds and refreshes our commit: it has none of its readings.
    s.put(&s.a, 10..20).await;
    refresh(&s.b).await;
    assert_eq!(s.b.rollup_feed_counts(), counts(0, 1));
    // Our next commit's mark is ours alone: from memory, and the readings the other store
    // rolled up are not added again.
    s.put(&s.a, 20..30).await;
    refresh(&s.a).await;
    assert_eq!(s.a.rollup_feed_counts(), counts(1, 1));
    // A mark we kept is refreshed and cleared by the other store; our next fold makes the mark
    // again and must not go on from what we kept (those readings are rolled up already).
    s.put(&s.a, 30..40).await;
    s.a.rollups().staff_fold().await.unwrap();
    refresh(&s.b).await;
    assert_eq!(s.b.rollup_feed_counts(), counts(0, 2));
    s.put(&s.a, 40..50).await;
    refresh(&s.a).await;
    assert_eq!(s.a.rollup_feed_counts(), counts(2, 1));
    s.check(50).await;
}

async fn a_late_reading_recomputes_from_the_database(db: TestDb) {
    let s = Setup::new(&db).await;
    s.put(&s.a, 0..10).await;
    s.put(&s.a, 20..30).await;
    refresh(&s.a).await;
    // Before the last reading rolled up: the hour is recomputed from the raw readings, not
    // gone on from, whatever this store kept.
    s.put(&s.a, 10..20).await;
    refresh(&s.a).await;
    assert_eq!(s.a.rollup_feed_counts(), counts(0, 2));
    s.put(&s.a, 30..40).await;
    refresh(&s.a).await;
    assert_eq!(s.a.rollup_feed_counts(), counts(1, 2));
    s.check(40).await;
}

/// Runs `sql` on the test database directly.
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

/// A commit row with this store's token whose readings and marks it did not keep (as when it
/// let them go at its bound): the fold reads its marks from the row, and its device is read.
async fn a_commit_of_ours_not_kept_is_read_from_its_row(db: TestDb) {
    let s = Setup::new(&db).await;
    s.put(&s.a, 0..10).await;
    refresh(&s.a).await;
    s.put(&s.a, 30..50).await;
    s.put(&s.b, 10..30).await;
    // The other store's commit, the later row, made to look like ours.
    execute(
        &db,
        "UPDATE rollup_pending SET feed = (SELECT feed FROM rollup_pending WHERE id = \
         (SELECT MIN(id) FROM rollup_pending)) WHERE id = (SELECT MAX(id) FROM rollup_pending)",
    )
    .await;
    refresh(&s.a).await;
    assert_eq!(s.a.rollup_feed_counts(), counts(0, 2));
    s.check(50).await;
}

/// Folds running all the time beside the commits, as the rollup job does beside the device
/// endpoint: a fold that reads a commit's row the moment it commits still finds its readings
/// kept (they were kept only after the `COMMIT` returned, and a fold in between read the
/// device back, with 10,000 meters in a commit all of them).
async fn a_fold_racing_the_commit_finds_its_readings_kept(db: TestDb) {
    const COMMITS: i64 = 300;
    let s = Setup::new(&db).await;
    s.put(&s.a, 0..7).await;
    refresh(&s.a).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let folds = {
        let (store, stop) = (s.a.clone(), stop.clone());
        tokio::spawn(async move {
            let mut folded = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                folded += store.rollups().staff_fold().await.unwrap();
                tokio::task::yield_now().await;
            }
            folded
        })
    };
    for k in 1..=COMMITS {
        s.put(&s.a, k * 7..k * 7 + 7).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(folds.await.unwrap() > 1, "the folds ran beside the commits");
    refresh(&s.a).await;
    assert_eq!(s.a.rollup_feed_counts(), counts(1, 1));
    s.check(COMMITS * 7 + 7).await;
}

per_backend!(
    a_commit_of_ours_not_kept_is_read_from_its_row,
    a_device_going_on_from_its_hour_takes_its_readings_from_memory,
    commits_of_another_instance_in_the_mark_are_read_back,
    the_other_instance_folding_or_refreshing_our_commits_reads_them_back,
    a_late_reading_recomputes_from_the_database,
);

/// [`a_fold_racing_the_commit_finds_its_readings_kept`] on a runtime of several threads, as the
/// server's: the fold then runs while the committing task is still on its way back.
mod racing {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::a_fold_racing_the_commit_finds_its_readings_kept(tds_testkit::TestDb::sqlite().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let Some(db) = tds_testkit::TestDb::postgres().await else { return };
        super::a_fold_racing_the_commit_finds_its_readings_kept(db).await;
    }
}
