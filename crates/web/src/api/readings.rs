//! `GET /api/v1/readings`: stored readings of the tenant, of one gateway or one device, over a
//! time range, as keyset-paged JSON or, with `Accept: text/csv`, as one streamed CSV of the whole
//! range (its memory does not grow with the rows: pages of [`CSV_PAGE`] are read one at a time).
//!
//! Readings come device by device (in the order devices were registered), each device's in time
//! order: every page is then a few range reads of the readings' primary key (device, time), on
//! both databases, however long the range and however many devices, with no sort.

use super::auth::{ApiCtx, ApiViewer};
use super::body::{ApiQuery, cursor, limit, position};
use super::error::{ApiError, ApiResult};
use super::responses::ReadErrors;
use crate::AppState;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use tds_domain::{DeviceCode, DeviceId, Mac};
use tds_store::readings::Reading;
use utoipa::{IntoParams, ToSchema};

/// Rows read at a time for a CSV export.
pub const CSV_PAGE: i64 = 5000;

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadingOut {
    /// The gateway's MAC.
    pub gateway: String,
    /// The device's code within the gateway.
    pub device: String,
    /// When the meter was read (UTC).
    pub time: DateTime<Utc>,
    pub value: f64,
    pub unit: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadingPage {
    pub items: Vec<ReadingOut>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReadingParams {
    /// Only this gateway's devices (MAC).
    pub gateway: Option<String>,
    /// Only this device (its code; needs `gateway`).
    pub device: Option<String>,
    /// From this instant, included (RFC 3339; default: 24 hours before `to`).
    pub from: Option<DateTime<Utc>>,
    /// Until this instant, excluded (RFC 3339; default: now).
    pub to: Option<DateTime<Utc>>,
    /// Items per page, 1 to 1000 (100). JSON only.
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page. JSON only.
    pub cursor: Option<String>,
    /// CSV: `comma` (default) or `semicolon` (with decimal commas, for spreadsheets set to
    /// Portuguese).
    pub delimiter: Option<String>,
    /// CSV: start with a UTF-8 byte-order mark (for Excel).
    pub bom: Option<bool>,
}

/// What the query selects.
struct Selection {
    /// The devices read, in id order (archived ones too: their readings stay).
    devices: Vec<DeviceId>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    /// Names of the devices, when known up front (one gateway or one device).
    labels: HashMap<DeviceId, (DeviceCode, Mac)>,
}

async fn select(state: &AppState, ctx: &ApiCtx, q: &ReadingParams) -> ApiResult<Selection> {
    let to = q.to.unwrap_or_else(Utc::now);
    let from = q.from.unwrap_or(to - Duration::hours(24));
    if from >= to {
        return Err(ApiError::bad_param("from", "from must be before to"));
    }
    let store = state.store();
    let mut labels = HashMap::new();
    let mut devices = match (q.gateway.as_deref(), q.device.as_deref()) {
        (None, None) => {
            store.devices().list_with_archived(ctx.tenant_id()).await?.into_iter().map(|d| d.id).collect()
        }
        (None, Some(_)) => {
            return Err(ApiError::bad_param("device", "device needs gateway (codes are per gateway)"));
        }
        (Some(mac), code) => {
            let mac = Mac::parse(mac).map_err(|e| ApiError::bad_param("gateway", e.to_string()))?;
            let g = store.gateways().by_mac(ctx.tenant_id(), mac).await?;
            let devices = store.devices().list_for_gateway(ctx.tenant_id(), g.id, true).await?;
            for d in &devices {
                labels.insert(d.id, (d.code.clone(), g.mac));
            }
            match code {
                None => devices.iter().map(|d| d.id).collect(),
                Some(code) => vec![
                    devices
                        .iter()
                        .filter(|d| d.archived_at.is_none())
                        .find(|d| d.code.as_str() == code)
                        .ok_or(ApiError::NotFound)?
                        .id,
                ],
            }
        }
    };
    devices.sort_unstable();
    Ok(Selection { devices, from, to, labels })
}

impl Selection {
    /// One page after `after` (the last device and time of the previous page), with every
    /// device named: each device's range read in turn until the page is full.
    async fn page(
        &mut self,
        state: &AppState,
        ctx: &ApiCtx,
        after: Option<(DeviceId, DateTime<Utc>)>,
        limit: i64,
    ) -> ApiResult<Vec<Reading>> {
        let store = state.store();
        let first = after.map_or(0, |(d, _)| self.devices.partition_point(|x| *x < d));
        let mut rows: Vec<Reading> = Vec::new();
        for &device in &self.devices[first..] {
            let from = match after {
                Some((d, t)) if d == device => t + Duration::microseconds(1),
                _ => self.from,
            };
            let want = limit - rows.len() as i64;
            if from < self.to && want > 0 {
                rows.extend(store.readings().for_device(ctx.tenant_id(), device, from, self.to, want).await?);
            }
            if rows.len() as i64 >= limit {
                break;
            }
        }
        let unknown: Vec<DeviceId> = {
            let mut ids: Vec<DeviceId> =
                rows.iter().map(|r| r.device_id).filter(|d| !self.labels.contains_key(d)).collect();
            ids.dedup();
            ids
        };
        if !unknown.is_empty() {
            self.labels.extend(store.devices().labels(ctx.tenant_id(), &unknown).await?);
        }
        Ok(rows)
    }

    fn out(&self, r: &Reading) -> ReadingOut {
        let (device, gateway) = self
            .labels
            .get(&r.device_id)
            .map_or_else(|| (String::new(), String::new()), |(c, m)| (c.to_string(), m.to_string()));
        ReadingOut { gateway, device, time: r.time, value: r.value, unit: r.unit.clone() }
    }
}

fn encode_position(r: &Reading) -> String {
    format!("{},{}", r.device_id.get(), r.time.timestamp_micros())
}

fn decode_position(p: &str) -> Option<(DeviceId, DateTime<Utc>)> {
    let (d, t) = p.split_once(',')?;
    Some((DeviceId::new(d.parse().ok()?), DateTime::from_timestamp_micros(t.parse().ok()?)?))
}

/// Readings device by device, each device's in time order, as JSON pages or one CSV
/// (`Accept: text/csv`).
#[utoipa::path(get, path = "/api/v1/readings", operation_id = "list_readings", tag = "readings", params(ReadingParams),
    responses(
        (status = 200, description = "A page of readings (JSON), or the whole range as CSV with the columns \
            gateway_mac, device_code, time_utc, time_local (tenant's zone), value, unit (`Accept: text/csv`)",
            content((ReadingPage = "application/json"), (String = "text/csv"))),
        ReadErrors))]
pub async fn list(
    State(state): State<AppState>,
    ApiViewer(ctx): ApiViewer,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ReadingParams>,
) -> ApiResult<Response> {
    let wants_csv =
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/csv"));
    let mut sel = select(&state, &ctx, &q).await?;
    if wants_csv {
        return csv(state, ctx, sel, &q);
    }
    let limit = limit(q.limit)?;
    let after = match position("readings", q.cursor.as_deref())? {
        None => None,
        Some(p) => Some(decode_position(&p).ok_or_else(|| ApiError::bad_param("cursor", "bad cursor"))?),
    };
    let rows = sel.page(&state, &ctx, after, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    let rows = &rows[..rows.len().min(limit as usize)];
    let next_cursor = more.then(|| rows.last().map(|r| cursor("readings", &encode_position(r)))).flatten();
    Ok(Json(ReadingPage { items: rows.iter().map(|r| sel.out(r)).collect(), next_cursor }).into_response())
}

/// CSV settings (SPEC §6), shared with the reports' files.
pub use tds_reports::csv_out::CsvStyle;

/// The CSV style of the `delimiter` and `bom` query parameters.
pub fn csv_style(delimiter: Option<&str>, bom: Option<bool>) -> ApiResult<CsvStyle> {
    CsvStyle::parse(delimiter, bom).map_err(|e| ApiError::bad_param("delimiter", e.to_string()))
}

/// Where a CSV export is.
struct Cursor {
    state: AppState,
    ctx: ApiCtx,
    sel: Selection,
    after: Option<(DeviceId, DateTime<Utc>)>,
    done: bool,
}

fn csv(state: AppState, ctx: ApiCtx, sel: Selection, q: &ReadingParams) -> ApiResult<Response> {
    let style = csv_style(q.delimiter.as_deref(), q.bom)?;
    let zone = ctx.tenant.timezone.tz();
    let mut head = style.head_writer();
    head.write_record(tds_reports::export::HEADER).map_err(|e| ApiError::Internal(e.to_string()))?;
    let first = Bytes::from(head.into_inner().map_err(|e| ApiError::Internal(e.to_string()))?);
    let start = Cursor { state, ctx, sel, after: None, done: false };
    let rest = futures_util::stream::unfold(start, move |mut c| async move {
        if c.done {
            return None;
        }
        let rows = match c.sel.page(&c.state, &c.ctx, c.after, CSV_PAGE).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %e, "readings export stopped");
                return Some((Err(std::io::Error::other("the export failed; see the server log")), c));
            }
        };
        c.done = (rows.len() as i64) < CSV_PAGE;
        c.after = rows.last().map(|r| (r.device_id, r.time));
        let chunk = rows_csv(&c.sel, &rows, style, zone);
        Some((chunk.map(Bytes::from), c))
    });
    let body = futures_util::StreamExt::chain(futures_util::stream::once(async { Ok(first) }), rest);
    let mut response = Body::from_stream(body).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    h.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"readings.csv\""));
    Ok(response)
}

fn rows_csv(sel: &Selection, rows: &[Reading], style: CsvStyle, zone: Tz) -> Result<Vec<u8>, std::io::Error> {
    let mut w = style.writer();
    for r in rows {
        let out = sel.out(r);
        w.write_record([
            out.gateway.as_str(),
            out.device.as_str(),
            &r.time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            &r.time.with_timezone(&zone).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            &style.number(r.value),
            &r.unit,
        ])?;
    }
    w.into_inner().map_err(|e| std::io::Error::other(e.to_string()))
}
