//! The commits' rollup marks (`rollup_pending`): what a commit of readings writes so that its
//! devices' rollups are refreshed, and how the refresh folds those rows into `rollup_dirty`.
//!
//! Why two tables: a commit used to upsert one `rollup_dirty` row per device it stored readings
//! for. On PostgreSQL each of those rows is also locked and deleted by the refresh, so a commit
//! (and every PUBACK it carries) could wait for a refresh's transaction, and its cost grew with
//! the devices in it. Now a commit inserts a single row naming its devices, which no other
//! transaction ever locks, and the rollup worker folds the rows into `rollup_dirty` (merging
//! spans per device) before each round. A crash loses nothing: the row commits with the readings
//! it names, and the fold deletes it in the transaction that merges it.

use crate::{Db, StoreError, Ts};
use sqlx::AssertSqlSafe;
use std::collections::BTreeMap;

/// A device's mark: (device, tenant, earliest µs, latest µs) of the readings a commit stored.
pub(crate) type Mark = (i64, i64, i64, i64);

/// Commits folded per round at most: a fold is one short write transaction, and a backlog of
/// commits is taken over the next rounds.
const FOLD_COMMITS: i64 = 5_000;

/// Devices merged per statement on SQLite (five parameters each).
const MERGE_CHUNK: usize = 500;

/// Commit ids deleted per statement on SQLite.
const DELETE_CHUNK: usize = 5_000;

/// A mark merged with the one already there: the span widened, and `marked_at` always moved
/// forward, at least by a microsecond: a refresh clears a mark only if `marked_at` is still what
/// it read, so two folds in one microsecond (two instances, or a clock stepping back) must not
/// leave it equal, or the second fold's readings would be cleared unread.
macro_rules! mark_merge {
    ($later:literal) => {
        concat!(
            " ON CONFLICT (device_id) DO UPDATE SET tenant_id = excluded.tenant_id, \
    from_time = CASE WHEN excluded.from_time < rollup_dirty.from_time THEN excluded.from_time ELSE rollup_dirty.from_time END, \
    to_time = CASE WHEN excluded.to_time > rollup_dirty.to_time THEN excluded.to_time ELSE rollup_dirty.to_time END, \
    marked_at = CASE WHEN excluded.marked_at > rollup_dirty.marked_at THEN excluded.marked_at ELSE ",
            $later,
            " END"
        )
    };
}
const PG_MARK_MERGE: &str = mark_merge!("rollup_dirty.marked_at + INTERVAL '1 microsecond'");
/// SQLite keeps instants as integer microseconds.
const SQLITE_MARK_MERGE: &str = mark_merge!("rollup_dirty.marked_at + 1");

/// The JSON a commit's row keeps: its marks, an array of `[device, tenant, from µs, to µs]`.
pub(crate) fn encode(marks: &[Mark]) -> Result<String, StoreError> {
    serde_json::to_string(marks).map_err(|e| StoreError::Corrupt(format!("rollup marks: {e}")))
}

fn decode(text: &str) -> Result<Vec<Mark>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("rollup marks: {e}")))
}

/// The statement a commit runs (the same text on both databases).
pub(crate) const LOG: &str = "INSERT INTO rollup_pending (marked_at, marks) VALUES ($1, $2)";

/// Per device, the commits' marks merged: (tenant, earliest µs, latest µs, last commit's time).
/// The tenant is the latest commit's: a device moved to another tenant is rolled up under it.
type Merged = BTreeMap<i64, (i64, i64, i64, Ts)>;

fn merge(into: &mut Merged, at: Ts, marks: Vec<Mark>) {
    for (device, tenant, lo, hi) in marks {
        into.entry(device)
            .and_modify(|m| {
                m.0 = tenant;
                m.1 = m.1.min(lo);
                m.2 = m.2.max(hi);
                m.3 = m.3.max(at);
            })
            .or_insert((tenant, lo, hi, at));
    }
}

/// The commits' rows (id, time, marks) merged per device, and their ids.
fn merge_rows(rows: Vec<(i64, Ts, String)>) -> Result<(Merged, Vec<i64>), StoreError> {
    let mut merged = Merged::new();
    let mut ids = Vec::with_capacity(rows.len());
    for (id, at, marks) in rows {
        merge(&mut merged, at, decode(&marks)?);
        ids.push(id);
    }
    Ok((merged, ids))
}

/// Folds up to [`FOLD_COMMITS`] commits' rows into `rollup_dirty`, in one transaction; returns
/// how many rows it folded. Devices deleted since their commit are left out (their marks would
/// never be refreshed). Marks are upserted in device order, the order in which the refresh
/// locks them when it clears them.
pub(super) async fn fold(db: &Db) -> Result<usize, StoreError> {
    in_tx!(db, |tx| {
        let rows: Vec<(i64, Ts, String)> =
            sqlx::query_as("SELECT id, marked_at, marks FROM rollup_pending ORDER BY id LIMIT $1")
                .bind(FOLD_COMMITS)
                .fetch_all(&mut *tx)
                .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        // Off the async threads: at half load a round folds a couple of thousand small commits,
        // a quarter of a million marks of JSON (tens of milliseconds of CPU), which on one of
        // the runtime's threads held up the sessions and the writer queued behind it (the
        // PUBACK tail while the refresh ran, `tds bench ingest` on PostgreSQL).
        let (merged, ids) = tokio::task::spawn_blocking(move || merge_rows(rows))
            .await
            .map_err(|e| StoreError::Corrupt(format!("rollup marks: the fold stopped: {e}")))??;
        tx.merge_marks(&merged).await?;
        tx.delete_pending(&ids).await?;
        Ok(ids.len())
    })
}

/// Every device a commit marked and no fold has taken yet, merged (for [`super::RollupStore`]'s
/// views of what waits).
pub(super) async fn unfolded(db: &Db) -> Result<Vec<(i64, i64, i64)>, StoreError> {
    let rows: Vec<(Ts, String)> = on_db!(
        db,
        read | pool
            | sqlx::query_as("SELECT marked_at, marks FROM rollup_pending ORDER BY id").fetch_all(pool).await
    )?;
    let mut merged = Merged::new();
    for (at, marks) in rows {
        merge(&mut merged, at, decode(&marks)?);
    }
    Ok(merged.into_iter().map(|(device, (_, lo, hi, _))| (device, lo, hi)).collect())
}

/// The fold's writes, in each database's form.
trait FoldMarks {
    /// Upserts the merged marks into `rollup_dirty` for devices that still exist.
    async fn merge_marks(&mut self, merged: &Merged) -> Result<(), sqlx::Error>;
    /// Deletes the folded commits' rows.
    async fn delete_pending(&mut self, ids: &[i64]) -> Result<(), sqlx::Error>;
}

impl FoldMarks for sqlx::PgConnection {
    async fn merge_marks(&mut self, merged: &Merged) -> Result<(), sqlx::Error> {
        let sql = format!(
            "INSERT INTO rollup_dirty (device_id, tenant_id, from_time, to_time, marked_at) \
             SELECT x.d, x.t, x.f, x.e, x.m FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TIMESTAMPTZ[], \
             $4::TIMESTAMPTZ[], $5::TIMESTAMPTZ[]) AS x(d, t, f, e, m) \
             WHERE EXISTS (SELECT 1 FROM devices WHERE id = x.d) ORDER BY x.d{PG_MARK_MERGE}"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(merged.keys().copied().collect::<Vec<_>>())
            .bind(merged.values().map(|m| m.0).collect::<Vec<_>>())
            .bind(merged.values().map(|m| Ts::from_micros(m.1)).collect::<Vec<_>>())
            .bind(merged.values().map(|m| Ts::from_micros(m.2)).collect::<Vec<_>>())
            .bind(merged.values().map(|m| m.3).collect::<Vec<_>>())
            .execute(&mut *self)
            .await?;
        Ok(())
    }

    async fn delete_pending(&mut self, ids: &[i64]) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM rollup_pending WHERE id = ANY($1)").bind(ids).execute(&mut *self).await?;
        Ok(())
    }
}

impl FoldMarks for sqlx::SqliteConnection {
    async fn merge_marks(&mut self, merged: &Merged) -> Result<(), sqlx::Error> {
        let marks: Vec<_> = merged.iter().collect();
        for chunk in marks.chunks(MERGE_CHUNK) {
            // A SELECT over VALUES, not VALUES alone, so that deleted devices can be left out;
            // its WHERE also lets SQLite tell the upsert's ON CONFLICT from a join.
            let sql = format!(
                "INSERT INTO rollup_dirty (device_id, tenant_id, from_time, to_time, marked_at) \
                 SELECT column1, column2, column3, column4, column5 FROM (VALUES {}) \
                 WHERE column1 IN (SELECT id FROM devices){SQLITE_MARK_MERGE}",
                vec!["(?,?,?,?,?)"; chunk.len()].join(",")
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for &(&device, &(tenant, lo, hi, at)) in chunk {
                q = q.bind(device).bind(tenant).bind(Ts::from_micros(lo)).bind(Ts::from_micros(hi)).bind(at);
            }
            q.execute(&mut *self).await?;
        }
        Ok(())
    }

    async fn delete_pending(&mut self, ids: &[i64]) -> Result<(), sqlx::Error> {
        for chunk in ids.chunks(DELETE_CHUNK) {
            let sql =
                format!("DELETE FROM rollup_pending WHERE id IN ({})", vec!["?"; chunk.len()].join(","));
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(id);
            }
            q.execute(&mut *self).await?;
        }
        Ok(())
    }
}
