//! Relatórios (SPEC §6): choose a scope (whole tenant, a medium, a gateway, or devices of one
//! gateway to compare), a period (the previous or current month, the previous ISO week, the last
//! N days or fixed dates), the bucket and the comparisons; the report shows as tables and a chart
//! in the page, downloads as PDF, XLSX or CSV (the same report: the reports crate makes all of
//! them), and can be saved as a definition with recipients and a schedule. Raw readings export
//! from here too. Every download is in the audit log.
//!
//! Owns: the page and its downloads. Saved definitions and their runs: [`definitions`]. The
//! form and the report's HTML view: [`form`].

mod definitions;
pub mod form;

use crate::AppState;
use crate::auth::Viewer;
use crate::error::{WebError, WebResult};
use crate::forms::FieldErrors;
use crate::page::PageCtx;
use crate::routes::table::Routes;
use crate::routes::{audit, render, render_status};
use askama::Template;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use chrono::{NaiveDate, Utc};
use form::{ReportForm, TableView, query_of, report_lang, set_report_error, tables};
use serde_json::json;
use tds_domain::buckets::{day_start, end_of_day};
use tds_domain::{DeviceCode, Mac, MeasurementKind, Medium};
use tds_reports::definition::{FileFormat, ReportSpec, file_name, render as render_file};
use tds_reports::export::ReadingsQuery;
use tds_reports::{Report, ReportError};
use tds_store::report_defs::{ReportDefinition, ReportRun};

pub fn routes() -> Routes {
    Routes::new()
        .route("/reports", get(page))
        .route("/reports/export", get(export))
        .route("/reports/readings", get(readings))
        .merge(definitions::routes())
}

/// A device the form offers: `MAC|CODE`, and how it is shown.
#[derive(Debug)]
pub struct DeviceOption {
    pub value: String,
    pub label: String,
}

/// A gateway the form offers, with its counters.
#[derive(Debug)]
pub struct GatewayOption {
    pub mac: String,
    pub label: String,
    pub devices: Vec<DeviceOption>,
}

#[derive(Template)]
#[template(path = "reports/index.html")]
struct ReportsPage {
    ctx: PageCtx,
    form: ReportForm,
    errors: FieldErrors,
    /// The save form's errors.
    save_errors: FieldErrors,
    gateways: Vec<GatewayOption>,
    media: Vec<&'static str>,
    /// The report shown, with its period in words.
    shown: Option<Shown>,
    definitions: Vec<DefinitionRow>,
    runs: Vec<RunRow>,
    /// The definition being shown (its name; the save form updates it).
    definition: Option<ReportDefinition>,
    can_edit: bool,
    today: String,
}

struct Shown {
    title: String,
    period: String,
    zone: String,
    bucket: String,
    notes: Vec<String>,
    tables: Vec<TableView>,
    incomplete: usize,
    /// The spec as a query string, for the export links and the save form.
    query: String,
    /// The spec's fields as hidden inputs of the save form.
    hidden: Vec<(String, String)>,
}

struct DefinitionRow {
    id: i64,
    name: String,
    format: String,
    schedule: String,
    recipients: usize,
    next_run: String,
}

struct RunRow {
    id: i64,
    name: String,
    trigger: &'static str,
    at: String,
    status: &'static str,
    attempts: u32,
    error: String,
    period: String,
    file: Option<(String, String)>,
}

fn report_error(e: ReportError) -> WebError {
    match e {
        ReportError::NotFound(_) => WebError::NotFound,
        ReportError::Store(e) => e.into(),
        e => WebError::Internal(e.to_string()),
    }
}

/// The schedule of a definition in words: "mensal, dia 1, 06:00".
fn schedule_text(ctx: &PageCtx, d: &ReportDefinition) -> String {
    match &d.schedule {
        None => ctx.t("reports.not_scheduled"),
        Some(s) if s.kind == "monthly" => ctx
            .t("reports.monthly_on")
            .replace("%{day}", &s.day.to_string())
            .replace("%{hour}", &format!("{:02}:00", s.hour)),
        Some(s) => ctx
            .t("reports.weekly_on")
            .replace("%{day}", &ctx.t(&format!("reports.weekday.{}", s.day)))
            .replace("%{hour}", &format!("{:02}:00", s.hour)),
    }
}

fn run_row(ctx: &PageCtx, r: &ReportRun) -> RunRow {
    let period = match (r.period_from, r.period_to) {
        (Some(f), Some(t)) => format!("{} – {}", ctx.lang.date(f), ctx.lang.date(t)),
        _ => String::new(),
    };
    RunRow {
        id: r.id,
        name: r.name.clone(),
        trigger: r.trigger.as_str(),
        at: ctx.lang.datetime(r.scheduled_for, ctx.zone),
        status: if r.status.as_str() == "pending" && r.attempts > 0 { "retrying" } else { r.status.as_str() },
        attempts: r.attempts,
        error: r.error.clone().unwrap_or_default(),
        period,
        file: r.file_name.clone().zip(r.file_size.map(|n| format!("{:.1} kB", n as f64 / 1024.0))),
    }
}

async fn options(state: &AppState, t: &crate::auth::TenantCtx) -> WebResult<Vec<GatewayOption>> {
    let store = state.store();
    let gateways = store.gateways().all(t.tenant_id()).await?;
    let devices = store.devices().list(t.tenant_id()).await?;
    Ok(gateways
        .iter()
        .map(|g| GatewayOption {
            mac: g.mac.to_string(),
            label: format!("{} ({})", g.name, g.mac),
            devices: devices
                .iter()
                .filter(|d| d.gateway_id == g.id && d.kind == MeasurementKind::Counter)
                .map(|d| DeviceOption {
                    value: format!("{}|{}", g.mac, d.code),
                    label: format!("{} · {} ({})", d.code, d.name, d.unit),
                })
                .collect(),
        })
        .collect())
}

async fn page(
    State(state): State<AppState>,
    Viewer(t): Viewer,
    ctx: PageCtx,
    RawQuery(q): RawQuery,
) -> WebResult<Response> {
    let form = ReportForm::parse(&q.unwrap_or_default());
    page_with(&state, &t, ctx, form, FieldErrors::default()).await
}

/// The page for `form`, showing its report when asked; `save_errors` are the save form's (422).
pub(super) async fn page_with(
    state: &AppState,
    t: &crate::auth::TenantCtx,
    ctx: PageCtx,
    mut form: ReportForm,
    save_errors: FieldErrors,
) -> WebResult<Response> {
    let store = state.store();
    let mut definition = None;
    if let Some(id) = form.definition {
        let d = store.report_definitions().get(t.tenant_id(), id).await?;
        // A definition opened from the list: its spec and settings, unless the form was changed
        // since (then the form's, shown and saved as they are).
        if !form.show {
            let spec = ReportSpec::from_json(&d.spec).map_err(report_error)?;
            form = ReportForm::of_spec(&spec);
            form.definition = Some(id);
            form.show = true;
            form.name.clone_from(&d.name);
            form.format.clone_from(&d.format);
            form.lang.clone_from(&d.lang);
            form.recipients = d.recipients.join("\n");
            if let Some(s) = &d.schedule {
                form.schedule.clone_from(&s.kind);
                form.schedule_day = s.day.to_string();
                form.schedule_hour = s.hour.to_string();
            }
        }
        definition = Some(d);
    }
    if form.lang.is_empty() {
        ctx.lang.code().clone_into(&mut form.lang);
    }
    let mut errors = FieldErrors::default();
    let mut shown = None;
    if form.show {
        match form.spec(ctx.lang) {
            Ok(spec) => match make(state, t, &spec, report_lang(ctx.lang)).await {
                Ok(report) => shown = Some(show(&ctx, &spec, &report)),
                Err(ReportError::Invalid(m)) => set_report_error(&mut errors, &ReportError::Invalid(m)),
                Err(e) => return Err(report_error(e)),
            },
            Err(e) => errors = e,
        }
    }
    let definitions = store
        .report_definitions()
        .list(t.tenant_id())
        .await?
        .iter()
        .map(|d| DefinitionRow {
            id: d.id,
            name: d.name.clone(),
            format: d.format.clone(),
            schedule: schedule_text(&ctx, d),
            recipients: d.recipients.len(),
            next_run: d.next_run_at.map(|at| ctx.lang.datetime(at, ctx.zone)).unwrap_or_default(),
        })
        .collect();
    let runs = store.report_runs().list(t.tenant_id(), definition.as_ref().map(|d| d.id), 20).await?;
    let runs = runs.iter().map(|r| run_row(&ctx, r)).collect();
    let today = Utc::now().with_timezone(&ctx.zone).date_naive().to_string();
    let failed = !errors.is_empty() || !save_errors.is_empty();
    let page = ReportsPage {
        ctx: ctx.section("reports", "nav.reports"),
        form,
        errors,
        save_errors,
        gateways: options(state, t).await?,
        media: Medium::ALL.iter().map(|m| m.as_str()).collect(),
        shown,
        definitions,
        runs,
        definition,
        can_edit: t.can(tds_domain::Role::Editor),
        today,
    };
    if failed { render_status(StatusCode::UNPROCESSABLE_ENTITY, &page) } else { render(&page, None) }
}

/// Builds the report of `spec` for the tenant now.
async fn make(
    state: &AppState,
    t: &crate::auth::TenantCtx,
    spec: &ReportSpec,
    lang: tds_reports::Lang,
) -> Result<Report, ReportError> {
    let tenant = &t.tenant;
    let req = spec.request(tenant.id, tenant.timezone, tenant.billing_day, lang, Utc::now())?;
    tds_reports::build(state.store(), &req).await
}

fn show(ctx: &PageCtx, spec: &ReportSpec, report: &Report) -> Shown {
    let query = query_of(spec);
    let hidden = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    Shown {
        title: report.title.clone(),
        period: format!("{} – {}", ctx.lang.date(report.from), ctx.lang.date(report.to)),
        zone: report.zone.clone(),
        bucket: report.bucket_label.clone(),
        notes: report.notes.clone(),
        tables: tables(report),
        incomplete: report.incomplete_rows(),
        query,
        hidden,
    }
}

/// A response carrying a file to download.
pub(crate) fn download(bytes: impl Into<Body>, content_type: &str, name: &str) -> Response {
    let mut response = Response::new(bytes.into());
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    // File names are ours (ASCII: dates and a word); quoted as RFC 6266 asks.
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

/// `GET /reports/export?…&format=pdf|xlsx|csv|csv-br`: the report shown, as a file.
async fn export(
    State(state): State<AppState>,
    Viewer(t): Viewer,
    ctx: PageCtx,
    RawQuery(q): RawQuery,
) -> WebResult<Response> {
    let raw = q.unwrap_or_default();
    let form = ReportForm::parse(&raw);
    let format = FileFormat::parse(&form.format).ok_or(WebError::BadRequest("format".into()))?;
    let spec = form.spec(ctx.lang).map_err(|_| WebError::BadRequest("report".into()))?;
    let lang = match tds_reports::Lang::parse(&form.lang) {
        Some(l) => l,
        None => report_lang(ctx.lang),
    };
    let report = make(&state, &t, &spec, lang).await.map_err(|e| match e {
        ReportError::Invalid(m) => WebError::BadRequest(m),
        e => report_error(e),
    })?;
    let name = file_name(&report, format);
    // Typesetting and workbooks take CPU for a while: off the async workers.
    let (report, bytes) =
        tokio::task::spawn_blocking(move || render_file(&report, format).map(|b| (report, b)))
            .await
            .map_err(|e| WebError::Internal(format!("report renderer: {e}")))?
            .map_err(report_error)?;
    audit(
        &state,
        &t.me,
        Some(&t),
        "report.export",
        ("report", None),
        json!({"format": format.as_str(), "spec": spec, "from": report.from, "to": report.to, "bytes": bytes.len()}),
    )
    .await?;
    Ok(download(bytes, format.content_type(), &name))
}

/// `GET /reports/readings?gateway&device&from&to&format=csv|csv-br|xlsx`: raw readings, written
/// to a temporary file page by page and streamed from it (memory does not grow with the rows).
async fn readings(
    State(state): State<AppState>,
    Viewer(t): Viewer,
    RawQuery(q): RawQuery,
) -> WebResult<Response> {
    let raw = q.unwrap_or_default();
    let mut gateway = None;
    let mut device = None;
    let (mut from, mut to, mut format) = (String::new(), String::new(), "csv".to_owned());
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        let v = v.trim();
        match k.as_ref() {
            "gateway" if !v.is_empty() => {
                gateway = Some(Mac::parse(v).map_err(|e| WebError::BadRequest(format!("gateway: {e}")))?);
            }
            "device" if !v.is_empty() => {
                device =
                    Some(DeviceCode::parse(v).map_err(|e| WebError::BadRequest(format!("device: {e}")))?);
            }
            "from" => v.clone_into(&mut from),
            "to" => v.clone_into(&mut to),
            "format" => v.clone_into(&mut format),
            _ => {}
        }
    }
    if device.is_some() && gateway.is_none() {
        return Err(WebError::BadRequest("device: a device is chosen with its gateway".into()));
    }
    let zone = t.tenant.timezone;
    let day = |s: &str, field: &str| -> WebResult<NaiveDate> {
        s.parse().map_err(|_| WebError::BadRequest(format!("{field}: expected a date such as 2026-11-30")))
    };
    // Without dates: today, as the form offers.
    let today = Utc::now().with_timezone(&zone.tz()).date_naive().to_string();
    let or_today = |s: String| if s.is_empty() { today.clone() } else { s };
    let (first, last) = (day(&or_today(from), "from")?, day(&or_today(to), "to")?);
    let q = ReadingsQuery {
        tenant: t.tenant_id(),
        gateway,
        device: device.clone(),
        from: day_start(zone, first),
        to: end_of_day(zone, last).ok_or(WebError::BadRequest("to".into()))?,
    };
    let tmp = tempfile::NamedTempFile::new().map_err(|e| WebError::Internal(format!("export file: {e}")))?;
    let invalid = |e: ReportError| match e {
        ReportError::Invalid(m) => WebError::BadRequest(m),
        e => report_error(e),
    };
    let (rows, content_type, ext) = match format.as_str() {
        "csv" | "csv-br" => {
            let style =
                tds_reports::csv_out::CsvStyle { semicolon: format == "csv-br", bom: format == "csv-br" };
            let mut out = std::io::BufWriter::with_capacity(
                1 << 16,
                tmp.reopen().map_err(|e| WebError::Internal(e.to_string()))?,
            );
            let rows = tds_reports::export::csv(state.store(), &q, style, &mut out).await.map_err(invalid)?;
            std::io::Write::flush(&mut out).map_err(|e| WebError::Internal(e.to_string()))?;
            (rows, "text/csv; charset=utf-8", "csv")
        }
        "xlsx" => {
            let rows = tds_reports::export::xlsx(state.store(), &q, tmp.path()).await.map_err(invalid)?;
            (rows, FileFormat::Xlsx.content_type(), "xlsx")
        }
        _ => return Err(WebError::BadRequest("format: csv, csv-br or xlsx".into())),
    };
    audit(
        &state,
        &t.me,
        Some(&t),
        "readings.export",
        ("readings", None),
        json!({"format": format, "gateway": gateway.map(|m| m.to_string()), "device": device.map(|d| d.to_string()),
            "from": first, "to": last, "rows": rows}),
    )
    .await?;
    // Opened, then unlinked: the file lives as long as the stream reading it.
    let file = tokio::fs::File::open(tmp.path()).await.map_err(|e| WebError::Internal(e.to_string()))?;
    drop(tmp);
    let stream = futures_util::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt as _;
        let mut buf = vec![0_u8; 1 << 16];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(buf)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    let name = format!("readings-{first}-{last}.{ext}");
    Ok(download(Body::from_stream(stream), content_type, &name))
}
