//! `/api/v1/staff/tenants`: the platform's tenants through a staff token (SPEC §7, issue 15):
//! list them with their usage, create one, change its activation, licence, limits and
//! retention. A staff token is a kind apart ([`tds_store::staff_tokens`]): it works here and
//! nowhere else, and a tenant's token is refused here (403). Validation is the staff console's
//! own ([`TenantForm`]); every write is in the audit log as `staff token NAME`.

use super::body::{ApiPath, JsonObject, form_errors, overlay};
use super::error::{ApiError, ApiResult};
use super::responses::{ReadErrors, WriteErrors};
use super::tenant::{Limits, Usage};
use crate::AppState;
use crate::auth::ClientIp;
use crate::forms::{FieldErrors, field, optional};
use crate::i18n::Lang;
use crate::routes::staff::TenantForm;
use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tds_domain::{Cnpj, Name, TenantId, TimeZone};
use tds_store::audit::NewAuditEntry;
use tds_store::staff_tokens::StaffToken;
use tds_store::tenants::{NewTenant, Tenant};
use utoipa::ToSchema;

/// A request made with a live staff token.
#[derive(Debug, Clone)]
pub struct ApiStaff {
    pub token: StaffToken,
    pub ip: String,
}

impl FromRequestParts<AppState> for ApiStaff {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let ip = ClientIp::from_request_parts(parts, state).await.map_or_else(|e| match e {}, |c| c.0);
        let header =
            parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let Some(secret) = header.strip_prefix("Bearer ").map(str::trim) else {
            return Err(ApiError::Unauthorized("expected `Authorization: Bearer tds_staff_…`"));
        };
        if !secret.starts_with(crate::api_token::STAFF_SCHEME) {
            return Err(if secret.starts_with(crate::api_token::SCHEME) {
                ApiError::Forbidden("staff operations need a staff token")
            } else {
                ApiError::Unauthorized("expected `Authorization: Bearer tds_staff_…`")
            });
        }
        let now = Utc::now();
        let tokens = state.store().staff_tokens();
        let token = match tokens.staff_authenticate(&crate::api_token::hash(secret), now).await {
            Ok(t) => t,
            Err(tds_store::StoreError::NotFound) => {
                return Err(ApiError::Unauthorized("unknown, revoked or expired staff token"));
            }
            Err(e) => return Err(e.into()),
        };
        if token.last_used_at.is_none_or(|t| now - t > Duration::minutes(1)) {
            tokens.staff_mark_used(token.id, now).await?;
        }
        state
            .api_limiter()
            .check(&format!("staff:{}", token.id))
            .map_err(|retry_after_s| ApiError::RateLimited { retry_after_s })?;
        Ok(Self { token, ip })
    }
}

impl ApiStaff {
    async fn audit(&self, state: &AppState, tenant: TenantId, action: &str, detail: Value) -> ApiResult<()> {
        state
            .store()
            .audit()
            .record(&NewAuditEntry {
                tenant_id: Some(tenant),
                user_id: None,
                actor: format!("staff token {}", self.token.name),
                action: action.to_owned(),
                object_kind: "tenant".to_owned(),
                object_id: Some(tenant.to_string()),
                detail: detail.to_string(),
                ip: Some(self.ip.clone()),
            })
            .await?;
        Ok(())
    }
}

/// A tenant as the staff see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct StaffTenantOut {
    pub id: i64,
    pub name: String,
    pub cnpj: Option<String>,
    pub timezone: String,
    pub plan: String,
    /// An inactive tenant's users, tokens and gateways are all refused.
    pub active: bool,
    pub licence_valid_until: Option<NaiveDate>,
    /// Days raw readings are kept (0: for ever).
    pub retention_days: i64,
    pub limits: Limits,
    pub usage: Usage,
    pub created_at: DateTime<Utc>,
}

async fn out(state: &AppState, t: &Tenant) -> ApiResult<StaffTenantOut> {
    let usage = state.store().tenants().usage(t.id).await?;
    Ok(StaffTenantOut {
        id: t.id.get(),
        name: t.name.to_string(),
        cnpj: t.cnpj.clone(),
        timezone: t.timezone.to_string(),
        plan: t.plan.clone(),
        active: t.active,
        licence_valid_until: t.licence_valid_until,
        retention_days: t.retention_days,
        limits: Limits {
            max_gateways: t.limits.max_gateways,
            max_devices: t.limits.max_devices,
            max_users: t.limits.max_users,
        },
        usage: Usage { gateways: usage.gateways, active_devices: usage.active_devices, users: usage.users },
        created_at: t.created_at,
    })
}

/// A new tenant: `name` is required; the rest have defaults (São Paulo, standard limits, no
/// licence end, 730 days of raw readings).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct StaffTenantCreate {
    pub name: String,
    pub cnpj: Option<String>,
    pub timezone: Option<String>,
    pub max_gateways: Option<i64>,
    pub max_devices: Option<i64>,
    pub max_users: Option<i64>,
    pub licence_valid_until: Option<NaiveDate>,
    pub retention_days: Option<i64>,
    pub active: Option<bool>,
}

/// A change of what the staff decide: any of these; `licence_valid_until: null` removes the end.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct StaffTenantPatch {
    pub active: Option<bool>,
    pub max_gateways: Option<i64>,
    pub max_devices: Option<i64>,
    pub max_users: Option<i64>,
    pub licence_valid_until: Option<NaiveDate>,
    pub retention_days: Option<i64>,
}

/// Moves `active` (a JSON boolean) from the body onto the form.
fn take_active(body: &mut serde_json::Map<String, Value>, form: &mut TenantForm) -> ApiResult<()> {
    match body.remove("active") {
        None => Ok(()),
        Some(Value::Bool(on)) => {
            form.active = on.then(|| "on".to_owned());
            Ok(())
        }
        Some(_) => Err(ApiError::invalid("active", "active must be true or false")),
    }
}

/// Every tenant with its usage.
#[utoipa::path(get, path = "/api/v1/staff/tenants", operation_id = "staff_list_tenants", tag = "staff",
    responses((status = 200, description = "The tenants", body = Vec<StaffTenantOut>), ReadErrors))]
pub async fn list(State(state): State<AppState>, _: ApiStaff) -> ApiResult<Json<Vec<StaffTenantOut>>> {
    let mut found = Vec::new();
    for t in state.store().tenants().staff_list().await? {
        found.push(out(&state, &t).await?);
    }
    Ok(Json(found))
}

/// Creates a tenant.
#[utoipa::path(post, path = "/api/v1/staff/tenants", operation_id = "staff_create_tenant", tag = "staff",
    request_body = StaffTenantCreate,
    responses((status = 201, description = "The tenant", body = StaffTenantOut), WriteErrors))]
pub async fn create(
    State(state): State<AppState>,
    staff: ApiStaff,
    JsonObject(mut body): JsonObject,
) -> ApiResult<(StatusCode, Json<StaffTenantOut>)> {
    let mut blank = TenantForm::blank();
    take_active(&mut body, &mut blank)?;
    let form = overlay(&blank, body, &[], &[])?;
    let lang = Lang::En;
    let mut errors = FieldErrors::default();
    let name = field(&mut errors, lang, "name", Name::parse("name", &form.name));
    let cnpj = match optional(&form.cnpj) {
        None => Some(None),
        Some(c) => field(&mut errors, lang, "cnpj", Cnpj::parse(&c)).map(Some),
    };
    let timezone = field(&mut errors, lang, "timezone", TimeZone::parse(&form.timezone));
    let limits = form.limits(lang, &mut errors);
    let licence = form.licence(lang, &mut errors);
    let retention = form.retention(lang, &mut errors);
    let (Some(name), Some(cnpj), Some(timezone), Some(limits), Some(licence_valid_until), Some(retention)) =
        (name, cnpj, timezone, limits, licence, retention)
    else {
        return Err(form_errors(&errors, &[]));
    };
    let new = NewTenant {
        name,
        cnpj,
        timezone,
        plan: "standard".into(),
        limits,
        licence_valid_until,
        created_by: None,
    };
    let tenants = state.store().tenants();
    let t = tenants.staff_create(&new).await.map_err(|e| match e {
        tds_store::StoreError::Conflict(m) => ApiError::Conflict { message: m, field: Some("name".into()) },
        e => e.into(),
    })?;
    tenants.staff_set_retention(t.id, retention).await?;
    if form.active.is_none() {
        tenants.staff_set_active(t.id, false).await?;
    }
    staff.audit(&state, t.id, "staff.tenant_created", json!({"name": t.name.as_str()})).await?;
    let t = tenants.get(t.id).await?;
    Ok((StatusCode::CREATED, Json(out(&state, &t).await?)))
}

/// One tenant.
#[utoipa::path(get, path = "/api/v1/staff/tenants/{id}", operation_id = "staff_get_tenant", tag = "staff",
    params(("id" = i64, Path, description = "The tenant's id")),
    responses((status = 200, description = "The tenant", body = StaffTenantOut), ReadErrors))]
pub async fn show(
    State(state): State<AppState>,
    _: ApiStaff,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<StaffTenantOut>> {
    let t = state.store().tenants().get(TenantId::new(id)).await?;
    Ok(Json(out(&state, &t).await?))
}

/// Changes a tenant's activation, licence, limits or retention.
#[utoipa::path(patch, path = "/api/v1/staff/tenants/{id}", operation_id = "staff_update_tenant", tag = "staff",
    request_body = StaffTenantPatch, params(("id" = i64, Path, description = "The tenant's id")),
    responses((status = 200, description = "The tenant", body = StaffTenantOut), WriteErrors))]
pub async fn update(
    State(state): State<AppState>,
    staff: ApiStaff,
    ApiPath(id): ApiPath<i64>,
    JsonObject(mut body): JsonObject,
) -> ApiResult<Json<StaffTenantOut>> {
    let id = TenantId::new(id);
    let tenants = state.store().tenants();
    let before = tenants.get(id).await?;
    let mut current = TenantForm::from_tenant(&before);
    take_active(&mut body, &mut current)?;
    let form = overlay(&current, body, &[], &["name", "cnpj", "timezone"])?;
    let mut errors = FieldErrors::default();
    let limits = form.limits(Lang::En, &mut errors);
    let licence = form.licence(Lang::En, &mut errors);
    let retention = form.retention(Lang::En, &mut errors);
    let (Some(limits), Some(licence), Some(retention)) = (limits, licence, retention) else {
        return Err(form_errors(&errors, &[]));
    };
    let active = form.active.is_some();
    tenants.staff_set_limits(id, limits).await?;
    tenants.staff_set_licence(id, licence).await?;
    tenants.staff_set_active(id, active).await?;
    tenants.staff_set_retention(id, retention).await?;
    staff
        .audit(
            &state,
            id,
            "staff.tenant_updated",
            json!({
                "active": {"from": before.active, "to": active},
                "licence_valid_until": {"from": before.licence_valid_until, "to": licence},
                "limits": {"from": before.limits, "to": limits},
                "retention_days": {"from": before.retention_days, "to": retention},
            }),
        )
        .await?;
    let t = tenants.get(id).await?;
    Ok(Json(out(&state, &t).await?))
}
