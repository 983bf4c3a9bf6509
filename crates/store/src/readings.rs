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
//! `UNNEST` of arrays; SQLite takes multi-row `INSERT`s of up to [`SQLITE_CHUNK`] rows.

use crate::{Db, StoreError, Ts};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::AssertSqlSafe;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tds_domain::{DeviceId, GatewayId, TenantId};

mod commit;
pub use commit::PreparedInsert;

/// Rows per multi-row INSERT on SQLite: 4 parameters each (and 3 shared) stays below SQLite's
/// limit of 32766 bound parameters, and the statement is prepared once and cached.
pub const SQLITE_CHUNK: usize = 1000;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewReading {
    pub device_id: DeviceId,
    pub time: DateTime<Utc>,
    pub value: f64,
    pub unit: String,
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

/// A multi-row INSERT with anonymous `?` parameters, bound in the order they appear: tenant and
/// ingested-at, then device, time, value and unit of each row, then the tenant again.
///
/// Not `$N`: for every numbered parameter sqlx asks SQLite for its name, which SQLite finds by a
/// linear scan, making a 7000-parameter statement quadratic (measured: 30 k rows/s instead of
/// 200 k+). Anonymous parameters have no name to look up.
fn sqlite_insert_sql(rows: usize, returning: bool) -> String {
    let mut sql = String::with_capacity(300 + rows * 10);
    // CROSS JOIN: SQLite then keeps the VALUES as the outer loop, so the rows are inserted in
    // the group's order (a key given twice is written by its first reading, as `sort_group`
    // expects). WHERE before ON CONFLICT: without it SQLite would read `ON` as the join's.
    sql.push_str(
        "INSERT INTO readings (device_id, time, tenant_id, gateway_id, value, unit, ingested_at) \
         SELECT v.column1, v.column2, ?, dv.gateway_id, v.column3, v.column4, ? FROM (VALUES ",
    );
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str("(?,?,?,?)");
    }
    sql.push_str(
        ") AS v CROSS JOIN devices dv WHERE dv.id = v.column1 AND dv.tenant_id = ? \
         ON CONFLICT (device_id, time) DO NOTHING",
    );
    if returning {
        sql.push_str(" RETURNING device_id, time");
    }
    sql
}

/// The group's readings of the tenant's devices, each with its device's gateway, in the group's
/// order: the device check is part of the insert, not a query of its own (one round trip less
/// per commit). `$1` tenant, `$2` ingested at, `$3`… devices, times, values, units.
const PG_INSERT: &str = "INSERT INTO readings (device_id, time, tenant_id, gateway_id, value, unit, ingested_at) \
    SELECT x.d, x.t, $1, dv.gateway_id, x.v, x.u, $2 \
    FROM UNNEST($3::BIGINT[], $4::TIMESTAMPTZ[], $5::FLOAT8[], $6::TEXT[]) WITH ORDINALITY AS x(d, t, v, u, n) \
    JOIN devices dv ON dv.id = x.d AND dv.tenant_id = $1 \
    ORDER BY x.n ON CONFLICT (device_id, time) DO NOTHING RETURNING device_id, time";

/// [`PG_INSERT`] for a group expected to hold only new keys: without `ON CONFLICT` (PostgreSQL's
/// speculative insertion checks the index before each row and writes a confirmation record
/// after it), without `RETURNING` (every key would come back) and in any order. A stored key
/// fails the statement, and the commit is written again with [`PG_INSERT`].
const PG_INSERT_NEW: &str = "INSERT INTO readings (device_id, time, tenant_id, gateway_id, value, unit, ingested_at) \
    SELECT x.d, x.t, $1, dv.gateway_id, x.v, x.u, $2 \
    FROM UNNEST($3::BIGINT[], $4::TIMESTAMPTZ[], $5::FLOAT8[], $6::TEXT[]) AS x(d, t, v, u) \
    JOIN devices dv ON dv.id = x.d AND dv.tenant_id = $1";

/// PostgreSQL's `unique_violation`.
const PG_UNIQUE_VIOLATION: &str = "23505";

/// How many of `$2` (distinct device ids) are the tenant's `$1`, on PostgreSQL.
const PG_OWNED: &str = "SELECT count(*) FROM devices WHERE tenant_id = $1 AND id = ANY($2)";

/// Devices checked per statement on SQLite (well under its bound-parameter limit).
const DEVICE_LOOKUP_CHUNK: usize = 500;

/// The stored values at `n` exact (device, time) pairs, on SQLite: anonymous parameters (see
/// [`sqlite_insert_sql`]), two per pair.
fn sqlite_stored_values_sql(n: usize) -> String {
    let mut sql = String::with_capacity(90 + n * 6);
    sql.push_str("SELECT device_id, time, value FROM readings WHERE (device_id, time) IN (VALUES ");
    for i in 0..n {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str("(?,?)");
    }
    sql.push(')');
    sql
}

/// The stored values at exact (device, time) pairs, on PostgreSQL: `$1` devices, `$2` times.
const PG_STORED_VALUES: &str = "SELECT r.device_id, r.time, r.value FROM readings r \
    JOIN UNNEST($1::BIGINT[], $2::TIMESTAMPTZ[]) AS x(d, t) ON r.device_id = x.d AND r.time = x.t";

/// Pairs looked up per statement on SQLite.
const STORED_VALUES_CHUNK: usize = 1000;

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

/// Devices of a group, each once.
fn devices_of(group: &[NewReading]) -> Vec<i64> {
    let mut ids: Vec<i64> = group.iter().map(|r| r.device_id.get()).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
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

#[derive(Debug, Clone, Copy)]
pub struct ReadingStore<'a> {
    db: &'a Db,
    feed: &'a std::sync::Arc<crate::rollups::feed::Feed>,
}

impl<'a> ReadingStore<'a> {
    pub(crate) fn new(db: &'a Db, feed: &'a std::sync::Arc<crate::rollups::feed::Feed>) -> Self {
        Self { db, feed }
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
        commit::prepare(self.db, self.feed, groups).await
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

/// What a group's insert did.
enum Inserted {
    /// The keys of the rows written (not those already stored).
    Keys(HashSet<Key>),
    /// A device of the group is not the tenant's (the insert left its readings out; the caller
    /// then rolls back).
    NotOwned,
    /// The insert expecting only new keys met a stored one: the transaction is aborted, and the
    /// commit is to be written again expecting duplicates.
    Again,
}

/// The keys of a group.
fn keys_of(group: &[NewReading]) -> HashSet<Key> {
    group.iter().map(|r| (r.device_id.get(), Ts::from(r.time).micros())).collect()
}

/// The backend-specific bulk insert, run on the connection of the open transaction.
trait BulkInsert {
    /// Inserts a group, each reading with its device's gateway. `only_new`: the caller expects
    /// no stored key and can write the commit again if there is one ([`Inserted::Again`]).
    async fn insert_owned(
        &mut self,
        tenant: TenantId,
        at: Ts,
        group: &[NewReading],
        only_new: bool,
    ) -> Result<Inserted, sqlx::Error>;

    /// The stored values at exactly these keys.
    async fn stored_values(&mut self, keys: &[Key]) -> Result<HashMap<Key, f64>, sqlx::Error>;

    /// Whether every one of `devices` (distinct ids) is the tenant's.
    async fn all_owned(&mut self, tenant: TenantId, devices: &[i64]) -> Result<bool, sqlx::Error>;

    /// The commit's one `rollup_pending` row (marks encoded by `crate::rollups::pending`, the
    /// store's feed token); returns its id.
    async fn log_marks(&mut self, at: Ts, marks: String, token: i64) -> Result<i64, sqlx::Error>;
}

impl BulkInsert for sqlx::PgConnection {
    async fn log_marks(&mut self, at: Ts, marks: String, token: i64) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(crate::rollups::pending::LOG)
            .bind(at)
            .bind(marks)
            .bind(token)
            .fetch_one(&mut *self)
            .await
    }

    async fn insert_owned(
        &mut self,
        tenant: TenantId,
        at: Ts,
        group: &[NewReading],
        only_new: bool,
    ) -> Result<Inserted, sqlx::Error> {
        let devices: Vec<i64> = group.iter().map(|r| r.device_id.get()).collect();
        let times: Vec<Ts> = group.iter().map(|r| Ts::from(r.time)).collect();
        let values: Vec<f64> = group.iter().map(|r| r.value).collect();
        let units: Vec<&str> = group.iter().map(|r| r.unit.as_str()).collect();
        if only_new {
            let done = sqlx::query(PG_INSERT_NEW)
                .bind(tenant.get())
                .bind(at)
                .bind(&devices)
                .bind(&times)
                .bind(&values)
                .bind(&units)
                .execute(&mut *self)
                .await;
            return match done {
                Ok(done) if usize::try_from(done.rows_affected()).is_ok_and(|n| n == group.len()) => {
                    Ok(Inserted::Keys(keys_of(group)))
                }
                // Fewer rows: the join left out readings of devices that are not the tenant's
                // (or were not when it ran: then the careful insert sorts it out).
                Ok(_) if !self.all_owned(tenant, &devices_of(group)).await? => Ok(Inserted::NotOwned),
                Ok(_) => Ok(Inserted::Again),
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(PG_UNIQUE_VIOLATION) => {
                    Ok(Inserted::Again)
                }
                Err(e) => Err(e),
            };
        }
        let rows: Vec<(i64, Ts)> = sqlx::query_as(PG_INSERT)
            .bind(tenant.get())
            .bind(at)
            .bind(devices)
            .bind(times)
            .bind(values)
            .bind(units)
            .fetch_all(&mut *self)
            .await?;
        // Fewer rows than readings: duplicates, or readings the join left out because their
        // device is not the tenant's. Only then are the devices checked on their own.
        if rows.len() < group.len() && !self.all_owned(tenant, &devices_of(group)).await? {
            return Ok(Inserted::NotOwned);
        }
        Ok(Inserted::Keys(rows.into_iter().map(|(d, t)| (d, t.micros())).collect()))
    }

    async fn stored_values(&mut self, keys: &[Key]) -> Result<HashMap<Key, f64>, sqlx::Error> {
        let devices: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let times: Vec<Ts> = keys.iter().map(|k| Ts::from_micros(k.1)).collect();
        let rows: Vec<(i64, Ts, f64)> =
            sqlx::query_as(PG_STORED_VALUES).bind(devices).bind(times).fetch_all(&mut *self).await?;
        Ok(rows.into_iter().map(|(d, t, v)| ((d, t.micros()), v)).collect())
    }

    /// One statement of constant text, whatever the number of devices: prepared once per
    /// connection.
    async fn all_owned(&mut self, tenant: TenantId, devices: &[i64]) -> Result<bool, sqlx::Error> {
        let owned: i64 =
            sqlx::query_scalar(PG_OWNED).bind(tenant.get()).bind(devices).fetch_one(&mut *self).await?;
        Ok(usize::try_from(owned).is_ok_and(|n| n == devices.len()))
    }
}

impl BulkInsert for sqlx::SqliteConnection {
    async fn log_marks(&mut self, at: Ts, marks: String, token: i64) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(crate::rollups::pending::LOG)
            .bind(at)
            .bind(marks)
            .bind(token)
            .fetch_one(&mut *self)
            .await
    }

    /// Without `RETURNING` first: SQLite's driver hands every returned row from its worker
    /// thread to the async side one by one, which cost more than the insert. When the chunks
    /// wrote as many rows as the group has readings, every key was written; otherwise the group
    /// is undone to a savepoint and written again returning its keys (duplicates are rare: a
    /// gateway resending what it did not see acknowledged).
    /// Expecting only new keys or not, the same: a savepoint undoes the chunks here.
    async fn insert_owned(
        &mut self,
        tenant: TenantId,
        at: Ts,
        group: &[NewReading],
        _only_new: bool,
    ) -> Result<Inserted, sqlx::Error> {
        sqlx::query("SAVEPOINT tds_readings").execute(&mut *self).await?;
        let sorted = in_key_order(group);
        let mut written = 0;
        for chunk in sorted.chunks(SQLITE_CHUNK) {
            let sql = sqlite_insert_sql(chunk.len(), false);
            written += sqlx::query_with(AssertSqlSafe(sql), sqlite_insert_args(chunk, tenant, at)?)
                .execute(&mut *self)
                .await?
                .rows_affected();
        }
        if usize::try_from(written).is_ok_and(|n| n == group.len()) {
            sqlx::query("RELEASE tds_readings").execute(&mut *self).await?;
            return Ok(Inserted::Keys(keys_of(group)));
        }
        sqlx::query("ROLLBACK TO tds_readings").execute(&mut *self).await?;
        sqlx::query("RELEASE tds_readings").execute(&mut *self).await?;
        if !self.all_owned(tenant, &devices_of(group)).await? {
            return Ok(Inserted::NotOwned);
        }
        let mut inserted = HashSet::with_capacity(group.len());
        for chunk in sorted.chunks(SQLITE_CHUNK) {
            let sql = sqlite_insert_sql(chunk.len(), true);
            let rows: Vec<(i64, Ts)> =
                sqlx::query_as_with(AssertSqlSafe(sql), sqlite_insert_args(chunk, tenant, at)?)
                    .fetch_all(&mut *self)
                    .await?;
            inserted.extend(rows.into_iter().map(|(d, t)| (d, t.micros())));
        }
        Ok(Inserted::Keys(inserted))
    }

    async fn stored_values(&mut self, keys: &[Key]) -> Result<HashMap<Key, f64>, sqlx::Error> {
        let mut stored = HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(STORED_VALUES_CHUNK) {
            let sql = sqlite_stored_values_sql(chunk.len());
            let mut q = sqlx::query_as::<_, (i64, Ts, f64)>(AssertSqlSafe(sql.as_str()));
            for &(device, micros) in chunk {
                q = q.bind(device).bind(Ts::from_micros(micros));
            }
            stored.extend(q.fetch_all(&mut *self).await?.into_iter().map(|(d, t, v)| ((d, t.micros()), v)));
        }
        Ok(stored)
    }

    /// Anonymous parameters (see [`sqlite_insert_sql`]), a chunk of devices per statement.
    async fn all_owned(&mut self, tenant: TenantId, devices: &[i64]) -> Result<bool, sqlx::Error> {
        for chunk in devices.chunks(DEVICE_LOOKUP_CHUNK) {
            let sql = format!(
                "SELECT count(*) FROM devices WHERE tenant_id = ? AND id IN ({})",
                vec!["?"; chunk.len()].join(",")
            );
            let mut q = sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql)).bind(tenant.get());
            for id in chunk {
                q = q.bind(*id);
            }
            if !usize::try_from(q.fetch_one(&mut *self).await?).is_ok_and(|n| n == chunk.len()) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The group's readings in key order, a key given twice in the order given (the sort is
/// stable, so its first reading is still the one written). SQLite inserts each row with a seek in
/// the `(device, time)` B-tree: in key order a device's readings of a commit land on its newest
/// leaf one after another while that page is at hand, instead of the commit's meters' pages
/// being visited in turn once per message.
fn in_key_order(group: &[NewReading]) -> Vec<&NewReading> {
    let mut sorted: Vec<&NewReading> = group.iter().collect();
    sorted.sort_by_key(|r| (r.device_id, r.time));
    sorted
}

/// The parameters of one chunk's insert, in [`sqlite_insert_sql`]'s order (with or without
/// `RETURNING`).
fn sqlite_insert_args(
    chunk: &[&NewReading],
    tenant: TenantId,
    at: Ts,
) -> Result<sqlx::sqlite::SqliteArguments, sqlx::Error> {
    use sqlx::Arguments as _;
    let mut args = sqlx::sqlite::SqliteArguments::default();
    args.reserve(chunk.len() * 4 + 3, 0);
    args.add(tenant.get()).map_err(sqlx::Error::Encode)?;
    args.add(at).map_err(sqlx::Error::Encode)?;
    for r in chunk {
        args.add(r.device_id.get()).map_err(sqlx::Error::Encode)?;
        args.add(Ts::from(r.time)).map_err(sqlx::Error::Encode)?;
        args.add(r.value).map_err(sqlx::Error::Encode)?;
        args.add(r.unit.as_str()).map_err(sqlx::Error::Encode)?;
    }
    args.add(tenant.get()).map_err(sqlx::Error::Encode)?;
    Ok(args)
}
