//! Retention (SPEC §8): raw readings older than the tenant's retention (default two years) are
//! deleted once a day; the rollups, which reports and pages read for long spans, stay.

use chrono::{DateTime, Utc};
use tds_store::{Store, StoreError};

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

/// Runs daily until the task is aborted (first run an hour after start, off the busy start-up).
pub async fn run(store: Store) {
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
    }
}
