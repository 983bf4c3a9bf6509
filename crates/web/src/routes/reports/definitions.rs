//! Saved reports (SPEC §6) from the Relatórios page: save the report shown as a definition (or
//! change one), with its format, language, recipients and an optional monthly or weekly schedule
//! in the tenant's zone; "run now"; delete; download a run's file while it is kept (90 days).
//! The runs themselves are made by the `reports` job (tds-jobs). Editors save and run; every
//! member sees and downloads.

use super::form::ReportForm;
use super::{download, page_with};
use crate::AppState;
use crate::auth::{Editor, Viewer};
use crate::error::WebResult;
use crate::forms::FieldErrors;
use crate::page::PageCtx;
use crate::routes::audit;
use crate::routes::table::Routes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde_json::json;
use tds_domain::{Email, Name};
use tds_reports::definition::FileFormat;
use tds_reports::schedule::Schedule;
use tds_store::StoreError;
use tds_store::report_defs::{MAX_RECIPIENTS, NewDefinition, StoredSchedule};

pub fn routes() -> Routes {
    Routes::new()
        .route("/reports/definitions", post(save))
        .route("/reports/definitions/{id}/run", post(run_now))
        .route("/reports/definitions/{id}/delete", post(delete))
        .route("/reports/runs/{id}/file", get(file))
}

/// The definition of the save form, or each field's error.
fn definition(
    form: &ReportForm,
    ctx: &PageCtx,
    created_by: tds_domain::UserId,
) -> Result<NewDefinition, FieldErrors> {
    let lang = ctx.lang;
    let mut errors = match form.spec(lang) {
        Ok(_) => FieldErrors::default(),
        Err(e) => e,
    };
    let name = crate::forms::field(&mut errors, lang, "name", Name::parse("name", &form.name));
    if FileFormat::parse(&form.format).is_none() {
        errors.set("format", lang.t("validation.required"));
    }
    if !matches!(form.lang.as_str(), "pt-BR" | "en") {
        errors.set("lang", lang.t("validation.required"));
    }
    let recipients: Vec<String> = form
        .recipients
        .split([',', ';', '\n', ' '])
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    if recipients.len() > MAX_RECIPIENTS {
        errors.set("recipients", lang.t("reports.too_many_recipients"));
    }
    for r in &recipients {
        if Email::parse(r).is_err() {
            errors.set("recipients", format!("{}: {r}", lang.t("reports.bad_recipient")));
        }
    }
    let schedule = match form.schedule.as_str() {
        "" | "none" => None,
        kind => {
            let day = form.schedule_day.parse::<u8>().unwrap_or(0);
            let hour = form.schedule_hour.parse::<u8>().unwrap_or(99);
            let schedule = Schedule::new(kind, day, hour);
            if schedule.is_none() {
                errors.set("schedule_day", lang.t("reports.bad_schedule"));
            }
            schedule
        }
    };
    if schedule.is_some() && recipients.is_empty() {
        errors.set("recipients", lang.t("reports.needs_recipients"));
    }
    let spec = form.spec(lang).ok();
    match (name, spec, errors.is_empty()) {
        (Some(name), Some(spec), true) => Ok(NewDefinition {
            name,
            spec: spec.to_json(),
            format: form.format.clone(),
            lang: form.lang.clone(),
            recipients,
            schedule: schedule.map(|s| StoredSchedule {
                kind: s.kind().to_owned(),
                day: s.day(),
                hour: s.hour(),
            }),
            next_run_at: None,
            created_by: Some(created_by),
        }),
        _ => Err(errors),
    }
}

/// `POST /reports/definitions`: saves the report shown (new, or the one in `definition`).
async fn save(
    State(state): State<AppState>,
    Editor(t): Editor,
    ctx: PageCtx,
    body: String,
) -> WebResult<Response> {
    let form = ReportForm::parse(&body);
    let mut new = match definition(&form, &ctx, t.me.user.id) {
        Ok(new) => new,
        // Back to the page with the report and the errors: the save form lives there.
        Err(errors) => return page_with(&state, &t, ctx, form, errors).await,
    };
    if let Some(s) = &new.schedule
        && let Some(schedule) = Schedule::new(&s.kind, s.day, s.hour)
    {
        new.next_run_at = Some(schedule.next_after(Utc::now(), t.tenant.timezone));
    }
    let store = state.store().report_definitions();
    let saved = match form.definition {
        Some(id) => store.update(t.tenant_id(), id, &new).await,
        None => store.create(t.tenant_id(), &new).await,
    };
    let saved = match saved {
        Ok(d) => d,
        Err(StoreError::Conflict(m)) => {
            let mut errors = FieldErrors::default();
            errors.set("name", m);
            return page_with(&state, &t, ctx, form, errors).await;
        }
        Err(e) => return Err(e.into()),
    };
    let action =
        if form.definition.is_some() { "report.definition_updated" } else { "report.definition_created" };
    audit(
        &state,
        &t.me,
        Some(&t),
        action,
        ("report_definition", Some(saved.id.to_string())),
        json!({"name": saved.name, "spec": serde_json::from_str::<serde_json::Value>(&saved.spec).unwrap_or_default(),
            "format": saved.format, "lang": saved.lang, "recipients": saved.recipients, "schedule": saved.schedule}),
    )
    .await?;
    Ok(Redirect::to(&format!("/reports?definition={}&done=saved", saved.id)).into_response())
}

/// `POST /reports/definitions/{id}/run`: a run now, made by the job within half a minute.
async fn run_now(
    State(state): State<AppState>,
    Editor(t): Editor,
    Path(id): Path<i64>,
) -> WebResult<Response> {
    let run = state.store().report_runs().enqueue_manual(t.tenant_id(), id).await?;
    audit(
        &state,
        &t.me,
        Some(&t),
        "report.run_requested",
        ("report_definition", Some(id.to_string())),
        json!({"run": run}),
    )
    .await?;
    Ok(Redirect::to(&format!("/reports?definition={id}&done=run_queued")).into_response())
}

async fn delete(
    State(state): State<AppState>,
    Editor(t): Editor,
    Path(id): Path<i64>,
) -> WebResult<Response> {
    let store = state.store().report_definitions();
    let d = store.get(t.tenant_id(), id).await?;
    store.delete(t.tenant_id(), id).await?;
    audit(
        &state,
        &t.me,
        Some(&t),
        "report.definition_deleted",
        ("report_definition", Some(id.to_string())),
        json!({"name": d.name}),
    )
    .await?;
    Ok(Redirect::to("/reports?done=deleted").into_response())
}

/// `GET /reports/runs/{id}/file`: a run's file, while it is kept.
async fn file(State(state): State<AppState>, Viewer(t): Viewer, Path(id): Path<i64>) -> WebResult<Response> {
    let (run, bytes) = state.store().report_runs().file(t.tenant_id(), id).await?;
    audit(
        &state,
        &t.me,
        Some(&t),
        "report.downloaded",
        ("report_run", Some(id.to_string())),
        json!({"name": run.name}),
    )
    .await?;
    let name = run.file_name.unwrap_or_else(|| format!("report-{id}"));
    let content_type = run.content_type.unwrap_or_else(|| "application/octet-stream".into());
    Ok(download(bytes, &content_type, &name))
}
