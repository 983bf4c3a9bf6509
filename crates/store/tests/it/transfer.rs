use tds_store::{Store, StoreError};
use tds_testkit::{TestDb, conformance};

/// `transfer::TABLES` is what backups and `tds db copy` carry: a table a migration adds must be
/// listed there too, or it would be left behind.
async fn the_transfer_list_is_every_table_of_the_schema(store: Store) {
    let mut listed: Vec<String> = tds_store::transfer::TABLES.iter().map(|t| (*t).to_owned()).collect();
    listed.sort();
    assert_eq!(tds_store::transfer::table_names(store.db()).await.unwrap(), listed);
}

/// The schema version is the last migration's, and a database from a newer TDS is refused.
async fn a_schema_newer_than_this_build_is_refused(db: TestDb) {
    let store = db.store.clone();
    let known = store.db().known_schema_version();
    assert_eq!(store.db().schema_version().await.unwrap(), Some(known));
    let sql = format!(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES ({}, 'from the future', TRUE, x'00', 0)",
        known + 1
    );
    // As a newer TDS would have left it: one more migration applied.
    match store.db() {
        tds_store::Db::Postgres(_) => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql.replace("x'00'", "'\\x00'::bytea")))
                .execute(&pool)
                .await
                .unwrap();
        }
        tds_store::Db::Sqlite(_) => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await.unwrap();
        }
    }
    match store.db().migrate().await {
        Err(StoreError::SchemaTooNew { found, known: k }) => assert_eq!((found, k), (known + 1, known)),
        other => panic!("{other:?}"),
    }
}

conformance!(the_transfer_list_is_every_table_of_the_schema);

mod newer {
    use super::a_schema_newer_than_this_build_is_refused;
    use tds_testkit::per_backend;
    per_backend!(a_schema_newer_than_this_build_is_refused);
}
