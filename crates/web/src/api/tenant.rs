//! `GET /api/v1/tenant`: the token's tenant, its limits and what it uses of them.

use super::auth::ApiViewer;
use super::error::ApiResult;
use super::responses::ReadErrors;
use crate::AppState;
use axum::Json;
use axum::extract::State;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantOut {
    pub id: i64,
    pub name: String,
    /// IANA zone: days, months and reports are in it.
    pub timezone: String,
    pub plan: String,
    pub active: bool,
    pub licence_valid_until: Option<NaiveDate>,
    /// Days raw readings are kept (0: for ever).
    pub retention_days: i64,
    /// The role of the caller in this tenant.
    pub role: String,
    pub limits: Limits,
    pub usage: Usage,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Limits {
    pub max_gateways: i64,
    pub max_devices: i64,
    pub max_users: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Usage {
    pub gateways: i64,
    pub active_devices: i64,
    pub users: i64,
}

/// The token's tenant.
#[utoipa::path(get, path = "/api/v1/tenant", operation_id = "get_tenant", tag = "tenant",
    responses((status = 200, description = "The tenant", body = TenantOut), ReadErrors))]
pub async fn get(State(state): State<AppState>, ApiViewer(ctx): ApiViewer) -> ApiResult<Json<TenantOut>> {
    let t = &ctx.tenant;
    let usage = state.store().tenants().usage(t.id).await?;
    Ok(Json(TenantOut {
        id: t.id.get(),
        name: t.name.to_string(),
        timezone: t.timezone.to_string(),
        plan: t.plan.clone(),
        active: t.active,
        licence_valid_until: t.licence_valid_until,
        retention_days: t.retention_days,
        role: ctx.role.as_str().to_owned(),
        limits: Limits {
            max_gateways: t.limits.max_gateways,
            max_devices: t.limits.max_devices,
            max_users: t.limits.max_users,
        },
        usage: Usage { gateways: usage.gateways, active_devices: usage.active_devices, users: usage.users },
        created_at: t.created_at,
    }))
}
