//! The job runner: every periodic job of the server runs on one instance at a time, however many
//! instances share the database (SPEC §8).
//!
//! Each periodic job is one row of the `jobs` table (its key is the job's name). Every instance
//! registers the same jobs and polls; the one whose claim wins takes a lease (`locked_until`),
//! runs the job, extends the lease while it runs (so a long retention run is not taken over half
//! way), and finally sets the next run one period after this run started. An instance that dies
//! mid-job stops extending: its lease runs out after [`RunnerOptions::lease`] and another instance
//! claims the job. The claim itself is atomic on both databases (see `tds_store::jobs`).
//!
//! Jobs run in their own tasks, so a long job (retention) never delays a frequent one (rollups)
//! on the same instance. Polling reads the next due time first and claims (a write) only when a
//! job is due, so an idle runner does not compete with ingest for the SQLite writer.
//!
//! Each run is counted in `/metrics`: `tds_job_runs_total{job,outcome}`,
//! `tds_job_duration_seconds{job}`, `tds_job_lease_lost_total{job}`.
//!
//! Must not: know what a job does (the handlers come from whoever builds the runner), read the
//! environment, or exit the process.

use chrono::{DateTime, TimeDelta, Utc};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tds_store::jobs::{FinishedRun, Job};
use tds_store::{Store, StoreError};
use tokio::task::JoinSet;

/// What a run asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The next run one period after this one started.
    Period,
    /// Work is left over (a backlog): run again as soon as possible.
    Soon,
    /// Work is left over, but the next run waits this long: a backlog worked through at a pace
    /// that leaves the machine to other work (the rollup refresh under a load it cannot keep up
    /// with, see `rollups::round`).
    After(Duration),
}

pub type JobFuture = Pin<Box<dyn Future<Output = anyhow::Result<Next>> + Send>>;
type Handler = Arc<dyn Fn(Store) -> JobFuture + Send + Sync>;

struct Periodic {
    every: Duration,
    first_delay: Duration,
    handler: Handler,
}

/// Timings of the runner; the defaults suit production, tests shorten them.
#[derive(Debug, Clone, Copy)]
pub struct RunnerOptions {
    /// How long a claim holds a job without being extended: the time another instance waits
    /// before taking over the job of an instance that died.
    pub lease: Duration,
    /// How often an idle runner looks for a due job.
    pub poll: Duration,
    /// Longest wait before a failed run is retried (never longer than the job's period).
    pub max_retry: Duration,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self {
            lease: Duration::from_mins(1),
            poll: Duration::from_secs(1),
            max_retry: Duration::from_mins(5),
        }
    }
}

/// The periodic jobs of one instance and the loop that runs them.
pub struct Runner {
    store: Store,
    worker: Arc<str>,
    options: RunnerOptions,
    jobs: HashMap<&'static str, Periodic>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("worker", &self.worker)
            .field("jobs", &self.keys())
            .finish_non_exhaustive()
    }
}

impl Runner {
    /// A runner for `store`; `worker` names this instance in the lease (host and process).
    pub fn new(store: Store, worker: impl Into<String>, options: RunnerOptions) -> Self {
        Self { store, worker: Arc::from(worker.into()), options, jobs: HashMap::new() }
    }

    /// Adds the job `key`, run every `every`, first `first_delay` after the job is first
    /// registered in the database (an existing schedule is kept across restarts).
    #[must_use]
    pub fn every<F, Fut>(mut self, key: &'static str, every: Duration, first_delay: Duration, job: F) -> Self
    where
        F: Fn(Store) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<Next>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |store| Box::pin(job(store)));
        self.jobs.insert(key, Periodic { every, first_delay, handler });
        self
    }

    pub fn worker(&self) -> &str {
        &self.worker
    }

    fn keys(&self) -> Vec<&'static str> {
        let mut keys: Vec<_> = self.jobs.keys().copied().collect();
        keys.sort_unstable();
        keys
    }

    /// Makes sure every job has its row. Safe on every instance at every start.
    pub async fn register(&self) -> Result<(), StoreError> {
        let now = Utc::now();
        for (key, job) in &self.jobs {
            let first = now + TimeDelta::from_std(job.first_delay).unwrap_or_default();
            self.store.jobs().ensure_periodic(key, key, first).await?;
        }
        Ok(())
    }

    /// Claims one due job, if any, and runs it to the end here: for tests, which drain jobs
    /// deterministically. Returns the key of the job that ran.
    pub async fn try_run_once(&self) -> Result<Option<&'static str>, StoreError> {
        let Some(job) = self.claim().await? else { return Ok(None) };
        let Some((key, periodic)) = self.jobs.get_key_value(job.key.as_deref().unwrap_or_default()) else {
            return Ok(None);
        };
        run_claimed(
            self.store.clone(),
            self.worker.clone(),
            self.options,
            job,
            key,
            periodic.every,
            periodic.handler.clone(),
        )
        .await;
        Ok(Some(key))
    }

    async fn claim(&self) -> Result<Option<Job>, StoreError> {
        let lease = TimeDelta::from_std(self.options.lease).unwrap_or(TimeDelta::MAX);
        self.store.jobs().claim_periodic(&self.worker, Utc::now(), lease, &self.keys()).await
    }

    /// Registers the jobs, then runs them until `shutdown` completes. A job running at shutdown
    /// is stopped with the runner: its lease runs out and it runs again later (every job here is
    /// safe to repeat). Database errors are logged and retried at the next poll.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let keys = self.keys();
        let mut registered = false;
        let mut running: JoinSet<()> = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            if !registered {
                match self.register().await {
                    Ok(()) => registered = true,
                    Err(e) => tracing::warn!(error = %e, "cannot register the periodic jobs; will retry"),
                }
            }
            if registered {
                self.start_due(&keys, &mut running).await;
            }
            while running.try_join_next().is_some() {}
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(self.options.poll) => {}
                Some(_) = running.join_next(), if !running.is_empty() => {}
            }
        }
        running.shutdown().await;
    }

    /// Claims and starts every job that is due now.
    async fn start_due(&self, keys: &[&'static str], running: &mut JoinSet<()>) {
        match self.store.jobs().next_due(keys).await {
            Ok(Some(due)) if due <= Utc::now() => {}
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the job schedule; will retry");
                return;
            }
        }
        loop {
            let job = match self.claim().await {
                Ok(Some(job)) => job,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim a job; will retry");
                    return;
                }
            };
            let Some((key, periodic)) = self.jobs.get_key_value(job.key.as_deref().unwrap_or_default())
            else {
                return;
            };
            running.spawn(run_claimed(
                self.store.clone(),
                self.worker.clone(),
                self.options,
                job,
                key,
                periodic.every,
                periodic.handler.clone(),
            ));
        }
    }
}

/// Runs one claimed job while extending its lease, then sets its next run.
async fn run_claimed(
    store: Store,
    worker: Arc<str>,
    options: RunnerOptions,
    job: Job,
    key: &'static str,
    every: Duration,
    handler: Handler,
) {
    let started = Utc::now();
    let clock = tokio::time::Instant::now();
    let mut work = handler(store.clone());
    // Extend at a third of the lease: two extensions may fail (a slow database) before it ends.
    let mut heartbeat = tokio::time::interval(options.lease / 3);
    heartbeat.tick().await;
    let result = loop {
        tokio::select! {
            result = &mut work => break result,
            _ = heartbeat.tick() => {
                let until = Utc::now() + TimeDelta::from_std(options.lease).unwrap_or(TimeDelta::MAX);
                match store.jobs().extend(job.id, &worker, until).await {
                    Ok(true) => {}
                    Ok(false) => {
                        // Another instance holds the job now (this one stalled past its lease).
                        // Stop here rather than run it twice at once.
                        metrics::counter!("tds_job_lease_lost_total", "job" => key).increment(1);
                        tracing::warn!(job = key, "lost the lease of a running job; it continues elsewhere");
                        return;
                    }
                    Err(e) => tracing::warn!(job = key, error = %e, "cannot extend a job's lease"),
                }
            }
        }
    };
    let elapsed = clock.elapsed();
    metrics::histogram!("tds_job_duration_seconds", "job" => key).record(elapsed.as_secs_f64());
    let (next, error) = match &result {
        Ok(Next::Period) => (after(started, every), None),
        Ok(Next::Soon) => (Utc::now(), None),
        Ok(Next::After(pause)) => (after(Utc::now(), *pause), None),
        Err(e) => {
            let retry = retry_after(job.attempts, every, options.max_retry);
            (after(Utc::now(), retry), Some(format!("{e:#}")))
        }
    };
    let outcome = if error.is_some() { "failed" } else { "ok" };
    metrics::counter!("tds_job_runs_total", "job" => key, "outcome" => outcome).increment(1);
    if let Some(e) = &error {
        tracing::warn!(job = key, error = %e, attempts = job.attempts, "job failed; will retry");
    } else {
        tracing::debug!(job = key, ms = elapsed.as_millis(), "job ran");
    }
    let run = FinishedRun {
        started,
        duration_ms: i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX),
        next_run: next,
        error: error.as_deref(),
    };
    match store.jobs().finish_periodic(job.id, &worker, &run).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(job = key, "a job finished after its lease had passed to another instance");
        }
        // The lease runs out and the job runs again: every job is safe to repeat.
        Err(e) => tracing::warn!(job = key, error = %e, "cannot record a job's run"),
    }
}

fn after(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t + TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// Back-off for failures in a row (`attempts` counts this run): an eighth of `max_retry`, then
/// doubling up to `max_retry`, never longer than the job's own period.
fn retry_after(attempts: i64, every: Duration, max_retry: Duration) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 3)).unwrap_or(3);
    (max_retry / 8 * 2u32.pow(doublings)).min(every)
}
