//! Users: people, platform-wide (a user may belong to several tenants through memberships). The
//! password hash is only ever read by [`UserStore::credentials`], for the login check.

use crate::error::stored;
use crate::tenants::found;
use crate::{Db, StoreError, Ts};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::AssertSqlSafe;
use tds_domain::{Email, Name, UserId};

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: UserId,
    pub email: Email,
    pub display_name: Name,
    pub language: String,
    pub active: bool,
    pub is_staff: bool,
    pub has_password: bool,
    pub last_login_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: Email,
    pub display_name: Name,
    /// An argon2id PHC string, or `None` for an invited user who has not set a password yet.
    pub password_hash: Option<String>,
    pub language: String,
    pub is_staff: bool,
    pub created_by: Option<UserId>,
}

/// What the login check needs; kept out of [`User`] so the hash is not passed around.
pub struct Credentials {
    pub user: User,
    pub password_hash: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("user", &self.user).finish_non_exhaustive()
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    id: i64,
    email: String,
    display_name: String,
    language: String,
    active: bool,
    is_staff: bool,
    has_password: bool,
    last_login_at: Option<Ts>,
    created_at: Ts,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;
    fn try_from(r: UserRow) -> Result<Self, StoreError> {
        Ok(User {
            id: UserId::new(r.id),
            email: stored("users.email", &r.email, Email::parse)?,
            display_name: stored("users.display_name", &r.display_name, |s| Name::parse("name", s))?,
            language: r.language,
            active: r.active,
            is_staff: r.is_staff,
            has_password: r.has_password,
            last_login_at: r.last_login_at.map(|t| t.0),
            created_at: r.created_at.0,
        })
    }
}

pub(crate) const USER_COLUMNS: &str = "users.id, users.email, users.display_name, users.language, \
    users.active, users.is_staff, (users.password_hash IS NOT NULL) AS has_password, \
    users.last_login_at, users.created_at";

#[derive(Debug, Clone, Copy)]
pub struct UserStore<'a> {
    db: &'a Db,
}

impl<'a> UserStore<'a> {
    pub(crate) fn new(db: &'a Db) -> Self {
        Self { db }
    }

    /// Creates `new` only if the platform has no user at all; `None` when it has one. Atomic
    /// across instances starting at once on a new database: on PostgreSQL the check and the
    /// insert hold a transaction-scoped advisory lock; SQLite's one writer runs the statement
    /// alone.
    pub async fn create_first(&self, new: &NewUser) -> Result<Option<User>, StoreError> {
        let sql = format!(
            "INSERT INTO users (email, display_name, password_hash, language, active, is_staff, \
             created_at, updated_at, created_by) SELECT $1, $2, $3, $4, TRUE, $5, $6, $6, $7 \
             WHERE NOT EXISTS (SELECT 1 FROM users) RETURNING {USER_COLUMNS}"
        );
        let row: Option<UserRow> = in_tx!(self.db, |tx| {
            if let Db::Postgres(_) = self.db {
                // Any constant key: only this statement takes it.
                sqlx::query("SELECT pg_advisory_xact_lock(7307001)").execute(&mut *tx).await?;
            }
            let row = sqlx::query_as(AssertSqlSafe(sql.as_str()))
                .bind(new.email.as_str())
                .bind(new.display_name.as_str())
                .bind(new.password_hash.as_deref())
                .bind(&new.language)
                .bind(new.is_staff)
                .bind(Ts::now())
                .bind(new.created_by.map(UserId::get))
                .fetch_optional(&mut *tx)
                .await?;
            Ok(row)
        })?;
        row.map(TryInto::try_into).transpose()
    }

    pub async fn create(&self, new: &NewUser) -> Result<User, StoreError> {
        let sql = format!(
            "INSERT INTO users (email, display_name, password_hash, language, active, is_staff, \
             created_at, updated_at, created_by) VALUES ($1, $2, $3, $4, TRUE, $5, $6, $6, $7) \
             RETURNING {USER_COLUMNS}"
        );
        let row: UserRow = on_db!(
            self.db,
            write
                | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(new.email.as_str())
                    .bind(new.display_name.as_str())
                    .bind(new.password_hash.as_deref())
                    .bind(&new.language)
                    .bind(new.is_staff)
                    .bind(Ts::now())
                    .bind(new.created_by.map(UserId::get))
                    .fetch_one(pool)
                    .await
        )
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => {
                StoreError::Conflict(format!("a user with email {} already exists", new.email))
            }
            e => e,
        })?;
        row.try_into()
    }

    pub async fn get(&self, id: UserId) -> Result<User, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row: UserRow = on_db!(
            self.db,
            read | pool | sqlx::query_as(AssertSqlSafe(sql.as_str())).bind(id.get()).fetch_one(pool).await
        )?;
        row.try_into()
    }

    pub async fn by_email(&self, email: &Email) -> Result<User, StoreError> {
        Ok(self.credentials(email).await?.user)
    }

    pub async fn credentials(&self, email: &Email) -> Result<Credentials, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            user: UserRow,
            password_hash: Option<String>,
        }
        let sql = format!("SELECT {USER_COLUMNS}, users.password_hash FROM users WHERE email = $1");
        let row: Row = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str())).bind(email.as_str()).fetch_one(pool).await
        )?;
        Ok(Credentials { user: row.user.try_into()?, password_hash: row.password_hash })
    }

    pub async fn set_password(&self, id: UserId, password_hash: &str) -> Result<(), StoreError> {
        let done = on_db!(
            self.db,
            write
                | pool
                | sqlx::query("UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1")
                    .bind(id.get())
                    .bind(password_hash)
                    .bind(Ts::now())
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected())
        )?;
        found(done)
    }

    pub async fn set_profile(&self, id: UserId, name: &Name, language: &str) -> Result<(), StoreError> {
        let done = on_db!(
            self.db,
            write
                | pool
                | sqlx::query(
                    "UPDATE users SET display_name = $2, language = $3, updated_at = $4 WHERE id = $1"
                )
                .bind(id.get())
                .bind(name.as_str())
                .bind(language)
                .bind(Ts::now())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        )?;
        found(done)
    }

    pub async fn record_login(&self, id: UserId) -> Result<(), StoreError> {
        let done = on_db!(
            self.db,
            write
                | pool
                | sqlx::query("UPDATE users SET last_login_at = $2 WHERE id = $1")
                    .bind(id.get())
                    .bind(Ts::now())
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected())
        )?;
        found(done)
    }

    pub async fn staff_set_active(&self, id: UserId, active: bool) -> Result<(), StoreError> {
        let done = on_db!(
            self.db,
            write
                | pool
                | sqlx::query("UPDATE users SET active = $2, updated_at = $3 WHERE id = $1")
                    .bind(id.get())
                    .bind(active)
                    .bind(Ts::now())
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected())
        )?;
        found(done)
    }

    /// Every user whose email or name contains `search` (all when blank), by email, a page.
    pub async fn staff_search(
        &self,
        search: &str,
        page: crate::Page,
    ) -> Result<crate::Paged<User>, StoreError> {
        let pattern = crate::page::contains_pattern(search);
        let filter = "($1 IS NULL OR lower(users.email) LIKE $1 OR lower(users.display_name) LIKE $1)";
        let total: i64 = on_db!(
            self.db,
            read | pool
                | sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM users WHERE {filter}")))
                    .bind(pattern.as_deref())
                    .fetch_one(pool)
                    .await
        )?;
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE {filter} ORDER BY users.email LIMIT $2 OFFSET $3"
        );
        let rows: Vec<UserRow> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(pattern.as_deref())
                    .bind(page.limit())
                    .bind(page.offset())
                    .fetch_all(pool)
                    .await
        )?;
        let items = rows.into_iter().map(TryInto::try_into).collect::<Result<Vec<User>, _>>()?;
        Ok(crate::Paged { items, total, page: page.number, size: page.size })
    }

    pub async fn staff_list(&self) -> Result<Vec<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY email");
        let rows: Vec<UserRow> =
            on_db!(self.db, read | pool | sqlx::query_as(AssertSqlSafe(sql.as_str())).fetch_all(pool).await)?;
        rows.into_iter().map(TryInto::try_into).collect()
    }
}
