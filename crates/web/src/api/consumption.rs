//! `GET /api/v1/consumption`: consumption per hour, day, ISO week or month of the tenant's zone
//! (billing months when the tenant has a billing day), from the rollups, for one or several
//! devices, a gateway, a medium or the whole tenant, with each bucket's completeness (readings
//! received over readings expected), as JSON or CSV, or as the report's XLSX or PDF.
//!
//! The figures are the reports crate's ([`tds_reports::query`]): the same code as `tds report`
//! and the Relatórios page. Every bucket of the range is listed, an empty one too (0 readings of
//! those expected: incomplete, never left out). Devices are summed per medium and unit (units
//! are never added together); gauges have no consumption and are left out.

use super::auth::{ApiCtx, ApiViewer};
use super::body::ApiQuery;
use super::error::{ApiError, ApiResult};
use super::readings::{CsvStyle, csv_style};
use super::responses::ReadErrors;
use crate::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use tds_domain::{DeviceCode, Mac, Medium};
use tds_reports::query::{ConsumptionQuery, consumption};
use tds_reports::{DayRange, Lang, ReportBucket, ReportError, ReportRequest, Scope};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConsumptionParams {
    /// `device` (needs `gateway` and `device`), `gateway` (needs `gateway`), `medium` (needs
    /// `medium`) or `tenant`.
    pub scope: String,
    /// The gateway's MAC.
    pub gateway: Option<String>,
    /// The device's code within the gateway.
    pub device: Option<String>,
    /// `water`, `energy`, `gas`, …
    pub medium: Option<String>,
    /// `hour`, `day` (default), `week` (ISO, from Monday) or `month` (from the tenant's billing
    /// day when it has one), in the tenant's zone.
    pub bucket: Option<String>,
    /// First day (YYYY-MM-DD, tenant's zone), included.
    pub from: NaiveDate,
    /// Last day (YYYY-MM-DD, tenant's zone), included.
    pub to: NaiveDate,
    /// `json` (default), `csv`, `xlsx` or `pdf` (the consumption report).
    pub format: Option<String>,
    /// CSV: `comma` (default) or `semicolon` (with decimal commas).
    pub delimiter: Option<String>,
    /// CSV: start with a UTF-8 byte-order mark.
    pub bom: Option<bool>,
    /// XLSX and PDF: `pt-BR` (default) or `en`.
    pub lang: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConsumptionOut {
    pub scope: String,
    pub bucket: String,
    /// The zone the days and buckets are in.
    pub timezone: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub series: Vec<Series>,
}

/// One device's buckets (scope `device`), or the sum of the scope's devices of one medium and
/// unit.
#[derive(Debug, Serialize, ToSchema)]
pub struct Series {
    /// The gateway's MAC (scope `device`).
    pub gateway: Option<String>,
    /// The device's code (scope `device`).
    pub device: Option<String>,
    pub medium: String,
    pub unit: String,
    /// Devices summed.
    pub devices: usize,
    pub total: f64,
    pub buckets: Vec<BucketOut>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BucketOut {
    /// The bucket's first instant (UTC): a week's Monday or a month's first day even when the
    /// range starts later (the figures then hold the range's days only).
    pub start: DateTime<Utc>,
    /// The same instant on the tenant's clock, without offset (`2026-11-01T00:00:00`).
    pub local_start: String,
    pub consumption: f64,
    pub readings: u32,
    /// Readings the gateways' reporting intervals promise in the bucket.
    pub expected: u32,
    /// `readings / expected`, at most 1; `null` when nothing was expected.
    pub completeness: Option<f64>,
}

fn report_error(e: ReportError) -> ApiError {
    match e {
        ReportError::NotFound(_) => ApiError::NotFound,
        ReportError::Invalid(m) => ApiError::bad_param("to", m),
        ReportError::Store(e) => e.into(),
        e => ApiError::Internal(e.to_string()),
    }
}

/// The scope of the query parameters.
fn scope(q: &ConsumptionParams) -> ApiResult<Scope> {
    let gateway = || -> ApiResult<Mac> {
        let mac =
            q.gateway.as_deref().ok_or_else(|| ApiError::bad_param("gateway", "this scope needs gateway"))?;
        Mac::parse(mac).map_err(|e| ApiError::bad_param("gateway", e.to_string()))
    };
    match q.scope.as_str() {
        "device" => {
            let mac = gateway()?;
            let code = q
                .device
                .as_deref()
                .ok_or_else(|| ApiError::bad_param("device", "scope device needs device"))?;
            let code = DeviceCode::parse(code).map_err(|e| ApiError::bad_param("device", e.to_string()))?;
            Ok(Scope::Devices { gateway: mac, codes: vec![code] })
        }
        "gateway" => Ok(Scope::Gateway(gateway()?)),
        "medium" | "tenant" => match (q.scope.as_str(), q.medium.as_deref()) {
            ("medium", None) => Err(ApiError::bad_param("medium", "scope medium needs medium")),
            (_, Some(m)) => {
                Ok(Scope::Medium(Medium::parse(m).map_err(|e| ApiError::bad_param("medium", e.to_string()))?))
            }
            (_, None) => Ok(Scope::Tenant),
        },
        _ => Err(ApiError::bad_param("scope", "scope must be device, gateway, medium or tenant")),
    }
}

/// Consumption of a scope over whole days of the tenant's zone.
#[utoipa::path(get, path = "/api/v1/consumption", operation_id = "get_consumption", tag = "consumption", params(ConsumptionParams),
    responses(
        (status = 200, description = "The consumption (JSON), or as CSV (`format=csv`) with the columns \
            gateway_mac, device_code, medium, unit, bucket_start_local, bucket_start_utc, consumption, readings, \
            expected, completeness; or the consumption report as a workbook (`format=xlsx`) or a PDF (`format=pdf`)",
            content((ConsumptionOut = "application/json"), (String = "text/csv"),
                (Vec<u8> = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"), (Vec<u8> = "application/pdf"))),
        ReadErrors))]
pub async fn get(
    State(state): State<AppState>,
    ApiViewer(ctx): ApiViewer,
    ApiQuery(q): ApiQuery<ConsumptionParams>,
) -> ApiResult<Response> {
    let bucket_name = q.bucket.as_deref().unwrap_or("day");
    let bucket = ReportBucket::parse(bucket_name)
        .ok_or_else(|| ApiError::bad_param("bucket", "bucket must be hour, day, week or month"))?;
    if q.to < q.from {
        return Err(ApiError::bad_param("to", "to is before from"));
    }
    let max_days = i64::from(state.config().max_range_days);
    if (q.to - q.from).num_days() >= max_days {
        return Err(ApiError::bad_param("to", format!("at most {max_days} days at a time")));
    }
    let format = q.format.as_deref().unwrap_or("json");
    if !matches!(format, "json" | "csv" | "xlsx" | "pdf") {
        return Err(ApiError::bad_param("format", "format must be json, csv, xlsx or pdf"));
    }
    let style = csv_style(q.delimiter.as_deref(), q.bom)?;
    let scope = scope(&q)?;
    let range = DayRange::new(q.from, q.to, bucket).map_err(report_error)?;
    let store = state.store();
    if matches!(format, "xlsx" | "pdf") {
        let lang = match q.lang.as_deref() {
            None => Lang::PtBr,
            Some(l) => {
                Lang::parse(l).ok_or_else(|| ApiError::bad_param("lang", "lang must be pt-BR or en"))?
            }
        };
        let req = ReportRequest {
            tenant: ctx.tenant_id(),
            scope,
            range,
            bucket,
            compare: Vec::new(),
            lang,
            now: Utc::now(),
        };
        return report_file(&state, &ctx, &req, format).await;
    }
    let c = consumption(store, &ConsumptionQuery { tenant: ctx.tenant_id(), scope, range, bucket })
        .await
        .map_err(report_error)?;
    let series: Vec<Series> = c
        .series
        .iter()
        .map(|s| Series {
            gateway: s.gateway.map(|m| m.to_string()),
            device: s.device.as_ref().map(ToString::to_string),
            medium: s.medium.as_str().to_owned(),
            unit: s.unit.clone(),
            devices: s.devices,
            total: s.total().consumption,
            buckets: c
                .axis
                .periods
                .iter()
                .zip(&s.buckets)
                .map(|(p, b)| BucketOut {
                    start: p.start,
                    local_start: p.local_start.format("%Y-%m-%dT%H:%M:%S").to_string(),
                    consumption: b.consumption,
                    readings: b.readings,
                    expected: b.expected,
                    completeness: b.completeness(),
                })
                .collect(),
        })
        .collect();
    let out = ConsumptionOut {
        scope: q.scope.clone(),
        bucket: bucket_name.to_owned(),
        timezone: c.zone.to_string(),
        from: q.from,
        to: q.to,
        series,
    };
    if format == "csv" { csv(&out, style) } else { Ok(Json(out).into_response()) }
}

/// The consumption report as an XLSX or PDF download (audited: an export, SPEC §6).
async fn report_file(
    state: &AppState,
    ctx: &ApiCtx,
    req: &ReportRequest,
    format: &str,
) -> ApiResult<Response> {
    let report = tds_reports::build(state.store(), req).await.map_err(report_error)?;
    let (mime, name) = if format == "pdf" {
        ("application/pdf", "consumption.pdf")
    } else {
        ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "consumption.xlsx")
    };
    // Typesetting takes tens of milliseconds of CPU: off the async workers.
    let pdf = format == "pdf";
    let (bytes, report) = tokio::task::spawn_blocking(move || {
        let bytes = if pdf { tds_reports::pdf::render(&report) } else { tds_reports::xlsx::render(&report) };
        bytes.map(|b| (b, report))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("report renderer: {e}")))?
    .map_err(report_error)?;
    ctx.audit(
        state,
        "report.export",
        ("report", None),
        serde_json::json!({
            "format": format, "scope": report.scope, "from": report.from, "to": report.to,
            "bucket": report.bucket, "bytes": bytes.len(),
        }),
    )
    .await?;
    let mut response = bytes.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

fn csv(out: &ConsumptionOut, style: CsvStyle) -> ApiResult<Response> {
    let fail = |e: &dyn std::fmt::Display| ApiError::Internal(format!("csv: {e}"));
    let mut w = style.head_writer();
    w.write_record([
        "gateway_mac",
        "device_code",
        "medium",
        "unit",
        "bucket_start_local",
        "bucket_start_utc",
        "consumption",
        "readings",
        "expected",
        "completeness",
    ])
    .map_err(|e| fail(&e))?;
    for s in &out.series {
        for b in &s.buckets {
            w.write_record([
                s.gateway.as_deref().unwrap_or_default(),
                s.device.as_deref().unwrap_or_default(),
                &s.medium,
                &s.unit,
                &b.local_start,
                &b.start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                &style.number(b.consumption),
                &b.readings.to_string(),
                &b.expected.to_string(),
                &b.completeness.map(|c| style.number(c)).unwrap_or_default(),
            ])
            .map_err(|e| fail(&e))?;
        }
    }
    let bytes = w.into_inner().map_err(|e| fail(&e))?;
    let mut response = bytes.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"consumption.csv\""),
    );
    Ok(response)
}
