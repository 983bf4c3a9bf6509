//! Writing a refresh's rows: rollup rows upserted and marks cleared in each database's fastest
//! form (a few statements per round, not two per device), and coarser rows summed from finer ones.

use super::Row;
use crate::Ts;
use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;
use tds_domain::Bucket;
use tds_domain::consumption::RawReading;

/// A rollup row to write.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Upsert {
    pub(super) device: i64,
    pub(super) tenant: i64,
    pub(super) bucket: Bucket,
    pub(super) start: DateTime<Utc>,
    pub(super) consumption: Option<f64>,
    pub(super) min: Option<f64>,
    pub(super) max: Option<f64>,
    pub(super) sum: Option<f64>,
    pub(super) count: i64,
    pub(super) expected: i64,
    pub(super) resets: i64,
    /// Hour rows: the hour's last reading (where the next refresh can go on from).
    pub(super) last: Option<RawReading>,
}

/// Rows per upsert statement: one `UNNEST` on PostgreSQL; on SQLite 14 parameters a row,
/// 28,000 in all, under its limit of 32,766.
pub(super) const UPSERT_CHUNK: usize = 2000;

/// A row replaces the stored one only if it counts at least as many readings: readings are only
/// ever added to a bucket (retention removes whole old hours' raw readings, whose rows are never
/// recomputed), so a row counting fewer was computed from an older state by a refresh that was
/// overtaken (two refreshers at once: `tds serve` and a CLI command's catch-up, or two
/// instances). Written anyway, it would stand, and the next refresh would go on from it with the
/// overtaking refresh's readings missing.
const UPSERT_SET: &str = " ON CONFLICT (device_id, granularity, bucket_start) DO UPDATE SET tenant_id = excluded.tenant_id, \
     consumption = excluded.consumption, min_value = excluded.min_value, max_value = excluded.max_value, \
     sum_value = excluded.sum_value, reading_count = excluded.reading_count, \
     expected_count = excluded.expected_count, resets = excluded.resets, updated_at = excluded.updated_at, \
     last_time = excluded.last_time, last_value = excluded.last_value \
     WHERE excluded.reading_count >= rollups.reading_count";

const UPSERT_COLUMNS: &str = "INSERT INTO rollups (device_id, granularity, bucket_start, tenant_id, consumption, \
     min_value, max_value, sum_value, reading_count, expected_count, resets, updated_at, last_time, last_value) ";

/// Refreshed devices whose marks one statement clears: 2 parameters each on SQLite.
pub(super) const CLEAR_CHUNK: usize = 2000;

/// Writing rollup rows, and clearing the marks of the devices refreshed, in each database's
/// fastest form: a few statements per round, not two per device.
pub(super) trait UpsertRollups {
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
            "{UPSERT_COLUMNS}SELECT d, g, b, t, c, mn, mx, s, n, e, r, $12, lt, lv FROM UNNEST($1::BIGINT[], \
             $2::TEXT[], $3::TIMESTAMPTZ[], $4::BIGINT[], $5::FLOAT8[], $6::FLOAT8[], $7::FLOAT8[], $8::FLOAT8[], \
             $9::BIGINT[], $10::BIGINT[], $11::BIGINT[], $13::TIMESTAMPTZ[], $14::FLOAT8[]) \
             AS x(d, g, b, t, c, mn, mx, s, n, e, r, lt, lv){UPSERT_SET}"
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
            .bind(rows.iter().map(|u| u.last.map(|l| Ts::from(l.0))).collect::<Vec<_>>())
            .bind(rows.iter().map(|u| u.last.map(|l| l.1)).collect::<Vec<_>>())
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
            sql.push_str("(?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
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
                .bind(now)
                .bind(u.last.map(|l| Ts::from(l.0)))
                .bind(u.last.map(|l| l.1));
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
pub(super) struct Part {
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
pub(super) struct Combined {
    pub(super) start: DateTime<Utc>,
    pub(super) consumption: Option<f64>,
    pub(super) min: Option<f64>,
    pub(super) max: Option<f64>,
    pub(super) sum: Option<f64>,
    pub(super) count: i64,
    pub(super) resets: i64,
}

/// Groups finer rows (in time order) by the coarser bucket `start_of` puts them in.
pub(super) fn combine(
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
