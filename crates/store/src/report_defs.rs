//! Saved reports and their runs (SPEC §6).
//!
//! Owns: the `report_definitions` and `report_runs` tables.
//! - [`ReportDefinitionStore`]: a tenant's definitions, each with the report's spec (opaque JSON
//!   here: the reports crate reads and checks it), format, language, recipients and optional
//!   schedule; `next_run_at` is kept by the caller, which knows the schedule's arithmetic.
//! - [`ReportRunStore`]: one row per run, pending until made and mailed; a run due again is a
//!   retry; its file is kept for 90 days ([`ReportRunStore::staff_drop_files_before`]).
//!
//! Must not: make reports, send mail or decide when a schedule runs (the reports and jobs
//! crates do).

use crate::alert_rules::text_enum;
use crate::tenants::found;
use crate::{Db, StoreError, Ts};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::AssertSqlSafe;
use tds_domain::{Name, TenantId, UserId, ValidationError};

/// Most recipients of one definition (SPEC §11: every input bounded).
pub const MAX_RECIPIENTS: usize = 20;
/// The largest report file kept (a year of hourly buckets of 50 devices is far below).
pub const MAX_FILE_BYTES: usize = 20 * 1024 * 1024;

text_enum!(
    /// What started a run.
    RunTrigger {
        Schedule = "schedule",
        /// "Run now" on the page (or `tds`'s operators).
        Manual = "manual",
    }
);

text_enum!(
    /// Where a run is.
    RunStatus {
        /// Waiting to be made (again, after a failed attempt).
        Pending = "pending",
        Succeeded = "succeeded",
        /// Every attempt failed; `error` says why.
        Failed = "failed",
    }
);

/// A schedule as stored: `monthly` with a day 1..=28 or `weekly` with an ISO weekday 1..=7, and
/// a local hour 0..=23.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredSchedule {
    pub kind: String,
    pub day: u8,
    pub hour: u8,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReportDefinition {
    pub id: i64,
    pub tenant_id: TenantId,
    pub name: String,
    /// The reports crate's `ReportSpec`, as JSON.
    pub spec: String,
    /// `pdf`, `xlsx`, `csv` or `csv-br`.
    pub format: String,
    /// `pt-BR` or `en`.
    pub lang: String,
    pub recipients: Vec<String>,
    pub schedule: Option<StoredSchedule>,
    pub next_run_at: Option<DateTime<Utc>>,
    pub created_by: Option<UserId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a definition is made or changed with.
#[derive(Debug, Clone)]
pub struct NewDefinition {
    pub name: Name,
    pub spec: String,
    pub format: String,
    pub lang: String,
    pub recipients: Vec<String>,
    pub schedule: Option<StoredSchedule>,
    pub next_run_at: Option<DateTime<Utc>>,
    pub created_by: Option<UserId>,
}

impl NewDefinition {
    fn check(&self) -> Result<(), StoreError> {
        let rule = |field: &'static str, value: &str, reason: &str| -> StoreError {
            ValidationError::Rule { field, value: value.into(), reason: reason.into() }.into()
        };
        if !matches!(self.format.as_str(), "pdf" | "xlsx" | "csv" | "csv-br") {
            return Err(rule("format", &self.format, "must be pdf, xlsx, csv or csv-br"));
        }
        if !matches!(self.lang.as_str(), "pt-BR" | "en") {
            return Err(rule("lang", &self.lang, "must be pt-BR or en"));
        }
        if self.recipients.len() > MAX_RECIPIENTS {
            return Err(rule("recipients", "", &format!("at most {MAX_RECIPIENTS} recipients")));
        }
        if self.spec.len() > 8 * 1024 {
            return Err(rule("spec", "", "too long"));
        }
        if let Some(s) = &self.schedule {
            let ok = match s.kind.as_str() {
                "monthly" => (1..=28).contains(&s.day),
                "weekly" => (1..=7).contains(&s.day),
                _ => false,
            };
            if !ok || s.hour > 23 {
                return Err(rule(
                    "schedule",
                    &s.kind,
                    "monthly on day 1..28 or weekly on day 1..7, hour 0..23",
                ));
            }
            if self.recipients.is_empty() {
                return Err(rule("recipients", "", "a scheduled report needs at least one recipient"));
            }
        }
        Ok(())
    }
}

#[derive(sqlx::FromRow)]
struct DefinitionRow {
    id: i64,
    tenant_id: i64,
    name: String,
    spec: String,
    format: String,
    lang: String,
    recipients: String,
    schedule_kind: Option<String>,
    schedule_day: Option<i64>,
    schedule_hour: Option<i64>,
    next_run_at: Option<Ts>,
    created_by: Option<i64>,
    created_at: Ts,
    updated_at: Ts,
}

impl From<DefinitionRow> for ReportDefinition {
    fn from(r: DefinitionRow) -> Self {
        let schedule = r.schedule_kind.map(|kind| StoredSchedule {
            kind,
            day: r.schedule_day.and_then(|d| u8::try_from(d).ok()).unwrap_or(1),
            hour: r.schedule_hour.and_then(|h| u8::try_from(h).ok()).unwrap_or(0),
        });
        Self {
            id: r.id,
            tenant_id: TenantId::new(r.tenant_id),
            name: r.name,
            spec: r.spec,
            format: r.format,
            lang: r.lang,
            recipients: lines(&r.recipients),
            schedule,
            next_run_at: r.next_run_at.map(|t| t.0),
            created_by: r.created_by.map(UserId::new),
            created_at: r.created_at.0,
            updated_at: r.updated_at.0,
        }
    }
}

fn lines(s: &str) -> Vec<String> {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

const DEFINITION_COLUMNS: &str = "id, tenant_id, name, spec, format, lang, recipients, schedule_kind, \
    schedule_day, schedule_hour, next_run_at, created_by, created_at, updated_at";

fn duplicate_name(name: &Name) -> impl Fn(sqlx::Error) -> StoreError + '_ {
    move |e| match StoreError::from(e) {
        StoreError::Conflict(_) => StoreError::Conflict(format!("a report named {name} already exists")),
        e => e,
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ReportDefinitionStore<'a> {
    db: &'a Db,
}

impl<'a> ReportDefinitionStore<'a> {
    pub(crate) fn new(db: &'a Db) -> Self {
        Self { db }
    }

    /// Saves a definition; its name is unique in the tenant (`Conflict`).
    pub async fn create(
        &self,
        tenant: TenantId,
        new: &NewDefinition,
    ) -> Result<ReportDefinition, StoreError> {
        new.check()?;
        let sql = format!(
            "INSERT INTO report_definitions (tenant_id, name, spec, format, lang, recipients, schedule_kind, \
             schedule_day, schedule_hour, next_run_at, created_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) RETURNING {DEFINITION_COLUMNS}"
        );
        let s = new.schedule.as_ref();
        let row: DefinitionRow = on_db!(
            self.db,
            write
                | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(tenant.get())
                    .bind(new.name.as_str())
                    .bind(&new.spec)
                    .bind(&new.format)
                    .bind(&new.lang)
                    .bind(new.recipients.join("\n"))
                    .bind(s.map(|s| s.kind.clone()))
                    .bind(s.map(|s| i64::from(s.day)))
                    .bind(s.map(|s| i64::from(s.hour)))
                    .bind(new.next_run_at.map(Ts))
                    .bind(new.created_by.map(UserId::get))
                    .bind(Ts::now())
                    .fetch_one(pool)
                    .await
        )
        .map_err(duplicate_name(&new.name))?;
        Ok(row.into())
    }

    /// Changes everything but the creator.
    pub async fn update(
        &self,
        tenant: TenantId,
        id: i64,
        new: &NewDefinition,
    ) -> Result<ReportDefinition, StoreError> {
        new.check()?;
        let sql = format!(
            "UPDATE report_definitions SET name = $3, spec = $4, format = $5, lang = $6, recipients = $7, \
             schedule_kind = $8, schedule_day = $9, schedule_hour = $10, next_run_at = $11, updated_at = $12 \
             WHERE tenant_id = $1 AND id = $2 RETURNING {DEFINITION_COLUMNS}"
        );
        let s = new.schedule.as_ref();
        let row: DefinitionRow = on_db!(
            self.db,
            write
                | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(tenant.get())
                    .bind(id)
                    .bind(new.name.as_str())
                    .bind(&new.spec)
                    .bind(&new.format)
                    .bind(&new.lang)
                    .bind(new.recipients.join("\n"))
                    .bind(s.map(|s| s.kind.clone()))
                    .bind(s.map(|s| i64::from(s.day)))
                    .bind(s.map(|s| i64::from(s.hour)))
                    .bind(new.next_run_at.map(Ts))
                    .bind(Ts::now())
                    .fetch_one(pool)
                    .await
        )
        .map_err(duplicate_name(&new.name))?;
        Ok(row.into())
    }

    pub async fn get(&self, tenant: TenantId, id: i64) -> Result<ReportDefinition, StoreError> {
        let sql =
            format!("SELECT {DEFINITION_COLUMNS} FROM report_definitions WHERE tenant_id = $1 AND id = $2");
        let row: DefinitionRow = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(tenant.get())
                    .bind(id)
                    .fetch_one(pool)
                    .await
        )?;
        Ok(row.into())
    }

    /// The tenant's definitions by name.
    pub async fn list(&self, tenant: TenantId) -> Result<Vec<ReportDefinition>, StoreError> {
        let sql = format!(
            "SELECT {DEFINITION_COLUMNS} FROM report_definitions WHERE tenant_id = $1 ORDER BY name, id"
        );
        let rows: Vec<DefinitionRow> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str())).bind(tenant.get()).fetch_all(pool).await
        )?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Deletes a definition; its runs stay as the record (without their definition).
    pub async fn delete(&self, tenant: TenantId, id: i64) -> Result<(), StoreError> {
        let done = on_db!(
            self.db,
            write
                | pool
                | sqlx::query("DELETE FROM report_definitions WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.get())
                    .bind(id)
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected())
        )?;
        found(done)
    }

    /// Scheduled definitions of every tenant whose next run is at or before `now`, oldest first.
    pub async fn staff_due(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<ReportDefinition>, StoreError> {
        let sql = format!(
            "SELECT {DEFINITION_COLUMNS} FROM report_definitions WHERE next_run_at IS NOT NULL \
             AND next_run_at <= $1 ORDER BY next_run_at, id LIMIT $2"
        );
        let rows: Vec<DefinitionRow> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str())).bind(Ts(now)).bind(limit).fetch_all(pool).await
        )?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Records the scheduled run of `def` due at `due` as a pending run and moves the definition
    /// to its `next` run, in one transaction and only if the definition is still due at `due`
    /// (`None` when someone changed it meanwhile): a schedule never runs twice for one date.
    pub async fn start_scheduled(
        &self,
        def: &ReportDefinition,
        due: DateTime<Utc>,
        next: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        let tenant = def.tenant_id.get();
        in_tx!(self.db, |tx| {
            let moved = sqlx::query(
                "UPDATE report_definitions SET next_run_at = $3 WHERE tenant_id = $1 AND id = $2 AND next_run_at = $4",
            )
            .bind(tenant)
            .bind(def.id)
            .bind(Ts(next))
            .bind(Ts(due))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if moved == 0 {
                return Ok(None);
            }
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO report_runs (tenant_id, definition_id, name, trigger, scheduled_for, status, attempts, \
                 next_attempt_at, delivered, created_at) VALUES ($1, $2, $3, 'schedule', $4, 'pending', 0, $4, '', $5) \
                 RETURNING id",
            )
            .bind(tenant)
            .bind(def.id)
            .bind(&def.name)
            .bind(Ts(due))
            .bind(Ts::now())
            .fetch_one(&mut *tx)
            .await?;
            Ok(Some(id))
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ReportRun {
    pub id: i64,
    pub tenant_id: TenantId,
    pub definition_id: Option<i64>,
    pub name: String,
    pub trigger: RunTrigger,
    /// The instant the report was made for: its "today" (a scheduled run's due time).
    pub scheduled_for: DateTime<Utc>,
    pub status: RunStatus,
    pub attempts: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub period_from: Option<NaiveDate>,
    pub period_to: Option<NaiveDate>,
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    /// The file's size; `None` once it is past its 90 days (or before it is made).
    pub file_size: Option<u64>,
    /// Addresses mailed so far.
    pub delivered: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct RunRow {
    id: i64,
    tenant_id: i64,
    definition_id: Option<i64>,
    name: String,
    trigger: String,
    scheduled_for: Ts,
    status: String,
    attempts: i64,
    next_attempt_at: Option<Ts>,
    error: Option<String>,
    period_from: Option<NaiveDate>,
    period_to: Option<NaiveDate>,
    file_name: Option<String>,
    content_type: Option<String>,
    file_size: Option<i64>,
    delivered: String,
    created_at: Ts,
    finished_at: Option<Ts>,
}

impl TryFrom<RunRow> for ReportRun {
    type Error = StoreError;
    fn try_from(r: RunRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: r.id,
            tenant_id: TenantId::new(r.tenant_id),
            definition_id: r.definition_id,
            name: r.name,
            trigger: RunTrigger::stored("report_runs.trigger", &r.trigger)?,
            scheduled_for: r.scheduled_for.0,
            status: RunStatus::stored("report_runs.status", &r.status)?,
            attempts: u32::try_from(r.attempts).unwrap_or(0),
            next_attempt_at: r.next_attempt_at.map(|t| t.0),
            error: r.error,
            period_from: r.period_from,
            period_to: r.period_to,
            file_name: r.file_name,
            content_type: r.content_type,
            file_size: r.file_size.and_then(|n| u64::try_from(n).ok()),
            delivered: lines(&r.delivered),
            created_at: r.created_at.0,
            finished_at: r.finished_at.map(|t| t.0),
        })
    }
}

const RUN_COLUMNS: &str = "id, tenant_id, definition_id, name, trigger, scheduled_for, status, attempts, \
    next_attempt_at, error, period_from, period_to, file_name, content_type, file_size, delivered, created_at, \
    finished_at";

/// A made report: what a successful attempt records.
#[derive(Debug, Clone)]
pub struct RunFile {
    pub period_from: NaiveDate,
    pub period_to: NaiveDate,
    pub file_name: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
pub struct ReportRunStore<'a> {
    db: &'a Db,
}

impl<'a> ReportRunStore<'a> {
    pub(crate) fn new(db: &'a Db) -> Self {
        Self { db }
    }

    /// A pending manual run of a definition ("run now"), made for `now`.
    pub async fn enqueue_manual(&self, tenant: TenantId, definition: i64) -> Result<i64, StoreError> {
        let def = ReportDefinitionStore::new(self.db).get(tenant, definition).await?;
        let id: i64 = on_db!(
            self.db,
            write
                | pool
                | sqlx::query_scalar(
                    "INSERT INTO report_runs (tenant_id, definition_id, name, trigger, scheduled_for, status, attempts, \
                     next_attempt_at, delivered, created_at) VALUES ($1, $2, $3, 'manual', $4, 'pending', 0, $4, '', $4) \
                     RETURNING id",
                )
                .bind(tenant.get())
                .bind(def.id)
                .bind(&def.name)
                .bind(Ts::now())
                .fetch_one(pool)
                .await
        )?;
        Ok(id)
    }

    pub async fn get(&self, tenant: TenantId, id: i64) -> Result<ReportRun, StoreError> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM report_runs WHERE tenant_id = $1 AND id = $2");
        let row: RunRow = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(tenant.get())
                    .bind(id)
                    .fetch_one(pool)
                    .await
        )?;
        row.try_into()
    }

    /// The tenant's latest runs, newest first; of one definition when given.
    pub async fn list(
        &self,
        tenant: TenantId,
        definition: Option<i64>,
        limit: i64,
    ) -> Result<Vec<ReportRun>, StoreError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM report_runs WHERE tenant_id = $1 AND ($2 IS NULL OR definition_id = $2) \
             ORDER BY id DESC LIMIT $3"
        );
        let rows: Vec<RunRow> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(tenant.get())
                    .bind(definition)
                    .bind(limit)
                    .fetch_all(pool)
                    .await
        )?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// A run's file, while it is kept.
    pub async fn file(&self, tenant: TenantId, id: i64) -> Result<(ReportRun, Vec<u8>), StoreError> {
        let run = self.get(tenant, id).await?;
        let bytes: Option<Vec<u8>> = on_db!(
            self.db,
            read | pool
                | sqlx::query_scalar("SELECT file FROM report_runs WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.get())
                    .bind(id)
                    .fetch_one(pool)
                    .await
        )?;
        bytes.map(|b| (run, b)).ok_or(StoreError::NotFound)
    }

    /// Pending runs of every tenant due at `now`, oldest first.
    pub async fn staff_due(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<ReportRun>, StoreError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM report_runs WHERE status = 'pending' AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at, id LIMIT $2"
        );
        let rows: Vec<RunRow> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str())).bind(Ts(now)).bind(limit).fetch_all(pool).await
        )?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Keeps the made file of an attempt (before mailing: a retry mails the same file).
    pub async fn set_file(&self, tenant: TenantId, id: i64, file: &RunFile) -> Result<(), StoreError> {
        if file.bytes.len() > MAX_FILE_BYTES {
            return Err(ValidationError::Rule {
                field: "file",
                value: file.file_name.clone(),
                reason: format!("{} bytes: larger than the {MAX_FILE_BYTES} kept", file.bytes.len()),
            }
            .into());
        }
        let done = on_db!(
            self.db,
            write
                | pool
                | sqlx::query(
                    "UPDATE report_runs SET period_from = $3, period_to = $4, file_name = $5, content_type = $6, \
                     file = $7, file_size = $8 WHERE tenant_id = $1 AND id = $2",
                )
                .bind(tenant.get())
                .bind(id)
                .bind(file.period_from)
                .bind(file.period_to)
                .bind(&file.file_name)
                .bind(&file.content_type)
                .bind(&file.bytes)
                .bind(i64::try_from(file.bytes.len()).unwrap_or(i64::MAX))
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        )?;
        found(done)
    }

    /// Records that `address` was mailed (a retry skips it).
    pub async fn add_delivered(&self, tenant: TenantId, id: i64, address: &str) -> Result<(), StoreError> {
        let run = self.get(tenant, id).await?;
        let mut all = run.delivered;
        if !all.iter().any(|a| a == address) {
            all.push(address.to_owned());
        }
        on_db!(
            self.db,
            write
                | pool
                | sqlx::query("UPDATE report_runs SET delivered = $3 WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.get())
                    .bind(id)
                    .bind(all.join("\n"))
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected())
        )?;
        Ok(())
    }

    pub async fn succeed(&self, tenant: TenantId, id: i64) -> Result<(), StoreError> {
        let done = on_db!(
            self.db,
            write
                | pool
                | sqlx::query(
                    "UPDATE report_runs SET status = 'succeeded', attempts = attempts + 1, next_attempt_at = NULL, \
                     error = NULL, finished_at = $3 WHERE tenant_id = $1 AND id = $2",
                )
                .bind(tenant.get())
                .bind(id)
                .bind(Ts::now())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        )?;
        found(done)
    }

    /// Records a failed attempt: pending again at `retry_at`, or failed for good without one.
    pub async fn fail_attempt(
        &self,
        tenant: TenantId,
        id: i64,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let error: String = error.chars().take(2000).collect();
        let (status, finished) = match retry_at {
            Some(_) => ("pending", None),
            None => ("failed", Some(Ts::now())),
        };
        let done = on_db!(
            self.db,
            write
                | pool
                | sqlx::query(
                    "UPDATE report_runs SET status = $3, attempts = attempts + 1, next_attempt_at = $4, error = $5, \
                     finished_at = $6 WHERE tenant_id = $1 AND id = $2",
                )
                .bind(tenant.get())
                .bind(id)
                .bind(status)
                .bind(retry_at.map(Ts))
                .bind(&error)
                .bind(finished)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        )?;
        found(done)
    }

    /// Drops the files of runs made before `before` (SPEC §6: kept 90 days); the rows stay.
    pub async fn staff_drop_files_before(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        on_db!(
            self.db,
            write
                | pool
                | sqlx::query(
                    "UPDATE report_runs SET file = NULL, file_size = NULL WHERE created_at < $1 AND file IS NOT NULL",
                )
                .bind(Ts(before))
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        )
        .map_err(Into::into)
    }
}
