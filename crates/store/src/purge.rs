//! Deleting rows by age, the one statement behind every retention purge of a table.

use crate::{Db, StoreError, Ts};
use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;

/// Deletes the rows of `table` whose `column` is before `at`; returns how many.
pub(crate) async fn older_than(
    db: &Db,
    table: &'static str,
    column: &'static str,
    at: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let sql = format!("DELETE FROM {table} WHERE {column} < $1");
    let deleted = on_db!(
        db,
        write
            | pool
            | sqlx::query(AssertSqlSafe(sql.as_str()))
                .bind(Ts::from(at))
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
    )?;
    Ok(deleted)
}
