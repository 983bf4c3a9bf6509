//! Scheduled reports (SPEC §6): every saved definition with a schedule is made when due, in the
//! tenant's zone, rendered in each recipient's language and mailed as an attachment; "run now"
//! runs go the same way. Every run is a row of `report_runs` with its status, its attempts and
//! its file (kept 90 days, downloadable from the Relatórios page).
//!
//! A round: due schedules become pending runs (the definition moves to its next run in the same
//! transaction, so a date runs once); then due pending runs are made. A failed attempt is retried
//! after 5 min, 30 min and 2 h, then the run is failed with its error; addresses already mailed
//! are not mailed again by a retry. The runner runs this job on one instance at a time.
//!
//! Owns: making, mailing and recording runs. Must not: decide what a report holds (the reports
//! crate does) or when a schedule falls (`tds_reports::schedule`).

use crate::Next;
use anyhow::{Context as _, anyhow};
use chrono::{DateTime, TimeDelta, Utc};
use std::sync::Arc;
use std::time::Duration;
use tds_domain::Email;
use tds_mail::{Attachment, Mailer};
use tds_reports::definition::{FileFormat, ReportSpec, file_name, render};
use tds_reports::schedule::Schedule;
use tds_reports::{Lang, Report};
use tds_store::audit::NewAuditEntry;
use tds_store::report_defs::{ReportRun, RunFile};
use tds_store::{Store, StoreError};

/// How often the job looks for due schedules and runs.
pub const PERIOD: Duration = Duration::from_secs(30);
/// Waits before the second, third and fourth attempts; after the fourth the run fails.
pub const RETRY_AFTER: [TimeDelta; 3] = [TimeDelta::minutes(5), TimeDelta::minutes(30), TimeDelta::hours(2)];
/// How long a run's file is kept (SPEC §6).
pub const KEEP_FILES: TimeDelta = TimeDelta::days(90);
/// Runs made per round: a report takes a second or two; the rest wait for the next round.
const RUNS_PER_ROUND: i64 = 20;

/// Makes and mails scheduled reports.
#[derive(Clone)]
pub struct Reporter {
    inner: Arc<Inner>,
}

struct Inner {
    mailer: Mailer,
    /// The web UI's address, for the download link in the message.
    public_url: String,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter").field("public_url", &self.inner.public_url).finish_non_exhaustive()
    }
}

impl Reporter {
    pub fn new(mailer: Mailer, public_url: impl Into<String>) -> Self {
        Self { inner: Arc::new(Inner { mailer, public_url: public_url.into() }) }
    }

    /// One round of the job, now.
    pub async fn job(self, store: Store) -> anyhow::Result<Next> {
        let attempted = self.round(&store, Utc::now()).await?;
        Ok(if attempted == RUNS_PER_ROUND as usize { Next::Soon } else { Next::Period })
    }

    /// One round at `now` (tests drive the clock): due schedules become runs, due runs are
    /// attempted, files past their 90 days dropped. The number of runs attempted.
    pub async fn round(&self, store: &Store, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let started = schedule_due(store, now).await?;
        if started > 0 {
            tracing::info!(runs = started, "scheduled reports due");
        }
        let due = store.report_runs().staff_due(now, RUNS_PER_ROUND).await?;
        for run in &due {
            self.attempt(store, run, now).await?;
        }
        store.report_runs().staff_drop_files_before(now - KEEP_FILES).await?;
        Ok(due.len())
    }

    /// Makes a run and records how it went; only a store error stops the round.
    async fn attempt(&self, store: &Store, run: &ReportRun, now: DateTime<Utc>) -> Result<(), StoreError> {
        let runs = store.report_runs();
        match self.make_and_send(store, run).await {
            Ok(mailed) => {
                runs.succeed(run.tenant_id, run.id).await?;
                audit(store, run, "report.run", serde_json::json!({ "run": run.id, "mailed": mailed }))
                    .await?;
                tracing::info!(tenant = %run.tenant_id, run = run.id, mailed, "report made");
            }
            Err(e) => {
                let error = format!("{e:#}");
                let retry_at = RETRY_AFTER.get(run.attempts as usize).map(|wait| now + *wait);
                runs.fail_attempt(run.tenant_id, run.id, &error, retry_at).await?;
                tracing::warn!(tenant = %run.tenant_id, run = run.id, attempt = run.attempts + 1, ?retry_at, %error, "report run failed");
                if retry_at.is_none() {
                    audit(store, run, "report.failed", serde_json::json!({ "run": run.id, "error": error }))
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Makes the report in each recipient's language and mails those not mailed yet; keeps the
    /// file in the definition's language. The number of messages sent.
    async fn make_and_send(&self, store: &Store, run: &ReportRun) -> anyhow::Result<usize> {
        let definition = run.definition_id.ok_or_else(|| anyhow!("the report's definition was deleted"))?;
        let def =
            store.report_definitions().get(run.tenant_id, definition).await.context("the definition")?;
        let tenant = store.tenants().get(run.tenant_id).await?;
        let spec = ReportSpec::from_json(&def.spec)?;
        let format =
            FileFormat::parse(&def.format).ok_or_else(|| anyhow!("unknown format {:?}", def.format))?;
        let own_lang = Lang::parse(&def.lang).unwrap_or(Lang::PtBr);
        let mut groups: Vec<(Lang, Vec<String>)> = vec![(own_lang, Vec::new())];
        for address in def.recipients.iter().filter(|a| !run.delivered.contains(a)) {
            let lang = recipient_lang(store, address).await.unwrap_or(own_lang);
            match groups.iter_mut().find(|(l, _)| *l == lang) {
                Some((_, list)) => list.push(address.clone()),
                None => groups.push((lang, vec![address.clone()])),
            }
        }
        let mut mailed = 0;
        for (lang, addresses) in groups {
            if lang != own_lang && addresses.is_empty() {
                continue;
            }
            let req =
                spec.request(tenant.id, tenant.timezone, tenant.billing_day, lang, run.scheduled_for)?;
            let report = tds_reports::build(store, &req).await?;
            let name = file_name(&report, format);
            let (report, bytes) =
                tokio::task::spawn_blocking(move || render(&report, format).map(|b| (report, b)))
                    .await
                    .context("the renderer stopped")??;
            if lang == own_lang {
                let file = RunFile {
                    period_from: report.from,
                    period_to: report.to,
                    file_name: name.clone(),
                    content_type: format.content_type().to_owned(),
                    bytes: bytes.clone(),
                };
                store.report_runs().set_file(run.tenant_id, run.id, &file).await?;
            }
            let attachment =
                Attachment { file_name: name, content_type: format.content_type().to_owned(), bytes };
            for address in addresses {
                let (subject, body) = message(&def.name, &report, &self.inner.public_url, run.id);
                self.inner
                    .mailer
                    .send_with_attachment(&address, &subject, body, &attachment)
                    .await
                    .with_context(|| format!("mailing {address}"))?;
                store.report_runs().add_delivered(run.tenant_id, run.id, &address).await?;
                mailed += 1;
            }
        }
        Ok(mailed)
    }
}

/// Schedules due at `now` become pending runs; the number started.
async fn schedule_due(store: &Store, now: DateTime<Utc>) -> Result<usize, StoreError> {
    let mut started = 0;
    for def in store.report_definitions().staff_due(now, 100).await? {
        let (Some(due), Some(stored)) = (def.next_run_at, def.schedule.as_ref()) else { continue };
        let Some(schedule) = Schedule::new(&stored.kind, stored.day, stored.hour) else { continue };
        let tenant = store.tenants().get(def.tenant_id).await?;
        // A server down for longer than a period makes one catch-up run, not one per missed date.
        let next = schedule.next_after(due.max(now), tenant.timezone);
        if store.report_definitions().start_scheduled(&def, due, next).await?.is_some() {
            started += 1;
        }
    }
    Ok(started)
}

/// The language of the user with this address, when there is one.
async fn recipient_lang(store: &Store, address: &str) -> Option<Lang> {
    let email = Email::parse(address).ok()?;
    let user = store.users().by_email(&email).await.ok()?;
    Lang::parse(&user.language)
}

/// The subject and body of a report's message, in the report's language.
fn message(name: &str, report: &Report, public_url: &str, run: i64) -> (String, String) {
    let (from, to) = (report.lang.date(report.from), report.lang.date(report.to));
    let link = format!("{}/reports/runs/{run}/file", public_url.trim_end_matches('/'));
    match report.lang {
        Lang::PtBr => (
            format!("Relatório {name}: {from} a {to}"),
            format!(
                "Segue em anexo o relatório \"{name}\" de {}, de {from} a {to} ({}).\n\n\
                 O arquivo fica disponível por 90 dias em:\n{link}\n\n-- TDS\n",
                report.tenant, report.zone
            ),
        ),
        Lang::En => (
            format!("Report {name}: {from} to {to}"),
            format!(
                "Attached is the report \"{name}\" of {}, from {from} to {to} ({}).\n\n\
                 The file can be downloaded for 90 days at:\n{link}\n\n-- TDS\n",
                report.tenant, report.zone
            ),
        ),
    }
}

async fn audit(
    store: &Store,
    run: &ReportRun,
    action: &str,
    detail: serde_json::Value,
) -> Result<(), StoreError> {
    store
        .audit()
        .record(&NewAuditEntry {
            tenant_id: Some(run.tenant_id),
            user_id: None,
            actor: "system".into(),
            action: action.into(),
            object_kind: "report_run".into(),
            object_id: Some(run.id.to_string()),
            detail: detail.to_string(),
            ip: None,
        })
        .await
}
