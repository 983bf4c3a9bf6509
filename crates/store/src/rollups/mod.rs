//! Rollups (SPEC §1): hourly, daily and monthly aggregates per device in the tenant's time zone,
//! kept up to date as readings are committed, late and out-of-order ones included.
//!
//! How they stay current: [`crate::readings::ReadingStore::insert_groups`] writes, in the
//! readings' own transaction, one `rollup_pending` row naming each device it stored readings for
//! (earliest and latest instant; module `pending`). [`RollupStore::staff_refresh_dirty`], run by
//! the rollup worker, first folds those rows into per-device marks in `rollup_dirty`, then takes
//! a batch of marked devices and for each:
//! 1. widens the marked span to whole hours, through the hour of the first stored reading after
//!    it (a late reading shortens the interval that reading closes, so its bucket changes too);
//! 2. recomputes those hours from the raw readings and the one reading before them, with the
//!    meter rules of `tds_domain::rollup` (resets, rollover, gauges never summed), or, when all
//!    the new readings come after the last one rolled up, adds just them to the latest hour row
//!    (module `refresh`); hour rows are only ever replaced, never deleted, so they outlive raw
//!    readings removed by retention;
//! 3. recomputes the days containing those hours from the hour rows, and the months containing
//!    those days from the day rows (a day is made of whole local hours, a month of whole days);
//! 4. clears the mark unless a newer commit marked the device again meanwhile, and moves the
//!    device's `last_seen_at` to the mark's time.
//!
//! Several instances may refresh at once: each computes from committed rows, a mark is only
//! cleared by whoever saw it last, and a row is only replaced by one counting at least as many
//! readings (an overtaken refresh cannot write an older state over a newer one), so the result
//! converges. Must not: be called per reading.

pub(crate) mod feed;
pub(crate) mod pending;
mod refresh;

pub use feed::FeedCounts;
mod write;

use crate::{Db, StoreError, Ts};
use chrono::{DateTime, Utc};
use refresh::ROUND_ROWS;
use serde::Serialize;
use sqlx::AssertSqlSafe;
use std::collections::{BTreeMap, HashMap};
use tds_domain::buckets::completeness;
use tds_domain::{Bucket, DeviceId, Medium, TenantId};

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

#[derive(Debug, Clone, Copy)]
pub struct RollupStore<'a> {
    db: &'a Db,
    feed: &'a feed::Feed,
}

impl<'a> RollupStore<'a> {
    pub(crate) fn new(db: &'a Db, feed: &'a feed::Feed) -> Self {
        Self { db, feed }
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
                let ids = (0..p.len()).map(|i| format!("${}", i + 4)).collect::<Vec<_>>().join(", ");
                format!("AND device_id IN ({ids})")
            });
            // The granularity is written into the statement (one of three constants), not bound:
            // PostgreSQL uses the covering index of day and month rows (`rollups_tenant_sums`)
            // only for a statement whose granularity it can see is one of those.
            let granularity = bucket.as_str();
            let sql = format!(
                "SELECT device_id, SUM(consumption) FROM rollups WHERE tenant_id = $1 AND granularity = '{granularity}' \
                 AND bucket_start >= $2 AND bucket_start < $3 AND consumption IS NOT NULL {list} \
                 GROUP BY device_id"
            );
            let rows: Vec<(i64, f64)> = on_db!(
                self.db,
                read | pool | {
                    let mut q = sqlx::query_as(AssertSqlSafe(sql.as_str()))
                        .bind(tenant.get())
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
        // The granularity is written into the statement, as in `totals_by_device`: the home
        // page's sums then read only `rollups_tenant_sums` (one index entry per device), not a
        // row of the table per device.
        let granularity = bucket.as_str();
        let sql = format!(
            "SELECT d.medium, d.unit, SUM(r.consumption) FROM rollups r JOIN devices d ON d.id = r.device_id \
             WHERE r.tenant_id = $1 AND d.tenant_id = $1 AND r.granularity = '{granularity}' AND r.bucket_start >= $2 \
             AND r.bucket_start < $3 AND r.consumption IS NOT NULL GROUP BY d.medium, d.unit ORDER BY d.medium, d.unit"
        );
        let rows: Vec<(String, String, f64)> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(tenant.get())
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
    /// tests: what a commit asked to recompute), whether or not its commit's row was folded yet.
    pub async fn staff_marks(&self) -> Result<Vec<(DeviceId, DateTime<Utc>, DateTime<Utc>)>, StoreError> {
        let rows: Vec<(i64, Ts, Ts)> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as("SELECT device_id, from_time, to_time FROM rollup_dirty ORDER BY device_id")
                    .fetch_all(pool)
                    .await
        )?;
        let mut marks: BTreeMap<i64, (i64, i64)> =
            rows.into_iter().map(|(d, f, t)| (d, (f.micros(), t.micros()))).collect();
        for (device, lo, hi) in pending::unfolded(self.db).await? {
            marks
                .entry(device)
                .and_modify(|m| {
                    m.0 = m.0.min(lo);
                    m.1 = m.1.max(hi);
                })
                .or_insert((lo, hi));
        }
        Ok(marks
            .into_iter()
            .map(|(d, (f, t))| (DeviceId::new(d), Ts::from_micros(f).0, Ts::from_micros(t).0))
            .collect())
    }

    /// Folds the commits' rows into per-device marks, as each refresh round starts by doing,
    /// without refreshing anything; returns how many commits' rows it folded.
    pub async fn staff_fold(&self) -> Result<usize, StoreError> {
        pending::fold(self.db, self.feed).await
    }

    /// Devices waiting for their rollups to be refreshed (0 when everything is current).
    pub async fn staff_pending(&self) -> Result<i64, StoreError> {
        let marks = self.staff_marks().await?;
        Ok(i64::try_from(marks.len()).unwrap_or(i64::MAX))
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
    /// `PLAN_CONCURRENCY` at a time, so that the database reads one device's rows while this
    /// process computes another's. A round stops taking devices once it holds
    /// `ROUND_ROWS` new rows (a device marked over a year brings ~9 k), which bounds its memory
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
}
