//! API tokens (SPEC §7): per tenant, named, role-scoped, optionally expiring, revocable. Only the
//! SHA-256 (hex) of a token is stored, with a short prefix of it to tell tokens apart in lists;
//! the secret is shown once, by whoever created it.
//!
//! Listing, creating and revoking take the tenant; [`ApiTokenStore::authenticate`] is reached by
//! the secret alone (its hash is the proof) and answers only for a token that is neither revoked
//! nor expired.

use crate::tenants::found;
use crate::{Db, StoreError, Ts};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::AssertSqlSafe;
use tds_domain::{ApiTokenId, Name, Role, TenantId, UserId};

/// A token's record; the secret and its hash are not part of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiToken {
    pub id: ApiTokenId,
    pub tenant_id: TenantId,
    pub name: String,
    pub role: Role,
    /// The first characters of the secret (`tds_ab12cd34`), to recognise it.
    pub prefix: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<UserId>,
}

impl ApiToken {
    /// Whether it authenticates at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e > now)
    }
}

/// A token to record: the caller drew the secret and hashed it.
#[derive(Debug, Clone)]
pub struct NewApiToken {
    pub name: Name,
    pub role: Role,
    pub token_hash: String,
    pub prefix: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_by: Option<UserId>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    tenant_id: i64,
    name: String,
    role: String,
    prefix: String,
    expires_at: Option<Ts>,
    last_used_at: Option<Ts>,
    revoked_at: Option<Ts>,
    created_at: Ts,
    created_by: Option<i64>,
}

impl TryFrom<Row> for ApiToken {
    type Error = StoreError;
    fn try_from(r: Row) -> Result<Self, StoreError> {
        Ok(Self {
            id: ApiTokenId::new(r.id),
            tenant_id: TenantId::new(r.tenant_id),
            name: r.name,
            role: crate::error::stored("api_tokens.role", &r.role, Role::parse)?,
            prefix: r.prefix,
            expires_at: r.expires_at.map(|t| t.0),
            last_used_at: r.last_used_at.map(|t| t.0),
            revoked_at: r.revoked_at.map(|t| t.0),
            created_at: r.created_at.0,
            created_by: r.created_by.map(UserId::new),
        })
    }
}

const COLUMNS: &str =
    "id, tenant_id, name, role, prefix, expires_at, last_used_at, revoked_at, created_at, created_by";

#[derive(Debug, Clone, Copy)]
pub struct ApiTokenStore<'a> {
    db: &'a Db,
}

impl<'a> ApiTokenStore<'a> {
    pub(crate) fn new(db: &'a Db) -> Self {
        Self { db }
    }

    /// Records a token. A name already used in the tenant (even by a revoked token, which stays
    /// listed for the audit trail) is `Conflict`.
    pub async fn create(&self, tenant: TenantId, new: &NewApiToken) -> Result<ApiToken, StoreError> {
        let sql = format!(
            "INSERT INTO api_tokens (tenant_id, name, role, token_hash, prefix, expires_at, created_at, updated_at, \
             created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8) RETURNING {COLUMNS}"
        );
        let row: Row = on_db!(
            self.db,
            write
                | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(tenant.get())
                    .bind(new.name.as_str())
                    .bind(new.role.as_str())
                    .bind(&new.token_hash)
                    .bind(&new.prefix)
                    .bind(new.expires_at.map(Ts::from))
                    .bind(Ts::now())
                    .bind(new.created_by.map(UserId::get))
                    .fetch_one(pool)
                    .await
        )
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => {
                StoreError::Conflict(format!("a token named {} already exists", new.name))
            }
            e => e,
        })?;
        row.try_into()
    }

    /// The tenant's tokens, revoked ones included, newest first.
    pub async fn list(&self, tenant: TenantId) -> Result<Vec<ApiToken>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM api_tokens WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC"
        );
        let rows: Vec<Row> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str())).bind(tenant.get()).fetch_all(pool).await
        )?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// The tenant's token named `name`.
    pub async fn by_name(&self, tenant: TenantId, name: &str) -> Result<ApiToken, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM api_tokens WHERE tenant_id = $1 AND name = $2");
        let row: Row = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(tenant.get())
                    .bind(name)
                    .fetch_one(pool)
                    .await
        )?;
        row.try_into()
    }

    /// Revokes the tenant's token `id` (at once: the next request with it is refused). Revoking
    /// a revoked token keeps its first revocation time.
    pub async fn revoke(&self, tenant: TenantId, id: ApiTokenId) -> Result<(), StoreError> {
        let done = on_db!(
            self.db,
            write
                | pool
                | sqlx::query(
                    "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $3), updated_at = $3 \
                     WHERE id = $1 AND tenant_id = $2"
                )
                .bind(id.get())
                .bind(tenant.get())
                .bind(Ts::now())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        )?;
        found(done)
    }

    /// The live token whose secret hashes to `token_hash` at `now`; `NotFound` for an unknown,
    /// revoked or expired one (deliberately the same answer).
    pub async fn authenticate(&self, token_hash: &str, now: DateTime<Utc>) -> Result<ApiToken, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL \
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
        row.try_into()
    }

    /// Records a use. Callers throttle it (a write per request would cost the SQLite writer).
    pub async fn mark_used(&self, id: ApiTokenId, at: DateTime<Utc>) -> Result<(), StoreError> {
        on_db!(
            self.db,
            write
                | pool
                | sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1")
                    .bind(id.get())
                    .bind(Ts::from(at))
                    .execute(pool)
                    .await
                    .map(|_| ())
        )?;
        Ok(())
    }
}
