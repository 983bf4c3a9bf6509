//! The job queue behind background work. A job is claimed by taking a lease (`locked_until`) in a
//! single `UPDATE … RETURNING`, which is atomic on both databases (on PostgreSQL the candidate row
//! is also picked `FOR UPDATE SKIP LOCKED`, so instances sharing a database never wait on each
//! other). A worker that dies leaves its lease to run out, and another instance takes the job.
//! Periodic jobs are one row per `key`, rescheduled after each run instead of deleted.

use crate::tenants::found;
use crate::{Db, StoreError, Ts};
use chrono::{DateTime, Duration, Utc};
use sqlx::AssertSqlSafe;
use tds_domain::JobId;

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Job {
    #[sqlx(try_from = "i64")]
    pub id: JobId,
    pub kind: String,
    pub key: Option<String>,
    pub payload: String,
    #[sqlx(try_from = "Ts")]
    pub run_after: DateTime<Utc>,
    pub attempts: i64,
    pub last_error: Option<String>,
    /// Periodic jobs: runs so far, and the last one's start, instance and duration.
    pub runs: i64,
    pub last_run_at: Option<Ts>,
    pub last_run_by: Option<String>,
    pub last_duration_ms: Option<i64>,
}

const COLUMNS: &str = "id, kind, key, payload, run_after, attempts, last_error, runs, last_run_at, last_run_by, last_duration_ms";

/// One run of a periodic job, as [`JobStore::finish_periodic`] records it.
#[derive(Debug, Clone, Copy)]
pub struct FinishedRun<'e> {
    pub started: DateTime<Utc>,
    pub duration_ms: i64,
    pub next_run: DateTime<Utc>,
    pub error: Option<&'e str>,
}

#[derive(Debug, Clone, Copy)]
pub struct JobStore<'a> {
    db: &'a Db,
}

impl<'a> JobStore<'a> {
    pub(crate) fn new(db: &'a Db) -> Self {
        Self { db }
    }

    /// Queues a one-off job.
    pub async fn enqueue(
        &self,
        kind: &str,
        payload: &str,
        run_after: DateTime<Utc>,
    ) -> Result<JobId, StoreError> {
        let now = Ts::now();
        let id: i64 = on_db!(
            self.db,
            write
                | pool
                | sqlx::query_scalar(
                    "INSERT INTO jobs (kind, payload, run_after, attempts, created_at, updated_at) \
             VALUES ($1, $2, $3, 0, $4, $4) RETURNING id"
                )
                .bind(kind)
                .bind(payload)
                .bind(Ts::from(run_after))
                .bind(now)
                .fetch_one(pool)
                .await
        )?;
        Ok(JobId::new(id))
    }

    /// Makes sure the periodic job `key` exists; an existing one keeps its schedule. Safe to call
    /// from every instance at every start.
    pub async fn ensure_periodic(
        &self,
        key: &str,
        kind: &str,
        first_run: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let now = Ts::now();
        on_db!(
            self.db,
            write
                | pool
                | sqlx::query(
                    "INSERT INTO jobs (kind, key, payload, run_after, attempts, created_at, updated_at) \
             VALUES ($1, $2, '{}', $3, 0, $4, $4) ON CONFLICT (key) DO NOTHING"
                )
                .bind(kind)
                .bind(key)
                .bind(Ts::from(first_run))
                .bind(now)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        )?;
        Ok(())
    }

    /// Claims the most overdue job that is due at `now` and not leased, leasing it to `worker`
    /// for `lease`. `None` when nothing is due.
    pub async fn claim(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<Job>, StoreError> {
        let skip_locked = match self.db {
            Db::Postgres(_) => "FOR UPDATE SKIP LOCKED",
            Db::Sqlite(_) => "",
        };
        let sql = format!(
            "UPDATE jobs SET locked_until = $2, locked_by = $3, attempts = attempts + 1, updated_at = $1 \
             WHERE id = (SELECT id FROM jobs WHERE run_after <= $1 \
                         AND (locked_until IS NULL OR locked_until < $1) \
                         ORDER BY run_after, id LIMIT 1 {skip_locked}) \
             AND (locked_until IS NULL OR locked_until < $1) \
             RETURNING {COLUMNS}"
        );
        let job: Option<Job> = on_db!(
            self.db,
            write
                | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(Ts::from(now))
                    .bind(Ts::from(now + lease))
                    .bind(worker)
                    .fetch_optional(pool)
                    .await
        )?;
        Ok(job)
    }

    /// The earliest time at which one of the periodic jobs `keys` is due and unleased, read
    /// without a write: a runner polls this and claims (a write) only when something is due.
    pub async fn next_due(&self, keys: &[&str]) -> Result<Option<DateTime<Utc>>, StoreError> {
        if keys.is_empty() {
            return Ok(None);
        }
        let sql = format!(
            "SELECT MIN(CASE WHEN locked_until IS NOT NULL AND locked_until > run_after \
             THEN locked_until ELSE run_after END) FROM jobs WHERE key IN ({})",
            placeholders(1, keys.len())
        );
        let due: Option<Ts> = on_db!(
            self.db,
            read | pool | {
                let mut query = sqlx::query_scalar(AssertSqlSafe(sql.as_str()));
                for key in keys {
                    query = query.bind(*key);
                }
                query.fetch_one(pool).await
            }
        )?;
        Ok(due.map(Into::into))
    }

    /// Like [`claim`](Self::claim), among the periodic jobs `keys` only: a runner claims only
    /// the jobs it knows how to run (an older instance beside a newer one leaves the newer
    /// one's jobs alone).
    pub async fn claim_periodic(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: Duration,
        keys: &[&str],
    ) -> Result<Option<Job>, StoreError> {
        if keys.is_empty() {
            return Ok(None);
        }
        let skip_locked = match self.db {
            Db::Postgres(_) => "FOR UPDATE SKIP LOCKED",
            Db::Sqlite(_) => "",
        };
        let sql = format!(
            "UPDATE jobs SET locked_until = $2, locked_by = $3, attempts = attempts + 1, updated_at = $1 \
             WHERE id = (SELECT id FROM jobs WHERE run_after <= $1 \
                         AND (locked_until IS NULL OR locked_until < $1) AND key IN ({}) \
                         ORDER BY run_after, id LIMIT 1 {skip_locked}) \
             AND (locked_until IS NULL OR locked_until < $1) \
             RETURNING {COLUMNS}",
            placeholders(4, keys.len())
        );
        let job: Option<Job> = on_db!(
            self.db,
            write | pool | {
                let mut query = sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(Ts::from(now))
                    .bind(Ts::from(now + lease))
                    .bind(worker);
                for key in keys {
                    query = query.bind(*key);
                }
                query.fetch_optional(pool).await
            }
        )?;
        Ok(job)
    }

    /// Extends `worker`'s lease on job `id` to `until` while the job runs. `false` when the
    /// lease is no longer `worker`'s (it ran out and another instance took the job).
    pub async fn extend(&self, id: JobId, worker: &str, until: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = on_db!(
            self.db,
            write
                | pool
                | sqlx::query(
                    "UPDATE jobs SET locked_until = $3, updated_at = $4 WHERE id = $1 AND locked_by = $2"
                )
                .bind(id.get())
                .bind(worker)
                .bind(Ts::from(until))
                .bind(Ts::now())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        )?;
        Ok(done == 1)
    }

    /// A periodic job that `worker` ran (started at `run.started`) is finished: its lease is
    /// released, its next run set, and the run counted, with its error when it failed (attempts
    /// count failures in a row). `false` when the lease was no longer `worker`'s: the job then
    /// belongs to whoever holds it now, and this run is not recorded.
    pub async fn finish_periodic(
        &self,
        id: JobId,
        worker: &str,
        run: &FinishedRun<'_>,
    ) -> Result<bool, StoreError> {
        let done = on_db!(
            self.db,
            write
                | pool
                | sqlx::query(
                    "UPDATE jobs SET run_after = $3, locked_until = NULL, locked_by = NULL, \
                     attempts = CASE WHEN $4 IS NULL THEN 0 ELSE attempts END, last_error = $4, \
                     runs = runs + 1, last_run_at = $5, last_run_by = $2, last_duration_ms = $6, updated_at = $7 \
                     WHERE id = $1 AND locked_by = $2"
                )
                .bind(id.get())
                .bind(worker)
                .bind(Ts::from(run.next_run))
                .bind(run.error)
                .bind(Ts::from(run.started))
                .bind(run.duration_ms)
                .bind(Ts::now())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        )?;
        Ok(done == 1)
    }

    /// The periodic job `key`, for tests and the operator's view.
    pub async fn periodic(&self, key: &str) -> Result<Job, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM jobs WHERE key = $1");
        let job: Job = on_db!(
            self.db,
            read | pool | sqlx::query_as(AssertSqlSafe(sql.as_str())).bind(key).fetch_one(pool).await
        )?;
        Ok(job)
    }

    /// A one-off job is done: it is removed.
    pub async fn complete(&self, id: JobId) -> Result<(), StoreError> {
        let done = on_db!(
            self.db,
            write
                | pool
                | sqlx::query("DELETE FROM jobs WHERE id = $1")
                    .bind(id.get())
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected())
        )?;
        found(done)
    }

    /// A periodic job ran: release the lease and set its next run; attempts restart.
    pub async fn reschedule(&self, id: JobId, next_run: DateTime<Utc>) -> Result<(), StoreError> {
        let done =
            on_db!(self.db, write |pool| sqlx::query(
            "UPDATE jobs SET run_after = $2, locked_until = NULL, locked_by = NULL, attempts = 0, \
             last_error = NULL, updated_at = $3 WHERE id = $1"
        )
        .bind(id.get())
        .bind(Ts::from(next_run))
        .bind(Ts::now())
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        found(done)
    }

    /// A job failed: keep the error, release the lease, retry at `retry_at`.
    pub async fn fail(&self, id: JobId, error: &str, retry_at: DateTime<Utc>) -> Result<(), StoreError> {
        let done =
            on_db!(self.db, write |pool| sqlx::query(
            "UPDATE jobs SET last_error = $2, run_after = $3, locked_until = NULL, locked_by = NULL, \
             updated_at = $4 WHERE id = $1"
        )
        .bind(id.get())
        .bind(error)
        .bind(Ts::from(retry_at))
        .bind(Ts::now())
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        found(done)
    }

    pub async fn get(&self, id: JobId) -> Result<Job, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM jobs WHERE id = $1");
        let job: Job = on_db!(
            self.db,
            read | pool | sqlx::query_as(AssertSqlSafe(sql.as_str())).bind(id.get()).fetch_one(pool).await
        )?;
        Ok(job)
    }
}

/// `$first, $first+1, …` for `n` bound values.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}
