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
//! 4. clears the mark unless a newer commit marked the device again meanwhile.
//!
//! Several instances may refresh at once: each computes from committed rows and a mark is only
//! cleared by whoever saw it last, so the result converges. Must not: be called per reading.

use crate::{Db, StoreError, Ts};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::AssertSqlSafe;
use std::collections::HashMap;
use std::fmt::Write as _;
use tds_domain::buckets::{
    bucket_len_seconds, bucket_start, completeness, expected_readings, next_bucket_start,
};
use tds_domain::consumption::Meter;
use tds_domain::rollup::rollup;
use tds_domain::{Bucket, DeviceId, MeasurementKind, TenantId, TimeZone};

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

const UPSERT: &str = "INSERT INTO rollups (device_id, granularity, bucket_start, tenant_id, consumption, min_value, \
     max_value, sum_value, reading_count, expected_count, resets, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
     ON CONFLICT (device_id, granularity, bucket_start) DO UPDATE SET tenant_id = excluded.tenant_id, \
     consumption = excluded.consumption, min_value = excluded.min_value, max_value = excluded.max_value, \
     sum_value = excluded.sum_value, reading_count = excluded.reading_count, \
     expected_count = excluded.expected_count, resets = excluded.resets, updated_at = excluded.updated_at";

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

/// Marks devices whose readings changed; `spans` maps device id to its earliest and latest
/// instant (µs). Same SQL on both databases.
pub(crate) fn mark_dirty_sql(n: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO rollup_dirty (device_id, tenant_id, from_time, to_time, marked_at) VALUES ",
    );
    for i in 0..n {
        if i > 0 {
            sql.push(',');
        }
        let p = i * 3;
        let _ = write!(sql, "(${}, $1, ${}, ${}, $2)", p + 3, p + 4, p + 5);
    }
    sql.push_str(
        " ON CONFLICT (device_id) DO UPDATE SET \
         from_time = CASE WHEN excluded.from_time < rollup_dirty.from_time THEN excluded.from_time ELSE rollup_dirty.from_time END, \
         to_time = CASE WHEN excluded.to_time > rollup_dirty.to_time THEN excluded.to_time ELSE rollup_dirty.to_time END, \
         marked_at = excluded.marked_at",
    );
    sql
}

/// Devices marked per statement.
pub(crate) const MARK_CHUNK: usize = 200;

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

    /// Devices waiting for their rollups to be refreshed (0 when everything is current).
    pub async fn staff_pending(&self) -> Result<i64, StoreError> {
        Ok(on_db!(
            self.db,
            read | pool | sqlx::query_scalar("SELECT count(*) FROM rollup_dirty").fetch_one(pool).await
        )?)
    }

    /// Refreshes the rollups of up to `limit` marked devices (oldest marks first), in one
    /// transaction; returns how many devices it refreshed. Run it until it returns 0 to bring
    /// everything up to date.
    pub async fn staff_refresh_dirty(&self, limit: i64) -> Result<usize, StoreError> {
        let dirty: Vec<Dirty> =
            on_db!(self.db, read | pool | sqlx::query_as(DIRTY).bind(limit).fetch_all(pool).await)?;
        if dirty.is_empty() {
            return Ok(0);
        }
        let mut zones: HashMap<String, TimeZone> = HashMap::new();
        let mut plans = Vec::with_capacity(dirty.len());
        for d in &dirty {
            let tz = *zones
                .entry(d.timezone.clone())
                .or_insert_with(|| TimeZone::parse(&d.timezone).unwrap_or_default());
            let kind = MeasurementKind::parse(&d.kind).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            // A device row the domain refuses (a negative scale typed before the check existed)
            // is refreshed as scale 1 without rollover rather than blocking the queue.
            let meter = Meter::new(kind, d.scale_factor, d.rollover_value)
                .or_else(|_| Meter::new(kind, 1.0, None))
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            plans.push((d, tz, meter));
        }
        let now = Ts::now();
        // One transaction for the batch: on PostgreSQL a commit per device would be an fsync each.
        in_tx!(self.db, |tx| {
            for (d, tz, meter) in &plans {
                let (tz, meter) = (*tz, *meter);
                let interval = d.expected_interval_s.max(1);
                let (device, tenant) = (d.device_id, d.tenant_id);
                let first = bucket_start(tz, Bucket::Hour, d.from_time.0);
                // The first reading after the span: its interval may have changed.
                let next: Option<Ts> = sqlx::query_scalar(
                        "SELECT time FROM readings WHERE device_id = $1 AND tenant_id = $2 AND time > $3 ORDER BY time LIMIT 1",
                    )
                    .bind(device)
                    .bind(tenant)
                    .bind(d.to_time)
                    .fetch_optional(&mut *tx)
                    .await?;
                let last = next.map_or(d.to_time.0, |t| t.0);
                let end = next_bucket_start(tz, Bucket::Hour, last);
                let baseline: Option<(Ts, f64)> = sqlx::query_as(
                    "SELECT time, value FROM readings WHERE device_id = $1 AND tenant_id = $2 AND time < $3 \
                         ORDER BY time DESC LIMIT 1",
                )
                .bind(device)
                .bind(tenant)
                .bind(Ts::from(first))
                .fetch_optional(&mut *tx)
                .await?;
                let readings: Vec<(Ts, f64)> = sqlx::query_as(
                        "SELECT time, value FROM readings WHERE device_id = $1 AND tenant_id = $2 AND time >= $3 AND time < $4 \
                         ORDER BY time",
                    )
                    .bind(device)
                    .bind(tenant)
                    .bind(Ts::from(first))
                    .bind(Ts::from(end))
                    .fetch_all(&mut *tx)
                    .await?;
                let raw: Vec<(DateTime<Utc>, f64)> = readings.into_iter().map(|(t, v)| (t.0, v)).collect();
                let hours = rollup(meter, baseline.map(|(t, v)| (t.0, v)), &raw, tz, Bucket::Hour);
                for h in &hours {
                    let expected = expected_readings(bucket_len_seconds(tz, Bucket::Hour, h.start), interval);
                    let sum = h.avg.map(|a| a * f64::from(h.count));
                    sqlx::query(UPSERT)
                        .bind(device)
                        .bind("hour")
                        .bind(Ts::from(h.start))
                        .bind(tenant)
                        .bind(h.consumption)
                        .bind(h.min)
                        .bind(h.max)
                        .bind(sum)
                        .bind(i64::from(h.count))
                        .bind(i64::from(expected))
                        .bind(i64::from(h.resets))
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                // Days from hours, then months from days.
                for (coarse, fine) in [(Bucket::Day, Bucket::Hour), (Bucket::Month, Bucket::Day)] {
                    let from = bucket_start(tz, coarse, first);
                    let to = next_bucket_start(tz, coarse, last);
                    let sql = format!(
                        "SELECT {ROW_COLUMNS} FROM rollups WHERE device_id = $1 AND granularity = $2 \
                             AND bucket_start >= $3 AND bucket_start < $4 ORDER BY bucket_start"
                    );
                    let parts: Vec<Row> = sqlx::query_as(AssertSqlSafe(sql))
                        .bind(device)
                        .bind(fine.as_str())
                        .bind(Ts::from(from))
                        .bind(Ts::from(to))
                        .fetch_all(&mut *tx)
                        .await?;
                    sqlx::query(
                            "DELETE FROM rollups WHERE device_id = $1 AND granularity = $2 AND bucket_start >= $3 \
                             AND bucket_start < $4",
                        )
                        .bind(device)
                        .bind(coarse.as_str())
                        .bind(Ts::from(from))
                        .bind(Ts::from(to))
                        .execute(&mut *tx)
                        .await?;
                    for agg in combine(&parts, |t| bucket_start(tz, coarse, t)) {
                        let expected = expected_readings(bucket_len_seconds(tz, coarse, agg.start), interval);
                        sqlx::query(UPSERT)
                            .bind(device)
                            .bind(coarse.as_str())
                            .bind(Ts::from(agg.start))
                            .bind(tenant)
                            .bind(agg.consumption)
                            .bind(agg.min)
                            .bind(agg.max)
                            .bind(agg.sum)
                            .bind(agg.count)
                            .bind(i64::from(expected))
                            .bind(agg.resets)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                sqlx::query("DELETE FROM rollup_dirty WHERE device_id = $1 AND marked_at = $2")
                    .bind(device)
                    .bind(d.marked_at)
                    .execute(&mut *tx)
                    .await?;
            }
            Ok(plans.len())
        })
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
fn combine(parts: &[Row], start_of: impl Fn(DateTime<Utc>) -> DateTime<Utc>) -> Vec<Combined> {
    let add = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(x), Some(y)) => Some(x + y),
        (x, None) | (None, x) => x,
    };
    let mut out: Vec<Combined> = Vec::new();
    for p in parts {
        let start = start_of(p.bucket_start.0);
        match out.last_mut() {
            Some(c) if c.start == start => {
                c.consumption = add(c.consumption, p.consumption);
                c.min = match (c.min, p.min_value) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                c.max = match (c.max, p.max_value) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                c.sum = add(c.sum, p.sum_value);
                c.count += p.reading_count;
                c.resets += p.resets;
            }
            _ => out.push(Combined {
                start,
                consumption: p.consumption,
                min: p.min_value,
                max: p.max_value,
                sum: p.sum_value,
                count: p.reading_count,
                resets: p.resets,
            }),
        }
    }
    out
}
