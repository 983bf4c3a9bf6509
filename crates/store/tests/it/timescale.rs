//! TimescaleDB is optional: on a PostgreSQL without the extension (Debian's, as in CI) readings
//! stay a plain table and the store works the same (every other test here shows it); where the
//! extension exists the same call makes them a hypertable.

use tds_store::Store;
use tds_store::timescale::{Timescale, enable};
use tds_testkit::conformance;

async fn without_the_extension_readings_stay_a_plain_table_and_enabling_is_idempotent(store: Store) {
    let tds_store::Db::Postgres(pg) = store.db() else { return };
    let available: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
            .fetch_optional(pg)
            .await
            .unwrap();
    let first = enable(pg).await;
    let second = enable(pg).await;
    assert_eq!(first, second, "enabling twice changes nothing");
    if available.is_none() {
        assert_eq!(first, Timescale::NotAvailable);
    } else {
        assert!(matches!(first, Timescale::Hypertable | Timescale::Unusable(_)), "{first:?}");
    }
}

conformance!(without_the_extension_readings_stay_a_plain_table_and_enabling_is_idempotent);
