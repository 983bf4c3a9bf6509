//! `/api/v1/gateways`: list (keyset by MAC, filters), register, read, change and decommission
//! gateways, addressed by MAC. Validation is the pages' own ([`GatewayForm`]), so that a value the
//! form refuses is refused here with the same message.

use super::auth::{ApiCtx, ApiEditor, ApiViewer};
use super::body::{ApiPath, ApiQuery, JsonObject, cursor, form_errors, limit, overlay, position};
use super::error::{ApiError, ApiResult};
use super::responses::{ReadErrors, WriteErrors};
use crate::AppState;
use crate::forms::{FieldErrors, field};
use crate::i18n::Lang;
use crate::routes::gateways::GatewayForm;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tds_domain::{GatewayStatus, Mac};
use tds_store::gateways::{Connection, Gateway, GatewayFilter};
use utoipa::{IntoParams, ToSchema};

/// A gateway as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct GatewayOut {
    /// The gateway's identity (its certificate's CN), `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    pub code: String,
    pub name: String,
    pub description: String,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub model: Option<String>,
    pub serial_number: Option<String>,
    pub device_id: Option<String>,
    pub hardware_version: Option<String>,
    pub firmware_version: Option<String>,
    pub max_devices: i64,
    pub expected_interval_s: i64,
    /// `pre_registered`, `active` or `decommissioned`.
    pub status: String,
    /// `online`, `offline` or `never_connected`.
    pub connection: String,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Gateway> for GatewayOut {
    fn from(g: &Gateway) -> Self {
        Self {
            mac: g.mac.to_string(),
            code: g.code.to_string(),
            name: g.name.to_string(),
            description: g.description.clone(),
            latitude: g.position.map(|p| p.latitude),
            longitude: g.position.map(|p| p.longitude),
            model: g.model.clone(),
            serial_number: g.serial_number.clone(),
            device_id: g.device_id.clone(),
            hardware_version: g.hardware_version.clone(),
            firmware_version: g.firmware_version.clone(),
            max_devices: g.max_devices,
            expected_interval_s: g.expected_interval_s,
            status: g.status.as_str().to_owned(),
            connection: connection_name(g.connection()).to_owned(),
            last_seen_at: g.last_seen_at,
            created_at: g.created_at,
            updated_at: g.updated_at,
        }
    }
}

fn connection_name(c: Connection) -> &'static str {
    match c {
        Connection::Online => "online",
        Connection::Offline => "offline",
        Connection::NeverConnected => "never_connected",
    }
}

/// A page of gateways.
#[derive(Debug, Serialize, ToSchema)]
pub struct GatewayPage {
    pub items: Vec<GatewayOut>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GatewayListParams {
    /// Code, name or MAC contains this (case-insensitive).
    pub q: Option<String>,
    /// `pre_registered`, `active`, `decommissioned`.
    pub status: Option<String>,
    /// `online`, `offline`, `never_connected`.
    pub connection: Option<String>,
    /// Items per page, 1 to 1000 (100).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// What registering a gateway takes (MAC, code and name are required).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct GatewayCreate {
    #[schema(pattern = "^[0-9a-fA-F]{2}([:-]?[0-9a-fA-F]{2}){5}$", example = "02:5d:00:00:00:01")]
    pub mac: String,
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$", example = "BLOCO-A")]
    pub code: String,
    #[schema(min_length = 1, max_length = 120, example = "Bloco A")]
    pub name: String,
    pub description: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub model: Option<String>,
    pub serial_number: Option<String>,
    pub device_id: Option<String>,
    pub hardware_version: Option<String>,
    pub firmware_version: Option<String>,
    /// Active devices allowed, 1 to 32 (default 8).
    #[schema(minimum = 1, maximum = 32)]
    pub max_devices: Option<i64>,
    /// Seconds between the gateway's batches (default 900).
    #[schema(minimum = 10, maximum = 86400)]
    pub expected_interval_s: Option<i64>,
}

/// What a change takes: any of these fields; `null` clears an optional one. The MAC cannot change.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct GatewayPatch {
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")]
    pub code: Option<String>,
    #[schema(min_length = 1, max_length = 120)]
    pub name: Option<String>,
    pub description: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub model: Option<String>,
    pub serial_number: Option<String>,
    pub device_id: Option<String>,
    pub hardware_version: Option<String>,
    pub firmware_version: Option<String>,
    pub max_devices: Option<i64>,
    pub expected_interval_s: Option<i64>,
}

/// The MAC of a path, refused with 400 when it is not one.
pub fn path_mac(mac: &str) -> ApiResult<Mac> {
    Mac::parse(mac).map_err(|e| ApiError::BadRequest {
        code: "invalid_path",
        message: e.to_string(),
        field: Some("mac".into()),
    })
}

/// The tenant's gateway of that MAC (404 for another tenant's).
pub async fn find(state: &AppState, ctx: &ApiCtx, mac: &str) -> ApiResult<Gateway> {
    Ok(state.store().gateways().by_mac(ctx.tenant_id(), path_mac(mac)?).await?)
}

/// The tenant's gateways, in MAC order.
#[utoipa::path(get, path = "/api/v1/gateways", operation_id = "list_gateways", tag = "gateways", params(GatewayListParams),
    responses((status = 200, description = "A page of gateways", body = GatewayPage), ReadErrors))]
pub async fn list(
    State(state): State<AppState>,
    ApiViewer(ctx): ApiViewer,
    ApiQuery(q): ApiQuery<GatewayListParams>,
) -> ApiResult<Json<GatewayPage>> {
    let limit = limit(q.limit)?;
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(GatewayStatus::parse(s).map_err(|e| ApiError::bad_param("status", e.to_string()))?),
    };
    let connection = match q.connection.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some("online") => Some(Connection::Online),
        Some("offline") => Some(Connection::Offline),
        Some("never_connected") => Some(Connection::NeverConnected),
        Some(_) => {
            return Err(ApiError::bad_param(
                "connection",
                "connection must be online, offline or never_connected",
            ));
        }
    };
    let after = match position("gateways", q.cursor.as_deref())? {
        None => None,
        Some(p) => Some(Mac::parse(&p).map_err(|_| ApiError::bad_param("cursor", "bad cursor"))?),
    };
    let filter = GatewayFilter { search: q.q.filter(|s| !s.trim().is_empty()), status, connection };
    let found = state.store().gateways().page_by_mac(ctx.tenant_id(), &filter, after, limit + 1).await?;
    Ok(Json(page(&found, limit)))
}

fn page(found: &[Gateway], limit: i64) -> GatewayPage {
    let more = found.len() as i64 > limit;
    let items: Vec<GatewayOut> = found.iter().take(limit as usize).map(GatewayOut::from).collect();
    let next_cursor = more.then(|| items.last().map(|g| cursor("gateways", &g.mac))).flatten();
    GatewayPage { items, next_cursor }
}

/// Registers a gateway (pre-registered until it connects).
#[utoipa::path(post, path = "/api/v1/gateways", operation_id = "create_gateway", tag = "gateways", request_body = GatewayCreate,
    responses((status = 201, description = "The gateway", body = GatewayOut), WriteErrors))]
pub async fn create(
    State(state): State<AppState>,
    ApiEditor(ctx): ApiEditor,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<GatewayOut>)> {
    let form = overlay(&GatewayForm::blank(), body, &[], &[])?;
    let mut errors = FieldErrors::default();
    let mac = field(&mut errors, Lang::En, "mac", Mac::parse(&form.mac));
    let fields = form.parse(Lang::En, &mut errors);
    let (Some(mac), Some(fields)) = (mac, fields) else { return Err(form_errors(&errors, &[])) };
    let g = state.store().gateways().create(ctx.tenant_id(), mac, &fields, ctx.user_id()).await?;
    ctx.audit(
        &state,
        "gateway.created",
        ("gateway", Some(g.mac.to_string())),
        json!({"code": g.code.to_string()}),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(GatewayOut::from(&g))))
}

/// One gateway.
#[utoipa::path(get, path = "/api/v1/gateways/{mac}", operation_id = "get_gateway", tag = "gateways",
    params(("mac" = String, Path, description = "The gateway's MAC", pattern = "^[0-9a-fA-F]{2}([:-]?[0-9a-fA-F]{2}){5}$")),
    responses((status = 200, description = "The gateway", body = GatewayOut), ReadErrors))]
pub async fn show(
    State(state): State<AppState>,
    ApiViewer(ctx): ApiViewer,
    ApiPath(mac): ApiPath<String>,
) -> ApiResult<Json<GatewayOut>> {
    Ok(Json(GatewayOut::from(&find(&state, &ctx, &mac).await?)))
}

/// Changes a gateway's attributes (any subset).
#[utoipa::path(patch, path = "/api/v1/gateways/{mac}", operation_id = "update_gateway", tag = "gateways", request_body = GatewayPatch,
    params(("mac" = String, Path, description = "The gateway's MAC", pattern = "^[0-9a-fA-F]{2}([:-]?[0-9a-fA-F]{2}){5}$")),
    responses((status = 200, description = "The gateway", body = GatewayOut), WriteErrors))]
pub async fn update(
    State(state): State<AppState>,
    ApiEditor(ctx): ApiEditor,
    ApiPath(mac): ApiPath<String>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<GatewayOut>> {
    let g = find(&state, &ctx, &mac).await?;
    let form = overlay(&GatewayForm::from_gateway(&g), body, &[], &["mac"])?;
    let mut errors = FieldErrors::default();
    let Some(fields) = form.parse(Lang::En, &mut errors) else { return Err(form_errors(&errors, &[])) };
    let g = state.store().gateways().update(ctx.tenant_id(), g.id, &fields).await?;
    ctx.audit(&state, "gateway.updated", ("gateway", Some(g.mac.to_string())), json!({})).await?;
    Ok(Json(GatewayOut::from(&g)))
}

/// Decommissions a gateway for good: it can no longer connect; its devices and readings stay.
#[utoipa::path(delete, path = "/api/v1/gateways/{mac}", operation_id = "decommission_gateway", tag = "gateways",
    params(("mac" = String, Path, description = "The gateway's MAC", pattern = "^[0-9a-fA-F]{2}([:-]?[0-9a-fA-F]{2}){5}$")),
    responses((status = 200, description = "The gateway", body = GatewayOut), WriteErrors))]
pub async fn decommission(
    State(state): State<AppState>,
    ApiEditor(ctx): ApiEditor,
    ApiPath(mac): ApiPath<String>,
) -> ApiResult<Json<GatewayOut>> {
    let g = find(&state, &ctx, &mac).await?;
    if g.status == GatewayStatus::Decommissioned {
        return Err(ApiError::Conflict {
            message: "the gateway is already decommissioned".into(),
            field: None,
        });
    }
    state.store().gateways().decommission(ctx.tenant_id(), g.id).await?;
    ctx.audit(&state, "gateway.decommissioned", ("gateway", Some(g.mac.to_string())), json!({})).await?;
    let g = state.store().gateways().get(ctx.tenant_id(), g.id).await?;
    Ok(Json(GatewayOut::from(&g)))
}
