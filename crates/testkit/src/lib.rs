//! Test-only helpers shared by the crates' integration tests: a fresh, migrated database per test
//! (a SQLite file in a temporary directory, or a new PostgreSQL database on the server named by
//! `TDS_TEST_DATABASE_URL`) and fixtures that build typical tenants, gateways and devices.
//!
//! [`MailSink`] is a real SMTP server that keeps what it receives.
//!
//! `conformance!` turns a list of `async fn(Store)` scenarios into one test per backend, so every
//! store test runs on SQLite always and on PostgreSQL whenever the URL is set. With
//! `TDS_REQUIRE_POSTGRES=1` (as the test script sets), a missing URL fails the PostgreSQL tests
//! instead of skipping them.

#![allow(clippy::missing_panics_doc, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

pub mod fixtures;
pub mod mail;

pub use mail::MailSink;

use sqlx::postgres::PgPoolOptions;
use tds_store::{DbOptions, Store};
use tempfile::TempDir;

/// A migrated database that lives as long as this value (the SQLite directory is removed on drop;
/// PostgreSQL test databases live in the throw-away cluster of the test script).
#[derive(Debug)]
pub struct TestDb {
    pub store: Store,
    pub url: String,
    _dir: Option<TempDir>,
}

/// Makes aws-lc-rs the process's TLS provider, as `tds` does at start. The test HTTP clients
/// (reqwest with rustls and no provider of its own, as the notifier builds it) need one; every
/// test that opens a [`TestDb`] gets it, and others call this.
pub fn tls_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

impl TestDb {
    pub async fn sqlite() -> Self {
        tls_provider();
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("tds.db").display());
        let store = Store::open(&url, &DbOptions::default()).await.expect("open SQLite test database");
        Self { store, url, _dir: Some(dir) }
    }

    /// A new, empty, migrated database on the PostgreSQL server of `TDS_TEST_DATABASE_URL`, or
    /// `None` when it is not set (and `TDS_REQUIRE_POSTGRES` is not `1`).
    pub async fn postgres() -> Option<Self> {
        tls_provider();
        let Ok(admin_url) = std::env::var("TDS_TEST_DATABASE_URL") else {
            assert!(
                std::env::var("TDS_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "TDS_REQUIRE_POSTGRES=1 but TDS_TEST_DATABASE_URL is not set"
            );
            return None;
        };
        let name = format!("tds_test_{:016x}", rand::random::<u64>());
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&admin_url)
            .await
            .expect("connect to TDS_TEST_DATABASE_URL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .expect("create test database");
        admin.close().await;
        let url = replace_database(&admin_url, &name);
        // The smallest pool with which the device endpoint's writer overlaps its commits and
        // begins the next one's transaction ahead (`tds_store::readings::AHEAD_MIN_POOL`), as
        // `tds serve`'s default pool does: the tests run the endpoint as it runs in production.
        let store = Store::open(&url, &DbOptions { max_connections: 5, ..DbOptions::default() })
            .await
            .expect("open PostgreSQL test database");
        Some(Self { store, url, _dir: None })
    }
}

/// The same server URL with another database name.
pub fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{database}?{q}"),
        None => format!("{base}/{database}"),
    }
}

/// Declares one `#[tokio::test]` per backend for each named `async fn(Store)` scenario of the
/// calling module: `sqlite::NAME` and `postgres::NAME`.
#[macro_export]
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let db = $crate::TestDb::sqlite().await;
                    super::$name(db.store.clone()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(db) = $crate::TestDb::postgres().await else { return };
                    super::$name(db.store.clone()).await;
                }
            )*
        }
    };
}

/// Like [`conformance!`], but each scenario is an `async fn(TestDb)`, for tests that need the
/// database URL (to hand it to a server or a CLI process) rather than a `Store`.
#[macro_export]
macro_rules! per_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::TestDb::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(db) = $crate::TestDb::postgres().await else { return };
                    super::$name(db).await;
                }
            )*
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_is_replaced_keeping_the_rest() {
        assert_eq!(replace_database("postgres://u:p@h:5/postgres", "x"), "postgres://u:p@h:5/x");
        assert_eq!(
            replace_database("postgres://h/db?sslmode=disable", "x"),
            "postgres://h/x?sslmode=disable"
        );
        assert_eq!(replace_database("postgres://h", "x"), "postgres://h/x");
    }
}
