//! The staff console (platform staff only; everyone else gets 404): tenants (create, activate
//! or deactivate, licence date, limits), every gateway across tenants with the transfer of a
//! gateway to another tenant, and the audit log with filters. Every action is audited.

use crate::AppState;
use crate::auth::Staff;
use crate::error::{WebError, WebResult};
use crate::forms::{FieldErrors, field, optional};
use crate::i18n::Lang;
use crate::page::PageCtx;
use crate::routes::table::Routes;
use crate::routes::{PageQuery, audit, page_numbers, render, render_status};
use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use tds_domain::{Cnpj, Mac, Name, Role, TenantId, TimeZone, ValidationError};
use tds_store::audit::{AuditEntry, AuditFilter};
use tds_store::gateways::{Gateway, GatewayFilter};
use tds_store::tenants::{NewTenant, Tenant, TenantLimits, TenantUsage};
use tds_store::{Page, StoreError};

/// Bounds of a tenant's raw-reading retention (0 keeps readings for ever): less than a month
/// would delete readings before a monthly report is made; a hundred years is "for ever" anyway.
const MIN_RETENTION_DAYS: i64 = 30;
const MAX_RETENTION_DAYS: i64 = 36_500;

/// Upper bound of each tenant limit a form accepts.
const MAX_LIMIT: i64 = 1_000_000;

pub fn routes() -> Routes {
    Routes::new()
        .route("/staff", get(tenants))
        .route("/staff/tenants", post(create_tenant))
        .route("/staff/tenants/{id}", get(tenant_page).post(update_tenant))
        .route("/staff/tenants/{id}/join", post(join_tenant))
        .route("/staff/gateways", get(gateways))
        .route("/staff/gateways/{mac}/transfer", get(transfer_page).post(transfer))
        .route("/staff/audit", get(audit_log))
}

#[derive(Debug)]
pub struct TenantRow {
    pub tenant: Tenant,
    pub usage: TenantUsage,
}

#[derive(Debug, Deserialize, serde::Serialize, Default, Clone)]
pub struct TenantForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub cnpj: String,
    #[serde(default)]
    pub timezone: String,
    #[serde(default)]
    pub max_gateways: String,
    #[serde(default)]
    pub max_devices: String,
    #[serde(default)]
    pub max_users: String,
    #[serde(default)]
    pub licence_valid_until: String,
    #[serde(default)]
    pub retention_days: String,
    #[serde(default)]
    pub active: Option<String>,
}

impl TenantForm {
    pub(crate) fn blank() -> Self {
        let l = TenantLimits::default();
        Self {
            timezone: TimeZone::DEFAULT_NAME.into(),
            max_gateways: l.max_gateways.to_string(),
            max_devices: l.max_devices.to_string(),
            max_users: l.max_users.to_string(),
            retention_days: tds_store::tenants::DEFAULT_RETENTION_DAYS.to_string(),
            active: Some("on".into()),
            ..Self::default()
        }
    }

    pub(crate) fn from_tenant(t: &Tenant) -> Self {
        Self {
            name: t.name.to_string(),
            cnpj: t.cnpj.clone().unwrap_or_default(),
            timezone: t.timezone.name().into(),
            max_gateways: t.limits.max_gateways.to_string(),
            max_devices: t.limits.max_devices.to_string(),
            max_users: t.limits.max_users.to_string(),
            licence_valid_until: t.licence_valid_until.map(|d| d.to_string()).unwrap_or_default(),
            retention_days: t.retention_days.to_string(),
            active: t.active.then(|| "on".into()),
        }
    }

    pub(crate) fn limits(&self, lang: Lang, errors: &mut FieldErrors) -> Option<TenantLimits> {
        let limit = |errors: &mut FieldErrors, name: &'static str, v: &str| {
            let parsed = v
                .trim()
                .parse::<i64>()
                .map_err(|_| ValidationError::NotANumber { field: name, value: v.to_owned() })
                .and_then(|n| {
                    if (1..=MAX_LIMIT).contains(&n) {
                        Ok(n)
                    } else {
                        Err(ValidationError::out_of_range(name, n, 1, MAX_LIMIT))
                    }
                });
            field(errors, lang, name, parsed)
        };
        let g = limit(errors, "max_gateways", &self.max_gateways);
        let d = limit(errors, "max_devices", &self.max_devices);
        let u = limit(errors, "max_users", &self.max_users);
        Some(TenantLimits { max_gateways: g?, max_devices: d?, max_users: u? })
    }

    /// Days raw readings are kept: 0 (for ever) or 30 to 36,500.
    pub(crate) fn retention(&self, lang: Lang, errors: &mut FieldErrors) -> Option<i64> {
        let v = self.retention_days.trim();
        let parsed = v
            .parse::<i64>()
            .map_err(|_| ValidationError::NotANumber { field: "retention_days", value: v.to_owned() })
            .and_then(|n| {
                if n == 0 || (MIN_RETENTION_DAYS..=MAX_RETENTION_DAYS).contains(&n) {
                    Ok(n)
                } else {
                    Err(ValidationError::out_of_range(
                        "retention_days",
                        n,
                        MIN_RETENTION_DAYS,
                        MAX_RETENTION_DAYS,
                    ))
                }
            });
        field(errors, lang, "retention_days", parsed)
    }

    /// `None` when the date is invalid (the error is recorded), `Some(None)` for no end date.
    #[allow(clippy::option_option)]
    pub(crate) fn licence(&self, lang: Lang, errors: &mut FieldErrors) -> Option<Option<NaiveDate>> {
        match optional(&self.licence_valid_until) {
            None => Some(None),
            Some(d) => field(
                errors,
                lang,
                "licence_valid_until",
                NaiveDate::parse_from_str(&d, "%Y-%m-%d")
                    .map_err(|_| ValidationError::Date { value: d.clone() }),
            )
            .map(Some),
        }
    }
}

#[derive(Template)]
#[template(path = "staff/tenants.html")]
struct TenantsTemplate {
    ctx: PageCtx,
    rows: Vec<TenantRow>,
    form: TenantForm,
    errors: FieldErrors,
}

async fn tenant_rows(state: &AppState) -> WebResult<Vec<TenantRow>> {
    let mut rows = Vec::new();
    for tenant in state.store().tenants().staff_list().await? {
        let usage = state.store().tenants().usage(tenant.id).await?;
        rows.push(TenantRow { tenant, usage });
    }
    Ok(rows)
}

async fn tenants(State(state): State<AppState>, Staff(_): Staff, ctx: PageCtx) -> WebResult<Response> {
    let ctx = ctx.section("staff", "staff.tenants");
    render(
        &TenantsTemplate {
            ctx,
            rows: tenant_rows(&state).await?,
            form: TenantForm::blank(),
            errors: FieldErrors::default(),
        },
        None,
    )
}

async fn create_tenant(
    State(state): State<AppState>,
    Staff(me): Staff,
    ctx: PageCtx,
    Form(form): Form<TenantForm>,
) -> WebResult<Response> {
    let ctx = ctx.section("staff", "staff.tenants");
    let lang = ctx.lang;
    let mut errors = FieldErrors::default();
    let name = field(&mut errors, lang, "name", Name::parse("name", &form.name));
    let cnpj = match optional(&form.cnpj) {
        None => Some(None),
        Some(c) => field(&mut errors, lang, "cnpj", Cnpj::parse(&c)).map(Some),
    };
    let zone = field(&mut errors, lang, "timezone", TimeZone::parse(&form.timezone));
    let limits = form.limits(lang, &mut errors);
    let licence = form.licence(lang, &mut errors);
    if let (Some(name), Some(cnpj), Some(timezone), Some(limits), Some(licence_valid_until)) =
        (name, cnpj, zone, limits, licence)
    {
        let new = NewTenant {
            name,
            cnpj,
            timezone,
            plan: "standard".into(),
            limits,
            licence_valid_until,
            created_by: Some(me.user.id),
        };
        match state.store().tenants().staff_create(&new).await {
            Ok(t) => {
                audit(
                    &state,
                    &me,
                    None,
                    "staff.tenant_created",
                    ("tenant", Some(t.id.to_string())),
                    json!({"name": t.name.as_str()}),
                )
                .await?;
                return Ok(
                    Redirect::to(&format!("/staff/tenants/{}?done=tenant_created", t.id)).into_response()
                );
            }
            Err(StoreError::Conflict(_)) => errors.set("name", lang.t("account.name_taken")),
            Err(e) => return Err(e.into()),
        }
    }
    render_status(
        StatusCode::UNPROCESSABLE_ENTITY,
        &TenantsTemplate { ctx, rows: tenant_rows(&state).await?, form, errors },
    )
}

#[derive(Template)]
#[template(path = "staff/tenant.html")]
struct TenantTemplate {
    ctx: PageCtx,
    tenant: Tenant,
    usage: TenantUsage,
    members: Vec<tds_store::memberships::Member>,
    form: TenantForm,
    errors: FieldErrors,
    is_member: bool,
}

async fn tenant_template(
    state: &AppState,
    me: &crate::auth::CurrentUser,
    ctx: PageCtx,
    id: TenantId,
    form: Option<TenantForm>,
    errors: FieldErrors,
) -> WebResult<TenantTemplate> {
    let tenant = state.store().tenants().get(id).await?;
    let usage = state.store().tenants().usage(id).await?;
    let members = state.store().memberships().members(id).await?;
    let is_member = members.iter().any(|m| m.user.id == me.user.id);
    let ctx = ctx.section("staff", "staff.tenants").titled(tenant.name.to_string());
    Ok(TenantTemplate {
        form: form.unwrap_or_else(|| TenantForm::from_tenant(&tenant)),
        ctx,
        tenant,
        usage,
        members,
        errors,
        is_member,
    })
}

async fn tenant_page(
    State(state): State<AppState>,
    Staff(me): Staff,
    Path(id): Path<i64>,
    ctx: PageCtx,
) -> WebResult<Response> {
    render(&tenant_template(&state, &me, ctx, TenantId::new(id), None, FieldErrors::default()).await?, None)
}

/// Activation, licence date and limits (the tenant's own profile is the tenant admin's).
async fn update_tenant(
    State(state): State<AppState>,
    Staff(me): Staff,
    Path(id): Path<i64>,
    ctx: PageCtx,
    Form(form): Form<TenantForm>,
) -> WebResult<Response> {
    let id = TenantId::new(id);
    let before = state.store().tenants().get(id).await?;
    let lang = ctx.lang;
    let mut errors = FieldErrors::default();
    let limits = form.limits(lang, &mut errors);
    let licence = form.licence(lang, &mut errors);
    let retention = form.retention(lang, &mut errors);
    let (Some(limits), Some(licence), Some(retention)) = (limits, licence, retention) else {
        let page = tenant_template(&state, &me, ctx, id, Some(form), errors).await?;
        return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
    };
    let active = form.active.is_some();
    let tenants = state.store().tenants();
    tenants.staff_set_limits(id, limits).await?;
    tenants.staff_set_licence(id, licence).await?;
    tenants.staff_set_active(id, active).await?;
    tenants.staff_set_retention(id, retention).await?;
    audit(
        &state,
        &me,
        None,
        "staff.tenant_updated",
        ("tenant", Some(id.to_string())),
        json!({
            "active": {"from": before.active, "to": active},
            "licence_valid_until": {"from": before.licence_valid_until, "to": licence},
            "limits": {"from": before.limits, "to": limits},
            "retention_days": {"from": before.retention_days, "to": retention},
        }),
    )
    .await?;
    Ok(Redirect::to(&format!("/staff/tenants/{id}?done=tenant_updated")).into_response())
}

/// Makes the staff member an admin of the tenant (for support), audited like any role change.
async fn join_tenant(
    State(state): State<AppState>,
    Staff(me): Staff,
    Path(id): Path<i64>,
) -> WebResult<Response> {
    let id = TenantId::new(id);
    state.store().tenants().get(id).await?;
    match state.store().memberships().add(id, me.user.id, Role::Admin, Some(me.user.id)).await {
        Ok(()) | Err(StoreError::Conflict(_)) => {}
        Err(StoreError::Limit(_)) => return Err(WebError::BadRequest("user limit reached".into())),
        Err(e) => return Err(e.into()),
    }
    state.store().sessions().set_tenant(&me.session.token_hash, Some(id)).await?;
    audit(
        &state,
        &me,
        None,
        "staff.joined_tenant",
        ("tenant", Some(id.to_string())),
        json!({"role": "admin"}),
    )
    .await?;
    Ok(Redirect::to("/").into_response())
}

#[derive(Debug, Deserialize, Default)]
struct GatewaysQuery {
    #[serde(default)]
    q: String,
    page: Option<u32>,
}

#[derive(Template)]
#[template(path = "staff/gateways.html")]
struct GatewaysTemplate {
    ctx: PageCtx,
    gateways: Vec<Gateway>,
    tenant_names: HashMap<i64, String>,
    total: i64,
    q: String,
    page: u32,
    pages: u32,
    page_links: Vec<u32>,
}

impl GatewaysTemplate {
    fn tenant_name(&self, id: i64) -> &str {
        self.tenant_names.get(&id).map_or("?", String::as_str)
    }
}

const STAFF_PAGE: u32 = 50;

async fn gateways(
    State(state): State<AppState>,
    Staff(_): Staff,
    Query(q): Query<GatewaysQuery>,
    ctx: PageCtx,
) -> WebResult<Response> {
    let ctx = ctx.section("staff_gateways", "staff.gateways");
    let page = Page::new(q.page.unwrap_or(1), STAFF_PAGE);
    let filter = GatewayFilter { search: optional(&q.q), ..GatewayFilter::default() };
    let found = state.store().gateways().staff_list(&filter, page).await?;
    let tenant_names = state
        .store()
        .tenants()
        .staff_list()
        .await?
        .into_iter()
        .map(|t| (t.id.get(), t.name.to_string()))
        .collect();
    let (pages, page_links) = page_numbers(page.number, found.total, STAFF_PAGE);
    render(
        &GatewaysTemplate {
            ctx,
            gateways: found.items,
            tenant_names,
            total: found.total,
            q: q.q,
            page: page.number,
            pages,
            page_links,
        },
        None,
    )
}

#[derive(Template)]
#[template(path = "staff/transfer.html")]
struct TransferTemplate {
    ctx: PageCtx,
    g: Gateway,
    from: String,
    tenants: Vec<Tenant>,
    device_count: usize,
    errors: FieldErrors,
}

async fn transfer_template(
    state: &AppState,
    ctx: PageCtx,
    mac: &str,
    errors: FieldErrors,
) -> WebResult<TransferTemplate> {
    let mac = Mac::parse(mac).map_err(|_| WebError::NotFound)?;
    let g = state.store().gateways().staff_by_mac(mac).await?;
    let from = state.store().tenants().get(g.tenant_id).await?.name.to_string();
    let tenants =
        state.store().tenants().staff_list().await?.into_iter().filter(|t| t.id != g.tenant_id).collect();
    let device_count = state.store().devices().list_for_gateway(g.tenant_id, g.id, false).await?.len();
    let ctx = ctx.section("staff_gateways", "staff.transfer");
    Ok(TransferTemplate { ctx, g, from, tenants, device_count, errors })
}

async fn transfer_page(
    State(state): State<AppState>,
    Staff(_): Staff,
    Path(mac): Path<String>,
    ctx: PageCtx,
) -> WebResult<Response> {
    render(&transfer_template(&state, ctx, &mac, FieldErrors::default()).await?, None)
}

#[derive(Debug, Deserialize)]
struct TransferForm {
    tenant_id: i64,
    #[serde(default)]
    with_devices: Option<String>,
}

async fn transfer(
    State(state): State<AppState>,
    Staff(me): Staff,
    Path(mac): Path<String>,
    ctx: PageCtx,
    Form(form): Form<TransferForm>,
) -> WebResult<Response> {
    let lang = ctx.lang;
    let parsed = Mac::parse(&mac).map_err(|_| WebError::NotFound)?;
    let g = state.store().gateways().staff_by_mac(parsed).await?;
    let to = TenantId::new(form.tenant_id);
    let with_devices = form.with_devices.is_some();
    match state.store().gateways().staff_transfer(g.id, to, with_devices, Some(me.user.id)).await {
        Ok(moved) => {
            // The gateway's certificate was revoked (affiliation changed): a new CRL at once.
            state.pki().refresh_crl(state.store()).await.map_err(|e| WebError::Internal(e.to_string()))?;
            audit(
                &state,
                &me,
                None,
                "staff.gateway_transferred",
                ("gateway", Some(moved.mac.to_string())),
                json!({"from_tenant": g.tenant_id.get(), "to_tenant": to.get(), "with_devices": with_devices}),
            )
            .await?;
            Ok(Redirect::to("/staff/gateways?done=transferred").into_response())
        }
        Err(StoreError::Conflict(msg) | StoreError::Limit(msg)) => {
            let mut errors = FieldErrors::default();
            errors.form_error(lang.tf("staff.transfer_refused", &[("detail", &msg)]));
            render_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                &transfer_template(&state, ctx, &mac, errors).await?,
            )
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Deserialize, Default)]
struct AuditQuery {
    #[serde(default)]
    action: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    since: String,
    page: Option<u32>,
}

#[derive(Template)]
#[template(path = "staff/audit.html")]
struct AuditTemplate {
    ctx: PageCtx,
    entries: Vec<AuditEntry>,
    total: i64,
    action: String,
    actor: String,
    since: String,
    page: u32,
    pages: u32,
    page_links: Vec<u32>,
    query_base: String,
}

async fn audit_log(
    State(state): State<AppState>,
    Staff(_): Staff,
    Query(q): Query<AuditQuery>,
    ctx: PageCtx,
) -> WebResult<Response> {
    let ctx = ctx.section("staff_audit", "staff.audit");
    let since = NaiveDate::parse_from_str(q.since.trim(), "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(|d| d.and_local_timezone(ctx.zone).earliest().map(|t| t.to_utc()));
    let filter = AuditFilter { action_prefix: optional(&q.action), actor: optional(&q.actor), since };
    let page = Page::new(q.page.unwrap_or(1), STAFF_PAGE);
    let found = state.store().audit().staff_list(&filter, page).await?;
    let (pages, page_links) = page_numbers(page.number, found.total, STAFF_PAGE);
    let query_base = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("action", &q.action)
        .append_pair("actor", &q.actor)
        .append_pair("since", &q.since)
        .finish();
    let _ = PageQuery::default();
    render(
        &AuditTemplate {
            ctx,
            entries: found.items,
            total: found.total,
            action: q.action,
            actor: q.actor,
            since: q.since,
            page: page.number,
            pages,
            page_links,
            query_base,
        },
        None,
    )
}
