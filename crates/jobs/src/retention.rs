//! Retention (SPEC §8): raw readings older than the tenant's retention (default two years) are
//! deleted once a day; the rollups, which reports and pages read for long spans, stay. Dead
//! letters older than their own horizon (default 90 days) go in the same run.

use chrono::{DateTime, TimeDelta, Utc};
use tds_store::{Store, StoreError};

/// How long dead letters are kept unless configured otherwise.
pub const DEFAULT_DEAD_LETTER_RETENTION: TimeDelta = TimeDelta::days(90);

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

/// Runs daily until the task is aborted (first run an hour after start, off the busy start-up),
/// keeping dead letters for `dead_letter_horizon`.
pub async fn run(store: Store, dead_letter_horizon: TimeDelta) {
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + std::time::Duration::from_hours(1),
        std::time::Duration::from_hours(24),
    );
    loop {
        tick.tick().await;
        match purge(&store, Utc::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(readings = n, "raw readings past their tenant's retention deleted"),
            Err(e) => tracing::warn!(error = %e, "retention failed; will retry tomorrow"),
        }
        match purge_dead_letters(&store, Utc::now(), dead_letter_horizon).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(dead_letters = n, "dead letters past their retention deleted"),
            Err(e) => tracing::warn!(error = %e, "dead-letter retention failed; will retry tomorrow"),
        }
    }
}
