//! `/api/v1/gateways/{mac}/devices`: a gateway's devices, addressed by their code within it;
//! create, read, change (thresholds included) and archive. Validation is the pages' own
//! ([`DeviceForm`]); the JSON names follow SPEC §7 (`type`, `scale`).

use super::auth::{ApiEditor, ApiViewer};
use super::body::{ApiPath, ApiQuery, JsonObject, cursor, form_errors, limit, overlay, position};
use super::error::{ApiError, ApiResult};
use super::gateways::find as find_gateway;
use super::responses::{ReadErrors, WriteErrors};
use crate::AppState;
use crate::forms::FieldErrors;
use crate::i18n::Lang;
use crate::routes::devices::DeviceForm;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tds_domain::DeviceCode;
use tds_store::devices::Device;
use tds_store::gateways::Gateway;
use utoipa::{IntoParams, ToSchema};

/// The API's names for the form's fields where they differ.
const RENAMES: &[(&str, &str)] = &[("type", "device_type"), ("scale", "scale_factor")];

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceOut {
    /// The gateway's MAC.
    pub gateway: String,
    pub code: String,
    /// The device's own MAC, when it has one.
    pub mac: Option<String>,
    pub name: String,
    pub description: String,
    /// `meter`, `sensor` or `actuator`.
    #[serde(rename = "type")]
    pub device_type: String,
    /// `water`, `energy`, `gas`, …
    pub medium: String,
    /// `counter`, `interval` or `gauge`.
    pub kind: String,
    pub unit: String,
    pub scale: f64,
    pub rollover_value: Option<f64>,
    pub slave_id: Option<i64>,
    pub register: Option<i64>,
    pub mode: String,
    pub status: String,
    /// Daily consumption above which a warning is raised.
    pub alarm_daily: Option<f64>,
    /// Monthly consumption above which a warning is raised.
    pub alarm_monthly: Option<f64>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl DeviceOut {
    fn new(g: &Gateway, d: &Device) -> Self {
        Self {
            gateway: g.mac.to_string(),
            code: d.code.to_string(),
            mac: d.mac.map(|m| m.to_string()),
            name: d.name.to_string(),
            description: d.description.clone(),
            device_type: d.device_type.as_str().to_owned(),
            medium: d.medium.as_str().to_owned(),
            kind: d.kind.as_str().to_owned(),
            unit: d.unit.to_string(),
            scale: d.scale_factor,
            rollover_value: d.rollover_value,
            slave_id: d.slave_id.map(|s| i64::from(s.get())),
            register: d.register.map(|r| i64::from(r.get())),
            mode: d.mode.as_str().to_owned(),
            status: d.status.as_str().to_owned(),
            alarm_daily: d.alarm_daily,
            alarm_monthly: d.alarm_monthly,
            last_seen_at: d.last_seen_at,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DevicePage {
    pub items: Vec<DeviceOut>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeviceListParams {
    /// Items per page, 1 to 1000 (100).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A new device: `code`, `name` and, for a meter, `slave_id` and `register` are required; the
/// rest have defaults (a water counter in m³).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct DeviceCreate {
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$", example = "HID-101")]
    pub code: String,
    #[schema(min_length = 1, max_length = 120, example = "Hidrômetro 101")]
    pub name: String,
    pub mac: Option<String>,
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub device_type: Option<String>,
    pub medium: Option<String>,
    pub kind: Option<String>,
    pub unit: Option<String>,
    pub scale: Option<f64>,
    pub rollover_value: Option<f64>,
    pub slave_id: Option<i64>,
    pub register: Option<i64>,
    pub mode: Option<String>,
    pub status: Option<String>,
    pub alarm_daily: Option<f64>,
    pub alarm_monthly: Option<f64>,
}

/// A change: any of these fields; `null` clears an optional one (a threshold, say).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct DevicePatch {
    pub code: Option<String>,
    pub name: Option<String>,
    pub mac: Option<String>,
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub device_type: Option<String>,
    pub medium: Option<String>,
    pub kind: Option<String>,
    pub unit: Option<String>,
    pub scale: Option<f64>,
    pub rollover_value: Option<f64>,
    pub slave_id: Option<i64>,
    pub register: Option<i64>,
    pub mode: Option<String>,
    pub status: Option<String>,
    pub alarm_daily: Option<f64>,
    pub alarm_monthly: Option<f64>,
}

async fn find(
    state: &AppState,
    ctx: &super::auth::ApiCtx,
    mac: &str,
    code: &str,
) -> ApiResult<(Gateway, Device)> {
    let g = find_gateway(state, ctx, mac).await?;
    let code = DeviceCode::parse(code).map_err(|_| ApiError::NotFound)?;
    let d = state.store().devices().by_code(ctx.tenant_id(), g.id, &code).await?;
    Ok((g, d))
}

/// A gateway's devices (archived ones are not listed), in code order.
#[utoipa::path(get, path = "/api/v1/gateways/{mac}/devices", operation_id = "list_devices", tag = "devices", params(
    ("mac" = String, Path, description = "The gateway's MAC", pattern = "^[0-9a-fA-F]{2}([:-]?[0-9a-fA-F]{2}){5}$"), DeviceListParams),
    responses((status = 200, description = "A page of devices", body = DevicePage), ReadErrors))]
pub async fn list(
    State(state): State<AppState>,
    ApiViewer(ctx): ApiViewer,
    ApiPath(mac): ApiPath<String>,
    ApiQuery(q): ApiQuery<DeviceListParams>,
) -> ApiResult<Json<DevicePage>> {
    let limit = limit(q.limit)? as usize;
    let g = find_gateway(&state, &ctx, &mac).await?;
    let after = position("devices", q.cursor.as_deref())?;
    // A gateway has a bounded number of devices (its maximum): one read, paged here.
    let devices = state.store().devices().list_for_gateway(ctx.tenant_id(), g.id, false).await?;
    let mut rest = devices.iter().filter(|d| after.as_deref().is_none_or(|a| d.code.as_str() > a)).peekable();
    let items: Vec<DeviceOut> = rest.by_ref().take(limit).map(|d| DeviceOut::new(&g, d)).collect();
    let next_cursor = rest.peek().and(items.last()).map(|d| cursor("devices", &d.code));
    Ok(Json(DevicePage { items, next_cursor }))
}

/// Adds a device to a gateway.
#[utoipa::path(post, path = "/api/v1/gateways/{mac}/devices", operation_id = "create_device", tag = "devices", request_body = DeviceCreate,
    params(("mac" = String, Path, description = "The gateway's MAC", pattern = "^[0-9a-fA-F]{2}([:-]?[0-9a-fA-F]{2}){5}$")),
    responses((status = 201, description = "The device", body = DeviceOut), WriteErrors))]
pub async fn create(
    State(state): State<AppState>,
    ApiEditor(ctx): ApiEditor,
    ApiPath(mac): ApiPath<String>,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<DeviceOut>)> {
    let g = find_gateway(&state, &ctx, &mac).await?;
    let form = overlay(&DeviceForm::blank(), body, RENAMES, &[])?;
    let mut errors = FieldErrors::default();
    let Some(fields) = form.parse(Lang::En, &mut errors) else { return Err(form_errors(&errors, RENAMES)) };
    let d = state.store().devices().create(ctx.tenant_id(), g.id, &fields, ctx.user_id()).await?;
    ctx.audit(
        &state,
        "device.created",
        ("device", Some(d.id.to_string())),
        json!({"gateway": g.mac.to_string(), "code": d.code.to_string()}),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(DeviceOut::new(&g, &d))))
}

/// One device.
#[utoipa::path(get, path = "/api/v1/gateways/{mac}/devices/{code}", operation_id = "get_device", tag = "devices", params(
    ("mac" = String, Path, description = "The gateway's MAC", pattern = "^[0-9a-fA-F]{2}([:-]?[0-9a-fA-F]{2}){5}$"),
    ("code" = String, Path, description = "The device's code within the gateway", pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")),
    responses((status = 200, description = "The device", body = DeviceOut), ReadErrors))]
pub async fn show(
    State(state): State<AppState>,
    ApiViewer(ctx): ApiViewer,
    ApiPath((mac, code)): ApiPath<(String, String)>,
) -> ApiResult<Json<DeviceOut>> {
    let (g, d) = find(&state, &ctx, &mac, &code).await?;
    Ok(Json(DeviceOut::new(&g, &d)))
}

/// Changes a device (any subset of its fields, thresholds included).
#[utoipa::path(patch, path = "/api/v1/gateways/{mac}/devices/{code}", operation_id = "update_device", tag = "devices",
    request_body = DevicePatch, params(
    ("mac" = String, Path, description = "The gateway's MAC", pattern = "^[0-9a-fA-F]{2}([:-]?[0-9a-fA-F]{2}){5}$"),
    ("code" = String, Path, description = "The device's code within the gateway", pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")),
    responses((status = 200, description = "The device", body = DeviceOut), WriteErrors))]
pub async fn update(
    State(state): State<AppState>,
    ApiEditor(ctx): ApiEditor,
    ApiPath((mac, code)): ApiPath<(String, String)>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<DeviceOut>> {
    let (g, d) = find(&state, &ctx, &mac, &code).await?;
    let form = overlay(&DeviceForm::from_device(&d), body, RENAMES, &[])?;
    let mut errors = FieldErrors::default();
    let Some(fields) = form.parse(Lang::En, &mut errors) else { return Err(form_errors(&errors, RENAMES)) };
    let d = state.store().devices().update(ctx.tenant_id(), d.id, &fields).await?;
    ctx.audit(&state, "device.updated", ("device", Some(d.id.to_string())), json!({})).await?;
    Ok(Json(DeviceOut::new(&g, &d)))
}

/// Archives a device: it leaves the lists and frees its code; its readings stay.
#[utoipa::path(delete, path = "/api/v1/gateways/{mac}/devices/{code}", operation_id = "archive_device", tag = "devices", params(
    ("mac" = String, Path, description = "The gateway's MAC", pattern = "^[0-9a-fA-F]{2}([:-]?[0-9a-fA-F]{2}){5}$"),
    ("code" = String, Path, description = "The device's code within the gateway", pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")),
    responses((status = 204, description = "Archived"), WriteErrors))]
pub async fn archive(
    State(state): State<AppState>,
    ApiEditor(ctx): ApiEditor,
    ApiPath((mac, code)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    let (_, d) = find(&state, &ctx, &mac, &code).await?;
    state.store().devices().archive(ctx.tenant_id(), d.id).await?;
    ctx.audit(
        &state,
        "device.archived",
        ("device", Some(d.id.to_string())),
        json!({"code": d.code.to_string()}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
