//! Retention of everything that grows (SPEC §8, §9): raw readings older than each tenant's
//! retention (default two years; the rollups, which reports and pages read for long spans, stay),
//! dead letters, the audit log, gateway connection history, and expired invitation and reset
//! tokens, each with its own horizon ([`Horizons`]). Sessions and login failures, which expire by
//! the hour, have their own job ([`web_state`]).
//!
//! Every purge is an idempotent delete by age: a run cut short simply runs again.

use crate::runner::Next;
use chrono::{DateTime, TimeDelta, Utc};
use tds_store::{Store, StoreError};

/// How long dead letters are kept unless configured otherwise.
pub const DEFAULT_DEAD_LETTER_RETENTION: TimeDelta = TimeDelta::days(90);

/// How long each kind of row is kept (the readings' horizon is per tenant, in the tenant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Horizons {
    pub dead_letters: TimeDelta,
    pub audit_log: TimeDelta,
    pub connection_history: TimeDelta,
    /// After their expiry, invitation and password-reset tokens (used or not).
    pub expired_tokens: TimeDelta,
}

impl Default for Horizons {
    fn default() -> Self {
        Self {
            dead_letters: DEFAULT_DEAD_LETTER_RETENTION,
            audit_log: TimeDelta::days(730),
            connection_history: TimeDelta::days(365),
            expired_tokens: TimeDelta::days(30),
        }
    }
}

/// Rows each purge deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub readings: u64,
    pub dead_letters: u64,
    pub audit_log: u64,
    pub connection_history: u64,
    pub expired_tokens: u64,
}

/// Deletes every tenant's readings older than its retention at `now`; returns how many.
pub async fn purge(store: &Store, now: DateTime<Utc>) -> Result<u64, StoreError> {
    let mut deleted = 0;
    for tenant in store.tenants().staff_list().await? {
        if let Some(retention) = tenant.retention() {
            deleted += store.readings().purge_before(tenant.id, now - retention).await?;
        }
    }
    Ok(deleted)
}

/// Deletes the dead letters received more than `horizon` before `now`; returns how many.
pub async fn purge_dead_letters(
    store: &Store,
    now: DateTime<Utc>,
    horizon: TimeDelta,
) -> Result<u64, StoreError> {
    store.rejected().staff_purge_before(now - horizon).await
}

/// Every purge, as of `now`.
pub async fn purge_all(store: &Store, now: DateTime<Utc>, horizons: Horizons) -> Result<Purged, StoreError> {
    Ok(Purged {
        readings: purge(store, now).await?,
        dead_letters: purge_dead_letters(store, now, horizons.dead_letters).await?,
        audit_log: store.audit().staff_purge_before(now - horizons.audit_log).await?,
        connection_history: store
            .gateway_events()
            .staff_purge_before(now - horizons.connection_history)
            .await?,
        expired_tokens: store.user_tokens().staff_purge_before(now - horizons.expired_tokens).await?,
    })
}

/// The daily retention job.
pub async fn daily(store: Store, horizons: Horizons) -> anyhow::Result<Next> {
    let purged = purge_all(&store, Utc::now(), horizons).await?;
    if purged != Purged::default() {
        tracing::info!(
            readings = purged.readings,
            dead_letters = purged.dead_letters,
            audit_log = purged.audit_log,
            connection_history = purged.connection_history,
            expired_tokens = purged.expired_tokens,
            "rows past their retention deleted"
        );
    }
    Ok(Next::Period)
}

/// The hourly job for web state: expired sessions, and login failures too old for any lockout
/// window. Nothing depends on it for correctness (expired rows are ignored when read); it keeps
/// the tables small.
pub async fn web_state(store: Store) -> anyhow::Result<Next> {
    let now = Utc::now();
    store.sessions().purge_expired(now).await?;
    store.login_failures().purge_before(now - TimeDelta::days(1)).await?;
    Ok(Next::Period)
}
