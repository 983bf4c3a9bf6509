//! Staff API tokens (SPEC §7, issue 15): platform operators' tokens for the staff operations of
//! the API (tenants), a kind apart from the tenants' tokens ([`crate::api_tokens`]): one belongs to
//! no tenant, has no role inside one, and is refused by every tenant route. Only the SHA-256 of
//! the secret is kept, with a prefix to recognise it; named uniquely; revocable; optionally
//! expiring. Created and revoked only on the server's command line (`tds token create --staff`).

use crate::tenants::found;
use crate::{Db, StoreError, Ts};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::AssertSqlSafe;
use tds_domain::Name;

/// A staff token's record; the secret and its hash are not part of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StaffToken {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A staff token to record: the caller drew the secret and hashed it.
#[derive(Debug, Clone)]
pub struct NewStaffToken {
    pub name: Name,
    pub token_hash: String,
    pub prefix: String,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    name: String,
    prefix: String,
    expires_at: Option<Ts>,
    last_used_at: Option<Ts>,
    revoked_at: Option<Ts>,
    created_at: Ts,
}

impl From<Row> for StaffToken {
    fn from(r: Row) -> Self {
        Self {
            id: r.id,
            name: r.name,
            prefix: r.prefix,
            expires_at: r.expires_at.map(|t| t.0),
            last_used_at: r.last_used_at.map(|t| t.0),
            revoked_at: r.revoked_at.map(|t| t.0),
            created_at: r.created_at.0,
        }
    }
}

const COLUMNS: &str = "id, name, prefix, expires_at, last_used_at, revoked_at, created_at";

#[derive(Debug, Clone, Copy)]
pub struct StaffTokenStore<'a> {
    db: &'a Db,
}

impl<'a> StaffTokenStore<'a> {
    pub(crate) fn new(db: &'a Db) -> Self {
        Self { db }
    }

    /// Records a token; a name already used (even by a revoked token) is `Conflict`.
    pub async fn staff_create(&self, new: &NewStaffToken) -> Result<StaffToken, StoreError> {
        let sql = format!(
            "INSERT INTO staff_api_tokens (name, token_hash, prefix, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
        );
        let row: Row = on_db!(
            self.db,
            write
                | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(new.name.as_str())
                    .bind(&new.token_hash)
                    .bind(&new.prefix)
                    .bind(new.expires_at.map(Ts::from))
                    .bind(Ts::now())
                    .fetch_one(pool)
                    .await
        )
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => {
                StoreError::Conflict(format!("a staff token named {} already exists", new.name))
            }
            e => e,
        })?;
        Ok(row.into())
    }

    /// Every staff token, revoked ones included, newest first.
    pub async fn staff_list(&self) -> Result<Vec<StaffToken>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM staff_api_tokens ORDER BY created_at DESC, id DESC");
        let rows: Vec<Row> =
            on_db!(self.db, read | pool | sqlx::query_as(AssertSqlSafe(sql.as_str())).fetch_all(pool).await)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Revokes the token named `name` at once (a second revocation keeps the first time).
    pub async fn staff_revoke(&self, name: &str) -> Result<(), StoreError> {
        let done = on_db!(
            self.db,
            write
                | pool
                | sqlx::query(
                    "UPDATE staff_api_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE name = $1"
                )
                .bind(name)
                .bind(Ts::now())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        )?;
        found(done)
    }

    /// The live token whose secret hashes to `token_hash` at `now`; `NotFound` for an unknown,
    /// revoked or expired one.
    pub async fn staff_authenticate(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<StaffToken, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM staff_api_tokens WHERE token_hash = $1 AND revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $2)"
        );
        let row: Row = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(token_hash)
                    .bind(Ts::from(now))
                    .fetch_one(pool)
                    .await
        )?;
        Ok(row.into())
    }

    /// Records a use (callers throttle it).
    pub async fn staff_mark_used(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        on_db!(
            self.db,
            write
                | pool
                | sqlx::query("UPDATE staff_api_tokens SET last_used_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind(Ts::from(at))
                    .execute(pool)
                    .await
                    .map(|_| ())
        )?;
        Ok(())
    }
}
