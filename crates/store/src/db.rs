//! The database handle: SQLite (embedded default) or PostgreSQL, chosen once from the URL.
//!
//! Stores run the same SQL on either pool through the [`on_db!`] and [`in_tx!`] macros; where the
//! dialects differ, a store matches on [`Db`] itself. SQLite gets one writer connection (so that
//! writers queue in the pool instead of failing with `SQLITE_BUSY`), a pool of read-only
//! connections, in WAL mode so readers never block the writer, and one connection that copies the
//! WAL into the database file beside the writer ([`crate::checkpoint`]).

use crate::StoreError;
use crate::checkpoint::{self, Checkpointer};
use sqlx::Connection;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, Clone)]
pub struct SqliteDb {
    pub(crate) read: SqlitePool,
    pub(crate) write: SqlitePool,
    path: PathBuf,
    /// Copies the WAL into the database file beside the writer; stops with the last clone.
    checkpointer: Arc<Checkpointer>,
}

impl SqliteDb {
    /// The database file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

#[derive(Debug, Clone)]
pub enum Db {
    Sqlite(SqliteDb),
    Postgres(PgPool),
}

/// Tuning that does not belong in the URL.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// Connections of the PostgreSQL pool, or SQLite's read-only pool.
    pub max_connections: u32,
    pub connect_timeout: Duration,
}

impl Default for DbOptions {
    fn default() -> Self {
        Self { max_connections: 8, connect_timeout: Duration::from_secs(10) }
    }
}

/// Runs a connection attempt with a deadline, flattening both failures into one message.
async fn tokio_timeout<T>(
    limit: Duration,
    attempt: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, attempt).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} s", limit.as_secs())),
    }
}

/// The URL with any password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

impl Db {
    /// Opens the database named by `url` (`sqlite://PATH`, `sqlite:PATH`, `postgres://…`,
    /// `postgresql://…`). The SQLite file and its directory are created when missing.
    pub async fn connect(url: &str, opts: &DbOptions) -> Result<Self, StoreError> {
        let url_error = |reason: String| StoreError::Url { url: redact_url(url), reason };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url).map_err(|e| url_error(e.to_string()))?;
            // One direct connection first: a pool only reports "timed out", while this says why
            // (refused, unknown host, bad password, no such database).
            let probe = tokio_timeout(opts.connect_timeout, sqlx::PgConnection::connect_with(&options))
                .await
                .map_err(|e| url_error(format!("cannot connect: {e}")))?;
            probe.close().await.ok();
            let pool = PgPoolOptions::new()
                .max_connections(opts.max_connections)
                .acquire_timeout(opts.connect_timeout)
                .connect_with(options)
                .await
                .map_err(|e| url_error(format!("cannot connect: {e}")))?;
            Ok(Self::Postgres(pool))
        } else if url.starts_with("sqlite:") {
            let path = url.trim_start_matches("sqlite:").trim_start_matches("//");
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() || path == ":memory:" || url.contains("mode=memory") {
                return Err(url_error(
                    "TDS needs a database file, e.g. sqlite://./data/tds.db (in-memory databases are not supported)"
                        .into(),
                ));
            }
            let path = PathBuf::from(path);
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| url_error(format!("cannot create directory {}: {e}", dir.display())))?;
            }
            let base = SqliteConnectOptions::new()
                .filename(&path)
                .journal_mode(SqliteJournalMode::Wal)
                // NORMAL in WAL mode: a commit survives a process crash; a power cut may lose
                // the last transactions but never corrupts the file.
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10))
                .pragma("temp_store", "memory")
                .pragma("cache_size", "-65536");
            // The writer checkpoints only when the background passes fell behind (see
            // `crate::checkpoint`).
            let writer = base
                .clone()
                .create_if_missing(true)
                .pragma("wal_autocheckpoint", checkpoint::WRITER_PAGES.to_string())
                .pragma("journal_size_limit", checkpoint::KEEP_WAL_BYTES.to_string());
            let write = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_mins(1))
                .connect_with(writer)
                .await
                .map_err(|e| url_error(format!("cannot open: {e}")))?;
            let checkpointer =
                Checkpointer::start(&base).await.map_err(|e| url_error(format!("cannot open: {e}")))?;
            let read = SqlitePoolOptions::new()
                .max_connections(opts.max_connections)
                .acquire_timeout(opts.connect_timeout)
                .connect_with(base.read_only(true))
                .await
                .map_err(|e| url_error(format!("cannot open: {e}")))?;
            Ok(Self::Sqlite(SqliteDb { read, write, path, checkpointer }))
        } else {
            Err(url_error(
                "expected sqlite://PATH (embedded) or postgres://USER:PASSWORD@HOST:PORT/DATABASE".into(),
            ))
        }
    }

    /// The newest schema version this build knows (the last migration's number).
    pub fn known_schema_version(&self) -> i64 {
        let migrator = match self {
            Self::Sqlite(_) => &SQLITE_MIGRATIONS,
            Self::Postgres(_) => &POSTGRES_MIGRATIONS,
        };
        migrator.iter().map(|m| m.version).max().unwrap_or(0)
    }

    /// The schema version of the database: its newest applied migration, `None` for a database
    /// TDS never migrated.
    pub async fn schema_version(&self) -> Result<Option<i64>, StoreError> {
        let exists: bool = match self {
            Self::Sqlite(s) => sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations')",
            )
            .fetch_one(&s.read)
            .await?,
            Self::Postgres(pg) => sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
                .fetch_one(pg)
                .await?,
        };
        if !exists {
            return Ok(None);
        }
        let version: Option<i64> = on_db!(
            self,
            read | pool
                | sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                    .fetch_one(pool)
                    .await
        )?;
        Ok(version)
    }

    /// Creates or upgrades the schema. Safe to run on every start and from several instances.
    /// Refuses a database that a newer TDS upgraded ([`StoreError::SchemaTooNew`]).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let known = self.known_schema_version();
        let found = self.schema_version().await?;
        if let Some(found) = found.filter(|v| *v > known) {
            return Err(StoreError::SchemaTooNew { found, known });
        }
        if found.is_some_and(|v| v < known) {
            tracing::info!(from = found, to = known, "upgrading the database schema");
        }
        match self {
            Self::Sqlite(s) => SQLITE_MIGRATIONS.run(&s.write).await?,
            Self::Postgres(pg) => {
                POSTGRES_MIGRATIONS.run(pg).await?;
                match crate::timescale::enable(pg).await {
                    crate::timescale::Timescale::Hypertable => {
                        tracing::info!("TimescaleDB: readings are a compressed hypertable");
                    }
                    crate::timescale::Timescale::NotAvailable => {}
                    crate::timescale::Timescale::Unusable(why) => {
                        tracing::warn!(reason = %why, "TimescaleDB is installed but could not be used; plain tables");
                    }
                }
            }
        }
        Ok(())
    }

    /// A round trip to the database, for readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_db!(self, read | pool | sqlx::query("SELECT 1").execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    /// The clause that locks the rows a SELECT reads until the transaction ends, so that a check
    /// (a limit, the gateway's current tenant) still holds when the transaction writes. On
    /// PostgreSQL `FOR NO KEY UPDATE`: it makes such checks wait for each other but, unlike
    /// `FOR UPDATE`, lets other transactions' foreign-key checks on the row through. SQLite has
    /// no such clause and needs none: its one writer connection runs write transactions one at a
    /// time.
    pub(crate) fn row_lock(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "",
            Self::Postgres(_) => "FOR NO KEY UPDATE",
        }
    }

    pub async fn close(&self) {
        match self {
            Self::Sqlite(s) => {
                // The writer last, as before the checkpointer: see `Checkpointer::stop`.
                s.checkpointer.stop().await;
                s.read.close().await;
                s.write.close().await;
            }
            Self::Postgres(pg) => pg.close().await,
        }
    }
}
