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

use super::feed::{FedMark, Feed, Kept, KeptCommit};
use crate::{Db, StoreError, Ts};
use sqlx::AssertSqlSafe;
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// A device's mark: (device, tenant, earliest µs, latest µs) of the readings a commit stored.
pub(crate) type Mark = (i64, i64, i64, i64);

/// Commits folded per round at most: a fold is one short write transaction, and a backlog of
/// commits is taken over the next rounds.
const FOLD_COMMITS: i64 = 5_000;

/// Devices merged per statement on SQLite (seven parameters each).
const MERGE_CHUNK: usize = 500;

/// Commit ids deleted (or read) per statement on SQLite.
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
            " END, feed = CASE WHEN excluded.feed_from <> 0 AND rollup_dirty.feed = excluded.feed_from \
    THEN excluded.feed ELSE 0 END, feed_from = 0 \
    RETURNING device_id, tenant_id, from_time, to_time, marked_at, feed, feed_from"
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

/// The statement a commit runs (the same text on both databases): `$3` is the store's token
/// (see [`super::feed`]); returns the row's id.
pub(crate) const LOG: &str =
    "INSERT INTO rollup_pending (marked_at, marks, feed) VALUES ($1, $2, $3) RETURNING id";

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

/// A fold's commits merged: the marks per device, the rows' ids, and the devices every one of
/// whose commits this store kept, with their readings.
struct Folding {
    merged: Merged,
    ids: Vec<i64>,
    kept: HashMap<i64, Vec<(i64, f64)>>,
}

/// A commit's marks as the fold has them: kept by this store (with its readings), or the row's
/// JSON.
enum Source {
    Kept(KeptCommit),
    Text(String),
}

/// The commits' rows (id, time, marks) merged per device. A device is fed when every commit
/// marking it was kept, all of one tenant.
fn merge_rows(rows: Vec<(i64, Ts, Source)>) -> Result<Folding, StoreError> {
    let mut merged = Merged::new();
    let mut ids = Vec::with_capacity(rows.len());
    // Per device: its tenant while every commit marking it is kept, `None` once one is not.
    let mut whole: HashMap<i64, Option<i64>> = HashMap::new();
    let mut readings: Vec<Vec<Kept>> = Vec::new();
    for (id, at, source) in rows {
        let (marks, kept) = match source {
            Source::Kept(commit) => (commit.marks, Some(commit.readings)),
            Source::Text(text) => (decode(&text)?, None),
        };
        for &(device, tenant, _, _) in &marks {
            let w = whole.entry(device).or_insert(Some(tenant));
            if kept.is_none() || *w != Some(tenant) {
                *w = None;
            }
        }
        merge(&mut merged, at, marks);
        readings.extend(kept);
        ids.push(id);
    }
    let mut fed: HashMap<i64, Vec<(i64, f64)>> =
        whole.into_iter().filter(|(_, t)| t.is_some()).map(|(d, _)| (d, Vec::new())).collect();
    for (device, t, v) in readings.into_iter().flatten() {
        if let Some(r) = fed.get_mut(&device) {
            r.push((t, v));
        }
    }
    Ok(Folding { merged, ids, kept: fed })
}

/// A mark as the fold's upsert left it: (device, tenant, from, to, `marked_at`, `feed`,
/// `feed_from`).
type Upserted = (i64, i64, Ts, Ts, Ts, i64, i64);

/// Folds up to [`FOLD_COMMITS`] commits' rows into `rollup_dirty`; returns how many rows it
/// folded. Devices deleted since their commit are left out (their marks would never be
/// refreshed). Marks are upserted in device order, the order in which the refresh locks them
/// when it clears them. The readings `feed` kept of the commits go with the marks they make
/// whole (see [`super::feed`]).
///
/// Only the upsert and the rows' deletion are a transaction: the rows are read and merged
/// before it, off the write connection. On SQLite that connection is the one every commit of
/// readings waits for, and a round's merge (hundreds of thousands of kept readings under load)
/// held it for as long as it took. Two folds of the same rows (another instance's, between this
/// one's read and its transaction) were already possible on PostgreSQL and are harmless: a
/// mark merged twice only widens to the same span with a later `marked_at`, and its `feed`
/// comparison fails unless this store's fold left it, so the refresh reads it back; a mark
/// whose readings were already rolled up no longer goes on from its hour and is recomputed.
pub(super) async fn fold(db: &Db, feed: &Feed) -> Result<usize, StoreError> {
    let fold_id = Feed::new_id();
    let started = Instant::now();
    // This store's commits' marks are not read: it kept them (a few megabytes of JSON a round
    // at half load, and their decoding).
    let rows: Vec<(i64, Ts, Option<String>)> = on_db!(
        db,
        read | pool
            | sqlx::query_as(
                "SELECT id, marked_at, CASE WHEN feed = $2 THEN NULL ELSE marks END \
                 FROM rollup_pending ORDER BY id LIMIT $1",
            )
            .bind(FOLD_COMMITS)
            .bind(feed.token())
            .fetch_all(pool)
            .await
    )?;
    if rows.is_empty() {
        return Ok(0);
    }
    let ours: Vec<i64> = rows.iter().filter(|r| r.2.is_none()).map(|r| r.0).collect();
    let mut kept = feed.take_commits(&ours);
    // Ours but no longer kept (past the bound, or let go when a fold saw a later row commit
    // first): read.
    let unkept: Vec<i64> = ours.iter().copied().filter(|id| !kept.contains_key(id)).collect();
    let mut texts = if unkept.is_empty() {
        HashMap::new()
    } else {
        on_db!(db, read | pool | pool.acquire().await?.pending_marks(&unkept).await)?
    };
    let rows: Vec<(i64, Ts, Source)> = rows
        .into_iter()
        .filter_map(|(id, at, marks)| {
            let source = match marks {
                Some(text) => Source::Text(text),
                None => match kept.remove(&id) {
                    Some(commit) => Source::Kept(commit),
                    // Gone since the first read: another instance folded it.
                    None => Source::Text(texts.remove(&id)?),
                },
            };
            Some((id, at, source))
        })
        .collect();
    // Off the async threads: at half load a round folds a couple of thousand small commits, a
    // quarter of a million marks of JSON (tens of milliseconds of CPU), which on one of the
    // runtime's threads held up the sessions and the writer queued behind it (the PUBACK tail
    // while the refresh ran, `tds bench ingest` on PostgreSQL).
    let mut folding = tokio::task::spawn_blocking(move || merge_rows(rows))
        .await
        .map_err(|e| StoreError::Corrupt(format!("rollup marks: the fold stopped: {e}")))??;
    // Per device: (feed, feed_from) for the upsert.
    let feeds: Vec<(i64, i64)> =
        folding
            .merged
            .iter()
            .map(|(device, m)| {
                if folding.kept.contains_key(device) { (fold_id, feed.kept_id(*device, m.0)) } else { (0, 0) }
            })
            .collect();
    let merged = started.elapsed();
    let mut began = merged;
    let upserted = in_tx!(db, |tx| {
        began = started.elapsed();
        let upserted = tx.merge_marks(&folding.merged, &feeds).await?;
        tx.delete_pending(&folding.ids).await?;
        Ok(upserted)
    })?;
    let held = started.elapsed().saturating_sub(began);
    let given: HashMap<i64, i64> =
        folding.merged.keys().zip(&feeds).map(|(&device, &(_, from))| (device, from)).collect();
    let mut made_whole = Vec::new();
    let mut not_whole = Vec::new();
    for (device, tenant, from, to, marked_at, id, from_id) in upserted {
        let readings = folding.kept.remove(&device).filter(|_| id == fold_id);
        let Some(readings) = readings else {
            not_whole.push(device);
            continue;
        };
        // A new row keeps the `feed_from` it was given; going on from a mark clears it.
        let given = given.get(&device).copied().unwrap_or(0);
        let went_on = (given != 0 && from_id == 0).then_some(given);
        let mark = FedMark { feed: id, tenant, from: from.micros(), to: to.micros(), marked_at, readings };
        made_whole.push((device, mark, went_on));
    }
    feed.folded(made_whole, &not_whole);
    // Where a fold's time goes (`TDS_LOG_LEVEL=info,tds_store::rollups=debug`): reading and
    // merging, waiting for the write transaction, and holding it.
    tracing::debug!(
        commits = folding.ids.len(),
        devices = folding.merged.len(),
        read_and_merge_ms = merged.as_secs_f64() * 1e3,
        begin_ms = began.saturating_sub(merged).as_secs_f64() * 1e3,
        held_ms = held.as_secs_f64() * 1e3,
        "rollup fold"
    );
    Ok(folding.ids.len())
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
    /// Upserts the merged marks into `rollup_dirty` for devices that still exist, each with its
    /// (`feed`, `feed_from`) of `feeds` (in `merged`'s order); returns the marks as written.
    async fn merge_marks(
        &mut self,
        merged: &Merged,
        feeds: &[(i64, i64)],
    ) -> Result<Vec<Upserted>, sqlx::Error>;
    /// Deletes the folded commits' rows.
    async fn delete_pending(&mut self, ids: &[i64]) -> Result<(), sqlx::Error>;
    /// The marks (JSON) of these commits' rows, by id.
    async fn pending_marks(&mut self, ids: &[i64]) -> Result<HashMap<i64, String>, sqlx::Error>;
}

impl FoldMarks for sqlx::PgConnection {
    async fn merge_marks(
        &mut self,
        merged: &Merged,
        feeds: &[(i64, i64)],
    ) -> Result<Vec<Upserted>, sqlx::Error> {
        let sql = format!(
            "INSERT INTO rollup_dirty (device_id, tenant_id, from_time, to_time, marked_at, feed, feed_from, dirty_since) \
             SELECT x.d, x.t, x.f, x.e, x.m, x.fd, x.ff, x.m FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TIMESTAMPTZ[], \
             $4::TIMESTAMPTZ[], $5::TIMESTAMPTZ[], $6::BIGINT[], $7::BIGINT[]) AS x(d, t, f, e, m, fd, ff) \
             WHERE EXISTS (SELECT 1 FROM devices WHERE id = x.d) ORDER BY x.d{PG_MARK_MERGE}"
        );
        sqlx::query_as(AssertSqlSafe(sql))
            .bind(merged.keys().copied().collect::<Vec<_>>())
            .bind(merged.values().map(|m| m.0).collect::<Vec<_>>())
            .bind(merged.values().map(|m| Ts::from_micros(m.1)).collect::<Vec<_>>())
            .bind(merged.values().map(|m| Ts::from_micros(m.2)).collect::<Vec<_>>())
            .bind(merged.values().map(|m| m.3).collect::<Vec<_>>())
            .bind(feeds.iter().map(|f| f.0).collect::<Vec<_>>())
            .bind(feeds.iter().map(|f| f.1).collect::<Vec<_>>())
            .fetch_all(&mut *self)
            .await
    }

    async fn delete_pending(&mut self, ids: &[i64]) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM rollup_pending WHERE id = ANY($1)").bind(ids).execute(&mut *self).await?;
        Ok(())
    }

    async fn pending_marks(&mut self, ids: &[i64]) -> Result<HashMap<i64, String>, sqlx::Error> {
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, marks FROM rollup_pending WHERE id = ANY($1)")
                .bind(ids)
                .fetch_all(&mut *self)
                .await?;
        Ok(rows.into_iter().collect())
    }
}

impl FoldMarks for sqlx::SqliteConnection {
    async fn merge_marks(
        &mut self,
        merged: &Merged,
        feeds: &[(i64, i64)],
    ) -> Result<Vec<Upserted>, sqlx::Error> {
        let marks: Vec<_> = merged.iter().zip(feeds).collect();
        let mut out = Vec::with_capacity(marks.len());
        for chunk in marks.chunks(MERGE_CHUNK) {
            // A SELECT over VALUES, not VALUES alone, so that deleted devices can be left out;
            // its WHERE also lets SQLite tell the upsert's ON CONFLICT from a join.
            let sql = format!(
                "INSERT INTO rollup_dirty (device_id, tenant_id, from_time, to_time, marked_at, feed, feed_from, dirty_since) \
                 SELECT column1, column2, column3, column4, column5, column6, column7, column5 FROM (VALUES {}) \
                 WHERE column1 IN (SELECT id FROM devices){SQLITE_MARK_MERGE}",
                vec!["(?,?,?,?,?,?,?)"; chunk.len()].join(",")
            );
            let mut q = sqlx::query_as::<_, Upserted>(AssertSqlSafe(sql));
            for &((&device, &(tenant, lo, hi, at)), &(id, from_id)) in chunk {
                q = q
                    .bind(device)
                    .bind(tenant)
                    .bind(Ts::from_micros(lo))
                    .bind(Ts::from_micros(hi))
                    .bind(at)
                    .bind(id)
                    .bind(from_id);
            }
            out.extend(q.fetch_all(&mut *self).await?);
        }
        Ok(out)
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

    async fn pending_marks(&mut self, ids: &[i64]) -> Result<HashMap<i64, String>, sqlx::Error> {
        let mut out = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(DELETE_CHUNK) {
            let sql = format!(
                "SELECT id, marks FROM rollup_pending WHERE id IN ({})",
                vec!["?"; chunk.len()].join(",")
            );
            let mut q = sqlx::query_as::<_, (i64, String)>(AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(id);
            }
            out.extend(q.fetch_all(&mut *self).await?);
        }
        Ok(out)
    }
}
