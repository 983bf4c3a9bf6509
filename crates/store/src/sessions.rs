//! Web sessions: one row per signed-in browser, keyed by the SHA-256 (hex) of the cookie token so
//! that the token itself is never stored. A session is valid while `now < expires_at`; every
//! lookup takes `now` from the caller, so expiry is decided by one clock and can be tested.
//! Sessions belong to a user, not to a tenant: the tenant the user works in is a choice recorded on
//! the session, and the web layer still checks the membership on every request.

use crate::tenants::found;
use crate::{Db, StoreError, Ts};
use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;
use tds_domain::{TenantId, UserId};

#[derive(Clone)]
pub struct Session {
    pub token_hash: String,
    pub user_id: UserId,
    pub tenant_id: Option<TenantId>,
    pub csrf_token: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

// By hand so that the CSRF token, a secret of the page, never reaches a log line.
impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("token_hash", &self.token_hash)
            .field("user_id", &self.user_id)
            .field("tenant_id", &self.tenant_id)
            .field("ip", &self.ip)
            .field("user_agent", &self.user_agent)
            .field("created_at", &self.created_at)
            .field("last_seen_at", &self.last_seen_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct NewSession {
    /// SHA-256 (hex) of the cookie token.
    pub token_hash: String,
    pub user_id: UserId,
    pub tenant_id: Option<TenantId>,
    pub csrf_token: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSession")
            .field("token_hash", &self.token_hash)
            .field("user_id", &self.user_id)
            .field("tenant_id", &self.tenant_id)
            .field("ip", &self.ip)
            .field("user_agent", &self.user_agent)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    token_hash: String,
    user_id: i64,
    tenant_id: Option<i64>,
    csrf_token: String,
    ip: Option<String>,
    user_agent: Option<String>,
    created_at: Ts,
    last_seen_at: Ts,
    expires_at: Ts,
}

impl From<SessionRow> for Session {
    fn from(r: SessionRow) -> Self {
        Session {
            token_hash: r.token_hash,
            user_id: UserId::new(r.user_id),
            tenant_id: r.tenant_id.map(TenantId::new),
            csrf_token: r.csrf_token,
            ip: r.ip,
            user_agent: r.user_agent,
            created_at: r.created_at.0,
            last_seen_at: r.last_seen_at.0,
            expires_at: r.expires_at.0,
        }
    }
}

const COLUMNS: &str =
    "token_hash, user_id, tenant_id, csrf_token, ip, user_agent, created_at, last_seen_at, expires_at";

#[derive(Debug, Clone, Copy)]
pub struct SessionStore<'a> {
    db: &'a Db,
}

impl<'a> SessionStore<'a> {
    pub(crate) fn new(db: &'a Db) -> Self {
        Self { db }
    }

    /// Records a new session, created and last seen now. A token hash already in use is
    /// `Conflict` (the web layer draws 256 random bits, so that means a bug, not bad luck).
    pub async fn create(&self, new: &NewSession) -> Result<Session, StoreError> {
        let sql = format!(
            "INSERT INTO web_sessions (token_hash, user_id, tenant_id, csrf_token, ip, user_agent, \
             created_at, last_seen_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8) \
             RETURNING {COLUMNS}"
        );
        let row: SessionRow = on_db!(
            self.db,
            write
                | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(&new.token_hash)
                    .bind(new.user_id.get())
                    .bind(new.tenant_id.map(TenantId::get))
                    .bind(&new.csrf_token)
                    .bind(new.ip.as_deref())
                    .bind(new.user_agent.as_deref())
                    .bind(Ts::now())
                    .bind(Ts::from(new.expires_at))
                    .fetch_one(pool)
                    .await
        )?;
        Ok(row.into())
    }

    /// The session, or `NotFound` when there is none or it has expired by `now`.
    pub async fn get(&self, token_hash: &str, now: DateTime<Utc>) -> Result<Session, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM web_sessions WHERE token_hash = $1 AND expires_at > $2");
        let row: SessionRow = on_db!(
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

    /// Sliding expiry: marks the session seen at `now` and moves its end to `new_expires_at`.
    /// An expired session is `NotFound` and stays expired: activity cannot revive it.
    pub async fn touch(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
        new_expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let done = on_db!(
            self.db,
            write
                | pool
                | sqlx::query(
                    "UPDATE web_sessions SET last_seen_at = $2, expires_at = $3 \
                     WHERE token_hash = $1 AND expires_at > $2"
                )
                .bind(token_hash)
                .bind(Ts::from(now))
                .bind(Ts::from(new_expires_at))
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        )?;
        found(done)
    }

    /// Records the tenant the user chose to work in (`None`: back to the tenant picker). Whether
    /// the user may work there is the caller's check, made on every request anyway: a membership
    /// can end while the session lives.
    pub async fn set_tenant(&self, token_hash: &str, tenant: Option<TenantId>) -> Result<(), StoreError> {
        let done = on_db!(
            self.db,
            write
                | pool
                | sqlx::query("UPDATE web_sessions SET tenant_id = $2 WHERE token_hash = $1")
                    .bind(token_hash)
                    .bind(tenant.map(TenantId::get))
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected())
        )?;
        found(done)
    }

    /// Ends one session (logout). `NotFound` when it was already gone.
    pub async fn delete(&self, token_hash: &str) -> Result<(), StoreError> {
        let done = on_db!(
            self.db,
            write
                | pool
                | sqlx::query("DELETE FROM web_sessions WHERE token_hash = $1")
                    .bind(token_hash)
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected())
        )?;
        found(done)
    }

    /// Ends every session of the user ("log out everywhere", deactivation); returns how many.
    pub async fn delete_for_user(&self, user: UserId) -> Result<u64, StoreError> {
        let done = on_db!(
            self.db,
            write
                | pool
                | sqlx::query("DELETE FROM web_sessions WHERE user_id = $1")
                    .bind(user.get())
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected())
        )?;
        Ok(done)
    }

    /// Ends every session of the user but the one in use (after a password change); returns how
    /// many.
    pub async fn delete_for_user_except(
        &self,
        user: UserId,
        keep_token_hash: &str,
    ) -> Result<u64, StoreError> {
        let done = on_db!(
            self.db,
            write
                | pool
                | sqlx::query("DELETE FROM web_sessions WHERE user_id = $1 AND token_hash <> $2")
                    .bind(user.get())
                    .bind(keep_token_hash)
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected())
        )?;
        Ok(done)
    }

    /// Deletes the sessions expired by `now`; returns how many.
    pub async fn purge_expired(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = on_db!(
            self.db,
            write
                | pool
                | sqlx::query("DELETE FROM web_sessions WHERE expires_at <= $1")
                    .bind(Ts::from(now))
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected())
        )?;
        Ok(done)
    }
}
