//! Readings: one value per (device, instant), written in bulk and idempotently.
//!
//! [`ReadingStore::insert_groups`] is the ingest path: several tenants' readings in one
//! transaction (the group commit), each group checked against its tenant's devices. A reading whose
//! (device, time) is already stored is not written again: with the same value it counts as a
//! duplicate (a gateway resending an unacknowledged batch), with a different value it is returned
//! as a conflict for the caller to record as a dead letter. The first value stays. The insert
//! itself checks the devices (it joins them, taking each reading's gateway from its device) and
//! tells which rows it wrote; only the instants it did not write are read back (to tell a
//! duplicate from a conflict), and only what was written is marked for a rollup refresh.
//!
//! The SQL differs by backend for speed: PostgreSQL takes a whole group in one statement through
//! `UNNEST` of arrays, or a large group of new readings through `COPY` after a lookup of its
//! devices (`copy`); SQLite takes multi-row `INSERT`s of up to [`SQLITE_CHUNK`] rows.

use crate::{Db, StoreError, Ts};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::AssertSqlSafe;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tds_domain::{DeviceId, GatewayId, TenantId};

mod ahead;
mod bulk;
mod commit;
mod copy;
pub use commit::PreparedInsert;

/// Rows per multi-row INSERT on SQLite: 4 parameters each (and 3 shared) stays below SQLite's
/// limit of 32766 bound parameters, and the statement is prepared once and cached.
pub const SQLITE_CHUNK: usize = 1000;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewReading {
    pub device_id: DeviceId,
    pub time: DateTime<Utc>,
    pub value: f64,
    /// The device's unit: a canonical symbol is borrowed (`tds_domain::Unit::into_cow`), so a
    /// reading from a gateway carries no allocation of its own for it.
    pub unit: std::borrow::Cow<'static, str>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reading {
    pub device_id: DeviceId,
    pub gateway_id: GatewayId,
    pub tenant_id: TenantId,
    pub time: DateTime<Utc>,
    pub value: f64,
    pub unit: String,
    pub ingested_at: DateTime<Utc>,
}

/// A reading that arrived for an instant already stored with another value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReadingConflict {
    /// Position of the reading in its group.
    pub index: usize,
    pub device_id: DeviceId,
    pub time: DateTime<Utc>,
    pub stored_value: f64,
    pub sent_value: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct InsertReport {
    pub inserted: u64,
    /// Same device, time and value as a stored reading: nothing written.
    pub duplicates: u64,
    pub conflicts: Vec<ReadingConflict>,
}

#[derive(sqlx::FromRow)]
struct ReadingRow {
    device_id: i64,
    gateway_id: i64,
    tenant_id: i64,
    time: Ts,
    value: f64,
    unit: String,
    ingested_at: Ts,
}

impl From<ReadingRow> for Reading {
    fn from(r: ReadingRow) -> Self {
        Reading {
            device_id: DeviceId::new(r.device_id),
            gateway_id: GatewayId::new(r.gateway_id),
            tenant_id: TenantId::new(r.tenant_id),
            time: r.time.0,
            value: r.value,
            unit: r.unit,
            ingested_at: r.ingested_at.0,
        }
    }
}

const COLUMNS: &str = "device_id, gateway_id, tenant_id, time, value, unit, ingested_at";

/// A (device id, µs) key of a reading.
type Key = (i64, i64);

/// What one group's insert did, reading by reading.
struct Sorted {
    report: InsertReport,
    /// Per device, the earliest and latest instant (µs) of the readings actually inserted: only
    /// those change a rollup.
    inserted_spans: HashMap<i64, (i64, i64)>,
}

/// Sorts a group's readings into inserted, duplicates and conflicts. `inserted` holds the keys
/// the insert returned; `stored` the values stored before, at the keys that were not inserted.
/// A key given twice in one group is inserted once, by its first reading; the later ones are
/// compared with that first value.
/// With `kept`, the inserted readings are also added to it (for [`crate::rollups::feed`]).
fn sort_group(
    group: &[NewReading],
    inserted: &HashSet<Key>,
    stored: &HashMap<Key, f64>,
    mut kept: Option<&mut Vec<crate::rollups::feed::Kept>>,
) -> Sorted {
    let mut report = InsertReport::default();
    let mut inserted_spans: HashMap<i64, (i64, i64)> = HashMap::new();
    let mut written: HashMap<Key, f64> = HashMap::new();
    for (index, r) in group.iter().enumerate() {
        let key = (r.device_id.get(), Ts::from(r.time).micros());
        let earlier = if inserted.contains(&key) {
            match written.entry(key) {
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(r.value);
                    report.inserted += 1;
                    if let Some(kept) = kept.as_deref_mut() {
                        kept.push((key.0, key.1, r.value));
                    }
                    inserted_spans
                        .entry(key.0)
                        .and_modify(|(lo, hi)| {
                            *lo = (*lo).min(key.1);
                            *hi = (*hi).max(key.1);
                        })
                        .or_insert((key.1, key.1));
                    continue;
                }
                std::collections::hash_map::Entry::Occupied(o) => Some(*o.get()),
            }
        } else {
            stored.get(&key).copied()
        };
        match earlier {
            // Bit-for-bit: the same JSON number always parses to the same f64.
            Some(stored_value) if stored_value.to_bits() != r.value.to_bits() => {
                report.conflicts.push(ReadingConflict {
                    index,
                    device_id: r.device_id,
                    time: r.time,
                    stored_value,
                    sent_value: r.value,
                });
            }
            _ => report.duplicates += 1,
        }
    }
    Sorted { report, inserted_spans }
}

/// [`sort_group`] for a group whose every reading was written (or, on PostgreSQL's first try, is
/// about to be, the insert failing otherwise), so each key once: all inserted, no key set to
/// build and look each reading up in. Under load a commit holds tens of thousands of readings,
/// and the sets [`sort_group`] builds were a tenth of the endpoint's CPU (`perf record` during
/// `tds bench ingest --gateways 1000 --devices 10 --rate 12000`).
fn all_written(group: &[NewReading], kept: Option<&mut Vec<crate::rollups::feed::Kept>>) -> Sorted {
    let mut inserted_spans: HashMap<i64, (i64, i64)> = HashMap::new();
    let mut last: Option<(i64, (i64, i64))> = None;
    for r in group {
        let (device, micros) = (r.device_id.get(), Ts::from(r.time).micros());
        // A message may carry several readings of one meter in a row (a backlog, or readings
        // taken every minute and sent every five): those widen the span held here, without a
        // lookup each.
        match &mut last {
            Some((d, (lo, hi))) if *d == device => {
                *lo = (*lo).min(micros);
                *hi = (*hi).max(micros);
            }
            _ => {
                if let Some((d, span)) = last.replace((device, (micros, micros))) {
                    widen(&mut inserted_spans, d, span);
                }
            }
        }
    }
    if let Some((d, span)) = last {
        widen(&mut inserted_spans, d, span);
    }
    if let Some(kept) = kept {
        kept.extend(group.iter().map(|r| (r.device_id.get(), Ts::from(r.time).micros(), r.value)));
    }
    let report = InsertReport { inserted: group.len() as u64, ..InsertReport::default() };
    Sorted { report, inserted_spans }
}

/// Widens `device`'s span in `spans` to take in `span`.
fn widen(spans: &mut HashMap<i64, (i64, i64)>, device: i64, (lo, hi): (i64, i64)) {
    spans
        .entry(device)
        .and_modify(|(l, h)| {
            *l = (*l).min(lo);
            *h = (*h).max(hi);
        })
        .or_insert((lo, hi));
}

/// Where an [`ReadingStore::insert_groups_timed`] call spent its time.
#[derive(Debug, Clone, Copy, Default)]
pub struct CommitPhases {
    /// Waiting for the write connection (SQLite: the one writer, which the rollup refresh and
    /// other writers share) and `BEGIN`.
    pub begin: Duration,
    /// The inserts (which check the devices are the tenant's and take their gateways), with the
    /// stored values read back for duplicates.
    pub insert: Duration,
    /// Marking the devices for the rollup refresh.
    pub marks: Duration,
    /// The rest: sorting the results and `COMMIT` (on PostgreSQL, the WAL flush).
    pub commit: Duration,
}

/// The smallest PostgreSQL pool with which group commits overlap: one connection for the
/// prepared transaction, one for what the device endpoint writes after the `COMMIT` before it
/// (dead letters, a gateway's first `last_seen`), one that `tds serve`'s live-update listener
/// keeps for as long as it runs, and one for the rest (the web pages, the jobs).
pub const OVERLAP_MIN_POOL: u32 = 4;

/// The smallest PostgreSQL pool with which the next group commit's transaction is begun ahead:
/// [`OVERLAP_MIN_POOL`] and one for that transaction.
pub const AHEAD_MIN_POOL: u32 = OVERLAP_MIN_POOL + 1;

#[derive(Debug, Clone, Copy)]
pub struct ReadingStore<'a> {
    db: &'a Db,
    feed: &'a std::sync::Arc<crate::rollups::feed::Feed>,
    ahead: &'a std::sync::Arc<ahead::Ahead>,
}

/// What a store keeps between its group commits: the transaction begun ahead for the next one.
pub(crate) type Ahead = ahead::Ahead;

impl<'a> ReadingStore<'a> {
    pub(crate) fn new(
        db: &'a Db,
        feed: &'a std::sync::Arc<crate::rollups::feed::Feed>,
        ahead: &'a std::sync::Arc<Ahead>,
    ) -> Self {
        Self { db, feed, ahead }
    }

    /// Stores one tenant's readings; see [`Self::insert_groups`].
    pub async fn insert(
        &self,
        tenant: TenantId,
        readings: &[NewReading],
    ) -> Result<InsertReport, StoreError> {
        let mut reports = self.insert_groups(&[(tenant, readings)]).await?;
        Ok(reports.pop().unwrap_or_default())
    }

    /// Stores groups of readings, each of one tenant, in a single transaction, and reports per
    /// group what was new, duplicate or conflicting. A group naming a device that is not its
    /// tenant's fails the whole call with `NotFound` and writes nothing.
    pub async fn insert_groups(
        &self,
        groups: &[(TenantId, &[NewReading])],
    ) -> Result<Vec<InsertReport>, StoreError> {
        Ok(self.insert_groups_timed(groups).await?.0)
    }

    /// [`Self::insert_groups`], with where the time went (the device endpoint's metrics).
    pub async fn insert_groups_timed(
        &self,
        groups: &[(TenantId, &[NewReading])],
    ) -> Result<(Vec<InsertReport>, CommitPhases), StoreError> {
        self.prepare_groups(groups).await?.commit().await
    }

    /// [`Self::insert_groups`] up to its `COMMIT`: the readings are written in an open
    /// transaction, which [`PreparedInsert::commit`] commits (dropping it rolls back). On
    /// PostgreSQL the next group commit can be prepared on another connection meanwhile (see
    /// [`Self::overlaps_commits`]); on SQLite the open transaction holds the one write connection.
    pub async fn prepare_groups(
        &self,
        groups: &[(TenantId, &[NewReading])],
    ) -> Result<PreparedInsert, StoreError> {
        commit::prepare(self.db, self.feed, None, groups).await
    }

    /// [`Self::prepare_groups`] for a caller that prepares group commits back to back, the next
    /// while the one before it commits (the device endpoint's writer, see
    /// [`Self::overlaps_commits`]): on PostgreSQL the transaction of the next one is begun
    /// meanwhile, so that it starts without a `BEGIN` round trip, with a pool of at least
    /// [`AHEAD_MIN_POOL`] connections. The caller releases the one begun last when it stops
    /// ([`Self::release_ahead`]).
    pub async fn prepare_groups_back_to_back(
        &self,
        groups: &[(TenantId, &[NewReading])],
    ) -> Result<PreparedInsert, StoreError> {
        let ahead = match self.db {
            Db::Postgres(pg) if pg.options().get_max_connections() >= AHEAD_MIN_POOL => Some(self.ahead),
            _ => None,
        };
        commit::prepare(self.db, self.feed, ahead, groups).await
    }

    /// Rolls back the transaction begun ahead for the next group commit, if one waits (see
    /// [`Self::prepare_groups_back_to_back`]): when the caller stops committing, so that it holds
    /// no connection (closing the pool waits for every connection).
    pub fn release_ahead(&self) {
        self.ahead.release();
    }

    /// Whether a group commit can be prepared while the one before it commits: PostgreSQL, where
    /// the second transaction has a connection of its own (its `COMMIT` must still come after
    /// the first's, which the caller orders), with a pool of at least [`OVERLAP_MIN_POOL`]
    /// connections. Not SQLite, which has one writer.
    pub fn overlaps_commits(&self) -> bool {
        match self.db {
            Db::Postgres(pg) => pg.options().get_max_connections() >= OVERLAP_MIN_POOL,
            Db::Sqlite(_) => false,
        }
    }

    /// A device's readings in `[from, to)`, oldest first, at most `limit`.
    pub async fn for_device(
        &self,
        tenant: TenantId,
        device: DeviceId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Reading>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM readings WHERE tenant_id = $1 AND device_id = $2 \
             AND time >= $3 AND time < $4 ORDER BY time LIMIT $5"
        );
        let rows: Vec<ReadingRow> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(tenant.get())
                    .bind(device.get())
                    .bind(Ts::from(from))
                    .bind(Ts::from(to))
                    .bind(limit)
                    .fetch_all(pool)
                    .await
        )?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// A device's latest readings, newest first.
    pub async fn latest(
        &self,
        tenant: TenantId,
        device: DeviceId,
        limit: i64,
    ) -> Result<Vec<Reading>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM readings WHERE tenant_id = $1 AND device_id = $2 ORDER BY time DESC LIMIT $3"
        );
        let rows: Vec<ReadingRow> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(tenant.get())
                    .bind(device.get())
                    .bind(limit)
                    .fetch_all(pool)
                    .await
        )?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// The tenant's readings in `[from, to)` (optionally of one gateway), ordered by (time,
    /// device), after the keyset cursor `after` (the last (time, device) of the previous page).
    pub async fn for_tenant(
        &self,
        tenant: TenantId,
        gateway: Option<GatewayId>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<(DateTime<Utc>, DeviceId)>,
        limit: i64,
    ) -> Result<Vec<Reading>, StoreError> {
        // Through the tenant's devices so that each device's primary-key range is used; the
        // tenant filter on readings themselves keeps readings a device took under a former owner
        // out.
        let sql = format!(
            "SELECT {COLUMNS} FROM readings WHERE tenant_id = $1 \
             AND device_id IN (SELECT id FROM devices WHERE tenant_id = $1 AND (CAST($2 AS BIGINT) IS NULL OR gateway_id = $2)) \
             AND time >= $3 AND time < $4 \
             AND (CAST($5 AS BIGINT) IS NULL OR time > $6 OR (time = $6 AND device_id > $5)) \
             ORDER BY time, device_id LIMIT $7"
        );
        let (after_device, after_time) = match after {
            Some((t, d)) => (Some(d.get()), Ts::from(t)),
            None => (None, Ts::from(from)),
        };
        let rows: Vec<ReadingRow> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(tenant.get())
                    .bind(gateway.map(GatewayId::get))
                    .bind(Ts::from(from))
                    .bind(Ts::from(to))
                    .bind(after_device)
                    .bind(after_time)
                    .bind(limit)
                    .fetch_all(pool)
                    .await
        )?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Deletes the tenant's raw readings taken before `before` (retention); rollups stay.
    /// Returns how many were deleted. Goes device by device so that each delete is a range of
    /// the primary key.
    pub async fn purge_before(&self, tenant: TenantId, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let devices: Vec<i64> = on_db!(
            self.db,
            read | pool
                | sqlx::query_scalar("SELECT id FROM devices WHERE tenant_id = $1")
                    .bind(tenant.get())
                    .fetch_all(pool)
                    .await
        )?;
        let mut deleted = 0;
        for device in devices {
            deleted += on_db!(
                self.db,
                write
                    | pool
                    | sqlx::query(
                        "DELETE FROM readings WHERE device_id = $1 AND tenant_id = $2 AND time < $3"
                    )
                    .bind(device)
                    .bind(tenant.get())
                    .bind(Ts::from(before))
                    .execute(pool)
                    .await
                    .map(|done| done.rows_affected())
            )?;
        }
        Ok(deleted)
    }

    /// How many readings the tenant stored with a reading time at or after `since`.
    pub async fn count_since(&self, tenant: TenantId, since: DateTime<Utc>) -> Result<i64, StoreError> {
        let n: i64 = on_db!(
            self.db,
            read | pool
                | sqlx::query_scalar(
                    "SELECT count(*) FROM readings WHERE tenant_id = $1 \
             AND device_id IN (SELECT id FROM devices WHERE tenant_id = $1) AND time >= $2"
                )
                .bind(tenant.get())
                .bind(Ts::from(since))
                .fetch_one(pool)
                .await
        )?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::TimeZone as _;

    /// The shortcut for a group written whole gives what the general sort gives it: every
    /// reading inserted, kept in order, each device's span.
    #[test]
    fn a_group_written_whole_is_sorted_as_the_general_sort_sorts_it() {
        let at = |s: i64| Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap();
        let reading = |device: i64, s: i64| NewReading {
            device_id: DeviceId::new(device),
            time: at(s),
            value: (device * 1000 + s) as f64,
            unit: "m3".into(),
        };
        // As gateways send them: messages of several meters, meters coming back later in the
        // group, one meter's readings in a row, out of time order.
        let group: Vec<NewReading> = vec![
            reading(1, 10),
            reading(2, 10),
            reading(3, 10),
            reading(1, 20),
            reading(2, 5),
            reading(2, 30),
            reading(2, 1),
            reading(4, 7),
            reading(1, 15),
        ];
        let keys: HashSet<Key> =
            group.iter().map(|r| (r.device_id.get(), Ts::from(r.time).micros())).collect();
        let (mut general, mut shortcut) = (Vec::new(), Vec::new());
        let expected = sort_group(&group, &keys, &HashMap::new(), Some(&mut general));
        let got = all_written(&group, Some(&mut shortcut));
        assert_eq!(got.report.inserted, 9);
        assert_eq!((got.report.duplicates, got.report.conflicts.len()), (0, 0));
        assert_eq!(got.report.inserted, expected.report.inserted);
        assert_eq!(got.inserted_spans, expected.inserted_spans);
        assert_eq!(got.inserted_spans[&2], (Ts::from(at(1)).micros(), Ts::from(at(30)).micros()));
        assert_eq!(shortcut, general);
    }
}
