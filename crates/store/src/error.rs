//! The store's one error type. "Not found" and constraint violations are recognised here, so that
//! callers can answer 404 or show "already exists" without looking at database error codes.

use tds_domain::ValidationError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    /// No row with that id in that tenant (or at all). Deliberately the same whether the row
    /// does not exist or belongs to another tenant.
    #[error("not found")]
    NotFound,
    /// A uniqueness or reference rule was broken; the text says which.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A tenant or gateway limit would be exceeded.
    #[error("limit reached: {0}")]
    Limit(String),
    /// An import was refused; nothing was written. Each entry is (row number, problem).
    #[error("import refused: {} row(s) with errors", .0.len())]
    Import(Vec<RowError>),
    /// A value read back from the database does not parse: the database was changed by hand.
    #[error("stored value is invalid: {0}")]
    Corrupt(String),
    #[error("invalid value: {0}")]
    Invalid(#[from] ValidationError),
    #[error("database URL {url:?} is not usable: {reason}")]
    Url { url: String, reason: String },
    /// The database was upgraded by a newer TDS than this one.
    #[error(
        "the database schema is at version {found}, newer than this TDS knows (up to {known}): run the TDS \
         that upgraded it or a newer one (downgrades are not supported; to go back, restore a backup taken \
         before the upgrade)"
    )]
    SchemaTooNew { found: i64, known: i64 },
    /// Two databases that must have the same schema (a copy, a restore) do not.
    #[error("schema mismatch: {0}")]
    SchemaMismatch(String),
    #[error("schema migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error")]
    Database(#[source] sqlx::Error),
}

/// One rejected row of an import: its 1-based row number in the input and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub row: usize,
    pub message: String,
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::Database(db) => {
                let what = db.constraint().map_or_else(|| db.message().to_owned(), ToOwned::to_owned);
                match db.kind() {
                    sqlx::error::ErrorKind::UniqueViolation => {
                        StoreError::Conflict(format!("already exists ({what})"))
                    }
                    sqlx::error::ErrorKind::ForeignKeyViolation => {
                        StoreError::Conflict(format!("refers to a missing or in-use row ({what})"))
                    }
                    sqlx::error::ErrorKind::CheckViolation => {
                        StoreError::Conflict(format!("breaks a rule ({what})"))
                    }
                    _ => StoreError::Database(err),
                }
            }
            _ => StoreError::Database(err),
        }
    }
}

/// Parses a stored string back into its domain type, reporting a hand-edited database clearly.
pub(crate) fn stored<T>(
    column: &'static str,
    value: &str,
    parse: impl FnOnce(&str) -> Result<T, ValidationError>,
) -> Result<T, StoreError> {
    parse(value).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}
