//! `GET /api/v1/consumption`: consumption per hour, day, ISO week or month of the tenant's zone,
//! from the rollups, for a device, a gateway, a medium or the whole tenant, with each bucket's
//! completeness (readings received over readings expected), as JSON or CSV.
//!
//! Weeks and months are summed from the day rollups, so that a range that starts or ends inside
//! one gives exactly the days asked for. Devices are summed per medium and unit (units are
//! never added together); gauges have no consumption and are left out.

use super::auth::{ApiCtx, ApiViewer};
use super::body::ApiQuery;
use super::error::{ApiError, ApiResult};
use super::readings::CsvStyle;
use super::responses::ReadErrors;
use crate::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tds_domain::buckets::{bucket_start, completeness, day_start, week_start};
use tds_domain::{Bucket, DeviceCode, Mac, Medium, TimeZone};
use tds_store::devices::Device;
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
    /// `hour`, `day` (default), `week` (ISO, from Monday) or `month`, in the tenant's zone.
    pub bucket: Option<String>,
    /// First day (YYYY-MM-DD, tenant's zone), included.
    pub from: NaiveDate,
    /// Last day (YYYY-MM-DD, tenant's zone), included.
    pub to: NaiveDate,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
    /// CSV: `comma` (default) or `semicolon` (with decimal commas).
    pub delimiter: Option<String>,
    /// CSV: start with a UTF-8 byte-order mark.
    pub bom: Option<bool>,
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
    /// The gateway's MAC (scopes `device` and `gateway`).
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
    /// The bucket's first instant (UTC).
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

/// Moves a rollup's start to the start of the bucket asked for.
type Regroup = fn(TimeZone, DateTime<Utc>) -> DateTime<Utc>;
/// A series' key: gateway MAC and device code (scope device, else empty), medium, unit.
type SeriesKey = (String, String, String, String);
/// Devices summed, and the buckets by start.
type SeriesAcc = (usize, BTreeMap<DateTime<Utc>, Acc>);

#[derive(Default)]
struct Acc {
    consumption: f64,
    readings: u32,
    expected: u32,
}

impl Acc {
    fn add(&mut self, consumption: f64, readings: u32, expected: u32) {
        self.consumption += consumption;
        self.readings = self.readings.saturating_add(readings);
        self.expected = self.expected.saturating_add(expected);
    }
}

/// Consumption of a scope over whole days of the tenant's zone.
#[utoipa::path(get, path = "/api/v1/consumption", operation_id = "get_consumption", tag = "consumption", params(ConsumptionParams),
    responses(
        (status = 200, description = "The consumption (JSON), or as CSV (`format=csv`) with the columns \
            gateway_mac, device_code, medium, unit, bucket_start_local, bucket_start_utc, consumption, readings, \
            expected, completeness",
            content((ConsumptionOut = "application/json"), (String = "text/csv"))),
        ReadErrors))]
pub async fn get(
    State(state): State<AppState>,
    ApiViewer(ctx): ApiViewer,
    ApiQuery(q): ApiQuery<ConsumptionParams>,
) -> ApiResult<Response> {
    let bucket = q.bucket.as_deref().unwrap_or("day");
    let (granularity, regroup): (Bucket, Regroup) = match bucket {
        "hour" => (Bucket::Hour, |_, t| t),
        "day" => (Bucket::Day, |_, t| t),
        "week" => (Bucket::Day, week_start),
        "month" => (Bucket::Day, |tz, t| bucket_start(tz, Bucket::Month, t)),
        _ => return Err(ApiError::bad_param("bucket", "bucket must be hour, day, week or month")),
    };
    if q.to < q.from {
        return Err(ApiError::bad_param("to", "to is before from"));
    }
    let max_days = i64::from(state.config().max_range_days);
    if (q.to - q.from).num_days() >= max_days {
        return Err(ApiError::bad_param("to", format!("at most {max_days} days at a time")));
    }
    let format = q.format.as_deref().unwrap_or("json");
    if !matches!(format, "json" | "csv") {
        return Err(ApiError::bad_param("format", "format must be json or csv"));
    }
    let style = CsvStyle::from_params(q.delimiter.as_deref(), q.bom)?;
    let tz = ctx.tenant.timezone;
    let (devices, per_device) = devices(&state, &ctx, &q).await?;
    let start = day_start(tz, q.from);
    let end = day_start(tz, q.to.succ_opt().ok_or_else(|| ApiError::bad_param("to", "too far"))?);
    let ids: Vec<_> = devices.iter().map(|(_, d)| d.id).collect();
    let mut series: BTreeMap<SeriesKey, SeriesAcc> = BTreeMap::new();
    for (mac, d) in &devices {
        series.entry(key(per_device, *mac, d)).or_default().0 += 1;
    }
    let rollups = state.store().rollups();
    if per_device {
        let by_id: std::collections::HashMap<_, _> = devices.iter().map(|(m, d)| (d.id, (*m, d))).collect();
        for r in rollups.for_devices(ctx.tenant_id(), &ids, granularity, start, end).await? {
            let (Some(consumption), Some((mac, d))) = (r.consumption, by_id.get(&r.device_id)) else {
                continue;
            };
            let acc =
                series.entry(key(true, *mac, d)).or_default().1.entry(regroup(tz, r.start)).or_default();
            acc.add(consumption, r.count, r.expected);
        }
    } else {
        // Wider scopes are added up by the database: one row per medium, unit and bucket.
        for b in rollups.sum_for_devices(ctx.tenant_id(), &ids, granularity, start, end).await? {
            let k = (String::new(), String::new(), b.medium.as_str().to_owned(), b.unit.clone());
            series.entry(k).or_default().1.entry(regroup(tz, b.start)).or_default().add(
                b.consumption,
                b.readings,
                b.expected,
            );
        }
    }
    let zone = tz.tz();
    let series: Vec<Series> = series
        .into_iter()
        .map(|((gateway, device, medium, unit), (count, buckets))| Series {
            gateway: Some(gateway).filter(|g| !g.is_empty()),
            device: Some(device).filter(|d| !d.is_empty()),
            medium,
            unit,
            devices: count,
            total: buckets.values().map(|a| a.consumption).sum(),
            buckets: buckets
                .into_iter()
                .map(|(start, a)| BucketOut {
                    start,
                    local_start: start
                        .with_timezone(&zone)
                        .naive_local()
                        .format("%Y-%m-%dT%H:%M:%S")
                        .to_string(),
                    consumption: a.consumption,
                    readings: a.readings,
                    expected: a.expected,
                    completeness: completeness(a.readings, a.expected),
                })
                .collect(),
        })
        .collect();
    let out = ConsumptionOut {
        scope: q.scope.clone(),
        bucket: bucket.to_owned(),
        timezone: tz.to_string(),
        from: q.from,
        to: q.to,
        series,
    };
    if format == "csv" { csv(&out, style) } else { Ok(Json(out).into_response()) }
}

fn key(per_device: bool, mac: Mac, d: &Device) -> SeriesKey {
    let (gateway, device) =
        if per_device { (mac.to_string(), d.code.to_string()) } else { (String::new(), String::new()) };
    (gateway, device, d.medium.as_str().to_owned(), d.unit.to_string())
}

/// The scope's counting devices with their gateway's MAC, and whether each is its own series.
async fn devices(
    state: &AppState,
    ctx: &ApiCtx,
    q: &ConsumptionParams,
) -> ApiResult<(Vec<(Mac, Device)>, bool)> {
    let store = state.store();
    let gateway = |required: bool| async move {
        match q.gateway.as_deref() {
            Some(mac) => {
                let mac = Mac::parse(mac).map_err(|e| ApiError::bad_param("gateway", e.to_string()))?;
                Ok(Some(store.gateways().by_mac(ctx.tenant_id(), mac).await?))
            }
            None if required => Err(ApiError::bad_param("gateway", "this scope needs gateway")),
            None => Ok(None),
        }
    };
    let counting = |d: &Device| d.kind != tds_domain::MeasurementKind::Gauge;
    match q.scope.as_str() {
        "device" => {
            let g = gateway(true).await?.ok_or(ApiError::NotFound)?;
            let code = q
                .device
                .as_deref()
                .ok_or_else(|| ApiError::bad_param("device", "scope device needs device"))?;
            let code = DeviceCode::parse(code).map_err(|e| ApiError::bad_param("device", e.to_string()))?;
            let d = store.devices().by_code(ctx.tenant_id(), g.id, &code).await?;
            Ok((vec![(g.mac, d)], true))
        }
        "gateway" => {
            let g = gateway(true).await?.ok_or(ApiError::NotFound)?;
            let all = store.devices().list_for_gateway(ctx.tenant_id(), g.id, true).await?;
            Ok((all.into_iter().filter(counting).map(|d| (g.mac, d)).collect(), false))
        }
        "medium" | "tenant" => {
            let medium = match (q.scope.as_str(), q.medium.as_deref()) {
                ("medium", None) => return Err(ApiError::bad_param("medium", "scope medium needs medium")),
                (_, Some(m)) => {
                    Some(Medium::parse(m).map_err(|e| ApiError::bad_param("medium", e.to_string()))?)
                }
                (_, None) => None,
            };
            let all = store.devices().list_with_archived(ctx.tenant_id()).await?;
            let macs: std::collections::HashMap<_, _> =
                store.gateways().all(ctx.tenant_id()).await?.into_iter().map(|g| (g.id, g.mac)).collect();
            Ok((
                all.into_iter()
                    .filter(|d| counting(d) && medium.is_none_or(|m| d.medium == m))
                    .filter_map(|d| macs.get(&d.gateway_id).map(|m| (*m, d)))
                    .collect(),
                false,
            ))
        }
        _ => Err(ApiError::bad_param("scope", "scope must be device, gateway, medium or tenant")),
    }
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
