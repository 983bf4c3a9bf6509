//! The rollup worker: refreshes the rollups of devices with new readings, a batch at a time,
//! as soon as there are any, and sleeps briefly when there are none. Readings arriving while a
//! batch is computed simply mark their devices again, so the worker coalesces bursts: a device
//! that received a hundred readings since the last round is recomputed once.

use crate::runner::Next;
use std::time::Duration;
use tds_store::Store;

/// Devices refreshed per round at most (one write transaction); a round also stops at the
/// store's row budget, which only a backlog of days per device reaches.
pub const BATCH: i64 = 2_000;
/// Rounds start at most this often unless a full batch shows a backlog: under a steady load
/// every device is marked again within the period, so longer rounds coalesce more readings per
/// refresh and leave the database writer to the device endpoint (measured with `tds bench
/// ingest --rollups on|off`). It is also the delay from a commit to its rollups.
pub const PERIOD: Duration = Duration::from_secs(1);

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

/// One round of the rollup job: refreshes up to [`BATCH`] devices, and asks to run again at once
/// when a full batch shows a backlog.
pub async fn round(store: Store) -> anyhow::Result<Next> {
    let n = store.rollups().staff_refresh_dirty(BATCH).await?;
    if n > 0 {
        tracing::debug!(devices = n, "rollups refreshed");
    }
    Ok(if n as i64 >= BATCH { Next::Soon } else { Next::Period })
}

/// Runs until the task is aborted, outside the job runner: for `tds bench ingest`, which measures
/// the refresh alone. A failing refresh (the database went away) is logged and
/// retried after a pause; the marks stay, so nothing is lost.
pub async fn run(store: Store) {
    loop {
        let started = tokio::time::Instant::now();
        match store.rollups().staff_refresh_dirty(BATCH).await {
            Ok(n) if n as i64 >= BATCH => tracing::debug!(devices = n, "rollups refreshed; more waiting"),
            Ok(n) => {
                if n > 0 {
                    tracing::debug!(devices = n, "rollups refreshed");
                }
                tokio::time::sleep_until(started + PERIOD).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "rollup refresh failed; will retry");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}
