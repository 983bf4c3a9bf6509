//! The rollup worker: refreshes the rollups of devices with new readings, a batch at a time,
//! as soon as there are any, and sleeps briefly when there are none. Readings arriving while a
//! batch is computed simply mark their devices again, so the worker coalesces bursts: a device
//! that received a hundred readings since the last round is recomputed once.

use std::time::Duration;
use tds_store::Store;

/// Devices refreshed per transaction.
pub const BATCH: i64 = 500;
/// Pause when nothing is waiting: the delay between a commit and its rollups when idle.
pub const IDLE: Duration = Duration::from_millis(250);

/// Refreshes until nothing is waiting; returns how many device refreshes it made. For tests,
/// the demo's history, and `tds consumption` (which wants current figures).
pub async fn drain(store: &Store) -> Result<usize, tds_store::StoreError> {
    let mut total = 0;
    loop {
        let n = store.rollups().staff_refresh_dirty(BATCH).await?;
        if n == 0 {
            return Ok(total);
        }
        total += n;
    }
}

/// Runs until the task is aborted. A failing refresh (the database went away) is logged and
/// retried after a pause; the marks stay, so nothing is lost.
pub async fn run(store: Store) {
    loop {
        match store.rollups().staff_refresh_dirty(BATCH).await {
            Ok(0) => tokio::time::sleep(IDLE).await,
            Ok(n) => tracing::debug!(devices = n, "rollups refreshed"),
            Err(e) => {
                tracing::warn!(error = %e, "rollup refresh failed; will retry");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}
