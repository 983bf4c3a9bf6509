//! The bulk statements of a group commit, in each database's form: PostgreSQL writes a group in
//! one statement through `UNNEST` of arrays, SQLite in multi-row `INSERT`s of up to
//! [`SQLITE_CHUNK`] rows; the device check is part of the insert on both. PostgreSQL copies a
//! large group of new readings instead (see [`super::copy`]). [`BulkInsert`] is what
//! [`super::commit`] runs on the open transaction's connection.

use super::copy::{COPY_FROM, copy_new};
use super::{Key, NewReading, SQLITE_CHUNK};
use crate::Ts;
use sqlx::AssertSqlSafe;
use std::collections::{HashMap, HashSet};
use tds_domain::TenantId;

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
macro_rules! pg_insert_new {
    () => {
        "INSERT INTO readings (device_id, time, tenant_id, gateway_id, value, unit, ingested_at) \
         SELECT x.d, x.t, $1, dv.gateway_id, x.v, x.u, $2 \
         FROM UNNEST($3::BIGINT[], $4::TIMESTAMPTZ[], $5::FLOAT8[], $6::TEXT[]) AS x(d, t, v, u) \
         JOIN devices dv ON dv.id = x.d AND dv.tenant_id = $1"
    };
}
const PG_INSERT_NEW: &str = pg_insert_new!();

/// [`PG_INSERT_NEW`] and the commit's `rollup_pending` row in one statement (as
/// `crate::rollups::pending::LOG` writes it: marked at `$2`, marks `$7`, the store's token `$8`):
/// one round trip less for every commit. Returns the row's id and the readings written, which
/// the caller compares with the group (fewer: a device that is not the tenant's).
const PG_INSERT_NEW_LOGGED: &str = concat!(
    "WITH written AS (",
    pg_insert_new!(),
    " RETURNING 1), logged AS (INSERT INTO rollup_pending (marked_at, marks, feed) VALUES ($2, $7, $8) RETURNING id) \
     SELECT (SELECT id FROM logged), (SELECT count(*) FROM written)"
);

/// PostgreSQL's `unique_violation`.
const PG_UNIQUE_VIOLATION: &str = "23505";

/// The tenant's `$1` devices among `$2` (distinct ids), with their gateways, on PostgreSQL. A join
/// on the ids rather than `id = ANY($2)`, which PostgreSQL's generic plan tests against every
/// element of the array for every row it scans: 4.7 ms a commit for 1,000 devices against 1.2
/// (`pg_stat_statements` during `tds bench ingest --seconds 15`).
const PG_GATEWAYS: &str = "SELECT d.id, d.gateway_id FROM UNNEST($2::BIGINT[]) AS x(id) \
    JOIN devices d ON d.id = x.id AND d.tenant_id = $1";

/// [`PG_GATEWAYS`]: device id → gateway id of those of `devices` that are the tenant's. One
/// statement of constant text whatever the number of devices, prepared once per connection.
pub(super) async fn pg_gateways(
    conn: &mut sqlx::PgConnection,
    tenant: TenantId,
    devices: &[i64],
) -> Result<HashMap<i64, i64>, sqlx::Error> {
    let rows: Vec<(i64, i64)> =
        sqlx::query_as(PG_GATEWAYS).bind(tenant.get()).bind(devices).fetch_all(&mut *conn).await?;
    Ok(rows.into_iter().collect())
}

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

/// Devices of a group, each once.
pub(super) fn devices_of(group: &[NewReading]) -> Vec<i64> {
    let mut ids: Vec<i64> = group.iter().map(|r| r.device_id.get()).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// What a group's insert did.
pub(super) enum Inserted {
    /// The keys of the rows written (not those already stored).
    Keys(HashSet<Key>),
    /// Every reading of the group was written, each key once (PostgreSQL's insert expecting
    /// only new keys, or SQLite's writing as many rows as the group has readings): the caller
    /// knows their keys, no set of them is built.
    All,
    /// A device of the group is not the tenant's (the insert left its readings out; the caller
    /// then rolls back).
    NotOwned,
    /// The insert expecting only new keys met a stored one: the transaction is aborted, and the
    /// commit is to be written again expecting duplicates.
    Again,
}

/// The backend-specific bulk insert, run on the connection of the open transaction.
pub(super) trait BulkInsert {
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

    /// [`Self::insert_owned`] expecting only new keys, then [`Self::log_marks`]: the marks are
    /// known before the insert, since all of the group is to be written. Returns the row's id
    /// when the group was written. PostgreSQL does both in one statement.
    async fn insert_new_and_log(
        &mut self,
        tenant: TenantId,
        at: Ts,
        group: &[NewReading],
        marks: String,
        token: i64,
    ) -> Result<(Inserted, Option<i64>), sqlx::Error> {
        insert_then_log(self, tenant, at, group, marks, token).await
    }
}

/// [`BulkInsert::insert_new_and_log`] in two statements: the insert expecting only new keys, then
/// the row when the group was written.
async fn insert_then_log<C: BulkInsert + ?Sized>(
    conn: &mut C,
    tenant: TenantId,
    at: Ts,
    group: &[NewReading],
    marks: String,
    token: i64,
) -> Result<(Inserted, Option<i64>), sqlx::Error> {
    let inserted = conn.insert_owned(tenant, at, group, true).await?;
    let id = match inserted {
        Inserted::Keys(_) | Inserted::All => Some(conn.log_marks(at, marks, token).await?),
        Inserted::NotOwned | Inserted::Again => None,
    };
    Ok((inserted, id))
}

/// A group's columns, as PostgreSQL's `UNNEST` takes them.
fn pg_columns(group: &[NewReading]) -> (Vec<i64>, Vec<Ts>, Vec<f64>, Vec<&str>) {
    let devices = group.iter().map(|r| r.device_id.get()).collect();
    let times = group.iter().map(|r| Ts::from(r.time)).collect();
    let values = group.iter().map(|r| r.value).collect();
    let units = group.iter().map(|r| &*r.unit).collect();
    (devices, times, values, units)
}

/// What an insert expecting only new keys did, from the rows it wrote (or its error).
async fn only_new_outcome(
    conn: &mut sqlx::PgConnection,
    tenant: TenantId,
    group: &[NewReading],
    written: Result<u64, sqlx::Error>,
) -> Result<Inserted, sqlx::Error> {
    match written {
        Ok(n) if usize::try_from(n).is_ok_and(|n| n == group.len()) => Ok(Inserted::All),
        // Fewer rows: the join left out readings of devices that are not the tenant's (or were
        // not when it ran: then the careful insert sorts it out).
        Ok(_) if !conn.all_owned(tenant, &devices_of(group)).await? => Ok(Inserted::NotOwned),
        Ok(_) => Ok(Inserted::Again),
        Err(e) if is_unique_violation(&e) => Ok(Inserted::Again),
        Err(e) => Err(e),
    }
}

/// Whether PostgreSQL refused a statement for a key already stored.
pub(super) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(e) if e.code().as_deref() == Some(PG_UNIQUE_VIOLATION))
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
        if only_new && group.len() >= COPY_FROM {
            return copy_new(self, tenant, at, group).await;
        }
        let (devices, times, values, units) = pg_columns(group);
        if only_new {
            let written = sqlx::query(PG_INSERT_NEW)
                .bind(tenant.get())
                .bind(at)
                .bind(&devices)
                .bind(&times)
                .bind(&values)
                .bind(&units)
                .execute(&mut *self)
                .await
                .map(|done| done.rows_affected());
            return only_new_outcome(self, tenant, group, written).await;
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

    async fn insert_new_and_log(
        &mut self,
        tenant: TenantId,
        at: Ts,
        group: &[NewReading],
        marks: String,
        token: i64,
    ) -> Result<(Inserted, Option<i64>), sqlx::Error> {
        if group.len() >= COPY_FROM {
            // Copied, then the row on its own (`COPY` cannot be part of a `WITH`).
            return insert_then_log(self, tenant, at, group, marks, token).await;
        }
        let (devices, times, values, units) = pg_columns(group);
        let done: Result<(Option<i64>, i64), sqlx::Error> = sqlx::query_as(PG_INSERT_NEW_LOGGED)
            .bind(tenant.get())
            .bind(at)
            .bind(&devices)
            .bind(&times)
            .bind(&values)
            .bind(&units)
            .bind(marks)
            .bind(token)
            .fetch_one(&mut *self)
            .await;
        let (id, written) = match done {
            Ok((id, n)) => (id, Ok(u64::try_from(n).unwrap_or(0))),
            Err(e) => (None, Err(e)),
        };
        let inserted = only_new_outcome(self, tenant, group, written).await?;
        Ok(match inserted {
            Inserted::All => (Inserted::All, id),
            other => (other, None),
        })
    }

    async fn stored_values(&mut self, keys: &[Key]) -> Result<HashMap<Key, f64>, sqlx::Error> {
        let devices: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let times: Vec<Ts> = keys.iter().map(|k| Ts::from_micros(k.1)).collect();
        let rows: Vec<(i64, Ts, f64)> =
            sqlx::query_as(PG_STORED_VALUES).bind(devices).bind(times).fetch_all(&mut *self).await?;
        Ok(rows.into_iter().map(|(d, t, v)| ((d, t.micros()), v)).collect())
    }

    async fn all_owned(&mut self, tenant: TenantId, devices: &[i64]) -> Result<bool, sqlx::Error> {
        Ok(pg_gateways(self, tenant, devices).await?.len() == devices.len())
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
            return Ok(Inserted::All);
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
/// stable, so its first reading is still the one written). Both databases insert each row with a
/// seek in the `(device, time)` B-tree (SQLite's table, PostgreSQL's primary key): in key order a
/// device's readings of a commit land on its newest leaf one after another while that page is at
/// hand, instead of the commit's meters' pages being visited in turn once per message.
pub(super) fn in_key_order(group: &[NewReading]) -> Vec<&NewReading> {
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
        args.add(&*r.unit).map_err(sqlx::Error::Encode)?;
    }
    args.add(tenant.get()).map_err(sqlx::Error::Encode)?;
    Ok(args)
}
