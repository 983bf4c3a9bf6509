//! TimescaleDB (SPEC §9): on a PostgreSQL server where the extension is installed, readings
//! become a hypertable (weekly chunks) whose chunks older than 30 days are compressed by device.
//! The same schema and SQL serve plain PostgreSQL, which is what CI and most small installations
//! run; nothing depends on the extension being there.
//!
//! Retention stays with `tds-jobs` (per tenant, which a hypertable-wide retention policy cannot
//! express); TimescaleDB 2.11+ deletes from compressed chunks.

use sqlx::PgPool;

/// What became of the readings table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timescale {
    /// The extension is not installed on this server: plain PostgreSQL tables.
    NotAvailable,
    /// Installed but could not be enabled (e.g. not in `shared_preload_libraries`); the reason.
    Unusable(String),
    /// Readings are a hypertable with compression.
    Hypertable,
}

/// Turns readings into a hypertable when TimescaleDB is available; idempotent, so it runs on
/// every start after the migrations.
pub async fn enable(pg: &PgPool) -> Timescale {
    let available: Option<i32> =
        match sqlx::query_scalar("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
            .fetch_optional(pg)
            .await
        {
            Ok(v) => v,
            Err(e) => return Timescale::Unusable(e.to_string()),
        };
    if available.is_none() {
        return Timescale::NotAvailable;
    }
    // Each statement is idempotent; the first failure says why and leaves plain tables working.
    let run = |step: &'static str| async move {
        sqlx::query(step)
            .execute(pg)
            .await
            .map(|_| ())
            .map_err(|e| Timescale::Unusable(format!("{step}: {e}")))
    };
    let setup = async {
        run("CREATE EXTENSION IF NOT EXISTS timescaledb").await?;
        run("SELECT create_hypertable('readings', 'time', chunk_time_interval => INTERVAL '7 days', \
             migrate_data => true, if_not_exists => true)")
        .await?;
        // Compression settings cannot be changed once chunks are compressed: set them once.
        let compressed: Option<bool> = sqlx::query_scalar(
            "SELECT compression_enabled FROM timescaledb_information.hypertables WHERE hypertable_name = 'readings'",
        )
        .fetch_optional(pg)
        .await
        .map_err(|e| Timescale::Unusable(e.to_string()))?;
        if compressed != Some(true) {
            run("ALTER TABLE readings SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id', \
                 timescaledb.compress_orderby = 'time')")
            .await?;
        }
        run("SELECT add_compression_policy('readings', INTERVAL '30 days', if_not_exists => true)").await?;
        Ok::<_, Timescale>(())
    };
    match setup.await {
        Ok(()) => Timescale::Hypertable,
        Err(why) => why,
    }
}
