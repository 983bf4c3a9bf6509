//! Copying a whole installation from one database to another: `tds db copy` (SQLite up to
//! PostgreSQL), and the backups of a PostgreSQL installation (into a SQLite file) and their
//! restore (out of one).
//!
//! Every table of [`TABLES`] is read in one snapshot of the source (a read transaction; on
//! PostgreSQL `REPEATABLE READ`), streamed in batches of multi-row inserts into one transaction
//! of the target, counted on both sides, and the readings are compared by an order-independent
//! checksum; only then is the target committed: all or nothing. Memory stays at one batch
//! whatever the size of the tables.
//!
//! Column types come from the PostgreSQL side's catalogue (every copy has one, except SQLite to
//! SQLite, which is a file copy and not done here); values are decoded with the Rust type that
//! column has in the stores, so a timestamp that SQLite keeps as microseconds arrives in
//! PostgreSQL as a `TIMESTAMPTZ` and back.
//!
//! Must not: copy between different schema versions (both sides must be at this build's version,
//! see [`copy`]), or write into a target that has rows.

use crate::{Db, StoreError, Ts};
use chrono::NaiveDate;
use futures_util::TryStreamExt;
use sha2::{Digest, Sha256};
use sqlx::{AssertSqlSafe, Row};
use std::time::Instant;

/// Every table of the schema, parents before children (foreign keys hold at every insert).
/// A test checks that this is the schema's whole table list on both databases.
pub const TABLES: &[&str] = &[
    "tenants",
    "users",
    "memberships",
    "user_tokens",
    "login_failures",
    "web_sessions",
    "gateways",
    "gateway_events",
    "devices",
    "readings",
    "rollups",
    "rollup_dirty",
    "rollup_pending",
    "rejected_messages",
    "certificates",
    "renewals",
    "gateway_messages",
    "renewal_log",
    "renewal_pauses",
    "crl",
    "alert_rules",
    "alerts",
    "alert_events",
    "notification_channels",
    "notification_outbox",
    "user_alert_prefs",
    "alarm_defaults",
    "report_definitions",
    "report_runs",
    "audit_log",
    "api_tokens",
    "staff_api_tokens",
    "jobs",
];

/// How a column's values are read and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Float,
    Text,
    Bool,
    Time,
    Date,
    Bytes,
}

impl Kind {
    fn from_pg(data_type: &str) -> Result<Self, StoreError> {
        Ok(match data_type {
            "bigint" | "integer" | "smallint" => Self::Int,
            "double precision" | "real" => Self::Float,
            "text" | "character varying" => Self::Text,
            "boolean" => Self::Bool,
            "timestamp with time zone" => Self::Time,
            "date" => Self::Date,
            "bytea" => Self::Bytes,
            other => return Err(StoreError::SchemaMismatch(format!("column type {other} is not copyable"))),
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Bool(bool),
    Time(Ts),
    Date(NaiveDate),
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone)]
struct Table {
    name: &'static str,
    columns: Vec<(String, Kind)>,
}

impl Table {
    fn select(&self) -> String {
        let cols: Vec<&str> = self.columns.iter().map(|(c, _)| c.as_str()).collect();
        format!("SELECT {} FROM {}", cols.join(", "), self.name)
    }

    /// Rows per INSERT: within both databases' limits on bound values (SQLite 32,766).
    fn batch_rows(&self) -> usize {
        (30_000 / self.columns.len().max(1)).clamp(1, 2_000)
    }
}

/// What a copy or a check found: rows per table and the readings' checksum.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Census {
    pub tables: Vec<(String, u64)>,
    /// Order-independent SHA-256-based checksum of every reading's (device, time, value), hex.
    pub readings_checksum: String,
}

impl Census {
    pub fn rows(&self, table: &str) -> Option<u64> {
        self.tables.iter().find(|(t, _)| t == table).map(|(_, n)| *n)
    }

    pub fn total_rows(&self) -> u64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }
}

/// Where a copy is, for a progress display.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    pub table: &'a str,
    pub table_rows: u64,
    pub table_total: u64,
    pub rows: u64,
    pub total: u64,
    pub started: Instant,
}

/// The checksum of readings, folded row by row in any order: the sum (mod 2^128) of the first 16
/// bytes of SHA-256 over each reading's device id, time in microseconds and value bits.
#[derive(Debug, Default, Clone, Copy)]
struct ReadingsChecksum(u128);

impl ReadingsChecksum {
    fn add(&mut self, device: i64, time: Ts, value: f64) {
        let mut h = Sha256::new();
        h.update(device.to_le_bytes());
        h.update(time.micros().to_le_bytes());
        h.update(value.to_bits().to_le_bytes());
        let digest = h.finalize();
        let mut first = [0u8; 16];
        first.copy_from_slice(&digest[..16]);
        self.0 = self.0.wrapping_add(u128::from_le_bytes(first));
    }

    fn hex(self) -> String {
        format!("{:032x}", self.0)
    }

    fn add_row(&mut self, table: &Table, row: &[Value]) {
        let find = |name: &str| table.columns.iter().position(|(c, _)| c == name).and_then(|i| row.get(i));
        if let (Some(Value::Int(d)), Some(Value::Time(t)), Some(Value::Float(v))) =
            (find("device_id"), find("time"), find("value"))
        {
            self.add(*d, *t, *v);
        }
    }
}

/// The column types of every table, from the PostgreSQL catalogue.
async fn tables(pg: &sqlx::PgPool) -> Result<Vec<Table>, StoreError> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position",
    )
    .fetch_all(pg)
    .await?;
    let mut out = Vec::with_capacity(TABLES.len());
    for name in TABLES {
        let columns = rows
            .iter()
            .filter(|(t, _, _)| t == name)
            .map(|(_, c, ty)| Ok((c.clone(), Kind::from_pg(ty)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        if columns.is_empty() {
            return Err(StoreError::SchemaMismatch(format!("table {name} is missing on PostgreSQL")));
        }
        out.push(Table { name, columns });
    }
    Ok(out)
}

/// The schema's tables, as the database lists them (without the migration bookkeeping).
pub async fn table_names(db: &Db) -> Result<Vec<String>, StoreError> {
    let mut names: Vec<String> = match db {
        Db::Sqlite(s) => {
            sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
                 AND name <> '_sqlx_migrations'",
            )
            .fetch_all(&s.read)
            .await?
        }
        Db::Postgres(pg) => sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() \
                 AND table_type = 'BASE TABLE' AND table_name <> '_sqlx_migrations'",
        )
        .fetch_all(pg)
        .await?,
    };
    names.sort();
    Ok(names)
}

/// Reads one row into values, by the column kinds: the same for either database's row type.
macro_rules! decode_row {
    ($name:ident, $row:ty) => {
        fn $name(row: &$row, table: &Table) -> Result<Vec<Value>, sqlx::Error> {
            let mut out = Vec::with_capacity(table.columns.len());
            for (i, (_, kind)) in table.columns.iter().enumerate() {
                out.push(
                    match kind {
                        Kind::Int => row.try_get::<Option<i64>, _>(i)?.map(Value::Int),
                        Kind::Float => row.try_get::<Option<f64>, _>(i)?.map(Value::Float),
                        Kind::Text => row.try_get::<Option<String>, _>(i)?.map(Value::Text),
                        Kind::Bool => row.try_get::<Option<bool>, _>(i)?.map(Value::Bool),
                        Kind::Time => row.try_get::<Option<Ts>, _>(i)?.map(Value::Time),
                        Kind::Date => row.try_get::<Option<NaiveDate>, _>(i)?.map(Value::Date),
                        Kind::Bytes => row.try_get::<Option<Vec<u8>>, _>(i)?.map(Value::Bytes),
                    }
                    .unwrap_or(Value::Null),
                );
            }
            Ok(out)
        }
    };
}

decode_row!(decode_sqlite, sqlx::sqlite::SqliteRow);
decode_row!(decode_pg, sqlx::postgres::PgRow);

/// Binds one value whatever the database: the types are the stores' own.
macro_rules! bind_value {
    ($b:expr, $v:expr, $kind:expr) => {
        match ($v, $kind) {
            (Value::Null, Kind::Int) => $b.push_bind(None::<i64>),
            (Value::Null, Kind::Float) => $b.push_bind(None::<f64>),
            (Value::Null, Kind::Text) => $b.push_bind(None::<String>),
            (Value::Null, Kind::Bool) => $b.push_bind(None::<bool>),
            (Value::Null, Kind::Time) => $b.push_bind(None::<Ts>),
            (Value::Null, Kind::Date) => $b.push_bind(None::<NaiveDate>),
            (Value::Null, Kind::Bytes) => $b.push_bind(None::<Vec<u8>>),
            (Value::Int(v), _) => $b.push_bind(v),
            (Value::Float(v), _) => $b.push_bind(v),
            (Value::Text(v), _) => $b.push_bind(v),
            (Value::Bool(v), _) => $b.push_bind(v),
            (Value::Time(v), _) => $b.push_bind(v),
            (Value::Date(v), _) => $b.push_bind(v),
            (Value::Bytes(v), _) => $b.push_bind(v),
        }
    };
}

/// The target's open transaction.
enum Target {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl Target {
    async fn begin(db: &Db) -> Result<Self, StoreError> {
        Ok(match db {
            Db::Sqlite(s) => Self::Sqlite(s.write.begin_with("BEGIN IMMEDIATE").await?),
            Db::Postgres(pg) => Self::Postgres(pg.begin().await?),
        })
    }

    async fn insert(&mut self, table: &Table, rows: Vec<Vec<Value>>) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let cols: Vec<&str> = table.columns.iter().map(|(c, _)| c.as_str()).collect();
        let head = format!("INSERT INTO {} ({}) ", table.name, cols.join(", "));
        let kinds: Vec<Kind> = table.columns.iter().map(|(_, k)| *k).collect();
        match self {
            Self::Sqlite(tx) => {
                let mut b = sqlx::QueryBuilder::<sqlx::Sqlite>::new(head);
                b.push_values(rows, |mut b, row| {
                    for (v, k) in row.into_iter().zip(&kinds) {
                        bind_value!(b, v, *k);
                    }
                });
                b.build().execute(&mut **tx).await?;
            }
            Self::Postgres(tx) => {
                let mut b = sqlx::QueryBuilder::<sqlx::Postgres>::new(head);
                b.push_values(rows, |mut b, row| {
                    for (v, k) in row.into_iter().zip(&kinds) {
                        bind_value!(b, v, *k);
                    }
                });
                b.build().execute(&mut **tx).await?;
            }
        }
        Ok(())
    }

    async fn count(&mut self, table: &str) -> Result<u64, StoreError> {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        let n: i64 = match self {
            Self::Sqlite(tx) => sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(&mut **tx).await?,
            Self::Postgres(tx) => sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(&mut **tx).await?,
        };
        Ok(u64::try_from(n).unwrap_or_default())
    }

    async fn readings_checksum(&mut self) -> Result<String, StoreError> {
        let sql = "SELECT device_id, time, value FROM readings";
        let mut sum = ReadingsChecksum::default();
        match self {
            Self::Sqlite(tx) => {
                let mut rows = sqlx::query_as::<_, (i64, Ts, f64)>(sql).fetch(&mut **tx);
                while let Some((d, t, v)) = rows.try_next().await? {
                    sum.add(d, t, v);
                }
            }
            Self::Postgres(tx) => {
                let mut rows = sqlx::query_as::<_, (i64, Ts, f64)>(sql).fetch(&mut **tx);
                while let Some((d, t, v)) = rows.try_next().await? {
                    sum.add(d, t, v);
                }
            }
        }
        Ok(sum.hex())
    }

    /// PostgreSQL identity columns continue after the copied ids.
    async fn reset_sequences(&mut self, tables: &[Table]) -> Result<(), StoreError> {
        let Self::Postgres(tx) = self else { return Ok(()) };
        for t in tables {
            let has_id = t.columns.iter().any(|(c, k)| c == "id" && *k == Kind::Int);
            if !has_id {
                continue;
            }
            let seq: Option<String> = sqlx::query_scalar("SELECT pg_get_serial_sequence($1, 'id')")
                .bind(t.name)
                .fetch_one(&mut **tx)
                .await?;
            if let Some(seq) = seq {
                let sql =
                    format!("SELECT setval($1, COALESCE((SELECT MAX(id) FROM {}), 0) + 1, false)", t.name);
                sqlx::query(AssertSqlSafe(sql)).bind(seq).execute(&mut **tx).await?;
            }
        }
        Ok(())
    }

    async fn commit(self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(tx) => tx.commit().await?,
            Self::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }
}

/// Both databases must be at this build's schema version, and the target must hold no rows.
async fn check_pair(from: &Db, to: &Db) -> Result<(), StoreError> {
    for (db, side) in [(from, "source"), (to, "target")] {
        let known = db.known_schema_version();
        match db.schema_version().await? {
            Some(v) if v > known => return Err(StoreError::SchemaTooNew { found: v, known }),
            Some(v) if v == known => {}
            other => {
                return Err(StoreError::SchemaMismatch(format!(
                    "the {side} database is at schema version {}, this TDS at {known}: run `tds migrate` on it first",
                    other.map_or_else(|| "none".to_owned(), |v| v.to_string())
                )));
            }
        }
    }
    let expected: Vec<String> = {
        let mut t: Vec<String> = TABLES.iter().map(|s| (*s).to_owned()).collect();
        t.sort();
        t
    };
    for (db, side) in [(from, "source"), (to, "target")] {
        let names = table_names(db).await?;
        let missing: Vec<_> = expected.iter().filter(|t| !names.contains(t)).collect();
        let unknown: Vec<_> = names.iter().filter(|t| !expected.contains(t)).collect();
        if !missing.is_empty() || !unknown.is_empty() {
            return Err(StoreError::SchemaMismatch(format!(
                "the {side} database's tables differ from this TDS's: missing {missing:?}, unknown {unknown:?}"
            )));
        }
    }
    for table in TABLES {
        let sql = format!("SELECT EXISTS (SELECT 1 FROM {table})");
        let any: bool =
            on_db!(to, read | pool | sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(pool).await)?;
        if any {
            return Err(StoreError::Conflict(format!(
                "the target database is not empty (table {table} has rows): copy into a new, migrated database"
            )));
        }
    }
    Ok(())
}

/// Copies every row of `from` into `to` (see the module's documentation), calling `progress`
/// after each batch; returns the census that both sides matched.
pub async fn copy(
    from: &Db,
    to: &Db,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Result<Census, StoreError> {
    check_pair(from, to).await?;
    let pg = match (from, to) {
        (Db::Postgres(pg), _) | (_, Db::Postgres(pg)) => pg,
        (Db::Sqlite(_), Db::Sqlite(_)) => {
            return Err(StoreError::SchemaMismatch(
                "SQLite to SQLite is a file copy (`tds backup` / `tds restore`), not a database copy".into(),
            ));
        }
    };
    let tables = tables(pg).await?;
    let mut target = Target::begin(to).await?;
    let census = match from {
        Db::Sqlite(s) => {
            let mut conn = s.read.acquire().await?;
            // A read transaction: one snapshot of every table (WAL mode), however long the copy.
            sqlx::query("BEGIN").execute(&mut *conn).await?;
            let result = copy_tables_sqlite(&mut conn, &tables, &mut target, progress).await;
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            result?
        }
        Db::Postgres(source) => {
            let mut conn = source.acquire().await?;
            sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut *conn).await?;
            let result = copy_tables_pg(&mut conn, &tables, &mut target, progress).await;
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            result?
        }
    };
    // Verified inside the target's transaction: a mismatch commits nothing.
    for (table, rows) in &census.tables {
        let copied = target.count(table).await?;
        if copied != *rows {
            return Err(StoreError::SchemaMismatch(format!(
                "table {table}: {rows} rows read but {copied} written; nothing was committed"
            )));
        }
    }
    let checksum = target.readings_checksum().await?;
    if checksum != census.readings_checksum {
        return Err(StoreError::SchemaMismatch(
            "the readings' checksums differ; nothing was committed".into(),
        ));
    }
    target.reset_sequences(&tables).await?;
    target.commit().await?;
    Ok(census)
}

macro_rules! copy_tables {
    ($name:ident, $conn:ty, $decode:ident) => {
        async fn $name(
            conn: &mut $conn,
            tables: &[Table],
            target: &mut Target,
            progress: &mut (dyn FnMut(Progress<'_>) + Send),
        ) -> Result<Census, StoreError> {
            let mut counts = Vec::with_capacity(tables.len());
            for t in tables {
                let sql = format!("SELECT COUNT(*) FROM {}", t.name);
                let n: i64 = sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(&mut **conn).await?;
                counts.push(u64::try_from(n).unwrap_or_default());
            }
            let total: u64 = counts.iter().sum();
            let started = Instant::now();
            let mut rows_done = 0u64;
            let mut checksum = ReadingsChecksum::default();
            let mut census = Census::default();
            for (t, table_total) in tables.iter().zip(counts) {
                let mut table_rows = 0u64;
                let mut batch = Vec::with_capacity(t.batch_rows());
                let sql = t.select();
                let mut rows = sqlx::query(AssertSqlSafe(sql)).fetch(&mut **conn);
                while let Some(row) = rows.try_next().await? {
                    let values = $decode(&row, t)?;
                    if t.name == "readings" {
                        checksum.add_row(t, &values);
                    }
                    batch.push(values);
                    if batch.len() >= t.batch_rows() {
                        let n = batch.len() as u64;
                        target.insert(t, std::mem::take(&mut batch)).await?;
                        table_rows += n;
                        rows_done += n;
                        progress(Progress {
                            table: t.name,
                            table_rows,
                            table_total,
                            rows: rows_done,
                            total,
                            started,
                        });
                    }
                }
                let n = batch.len() as u64;
                target.insert(t, batch).await?;
                table_rows += n;
                rows_done += n;
                progress(Progress {
                    table: t.name,
                    table_rows,
                    table_total,
                    rows: rows_done,
                    total,
                    started,
                });
                census.tables.push((t.name.to_owned(), table_rows));
            }
            census.readings_checksum = checksum.hex();
            Ok(census)
        }
    };
}

copy_tables!(copy_tables_sqlite, sqlx::pool::PoolConnection<sqlx::Sqlite>, decode_sqlite);
copy_tables!(copy_tables_pg, sqlx::pool::PoolConnection<sqlx::Postgres>, decode_pg);

/// Counts every table and checksums the readings, in one snapshot: for a backup's manifest and
/// for checking a restore against it.
pub async fn census(db: &Db) -> Result<Census, StoreError> {
    let mut census = Census::default();
    let mut target = match db {
        Db::Sqlite(s) => Target::Sqlite(s.read.begin().await?),
        Db::Postgres(pg) => Target::Postgres(pg.begin().await?),
    };
    if let Target::Postgres(tx) = &mut target {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut **tx).await?;
    }
    for table in TABLES {
        census.tables.push(((*table).to_owned(), target.count(table).await?));
    }
    census.readings_checksum = target.readings_checksum().await?;
    match target {
        Target::Sqlite(tx) => tx.rollback().await?,
        Target::Postgres(tx) => tx.rollback().await?,
    }
    Ok(census)
}

/// SQLite: writes one consistent snapshot of the database into a new file at `path` with
/// `VACUUM INTO`, on a read connection: writers (gateways reporting) carry on meanwhile.
pub async fn vacuum_into(db: &Db, path: &str) -> Result<(), StoreError> {
    let Db::Sqlite(s) = db else {
        return Err(StoreError::SchemaMismatch("VACUUM INTO is SQLite's".into()));
    };
    sqlx::query("VACUUM INTO $1").bind(path).execute(&s.read).await?;
    Ok(())
}

/// Drops every table of the schema and the migration history, for `tds restore --force` over an
/// existing PostgreSQL installation. Nothing else in the database is touched.
pub async fn drop_schema(db: &Db) -> Result<(), StoreError> {
    let Db::Postgres(pg) = db else {
        return Err(StoreError::SchemaMismatch(
            "only a PostgreSQL schema is dropped; SQLite is a file".into(),
        ));
    };
    let mut tx = pg.begin().await?;
    for table in TABLES.iter().rev().chain(&["_sqlx_migrations"]) {
        sqlx::query(AssertSqlSafe(format!("DROP TABLE IF EXISTS {table} CASCADE"))).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}
