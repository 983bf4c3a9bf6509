//! Rollups (SPEC §1): hourly, daily and monthly aggregates per device in the tenant's time zone,
//! kept up to date as readings are committed, late and out-of-order ones included.
//!
//! How they stay current: [`crate::readings::ReadingStore::insert_groups`] marks each device it
//! stored readings for in `rollup_dirty` (earliest and latest instant), in the readings' own
//! transaction. [`RollupStore::staff_refresh_dirty`], run by the rollup worker, takes a batch of
//! marked devices and for each:
//! 1. widens the marked span to whole hours, through the hour of the first stored reading after
//!    it (a late reading shortens the interval that reading closes, so its bucket changes too);
//! 2. recomputes those hours from the raw readings and the one reading before them, with the
//!    meter rules of `tds_domain::rollup` (resets, rollover, gauges never summed); hour rows are
//!    only ever replaced, never deleted, so they outlive raw readings removed by retention;
//! 3. recomputes the days containing those hours from the hour rows, and the months containing
//!    those days from the day rows (a day is made of whole local hours, a month of whole days);
//! 4. clears the mark unless a newer commit marked the device again meanwhile, and moves the
//!    device's `last_seen_at` to the mark's time.
//!
//! Several instances may refresh at once: each computes from committed rows and a mark is only
//! cleared by whoever saw it last, so the result converges. Must not: be called per reading.

use crate::{Db, StoreError, Ts};
use chrono::{DateTime, Utc};
use futures_util::{StreamExt as _, stream};
use serde::Serialize;
use sqlx::AssertSqlSafe;
use std::collections::HashMap;
use tds_domain::buckets::{
    bucket_len_seconds, bucket_start, completeness, expected_readings, next_bucket_start,
};
use tds_domain::consumption::Meter;
use tds_domain::rollup::rollup;
use tds_domain::{Bucket, DeviceId, MeasurementKind, Medium, TenantId, TimeZone};

/// One bucket of one device, as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RollupRow {
    pub device_id: DeviceId,
    pub bucket: Bucket,
    /// The UTC instant the bucket starts at (local midnight for days, etc.).
    pub start: DateTime<Utc>,
    /// Counters and interval devices; `None` for gauges.
    pub consumption: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Gauges only.
    pub avg: Option<f64>,
    pub count: u32,
    /// Readings the gateway's reporting interval promises in this bucket.
    pub expected: u32,
    pub resets: u32,
}

impl RollupRow {
    /// Readings received over readings expected, at most 1.
    pub fn completeness(&self) -> Option<f64> {
        completeness(self.count, self.expected)
    }
}

/// Several devices' consumption of one medium and unit in one bucket, added up.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SummedBucket {
    pub medium: Medium,
    pub unit: String,
    pub start: DateTime<Utc>,
    pub consumption: f64,
    pub readings: u32,
    pub expected: u32,
}

/// One medium's consumption in one unit (home page, reports).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MediumConsumption {
    pub medium: Medium,
    pub unit: String,
    pub total: f64,
}

#[derive(sqlx::FromRow)]
struct Row {
    device_id: i64,
    granularity: String,
    bucket_start: Ts,
    consumption: Option<f64>,
    min_value: Option<f64>,
    max_value: Option<f64>,
    sum_value: Option<f64>,
    reading_count: i64,
    expected_count: i64,
    resets: i64,
}

impl Row {
    fn into_rollup(self) -> Option<RollupRow> {
        let count = u32::try_from(self.reading_count).unwrap_or(u32::MAX);
        Some(RollupRow {
            device_id: DeviceId::new(self.device_id),
            bucket: Bucket::from_name(&self.granularity)?,
            start: self.bucket_start.0,
            consumption: self.consumption,
            min: self.min_value,
            max: self.max_value,
            avg: self.sum_value.filter(|_| count > 0).map(|s| s / f64::from(count)),
            count,
            expected: u32::try_from(self.expected_count).unwrap_or(u32::MAX),
            resets: u32::try_from(self.resets).unwrap_or(u32::MAX),
        })
    }
}

const ROW_COLUMNS: &str = "device_id, granularity, bucket_start, consumption, min_value, max_value, sum_value, \
     reading_count, expected_count, resets";

/// A marked device, with what its rollups are computed with.
#[derive(sqlx::FromRow)]
struct Dirty {
    device_id: i64,
    tenant_id: i64,
    from_time: Ts,
    to_time: Ts,
    marked_at: Ts,
    kind: String,
    scale_factor: f64,
    rollover_value: Option<f64>,
    expected_interval_s: i64,
    timezone: String,
}

const DIRTY: &str = "SELECT r.device_id, r.tenant_id, r.from_time, r.to_time, r.marked_at, d.kind, d.scale_factor, \
     d.rollover_value, g.expected_interval_s, t.timezone \
     FROM rollup_dirty r JOIN devices d ON d.id = r.device_id JOIN gateways g ON g.id = d.gateway_id \
     JOIN tenants t ON t.id = r.tenant_id ORDER BY r.marked_at LIMIT $1";

/// A device's reading just before `$3` (`which` 0) and first reading after `$4` (`which` 1).
const NEIGHBOURS: &str = "SELECT time, value, CAST(0 AS BIGINT) AS which FROM (SELECT time, value FROM readings \
     WHERE device_id = $1 AND tenant_id = $2 AND time < $3 ORDER BY time DESC LIMIT 1) AS before_span \
     UNION ALL SELECT time, value, CAST(1 AS BIGINT) FROM (SELECT time, value FROM readings \
     WHERE device_id = $1 AND tenant_id = $2 AND time > $4 ORDER BY time LIMIT 1) AS after_span";

/// [`NEIGHBOURS`] of many devices: `$1` ids, `$2` tenants, `$3` first hours, `$4` span ends.
const PG_NEIGHBOURS: &str = "SELECT s.d, b.time, b.value, CAST(0 AS BIGINT) FROM \
     UNNEST($1::BIGINT[], $2::BIGINT[], $3::TIMESTAMPTZ[]) AS s(d, t, f) CROSS JOIN LATERAL \
     (SELECT time, value FROM readings WHERE device_id = s.d AND tenant_id = s.t AND time < s.f \
      ORDER BY time DESC LIMIT 1) AS b \
     UNION ALL SELECT s.d, n.time, n.value, CAST(1 AS BIGINT) FROM \
     UNNEST($1::BIGINT[], $2::BIGINT[], $4::TIMESTAMPTZ[]) AS s(d, t, e) CROSS JOIN LATERAL \
     (SELECT time, value FROM readings WHERE device_id = s.d AND tenant_id = s.t AND time > s.e \
      ORDER BY time LIMIT 1) AS n";

/// Many devices' readings with `$3 <= time < $4`, per device (ids `$1`, tenants `$2`).
const PG_READINGS: &str = "SELECT s.d, r.time, r.value FROM \
     UNNEST($1::BIGINT[], $2::BIGINT[], $3::TIMESTAMPTZ[], $4::TIMESTAMPTZ[]) AS s(d, t, f, e) CROSS JOIN LATERAL \
     (SELECT time, value FROM readings WHERE device_id = s.d AND tenant_id = s.t AND time >= s.f AND time < s.e) AS r";

#[derive(Debug, Clone, Copy)]
pub struct RollupStore<'a> {
    db: &'a Db,
}

impl<'a> RollupStore<'a> {
    pub(crate) fn new(db: &'a Db) -> Self {
        Self { db }
    }

    /// A device's rollups of one granularity with `from <= start < to`, oldest first.
    pub async fn for_device(
        &self,
        tenant: TenantId,
        device: DeviceId,
        bucket: Bucket,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<RollupRow>, StoreError> {
        let sql = format!(
            "SELECT {ROW_COLUMNS} FROM rollups WHERE tenant_id = $1 AND device_id = $2 AND granularity = $3 \
             AND bucket_start >= $4 AND bucket_start < $5 ORDER BY bucket_start"
        );
        let rows: Vec<Row> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(tenant.get())
                    .bind(device.get())
                    .bind(bucket.as_str())
                    .bind(Ts::from(from))
                    .bind(Ts::from(to))
                    .fetch_all(pool)
                    .await
        )?;
        Ok(rows.into_iter().filter_map(Row::into_rollup).collect())
    }

    /// The rollups of several of the tenant's devices (one granularity, `from <= start < to`),
    /// by device then time: one statement per 500 devices instead of one per device.
    pub async fn for_devices(
        &self,
        tenant: TenantId,
        devices: &[DeviceId],
        bucket: Bucket,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<RollupRow>, StoreError> {
        let mut found = Vec::new();
        for part in devices.chunks(500) {
            let list = (0..part.len()).map(|i| format!("${}", i + 5)).collect::<Vec<_>>().join(", ");
            let sql = format!(
                "SELECT {ROW_COLUMNS} FROM rollups WHERE tenant_id = $1 AND granularity = $2 \
                 AND bucket_start >= $3 AND bucket_start < $4 AND device_id IN ({list}) \
                 ORDER BY device_id, bucket_start"
            );
            let rows: Vec<Row> = on_db!(
                self.db,
                read | pool | {
                    let mut q = sqlx::query_as(AssertSqlSafe(sql.as_str()))
                        .bind(tenant.get())
                        .bind(bucket.as_str())
                        .bind(Ts::from(from))
                        .bind(Ts::from(to));
                    for d in part {
                        q = q.bind(d.get());
                    }
                    q.fetch_all(pool).await
                }
            )?;
            found.extend(rows.into_iter().filter_map(Row::into_rollup));
        }
        Ok(found)
    }

    /// Each device's consumption over the `bucket` rows with `from <= start < to` (e.g. today's
    /// day row, this month's month row), for all of the tenant's devices or only `devices`:
    /// what the consumption alert rules compare with their thresholds, in one statement per
    /// 500 devices. Devices without consumption in the span are absent.
    pub async fn totals_by_device(
        &self,
        tenant: TenantId,
        devices: Option<&[DeviceId]>,
        bucket: Bucket,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<HashMap<DeviceId, f64>, StoreError> {
        let mut found = HashMap::new();
        let parts: Vec<Option<&[DeviceId]>> = match devices {
            Some(list) => list.chunks(500).map(Some).collect(),
            None => vec![None],
        };
        for part in parts {
            let list = part.map_or_else(String::new, |p| {
                let ids = (0..p.len()).map(|i| format!("${}", i + 5)).collect::<Vec<_>>().join(", ");
                format!("AND device_id IN ({ids})")
            });
            let sql = format!(
                "SELECT device_id, SUM(consumption) FROM rollups WHERE tenant_id = $1 AND granularity = $2 \
                 AND bucket_start >= $3 AND bucket_start < $4 AND consumption IS NOT NULL {list} \
                 GROUP BY device_id"
            );
            let rows: Vec<(i64, f64)> = on_db!(
                self.db,
                read | pool | {
                    let mut q = sqlx::query_as(AssertSqlSafe(sql.as_str()))
                        .bind(tenant.get())
                        .bind(bucket.as_str())
                        .bind(Ts::from(from))
                        .bind(Ts::from(to));
                    for d in part.unwrap_or_default() {
                        q = q.bind(d.get());
                    }
                    q.fetch_all(pool).await
                }
            )?;
            found.extend(rows.into_iter().map(|(d, c)| (DeviceId::new(d), c)));
        }
        Ok(found)
    }

    /// The consumption of several of the tenant's devices added up per medium, unit and bucket
    /// (one granularity, `from <= start < to`), gauges left out: what a report over a gateway,
    /// a medium or the tenant needs, summed by the database instead of read row by row.
    pub async fn sum_for_devices(
        &self,
        tenant: TenantId,
        devices: &[DeviceId],
        bucket: Bucket,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<SummedBucket>, StoreError> {
        let mut found: Vec<SummedBucket> = Vec::new();
        for part in devices.chunks(500) {
            let list = (0..part.len()).map(|i| format!("${}", i + 5)).collect::<Vec<_>>().join(", ");
            let sql = format!(
                "SELECT d.medium, d.unit, r.bucket_start, SUM(r.consumption), CAST(SUM(r.reading_count) AS BIGINT), \
                 CAST(SUM(r.expected_count) AS BIGINT) FROM rollups r JOIN devices d ON d.id = r.device_id \
                 WHERE r.tenant_id = $1 AND d.tenant_id = $1 AND r.granularity = $2 AND r.bucket_start >= $3 \
                 AND r.bucket_start < $4 AND r.consumption IS NOT NULL AND r.device_id IN ({list}) \
                 GROUP BY d.medium, d.unit, r.bucket_start ORDER BY d.medium, d.unit, r.bucket_start"
            );
            let rows: Vec<(String, String, Ts, f64, i64, i64)> = on_db!(
                self.db,
                read | pool | {
                    let mut q = sqlx::query_as(AssertSqlSafe(sql.as_str()))
                        .bind(tenant.get())
                        .bind(bucket.as_str())
                        .bind(Ts::from(from))
                        .bind(Ts::from(to));
                    for d in part {
                        q = q.bind(d.get());
                    }
                    q.fetch_all(pool).await
                }
            )?;
            for (medium, unit, start, consumption, readings, expected) in rows {
                let medium = Medium::parse(&medium).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let count = |n: i64| u32::try_from(n).unwrap_or(u32::MAX);
                // Chunks of the device list add up (rarely: more than 500 devices).
                match found.iter_mut().find(|b| b.medium == medium && b.unit == unit && b.start == start.0) {
                    Some(b) => {
                        b.consumption += consumption;
                        b.readings = b.readings.saturating_add(count(readings));
                        b.expected = b.expected.saturating_add(count(expected));
                    }
                    None => found.push(SummedBucket {
                        medium,
                        unit,
                        start: start.0,
                        consumption,
                        readings: count(readings),
                        expected: count(expected),
                    }),
                }
            }
        }
        Ok(found)
    }

    /// The tenant's consumption per medium and unit over the `bucket` rows with
    /// `from <= start < to` (e.g. the day rows of this month), gauges excluded. Units are never
    /// added together: energy in `kWh` and energy in `MWh` are two lines.
    pub async fn consumption_by_medium(
        &self,
        tenant: TenantId,
        bucket: Bucket,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<MediumConsumption>, StoreError> {
        // Devices of the tenant first: a reading taken under a former owner stays with that
        // owner's rollups (their tenant_id), which the tenant filter on rollups keeps out.
        let rows: Vec<(String, String, f64)> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(
                    "SELECT d.medium, d.unit, SUM(r.consumption) FROM rollups r JOIN devices d ON d.id = r.device_id \
                     WHERE r.tenant_id = $1 AND d.tenant_id = $1 AND r.granularity = $2 AND r.bucket_start >= $3 \
                     AND r.bucket_start < $4 AND r.consumption IS NOT NULL GROUP BY d.medium, d.unit ORDER BY d.medium, d.unit"
                )
                .bind(tenant.get())
                .bind(bucket.as_str())
                .bind(Ts::from(from))
                .bind(Ts::from(to))
                .fetch_all(pool)
                .await
        )?;
        rows.into_iter()
            .map(|(medium, unit, total)| {
                Ok(MediumConsumption {
                    medium: Medium::parse(&medium).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    unit,
                    total,
                })
            })
            .collect()
    }

    /// Every device marked for a refresh, with its marked span, by device (for operators and
    /// tests: what a commit asked to recompute).
    pub async fn staff_marks(&self) -> Result<Vec<(DeviceId, DateTime<Utc>, DateTime<Utc>)>, StoreError> {
        let rows: Vec<(i64, Ts, Ts)> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as("SELECT device_id, from_time, to_time FROM rollup_dirty ORDER BY device_id")
                    .fetch_all(pool)
                    .await
        )?;
        Ok(rows.into_iter().map(|(d, f, t)| (DeviceId::new(d), f.0, t.0)).collect())
    }

    /// Devices waiting for their rollups to be refreshed (0 when everything is current).
    pub async fn staff_pending(&self) -> Result<i64, StoreError> {
        Ok(on_db!(
            self.db,
            read | pool | sqlx::query_scalar("SELECT count(*) FROM rollup_dirty").fetch_one(pool).await
        )?)
    }

    /// Brings PostgreSQL's planner statistics of readings and rollups up to date (`ANALYZE`),
    /// as autovacuum does on its own within a minute or so of a table growing by a tenth. For
    /// bulk loads measured at once (`tds bench queries`): without statistics PostgreSQL reads a
    /// device's rollups through the tenant index. Nothing on SQLite, which runs without them.
    pub async fn staff_analyze(&self) -> Result<(), StoreError> {
        if let Db::Postgres(pg) = self.db {
            sqlx::query("ANALYZE readings, rollups").execute(pg).await?;
        }
        Ok(())
    }

    /// Refreshes the rollups of up to `limit` marked devices (oldest marks first); returns how
    /// many devices it refreshed. Run it until it returns 0 to bring everything up to date.
    ///
    /// Everything is read first, outside any write transaction (on SQLite the readers do not
    /// block the one writer), and computed in memory: days from the stored hours with the
    /// recomputed ones put in, months likewise from days. Devices are read
    /// [`PLAN_CONCURRENCY`] at a time, so that the database reads one device's rows while this
    /// process computes another's. A round stops taking devices once it holds
    /// [`ROUND_ROWS`] new rows (a device marked over a year brings ~9 k), which bounds its memory
    /// and its write transaction when a long backlog is caught up. Then one short transaction
    /// writes the rows (`UNNEST` on PostgreSQL, large multi-row upserts on SQLite) and clears the
    /// marks of the devices planned, so that the device endpoint's commits wait for a few
    /// statements, not for the whole computation.
    pub async fn staff_refresh_dirty(&self, limit: i64) -> Result<usize, StoreError> {
        self.staff_refresh_round(limit, ROUND_ROWS).await
    }

    /// [`Self::staff_refresh_dirty`] with the round's row budget given: it takes no more devices
    /// once their new rows reach `max_rows` (at least one device is always refreshed).
    pub async fn staff_refresh_round(&self, limit: i64, max_rows: usize) -> Result<usize, StoreError> {
        Ok(self.refresh(limit, max_rows).await?.len())
    }

    /// [`Self::staff_refresh_dirty`], answering which devices (of which tenants) it refreshed:
    /// the alert rules on consumption are evaluated for exactly these, right after.
    pub async fn staff_refresh_touched(&self, limit: i64) -> Result<Vec<(TenantId, DeviceId)>, StoreError> {
        self.refresh(limit, ROUND_ROWS).await
    }

    async fn refresh(&self, limit: i64, max_rows: usize) -> Result<Vec<(TenantId, DeviceId)>, StoreError> {
        let dirty: Vec<Dirty> =
            on_db!(self.db, read | pool | sqlx::query_as(DIRTY).bind(limit).fetch_all(pool).await)?;
        if dirty.is_empty() {
            return Ok(Vec::new());
        }
        let mut zones: HashMap<String, TimeZone> = HashMap::new();
        let mut work = Vec::with_capacity(dirty.len());
        for d in dirty {
            let tz = *zones
                .entry(d.timezone.clone())
                .or_insert_with(|| TimeZone::parse(&d.timezone).unwrap_or_default());
            let kind = MeasurementKind::parse(&d.kind).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            // A device row the domain refuses (a negative scale typed before the check existed)
            // is refreshed as scale 1 without rollover rather than blocking the queue.
            let meter = Meter::new(kind, d.scale_factor, d.rollover_value)
                .or_else(|_| Meter::new(kind, 1.0, None))
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            work.push((d, tz, meter));
        }
        let mut upserts: Vec<Upsert> = Vec::new();
        let mut planned: Vec<(i64, Ts)> = Vec::new();
        let mut touched: Vec<(TenantId, DeviceId)> = Vec::new();
        match self.db {
            // PostgreSQL: a few hundred devices per statement (a live round's devices have a few
            // readings each, and a statement costs more than its rows), fewer when their spans
            // are long; the round stops at the budget after a whole chunk.
            Db::Postgres(pg) => {
                let mut at = 0;
                while at < work.len() && upserts.len() < max_rows {
                    let room = max_rows - upserts.len();
                    let mut end = at;
                    let mut estimate = 0;
                    while end < work.len()
                        && (end == at || (estimate < room && end - at < PG_DEVICES_PER_READ))
                    {
                        estimate += estimated_rows(&work[end].0);
                        end += 1;
                    }
                    let chunk = &work[at..end];
                    let inputs = read_many(pg, chunk).await?;
                    for ((d, tz, meter), input) in chunk.iter().zip(inputs) {
                        upserts.extend(compute(d, *tz, *meter, input));
                        planned.push((d.device_id, d.marked_at));
                        touched.push((TenantId::new(d.tenant_id), DeviceId::new(d.device_id)));
                    }
                    at = end;
                }
            }
            // SQLite: a device at a time (its statements are cheap in process), four in flight
            // so that reading one overlaps computing another.
            Db::Sqlite(_) => {
                // The futures are made before the stream takes them: a closure in the stream
                // would borrow in a way the spawned worker's `Send` check cannot prove.
                let futures: Vec<_> = work.iter().map(|(d, tz, _)| self.read_one(d, *tz)).collect();
                let mut reads = stream::iter(futures).buffered(PLAN_CONCURRENCY);
                let mut next = work.iter();
                while let Some(input) = reads.next().await {
                    let Some((d, tz, meter)) = next.next() else { break };
                    upserts.extend(compute(d, *tz, *meter, input?));
                    planned.push((d.device_id, d.marked_at));
                    touched.push((TenantId::new(d.tenant_id), DeviceId::new(d.device_id)));
                    if upserts.len() >= max_rows {
                        break;
                    }
                }
            }
        }
        let now = Ts::now();
        in_tx!(self.db, |tx| {
            for chunk in upserts.chunks(UPSERT_CHUNK) {
                tx.upsert_rollups(chunk, now).await?;
            }
            // In device order, as the readings' commits mark them (`readings::BulkInsert::mark_dirty`).
            planned.sort_unstable_by_key(|p| p.0);
            for chunk in planned.chunks(CLEAR_CHUNK) {
                tx.clear_marks(chunk).await?;
            }
            Ok(())
        })?;
        Ok(touched)
    }

    /// Reads what one marked device's refresh needs, in three statements: the neighbours, the
    /// raw readings, and the stored finer rows the coarser buckets are summed from.
    async fn read_one(&self, d: &Dirty, tz: TimeZone) -> Result<Inputs, StoreError> {
        let (device, tenant) = (d.device_id, d.tenant_id);
        let first = bucket_start(tz, Bucket::Hour, d.from_time.0);
        let neighbours: Vec<(Ts, f64, i64)> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(NEIGHBOURS)
                    .bind(device)
                    .bind(tenant)
                    .bind(Ts::from(first))
                    .bind(d.to_time)
                    .fetch_all(pool)
                    .await
        )?;
        let mut input = Inputs::default();
        for (t, v, which) in neighbours {
            if which == 0 {
                input.baseline = Some((t.0, v));
            } else {
                input.next = Some(t.0);
            }
        }
        let r = Ranges::of(d, tz, input.next);
        let readings: Vec<(Ts, f64)> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(
                    "SELECT time, value FROM readings WHERE device_id = $1 AND tenant_id = $2 AND time >= $3 \
                     AND time < $4 ORDER BY time",
                )
                .bind(device)
                .bind(tenant)
                .bind(Ts::from(r.first))
                .bind(Ts::from(r.readings_end))
                .fetch_all(pool)
                .await
        )?;
        input.readings = readings.into_iter().map(|(t, v)| (t.0, v)).collect();
        let sql = format!(
            "SELECT {ROW_COLUMNS} FROM rollups WHERE device_id = $1 AND \
             ((granularity = 'hour' AND bucket_start >= $2 AND bucket_start < $3) \
              OR (granularity = 'day' AND bucket_start >= $4 AND bucket_start < $5))"
        );
        input.stored = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(device)
                    .bind(Ts::from(r.day_from))
                    .bind(Ts::from(r.day_to))
                    .bind(Ts::from(r.month_from))
                    .bind(Ts::from(r.month_to))
                    .fetch_all(pool)
                    .await
        )?;
        Ok(input)
    }
}

/// What a device's refresh is computed from.
#[derive(Default)]
struct Inputs {
    /// The last reading before the first recomputed hour.
    baseline: Option<(DateTime<Utc>, f64)>,
    /// The first reading after the marked span.
    next: Option<DateTime<Utc>>,
    /// The readings of the recomputed hours, any order.
    readings: Vec<(DateTime<Utc>, f64)>,
    /// Stored hour rows of the days and day rows of the months the recomputed hours touch.
    stored: Vec<Row>,
}

/// The instants a device's refresh reads between.
struct Ranges {
    /// The first recomputed hour.
    first: DateTime<Utc>,
    /// The end of the hour of the first reading after the span (or of the span's last).
    readings_end: DateTime<Utc>,
    day_from: DateTime<Utc>,
    day_to: DateTime<Utc>,
    month_from: DateTime<Utc>,
    month_to: DateTime<Utc>,
}

impl Ranges {
    fn of(d: &Dirty, tz: TimeZone, next: Option<DateTime<Utc>>) -> Self {
        let first = bucket_start(tz, Bucket::Hour, d.from_time.0);
        let last = next.unwrap_or(d.to_time.0);
        Ranges {
            first,
            readings_end: next_bucket_start(tz, Bucket::Hour, last),
            day_from: bucket_start(tz, Bucket::Day, first),
            day_to: next_bucket_start(tz, Bucket::Day, last),
            month_from: bucket_start(tz, Bucket::Month, first),
            month_to: next_bucket_start(tz, Bucket::Month, last),
        }
    }
}

/// Devices read per statement on PostgreSQL at most.
const PG_DEVICES_PER_READ: usize = 500;

/// About how many rows a device's refresh writes: its span's hours, and a day and month or so.
fn estimated_rows(d: &Dirty) -> usize {
    let hours = usize::try_from((d.to_time.0 - d.from_time.0).num_hours()).unwrap_or(0) + 1;
    hours + hours / 24 + 2
}

/// Reads what the refreshes of `work`'s devices need in three statements for them all, on
/// PostgreSQL (`UNNEST` of their ids and instants, a `LATERAL` index scan per device); in
/// `work`'s order.
async fn read_many(pg: &sqlx::PgPool, work: &[(Dirty, TimeZone, Meter)]) -> Result<Vec<Inputs>, StoreError> {
    let index: HashMap<i64, usize> = work.iter().enumerate().map(|(i, (d, _, _))| (d.device_id, i)).collect();
    let mut inputs: Vec<Inputs> = work.iter().map(|_| Inputs::default()).collect();
    let devices: Vec<i64> = work.iter().map(|(d, _, _)| d.device_id).collect();
    let tenants: Vec<i64> = work.iter().map(|(d, _, _)| d.tenant_id).collect();
    let firsts: Vec<Ts> =
        work.iter().map(|(d, tz, _)| Ts::from(bucket_start(*tz, Bucket::Hour, d.from_time.0))).collect();
    let ends: Vec<Ts> = work.iter().map(|(d, _, _)| d.to_time).collect();
    let neighbours: Vec<(i64, Ts, f64, i64)> = sqlx::query_as(PG_NEIGHBOURS)
        .bind(&devices)
        .bind(&tenants)
        .bind(&firsts)
        .bind(&ends)
        .fetch_all(pg)
        .await?;
    for (device, t, v, which) in neighbours {
        if let Some(input) = index.get(&device).and_then(|&i| inputs.get_mut(i)) {
            if which == 0 {
                input.baseline = Some((t.0, v));
            } else {
                input.next = Some(t.0);
            }
        }
    }
    let ranges: Vec<Ranges> =
        work.iter().zip(&inputs).map(|((d, tz, _), input)| Ranges::of(d, *tz, input.next)).collect();
    let readings: Vec<(i64, Ts, f64)> = sqlx::query_as(PG_READINGS)
        .bind(&devices)
        .bind(&tenants)
        .bind(ranges.iter().map(|r| Ts::from(r.first)).collect::<Vec<_>>())
        .bind(ranges.iter().map(|r| Ts::from(r.readings_end)).collect::<Vec<_>>())
        .fetch_all(pg)
        .await?;
    for (device, t, v) in readings {
        if let Some(input) = index.get(&device).and_then(|&i| inputs.get_mut(i)) {
            input.readings.push((t.0, v));
        }
    }
    let sql = format!(
        "SELECT r.* FROM UNNEST($1::BIGINT[], $2::TIMESTAMPTZ[], $3::TIMESTAMPTZ[], $4::TIMESTAMPTZ[], \
         $5::TIMESTAMPTZ[]) AS s(d, hf, ht, df, dt) CROSS JOIN LATERAL (SELECT {ROW_COLUMNS} FROM rollups \
         WHERE device_id = s.d AND ((granularity = 'hour' AND bucket_start >= s.hf AND bucket_start < s.ht) \
         OR (granularity = 'day' AND bucket_start >= s.df AND bucket_start < s.dt))) AS r"
    );
    let stored: Vec<Row> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(&devices)
        .bind(ranges.iter().map(|r| Ts::from(r.day_from)).collect::<Vec<_>>())
        .bind(ranges.iter().map(|r| Ts::from(r.day_to)).collect::<Vec<_>>())
        .bind(ranges.iter().map(|r| Ts::from(r.month_from)).collect::<Vec<_>>())
        .bind(ranges.iter().map(|r| Ts::from(r.month_to)).collect::<Vec<_>>())
        .fetch_all(pg)
        .await?;
    for row in stored {
        if let Some(input) = index.get(&row.device_id).and_then(|&i| inputs.get_mut(i)) {
            input.stored.push(row);
        }
    }
    Ok(inputs)
}

/// A device's new hour rows from its readings, and its day and month rows from the stored finer
/// rows with the recomputed ones in their place.
fn compute(d: &Dirty, tz: TimeZone, meter: Meter, input: Inputs) -> Vec<Upsert> {
    let (device, tenant) = (d.device_id, d.tenant_id);
    let interval = d.expected_interval_s.max(1);
    let mut raw = input.readings;
    raw.sort_by_key(|r| r.0);
    let hours = rollup(meter, input.baseline, &raw, tz, Bucket::Hour);
    let mut fresh: Vec<Upsert> = hours
        .iter()
        .map(|h| Upsert {
            device,
            tenant,
            bucket: Bucket::Hour,
            start: h.start,
            consumption: h.consumption,
            min: h.min,
            max: h.max,
            sum: h.avg.map(|a| a * f64::from(h.count)),
            count: i64::from(h.count),
            expected: i64::from(expected_readings(bucket_len_seconds(tz, Bucket::Hour, h.start), interval)),
            resets: i64::from(h.resets),
        })
        .collect();
    let mut stored = input.stored;
    for (coarse, fine) in [(Bucket::Day, Bucket::Hour), (Bucket::Month, Bucket::Day)] {
        let finer: Vec<Row>;
        (finer, stored) = stored.into_iter().partition(|r| r.granularity == fine.as_str());
        let mut parts: std::collections::BTreeMap<DateTime<Utc>, Part> =
            finer.into_iter().map(|r| (r.bucket_start.0, Part::from(&r))).collect();
        for u in fresh.iter().filter(|u| u.bucket == fine) {
            parts.insert(u.start, Part::from(u));
        }
        let coarse_rows: Vec<Upsert> = combine(parts.into_iter(), |t| bucket_start(tz, coarse, t))
            .into_iter()
            .map(|c| Upsert {
                device,
                tenant,
                bucket: coarse,
                start: c.start,
                consumption: c.consumption,
                min: c.min,
                max: c.max,
                sum: c.sum,
                count: c.count,
                expected: i64::from(expected_readings(bucket_len_seconds(tz, coarse, c.start), interval)),
                resets: c.resets,
            })
            .collect();
        fresh.extend(coarse_rows);
    }
    fresh
}

/// A rollup row to write.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Upsert {
    device: i64,
    tenant: i64,
    bucket: Bucket,
    start: DateTime<Utc>,
    consumption: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
    sum: Option<f64>,
    count: i64,
    expected: i64,
    resets: i64,
}

/// Rows per upsert statement: one `UNNEST` on PostgreSQL; on SQLite 12 parameters a row,
/// 24,000 in all, under its limit of 32,766.
const UPSERT_CHUNK: usize = 2000;

/// Devices whose rows a refresh reads at once.
const PLAN_CONCURRENCY: usize = 4;

/// New rows after which a refresh round takes no more devices (~20 MB in memory).
const ROUND_ROWS: usize = 200_000;

const UPSERT_SET: &str = " ON CONFLICT (device_id, granularity, bucket_start) DO UPDATE SET tenant_id = excluded.tenant_id, \
     consumption = excluded.consumption, min_value = excluded.min_value, max_value = excluded.max_value, \
     sum_value = excluded.sum_value, reading_count = excluded.reading_count, \
     expected_count = excluded.expected_count, resets = excluded.resets, updated_at = excluded.updated_at";

const UPSERT_COLUMNS: &str = "INSERT INTO rollups (device_id, granularity, bucket_start, tenant_id, consumption, \
     min_value, max_value, sum_value, reading_count, expected_count, resets, updated_at) ";

/// Refreshed devices whose marks one statement clears: 2 parameters each on SQLite.
const CLEAR_CHUNK: usize = 2000;

/// Writing rollup rows, and clearing the marks of the devices refreshed, in each database's
/// fastest form: a few statements per round, not two per device.
trait UpsertRollups {
    async fn upsert_rollups(&mut self, rows: &[Upsert], now: Ts) -> Result<(), sqlx::Error>;
    /// Deletes each device's mark if it is still the one refreshed (a commit since then moved
    /// `marked_at`, and its readings wait for the next round), and sets the devices' `last_seen`
    /// to the mark: SPEC §2 wants every accepted message to update it, and doing it here, not in
    /// the ingest commit, keeps a per-device UPDATE off the path a PUBACK waits for. `planned`
    /// is in device order.
    async fn clear_marks(&mut self, planned: &[(i64, Ts)]) -> Result<(), sqlx::Error>;
}

impl UpsertRollups for sqlx::PgConnection {
    async fn upsert_rollups(&mut self, rows: &[Upsert], now: Ts) -> Result<(), sqlx::Error> {
        let sql = format!(
            "{UPSERT_COLUMNS}SELECT d, g, b, t, c, mn, mx, s, n, e, r, $12 FROM UNNEST($1::BIGINT[], $2::TEXT[], \
             $3::TIMESTAMPTZ[], $4::BIGINT[], $5::FLOAT8[], $6::FLOAT8[], $7::FLOAT8[], $8::FLOAT8[], $9::BIGINT[], \
             $10::BIGINT[], $11::BIGINT[]) AS x(d, g, b, t, c, mn, mx, s, n, e, r){UPSERT_SET}"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(rows.iter().map(|u| u.device).collect::<Vec<_>>())
            .bind(rows.iter().map(|u| u.bucket.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|u| Ts::from(u.start)).collect::<Vec<_>>())
            .bind(rows.iter().map(|u| u.tenant).collect::<Vec<_>>())
            .bind(rows.iter().map(|u| u.consumption).collect::<Vec<_>>())
            .bind(rows.iter().map(|u| u.min).collect::<Vec<_>>())
            .bind(rows.iter().map(|u| u.max).collect::<Vec<_>>())
            .bind(rows.iter().map(|u| u.sum).collect::<Vec<_>>())
            .bind(rows.iter().map(|u| u.count).collect::<Vec<_>>())
            .bind(rows.iter().map(|u| u.expected).collect::<Vec<_>>())
            .bind(rows.iter().map(|u| u.resets).collect::<Vec<_>>())
            .bind(now)
            .execute(&mut *self)
            .await?;
        Ok(())
    }

    async fn clear_marks(&mut self, planned: &[(i64, Ts)]) -> Result<(), sqlx::Error> {
        let devices: Vec<i64> = planned.iter().map(|p| p.0).collect();
        let marks: Vec<Ts> = planned.iter().map(|p| p.1).collect();
        // The marks' rows locked in device order first, as the ingest commits lock them: a
        // set-based DELETE alone locks in whatever order its plan visits them.
        sqlx::query("SELECT 1 FROM rollup_dirty WHERE device_id = ANY($1) ORDER BY device_id FOR UPDATE")
            .bind(&devices)
            .execute(&mut *self)
            .await?;
        sqlx::query(
            "DELETE FROM rollup_dirty d USING UNNEST($1::BIGINT[], $2::TIMESTAMPTZ[]) AS s(id, m) \
             WHERE d.device_id = s.id AND d.marked_at = s.m",
        )
        .bind(&devices)
        .bind(&marks)
        .execute(&mut *self)
        .await?;
        sqlx::query(
            "UPDATE devices d SET last_seen_at = s.m FROM UNNEST($1::BIGINT[], $2::TIMESTAMPTZ[]) AS s(id, m) \
             WHERE d.id = s.id AND (d.last_seen_at IS NULL OR d.last_seen_at < s.m)",
        )
        .bind(&devices)
        .bind(&marks)
        .execute(&mut *self)
        .await?;
        Ok(())
    }
}

impl UpsertRollups for sqlx::SqliteConnection {
    async fn upsert_rollups(&mut self, rows: &[Upsert], now: Ts) -> Result<(), sqlx::Error> {
        let mut sql = String::from(UPSERT_COLUMNS);
        sql.push_str("VALUES ");
        for i in 0..rows.len() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str("(?,?,?,?,?,?,?,?,?,?,?,?)");
        }
        sql.push_str(UPSERT_SET);
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for u in rows {
            q = q
                .bind(u.device)
                .bind(u.bucket.as_str())
                .bind(Ts::from(u.start))
                .bind(u.tenant)
                .bind(u.consumption)
                .bind(u.min)
                .bind(u.max)
                .bind(u.sum)
                .bind(u.count)
                .bind(u.expected)
                .bind(u.resets)
                .bind(now);
        }
        q.execute(&mut *self).await?;
        Ok(())
    }

    async fn clear_marks(&mut self, planned: &[(i64, Ts)]) -> Result<(), sqlx::Error> {
        let values = vec!["(?,?)"; planned.len()].join(",");
        let delete = format!("DELETE FROM rollup_dirty WHERE (device_id, marked_at) IN (VALUES {values})");
        let mut q = sqlx::query(AssertSqlSafe(delete));
        for (device, marked_at) in planned {
            q = q.bind(device).bind(marked_at);
        }
        q.execute(&mut *self).await?;
        let update = format!(
            "UPDATE devices SET last_seen_at = s.m FROM (SELECT column1 AS id, column2 AS m FROM (VALUES {values})) AS s \
             WHERE devices.id = s.id AND (devices.last_seen_at IS NULL OR devices.last_seen_at < s.m)"
        );
        let mut q = sqlx::query(AssertSqlSafe(update));
        for (device, marked_at) in planned {
            q = q.bind(device).bind(marked_at);
        }
        q.execute(&mut *self).await?;
        Ok(())
    }
}

/// The part of a finer row that a coarser one sums.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Part {
    consumption: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
    sum: Option<f64>,
    count: i64,
    resets: i64,
}

impl From<&Row> for Part {
    fn from(r: &Row) -> Self {
        Part {
            consumption: r.consumption,
            min: r.min_value,
            max: r.max_value,
            sum: r.sum_value,
            count: r.reading_count,
            resets: r.resets,
        }
    }
}

impl From<&Upsert> for Part {
    fn from(u: &Upsert) -> Self {
        Part {
            consumption: u.consumption,
            min: u.min,
            max: u.max,
            sum: u.sum,
            count: u.count,
            resets: u.resets,
        }
    }
}

/// A coarser bucket summed from finer rows.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Combined {
    start: DateTime<Utc>,
    consumption: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
    sum: Option<f64>,
    count: i64,
    resets: i64,
}

/// Groups finer rows (in time order) by the coarser bucket `start_of` puts them in.
fn combine(
    parts: impl Iterator<Item = (DateTime<Utc>, Part)>,
    start_of: impl Fn(DateTime<Utc>) -> DateTime<Utc>,
) -> Vec<Combined> {
    let add = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(x), Some(y)) => Some(x + y),
        (x, None) | (None, x) => x,
    };
    let mut out: Vec<Combined> = Vec::new();
    for (at, p) in parts {
        let start = start_of(at);
        match out.last_mut() {
            Some(c) if c.start == start => {
                c.consumption = add(c.consumption, p.consumption);
                c.min = match (c.min, p.min) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                c.max = match (c.max, p.max) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                c.sum = add(c.sum, p.sum);
                c.count += p.count;
                c.resets += p.resets;
            }
            _ => out.push(Combined {
                start,
                consumption: p.consumption,
                min: p.min,
                max: p.max,
                sum: p.sum,
                count: p.count,
                resets: p.resets,
            }),
        }
    }
    out
}
