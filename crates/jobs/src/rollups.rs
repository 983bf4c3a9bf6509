//! The rollup worker: refreshes the rollups of devices with new readings, a batch at a time,
//! as soon as there are any, and sleeps briefly when there are none. Readings arriving while a
//! batch is computed simply mark their devices again, so the worker coalesces bursts: a device
//! that received a hundred readings since the last round is recomputed once. The alert rules on
//! the data of the devices a round refreshed are evaluated right after it
//! ([`crate::alerts::touched`]), so a consumption crossing raises within a round of its commit;
//! while a backlog lasts, after it, for the devices of all its rounds (see [`Worker`]).

use crate::alerts::{Live, RuleCache};
use crate::runner::Next;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tds_domain::{DeviceId, TenantId};
use tds_store::Store;
use tokio::sync::Mutex;

/// Devices refreshed per round at most (one write transaction); a round also stops at the
/// store's row budget, which only a backlog of days per device reaches.
pub const BATCH: i64 = 2_000;
/// Rounds start at most this often unless a full batch shows a backlog: under a steady load
/// every device is marked again within the period, so longer rounds coalesce more readings per
/// refresh and leave the database to the device endpoint. It is also the delay from a commit to
/// its rollups and to the consumption alerts they raise ("within seconds", SPEC §6). 3 s, not
/// 1 s, since the refresh goes on from the stored hour (its cost per round is then mostly per
/// device, not per reading): `tds bench ingest --seconds 15`, rollups on, PostgreSQL 15,
/// 107,000 → 131,500 readings/s at full load and 14.3 → 9.4 µs of CPU per reading.
pub const PERIOD: Duration = Duration::from_secs(3);

/// How long the next round waits after a full batch (a backlog): as long as the round took, so
/// that the refresh takes at most half of a core however far behind it is. With every device
/// of a large fleet reporting all the time (10,000 devices, 100,000 readings/s) every round is
/// full, and back-to-back rounds took a core from the device endpoint for as long as the load
/// lasted, visiting each device as often as they could; a refresh costs mostly per device, so
/// visiting each half as often, with twice the readings each time, halves what the rollups cost
/// the endpoint. A backlog without a load (after a restart) is worked through half as fast.
/// Measured with 1,000 gateways × 10 devices offered 105,000 readings/s on PostgreSQL
/// (`tds bench ingest --gateways 1000 --devices 10 --seconds 60 --rate 10500`): 66,000 and
/// 70,000 readings/s with back-to-back rounds, 82,900 and 85,100 paced.
pub fn backlog_pause(round: Duration) -> Duration {
    round
}

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

/// The rollup job as `tds serve` runs it, with what it keeps between rounds: the refreshed
/// devices whose rules wait to be evaluated.
///
/// While a backlog lasts (a round refreshed a full batch), the rounds' devices are gathered, not
/// evaluated; the first round that finds no backlog evaluates them all. Meanwhile the periodic
/// alert round evaluates every rule on the rollups as they stand every
/// [`crate::alerts::PERIOD`], so evaluating after each round of a backlog only repeated it a
/// little sooner, and cost more than it seems: evaluating the rules of 2,000 devices costs about
/// as much as of a tenant's 10,000 (its devices and consumption totals are read whole, and its
/// rules were too until they were kept between evaluations: `tds bench alerts --devices 10000`,
/// 290 ms for either on SQLite, idle, then; 66 ms with the rules kept), which made each
/// round longer, each device visited more rarely, and its waiting readings outgrew the rollup
/// feed: with 10,000 meters offered 130,000 readings/s on SQLite (`tds bench ingest --gateways
/// 1000 --devices 10 --seconds 600 --rate 13000 --alerts on`), 11,058 refreshes took their
/// readings from memory and 128,942 read them back.
///
/// Kept in memory only: the instance that takes the job over after this one stops starts with
/// nothing waiting, and the periodic alert round evaluates what this one had not.
#[derive(Debug)]
pub struct Worker {
    live: Live,
    /// The alert rules, kept between evaluations (shared with the periodic alert round).
    rules: Arc<RuleCache>,
    batch: i64,
    /// Refreshed during a backlog, not evaluated yet.
    waiting: Mutex<HashSet<(TenantId, DeviceId)>>,
}

impl Worker {
    /// Changes of alerts are announced on `live`; the rules are those `rules` keeps.
    pub fn new(live: Live, rules: Arc<RuleCache>) -> Self {
        Self::with_batch(live, rules, BATCH)
    }

    /// With rounds of up to `batch` devices instead of [`BATCH`] (tests make a backlog of a few).
    pub fn with_batch(live: Live, rules: Arc<RuleCache>, batch: i64) -> Self {
        Self { live, rules, batch: batch.max(1), waiting: Mutex::new(HashSet::new()) }
    }

    /// One round of the rollup job: refreshes up to a batch of devices; when that was not a full
    /// batch, evaluates the alert rules on the data of the devices refreshed (this round's, and
    /// those of the backlog's rounds before it); after a full batch (a backlog) asks to run again
    /// after [`backlog_pause`].
    pub async fn round(&self, store: &Store) -> anyhow::Result<Next> {
        let started = Instant::now();
        let n = self.refresh_and_evaluate(store).await?;
        Ok(if n as i64 >= self.batch { Next::After(backlog_pause(started.elapsed())) } else { Next::Period })
    }

    /// Refreshes up to a batch of devices, evaluates the rules of the devices waiting unless a
    /// backlog lasts; returns how many devices it refreshed.
    async fn refresh_and_evaluate(&self, store: &Store) -> Result<usize, tds_store::StoreError> {
        let touched = store.rollups().staff_refresh_touched(self.batch).await?;
        let refreshed = touched.len();
        if refreshed > 0 {
            tracing::debug!(devices = refreshed, "rollups refreshed");
        }
        let due = {
            let mut waiting = self.waiting.lock().await;
            waiting.extend(touched);
            let backlog = refreshed as i64 >= self.batch;
            if waiting.is_empty() || backlog { None } else { Some(std::mem::take(&mut *waiting)) }
        };
        let Some(devices) = due else { return Ok(refreshed) };
        let devices: Vec<(TenantId, DeviceId)> = devices.into_iter().collect();
        // The rollups are committed whatever the rules make of them: an evaluation that fails is
        // logged, and the periodic round evaluates every rule again within seconds.
        match crate::alerts::touched(store, &self.rules, &devices, chrono::Utc::now()).await {
            Ok(done) => crate::alerts::announce(store, &self.live, &done).await,
            Err(e) => tracing::warn!(error = %e, "alert rules of refreshed devices not evaluated"),
        }
        Ok(refreshed)
    }
}

/// Runs until the task is aborted, outside the job runner, at the job runner's pace: for `tds
/// bench ingest`, which measures the refresh alone, or with the alert evaluation of refreshed
/// devices when `alerts` holds the rules to keep between evaluations. A failing refresh (the
/// database went away) is logged and retried after a pause; the marks stay, so nothing is lost.
pub async fn run(store: Store, alerts: Option<Arc<RuleCache>>) {
    let evaluate = alerts.is_some();
    let worker = Worker::new(None, alerts.unwrap_or_default());
    loop {
        let started = tokio::time::Instant::now();
        let next = if evaluate {
            worker.round(&store).await
        } else {
            match store.rollups().staff_refresh_dirty(BATCH).await {
                Ok(n) if n as i64 >= BATCH => Ok(Next::After(backlog_pause(started.elapsed()))),
                Ok(_) => Ok(Next::Period),
                Err(e) => Err(e.into()),
            }
        };
        match next {
            Ok(Next::After(pause)) => tokio::time::sleep(pause).await,
            Ok(Next::Soon) => {}
            Ok(Next::Period) => tokio::time::sleep_until(started + PERIOD).await,
            Err(e) => {
                tracing::warn!(error = %e, "rollup refresh failed; will retry");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}
