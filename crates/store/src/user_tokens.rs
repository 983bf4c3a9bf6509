//! Tokens sent by email: invitations to a tenant and password resets. Each is single-use and
//! expiring, and only the SHA-256 (hex) of the token is stored, so a copy of the database cannot
//! be used to join a tenant or take over an account.
//!
//! Using a token is one `UPDATE … SET used_at … WHERE used_at IS NULL AND expires_at > now
//! RETURNING …` in the same transaction as its effect: of two requests racing with one token,
//! exactly one gets the row back, and an effect that fails (the tenant is full) rolls the use
//! back so that the link still works once a seat is free.
//!
//! Invitations are tenant-owned (listing and revoking take the caller's `TenantId`); accepting
//! and resets are reached by the token alone, which is the proof.

use crate::error::stored;
use crate::memberships::{COUNT_MEMBERS, lock_user_limit, user_limit};
use crate::tenants::found;
use crate::users::{USER_COLUMNS, User, UserRow};
use crate::{Db, StoreError, Ts};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::AssertSqlSafe;
use tds_domain::{Email, Name, Role, TenantId, UserId, UserTokenId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenPurpose {
    Invite,
    Reset,
}

impl TokenPurpose {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Invite => "invite",
            Self::Reset => "reset",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "invite" => Ok(Self::Invite),
            "reset" => Ok(Self::Reset),
            other => Err(StoreError::Corrupt(format!("user_tokens.purpose: {other:?}"))),
        }
    }
}

/// A token's record; the token and its hash are not part of it.
#[derive(Debug, Clone, Serialize)]
pub struct UserToken {
    pub id: UserTokenId,
    pub purpose: TokenPurpose,
    pub email: Email,
    /// The account reset (reset), or the account that accepted (invitation, once used).
    pub user_id: Option<UserId>,
    /// The inviting tenant and the role offered (invitations only).
    pub tenant_id: Option<TenantId>,
    pub role: Option<Role>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// Who sent the invitation.
    pub created_by: Option<UserId>,
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: i64,
    purpose: String,
    email: String,
    user_id: Option<i64>,
    tenant_id: Option<i64>,
    role: Option<String>,
    expires_at: Ts,
    used_at: Option<Ts>,
    created_at: Ts,
    created_by: Option<i64>,
}

impl TryFrom<TokenRow> for UserToken {
    type Error = StoreError;
    fn try_from(r: TokenRow) -> Result<Self, StoreError> {
        Ok(UserToken {
            id: UserTokenId::new(r.id),
            purpose: TokenPurpose::parse(&r.purpose)?,
            email: stored("user_tokens.email", &r.email, Email::parse)?,
            user_id: r.user_id.map(UserId::new),
            tenant_id: r.tenant_id.map(TenantId::new),
            role: r.role.as_deref().map(|s| stored("user_tokens.role", s, Role::parse)).transpose()?,
            expires_at: r.expires_at.0,
            used_at: r.used_at.map(|t| t.0),
            created_at: r.created_at.0,
            created_by: r.created_by.map(UserId::new),
        })
    }
}

const COLUMNS: &str =
    "id, purpose, email, user_id, tenant_id, role, expires_at, used_at, created_at, created_by";

/// Uses the unused token $1 of purpose $3 if it has not expired at $2: the single-use step.
fn consume_sql() -> String {
    format!(
        "UPDATE user_tokens SET used_at = $2 \
         WHERE token_hash = $1 AND purpose = $3 AND used_at IS NULL AND expires_at > $2 \
         RETURNING {COLUMNS}"
    )
}

/// What a new token is for, with the columns each purpose fills.
enum Subject {
    Invite { tenant: TenantId, role: Role, by: Option<UserId> },
    Reset { user: UserId },
}

#[derive(Debug, Clone, Copy)]
pub struct UserTokenStore<'a> {
    db: &'a Db,
}

impl<'a> UserTokenStore<'a> {
    pub(crate) fn new(db: &'a Db) -> Self {
        Self { db }
    }

    /// Records an invitation of `email` to the tenant with `role`. Whether the address already
    /// belongs to a member, and the seat count, are decided when it is accepted.
    pub async fn create_invite(
        &self,
        tenant: TenantId,
        email: &Email,
        role: Role,
        token_hash: &str,
        expires_at: DateTime<Utc>,
        by: Option<UserId>,
    ) -> Result<UserToken, StoreError> {
        self.insert(Subject::Invite { tenant, role, by }, email, token_hash, expires_at).await
    }

    /// Records a password-reset link for the user.
    pub async fn create_reset(
        &self,
        user: UserId,
        email: &Email,
        token_hash: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<UserToken, StoreError> {
        self.insert(Subject::Reset { user }, email, token_hash, expires_at).await
    }

    async fn insert(
        &self,
        subject: Subject,
        email: &Email,
        token_hash: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<UserToken, StoreError> {
        let (purpose, user, tenant, role, by) = match subject {
            Subject::Invite { tenant, role, by } => {
                (TokenPurpose::Invite, None, Some(tenant), Some(role), by)
            }
            Subject::Reset { user } => (TokenPurpose::Reset, Some(user), None, None, None),
        };
        let sql = format!(
            "INSERT INTO user_tokens (purpose, token_hash, email, user_id, tenant_id, role, expires_at, \
             created_at, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {COLUMNS}"
        );
        let row: TokenRow = on_db!(
            self.db,
            write
                | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(purpose.as_str())
                    .bind(token_hash)
                    .bind(email.as_str())
                    .bind(user.map(UserId::get))
                    .bind(tenant.map(TenantId::get))
                    .bind(role.map(Role::as_str))
                    .bind(Ts::from(expires_at))
                    .bind(Ts::now())
                    .bind(by.map(UserId::get))
                    .fetch_one(pool)
                    .await
        )?;
        row.try_into()
    }

    /// The token, if it can still be used at `now`, without using it (to show the form behind
    /// the link). `NotFound` when unknown, of another purpose, used or expired.
    pub async fn peek(
        &self,
        token_hash: &str,
        purpose: TokenPurpose,
        now: DateTime<Utc>,
    ) -> Result<UserToken, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM user_tokens \
             WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3"
        );
        let row: TokenRow = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(token_hash)
                    .bind(purpose.as_str())
                    .bind(Ts::from(now))
                    .fetch_one(pool)
                    .await
        )?;
        row.try_into()
    }

    /// The tenant's invitations that can still be accepted at `now`, by email.
    pub async fn pending_invites(
        &self,
        tenant: TenantId,
        now: DateTime<Utc>,
    ) -> Result<Vec<UserToken>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM user_tokens WHERE tenant_id = $1 AND purpose = 'invite' \
             AND used_at IS NULL AND expires_at > $2 ORDER BY email, id"
        );
        let rows: Vec<TokenRow> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(tenant.get())
                    .bind(Ts::from(now))
                    .fetch_all(pool)
                    .await
        )?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Withdraws one of the tenant's unused invitations; the link stops working. `NotFound` for
    /// an unknown id, another tenant's invitation or one already accepted.
    pub async fn revoke_invite(&self, tenant: TenantId, id: UserTokenId) -> Result<(), StoreError> {
        let done = on_db!(
            self.db,
            write
                | pool
                | sqlx::query(
                    "DELETE FROM user_tokens WHERE tenant_id = $1 AND id = $2 \
                     AND purpose = 'invite' AND used_at IS NULL"
                )
                .bind(tenant.get())
                .bind(id.get())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        )?;
        found(done)
    }

    /// Accepts an invitation, all in one transaction: uses the token (`NotFound` when unknown,
    /// used or expired at `now`), creates the account when the invited email has none (with
    /// the given name, password and language), and adds the membership within the tenant's
    /// user limit (`Limit`, leaving the token unused).
    ///
    /// An email that already has an account keeps it as it is: the name, password and language
    /// given are ignored, since the link proves access to the mailbox, not the right to change
    /// an existing account. An account that is already a member keeps its current role, higher
    /// or lower than the one offered: the invitation is used without effect rather than
    /// refused, because the person clicking cannot do anything about it, and changing roles is
    /// an admin's decision on the members page. Returns the account, the tenant and the role
    /// the account has there now.
    pub async fn accept_invite(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
        display_name: &Name,
        password_hash: &str,
        language: &str,
    ) -> Result<(User, TenantId, Role), StoreError> {
        let consume = consume_sql();
        let lock = lock_user_limit(self.db);
        let by_email = format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1");
        let insert_user = format!(
            "INSERT INTO users (email, display_name, password_hash, language, active, is_staff, \
             created_at, updated_at, created_by) VALUES ($1, $2, $3, $4, TRUE, FALSE, $5, $5, $6) \
             RETURNING {USER_COLUMNS}"
        );
        in_tx!(self.db, |tx| {
            let token: Option<TokenRow> = sqlx::query_as(AssertSqlSafe(consume.as_str()))
                .bind(token_hash)
                .bind(Ts::from(now))
                .bind(TokenPurpose::Invite.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            let token = UserToken::try_from(token.ok_or(StoreError::NotFound)?)?;
            let (Some(tenant), Some(offered)) = (token.tenant_id, token.role) else {
                return Err(StoreError::Corrupt(format!(
                    "user_tokens {}: invitation without tenant or role",
                    token.id
                )));
            };
            let max: i64 = sqlx::query_scalar(AssertSqlSafe(lock.as_str()))
                .bind(tenant.get())
                .fetch_one(&mut *tx)
                .await?;
            let existing: Option<UserRow> = sqlx::query_as(AssertSqlSafe(by_email.as_str()))
                .bind(token.email.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            let user = if let Some(row) = existing {
                User::try_from(row)?
            } else {
                let row: UserRow = sqlx::query_as(AssertSqlSafe(insert_user.as_str()))
                    .bind(token.email.as_str())
                    .bind(display_name.as_str())
                    .bind(password_hash)
                    .bind(language)
                    .bind(Ts::now())
                    .bind(token.created_by.map(UserId::get))
                    .fetch_one(&mut *tx)
                    .await?;
                User::try_from(row)?
            };
            let current: Option<String> =
                sqlx::query_scalar("SELECT role FROM memberships WHERE tenant_id = $1 AND user_id = $2")
                    .bind(tenant.get())
                    .bind(user.id.get())
                    .fetch_optional(&mut *tx)
                    .await?;
            let role = if let Some(current) = current {
                stored("memberships.role", &current, Role::parse)?
            } else {
                let members: i64 =
                    sqlx::query_scalar(COUNT_MEMBERS).bind(tenant.get()).fetch_one(&mut *tx).await?;
                user_limit(members, max)?;
                sqlx::query(
                    "INSERT INTO memberships (tenant_id, user_id, role, created_at, updated_at, created_by) \
                     VALUES ($1, $2, $3, $4, $4, $5)",
                )
                .bind(tenant.get())
                .bind(user.id.get())
                .bind(offered.as_str())
                .bind(Ts::now())
                .bind(token.created_by.map(UserId::get))
                .execute(&mut *tx)
                .await?;
                offered
            };
            // Which account the invitation went to, for the record.
            sqlx::query("UPDATE user_tokens SET user_id = $2 WHERE id = $1")
                .bind(token.id.get())
                .bind(user.id.get())
                .execute(&mut *tx)
                .await?;
            Ok((user, tenant, role))
        })
    }

    /// Uses a reset link and sets the account's new password, in one transaction. `NotFound`
    /// when the token is unknown, used or expired at `now`. The user's other unused reset links
    /// are voided too: once the password is chosen, an older mail must not be able to change it
    /// again.
    pub async fn consume_reset(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
        password_hash: &str,
    ) -> Result<User, StoreError> {
        let consume = consume_sql();
        let set_password = format!(
            "UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1 RETURNING {USER_COLUMNS}"
        );
        in_tx!(self.db, |tx| {
            let token: Option<TokenRow> = sqlx::query_as(AssertSqlSafe(consume.as_str()))
                .bind(token_hash)
                .bind(Ts::from(now))
                .bind(TokenPurpose::Reset.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            let token = UserToken::try_from(token.ok_or(StoreError::NotFound)?)?;
            let user = token.user_id.ok_or_else(|| {
                StoreError::Corrupt(format!("user_tokens {}: reset without a user", token.id))
            })?;
            let row: UserRow = sqlx::query_as(AssertSqlSafe(set_password.as_str()))
                .bind(user.get())
                .bind(password_hash)
                .bind(Ts::now())
                .fetch_one(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE user_tokens SET used_at = $2 \
                 WHERE user_id = $1 AND purpose = 'reset' AND used_at IS NULL",
            )
            .bind(user.get())
            .bind(Ts::from(now))
            .execute(&mut *tx)
            .await?;
            User::try_from(row)
        })
    }

    /// Retention: deletes invitations and reset tokens that expired before `at` (used or not: a
    /// used token is also past its expiry soon after); returns how many.
    pub async fn staff_purge_before(&self, at: DateTime<Utc>) -> Result<u64, StoreError> {
        crate::purge::older_than(self.db, "user_tokens", "expires_at", at).await
    }
}
