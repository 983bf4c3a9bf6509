//! Failed logins, counted per email and per IP so that the web layer can slow down or lock out
//! password guessing. The email is a plain string, not an [`Email`]: failures are recorded for
//! addresses that do not parse or have no account too, or probing them would be free. It is
//! stored lower-cased, so that "Ana@X.com" and "ana@x.com" count as one target.
//!
//! [`Email`]: tds_domain::Email

use crate::{Db, StoreError, Ts};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// Failures since some instant: for the email tried, and from the IP it was tried from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct FailureCounts {
    pub by_email: i64,
    pub by_ip: i64,
}

/// The stored form of the email tried.
fn key(email_key: &str) -> String {
    email_key.trim().to_lowercase()
}

#[derive(Debug, Clone, Copy)]
pub struct LoginFailureStore<'a> {
    db: &'a Db,
}

impl<'a> LoginFailureStore<'a> {
    pub(crate) fn new(db: &'a Db) -> Self {
        Self { db }
    }

    /// Records a failure (or an attempt not yet known to succeed, see [`Self::forget`]) and
    /// returns its id.
    pub async fn record(&self, email_key: &str, ip: &str, at: DateTime<Utc>) -> Result<i64, StoreError> {
        let (id,): (i64,) = on_db!(
            self.db,
            write
                | pool
                | sqlx::query_as(
                    "INSERT INTO login_failures (email, ip, at) VALUES ($1, $2, $3) RETURNING id"
                )
                .bind(key(email_key))
                .bind(ip)
                .bind(Ts::from(at))
                .fetch_one(pool)
                .await
        )?;
        Ok(id)
    }

    /// Deletes one recorded attempt: a login records its attempt before checking the password,
    /// so that parallel guesses count against each other, and forgets it when the password was
    /// right.
    pub async fn forget(&self, id: i64) -> Result<(), StoreError> {
        on_db!(
            self.db,
            write
                | pool
                | sqlx::query("DELETE FROM login_failures WHERE id = $1")
                    .bind(id)
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected())
        )?;
        Ok(())
    }

    /// Failures at or after `since` for the email and, separately, from the IP.
    pub async fn count_since(
        &self,
        email_key: &str,
        ip: &str,
        since: DateTime<Utc>,
    ) -> Result<FailureCounts, StoreError> {
        let (by_email, by_ip): (i64, i64) = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(
                    "SELECT (SELECT count(*) FROM login_failures WHERE email = $1 AND at >= $3), \
                            (SELECT count(*) FROM login_failures WHERE ip = $2 AND at >= $3)"
                )
                .bind(key(email_key))
                .bind(ip)
                .bind(Ts::from(since))
                .fetch_one(pool)
                .await
        )?;
        Ok(FailureCounts { by_email, by_ip })
    }

    /// Like [`Self::count_since`], counting only the failures recorded up to and including `id`:
    /// the place of one attempt among those made at the same time, which are told apart by the
    /// order of their ids, not by when each one happened to count.
    pub async fn rank(
        &self,
        email_key: &str,
        ip: &str,
        since: DateTime<Utc>,
        id: i64,
    ) -> Result<FailureCounts, StoreError> {
        let (by_email, by_ip): (i64, i64) = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(
                    "SELECT (SELECT count(*) FROM login_failures WHERE email = $1 AND at >= $3 AND id <= $4), \
                            (SELECT count(*) FROM login_failures WHERE ip = $2 AND at >= $3 AND id <= $4)"
                )
                .bind(key(email_key))
                .bind(ip)
                .bind(Ts::from(since))
                .bind(id)
                .fetch_one(pool)
                .await
        )?;
        Ok(FailureCounts { by_email, by_ip })
    }

    /// Forgets the email's failures after a successful login, so that the owner is not locked
    /// out by their own earlier typos. Failures at other addresses stay, and keep counting
    /// against the IPs they came from: they may be guesses at other accounts.
    pub async fn clear_email(&self, email_key: &str) -> Result<(), StoreError> {
        on_db!(
            self.db,
            write
                | pool
                | sqlx::query("DELETE FROM login_failures WHERE email = $1")
                    .bind(key(email_key))
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected())
        )?;
        Ok(())
    }

    /// Deletes failures older than `at`, which no lockout window reaches any more; returns how
    /// many.
    pub async fn purge_before(&self, at: DateTime<Utc>) -> Result<u64, StoreError> {
        crate::purge::older_than(self.db, "login_failures", "at", at).await
    }
}
