//! A group commit in two steps, so that on PostgreSQL the next batch is written while this one
//! commits: [`prepare`] writes a batch's readings and its rollup marks in an open transaction,
//! [`PreparedInsert::commit`] commits it (see [`super::ReadingStore::prepare_groups`]). On
//! PostgreSQL a caller that commits back to back has the next transaction begun while it
//! prepares this one (see [`super::ahead`]).

use super::ahead::{self, Ahead};
use super::bulk::{BulkInsert, Inserted};
use super::{CommitPhases, InsertReport, Key, NewReading, all_written, sort_group};
use crate::rollups::feed::{Feed, Kept, KeptCommit};
use crate::{Db, StoreError, Ts};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;
use tds_domain::TenantId;

/// The open transaction of a prepared group commit.
enum OpenTx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// A group commit whose readings and marks are written, not yet committed. Dropped, it rolls
/// back: nothing of it is stored.
#[must_use = "a prepared group commit stores nothing until it is committed"]
pub struct PreparedInsert {
    tx: OpenTx,
    reports: Vec<InsertReport>,
    phases: CommitPhases,
    feed: Arc<Feed>,
    /// The commit's `rollup_pending` id and the readings it inserted, for the feed (`None` when
    /// nothing new was stored or the feed is not keeping).
    kept: Option<(i64, KeptCommit)>,
}

impl std::fmt::Debug for PreparedInsert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedInsert")
            .field("reports", &self.reports)
            .field("phases", &self.phases)
            .finish_non_exhaustive()
    }
}

impl PreparedInsert {
    /// Commits; returns per group what was new, duplicate or conflicting, and where the time of
    /// the whole group commit went (`COMMIT` included in [`CommitPhases::commit`]).
    pub async fn commit(self) -> Result<(Vec<InsertReport>, CommitPhases), StoreError> {
        let at = Instant::now();
        // Kept before the `COMMIT`, not after: the row is visible to a fold from the moment it
        // commits, and a fold that read it before this task came back to keep its readings
        // found none, so every device of the commit read its readings back at its next refresh
        // (10,000 of them with 10,000 meters in every commit). No fold can take an uncommitted
        // row; if the `COMMIT` fails (it may still have committed) or this future is dropped,
        // the guard forgets the id, in case a later row is given it (SQLite reuses a rolled
        // back row's id).
        let guard = self.kept.map(|(id, commit)| {
            self.feed.keep(id, commit);
            ForgetUnlessCommitted { feed: &self.feed, id: Some(id) }
        });
        let done = match self.tx {
            OpenTx::Sqlite(tx) => tx.commit().await,
            OpenTx::Postgres(tx) => tx.commit().await,
        };
        done?;
        if let Some(mut guard) = guard {
            guard.id = None;
        }
        let mut phases = self.phases;
        phases.commit += at.elapsed();
        Ok((self.reports, phases))
    }
}

/// A commit's readings kept in the feed before its `COMMIT`: forgotten when dropped with the id
/// still set, that is unless the `COMMIT` succeeded.
struct ForgetUnlessCommitted<'a> {
    feed: &'a Feed,
    id: Option<i64>,
}

impl Drop for ForgetUnlessCommitted<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.feed.forget(id);
        }
    }
}

/// What a group commit wrote: per group what was new, duplicate or conflicting, and what it
/// gives the feed.
struct Written {
    reports: Vec<InsertReport>,
    kept: Option<(i64, KeptCommit)>,
}

/// The body of a group commit on the open transaction's connection (either backend's), expecting
/// duplicates: the groups' inserts, which tell new readings from stored ones, then one
/// `rollup_pending` row for them all.
async fn write_groups<C: BulkInsert>(
    conn: &mut C,
    groups: &[(TenantId, &[NewReading])],
    at: Ts,
    feed: &Feed,
    phases: &mut CommitPhases,
) -> Result<Written, StoreError> {
    let mut reports = Vec::with_capacity(groups.len());
    let mut kept: Option<Vec<Kept>> = feed.keeping().then(Vec::new);
    // (device, tenant, earliest µs, latest µs) of every device given new readings.
    let mut marks: Vec<(i64, i64, i64, i64)> = Vec::new();
    for (tenant, group) in groups {
        if group.is_empty() {
            reports.push(InsertReport::default());
            continue;
        }
        let t0 = Instant::now();
        let sorted = match conn.insert_owned(*tenant, at, group, false).await? {
            Inserted::All => {
                phases.insert += t0.elapsed();
                all_written(group, kept.as_mut())
            }
            Inserted::Keys(inserted) => {
                let stored = stored_where_not_inserted(conn, group, &inserted).await?;
                phases.insert += t0.elapsed();
                sort_group(group, &inserted, &stored, kept.as_mut())
            }
            // A device that is not the tenant's (or does not exist) fails the whole call.
            Inserted::NotOwned => return Err(StoreError::NotFound),
            Inserted::Again => {
                return Err(StoreError::Corrupt(
                    "readings: a commit expecting duplicates was refused".into(),
                ));
            }
        };
        marks.extend(sorted.inserted_spans.iter().map(|(&device, &(lo, hi))| (device, tenant.get(), lo, hi)));
        reports.push(sorted.report);
    }
    // In the same transaction: a committed reading is never missing from the rollups'
    // to-do list. One row for the whole commit, which no other transaction locks (see
    // `crate::rollups::pending`); nothing when nothing new was stored.
    let t0 = Instant::now();
    let mut id = None;
    if !marks.is_empty() {
        marks.sort_unstable();
        id = Some(conn.log_marks(at, crate::rollups::pending::encode(&marks)?, feed.token()).await?);
    }
    phases.marks = t0.elapsed();
    let kept = kept.map(|readings| KeptCommit { marks, readings });
    Ok(Written { reports, kept: id.zip(kept) })
}

/// The stored values at the keys of `group` that its insert did not write (`inserted`): a resent
/// reading, or a different value for a stored instant. Only those instants are read back, not the
/// span of the group: one duplicate in a backlog of a year must not read the year back.
async fn stored_where_not_inserted<C: BulkInsert>(
    conn: &mut C,
    group: &[NewReading],
    inserted: &HashSet<Key>,
) -> Result<HashMap<Key, f64>, StoreError> {
    let mut missing: Vec<Key> = Vec::new();
    if inserted.len() < group.len() {
        let mut seen = HashSet::new();
        for r in group {
            let key = (r.device_id.get(), Ts::from(r.time).micros());
            if !inserted.contains(&key) && seen.insert(key) {
                missing.push(key);
            }
        }
    }
    let stored = if missing.is_empty() { HashMap::new() } else { conn.stored_values(&missing).await? };
    // Neither written nor stored: the insert left the reading out because its device was not
    // the tenant's then (on PostgreSQL the device check after the insert sees a later snapshot:
    // a gateway transfer committed between the two). Refused like a foreign device, never
    // counted as a duplicate of nothing.
    if missing.iter().any(|key| !stored.contains_key(key)) {
        return Err(StoreError::NotFound);
    }
    Ok(stored)
}

/// A group commit expecting only new readings (PostgreSQL's first try). What it stores, and so
/// the reports, the kept readings and the marks, is then known before the inserts run, and the
/// last group's statement writes the `rollup_pending` row too: one round trip less per commit,
/// which at half load is a commit's fixed cost, not its readings'. `None` when a key was
/// already stored (or given twice): the transaction is aborted and the commit is to be written
/// again expecting duplicates.
async fn write_new_groups<C: BulkInsert>(
    conn: &mut C,
    groups: &[(TenantId, &[NewReading])],
    at: Ts,
    feed: &Feed,
    phases: &mut CommitPhases,
) -> Result<Option<Written>, StoreError> {
    let t0 = Instant::now();
    let mut reports = Vec::with_capacity(groups.len());
    let mut kept: Option<Vec<Kept>> = feed.keeping().then(Vec::new);
    let mut marks: Vec<(i64, i64, i64, i64)> = Vec::new();
    for (tenant, group) in groups {
        // As if every key were written, which the inserts below check.
        let sorted = all_written(group, kept.as_mut());
        marks.extend(sorted.inserted_spans.iter().map(|(&device, &(lo, hi))| (device, tenant.get(), lo, hi)));
        reports.push(sorted.report);
    }
    marks.sort_unstable();
    let mut log = (!marks.is_empty()).then(|| crate::rollups::pending::encode(&marks)).transpose()?;
    phases.marks = t0.elapsed();
    let last = groups.iter().rposition(|(_, group)| !group.is_empty());
    let mut id = None;
    for (i, (tenant, group)) in groups.iter().enumerate() {
        if group.is_empty() {
            continue;
        }
        let t0 = Instant::now();
        let inserted = match if Some(i) == last { log.take() } else { None } {
            Some(text) => {
                let (inserted, logged) =
                    conn.insert_new_and_log(*tenant, at, group, text, feed.token()).await?;
                id = logged;
                inserted
            }
            None => conn.insert_owned(*tenant, at, group, true).await?,
        };
        phases.insert += t0.elapsed();
        match inserted {
            Inserted::Keys(_) | Inserted::All => {}
            Inserted::NotOwned => return Err(StoreError::NotFound),
            Inserted::Again => return Ok(None),
        }
    }
    let kept = kept.map(|readings| KeptCommit { marks, readings });
    Ok(Some(Written { reports, kept: id.zip(kept) }))
}

/// Begins a transaction and writes the groups in it (see [`super::ReadingStore::insert_groups`]
/// for what is written and refused). With `ahead`, on PostgreSQL, it takes the transaction begun
/// ahead if one waits, and begins the next one's.
pub(super) async fn prepare(
    db: &Db,
    feed: &Arc<Feed>,
    ahead: Option<&Arc<Ahead>>,
    groups: &[(TenantId, &[NewReading])],
) -> Result<PreparedInsert, StoreError> {
    let ingested_at = Ts::now();
    let started = Instant::now();
    let mut phases = CommitPhases::default();
    let (tx, written) = match db {
        Db::Sqlite(s) => {
            // IMMEDIATE, as `in_tx!`: the write lock is taken at BEGIN.
            let mut tx = s.write.begin_with("BEGIN IMMEDIATE").await?;
            phases.begin = started.elapsed();
            let written = write_groups(&mut *tx, groups, ingested_at, feed, &mut phases).await?;
            (OpenTx::Sqlite(tx), written)
        }
        Db::Postgres(pg) => {
            let mut begun_ahead = ahead.and_then(|a| a.take());
            if let Some(ahead) = ahead {
                ahead.begin_soon(pg);
            }
            loop {
                let from_ahead = begun_ahead.is_some();
                let mut tx = match begun_ahead.take() {
                    Some(tx) => tx,
                    None => pg.begin().await?,
                };
                phases = CommitPhases { begin: started.elapsed(), ..CommitPhases::default() };
                // Expecting only new readings first (the usual case, and the cheaper insert); a
                // resent one aborts that transaction, and the commit is written again in a new
                // one that sorts duplicates and conflicts out.
                match write_new_groups(&mut *tx, groups, ingested_at, feed, &mut phases).await {
                    Ok(Some(written)) => break (OpenTx::Postgres(tx), written),
                    Ok(None) => {
                        tx.rollback().await?;
                        let mut tx = pg.begin().await?;
                        let written = write_groups(&mut *tx, groups, ingested_at, feed, &mut phases).await?;
                        break (OpenTx::Postgres(tx), written);
                    }
                    // The server closed the connection of the transaction begun ahead while it
                    // waited: nothing was written, and the commit begins again.
                    Err(e) if from_ahead && ahead::connection_lost(&e) => {
                        tracing::debug!(error = %e, "the transaction begun ahead was closed; beginning again");
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    };
    // Sorting the results; `commit` adds the `COMMIT`.
    phases.commit = started.elapsed().saturating_sub(phases.begin + phases.insert + phases.marks);
    Ok(PreparedInsert { tx, reports: written.reports, phases, feed: Arc::clone(feed), kept: written.kept })
}
