//! Choosing the active tenant (after login, or from the top bar) and the licence page shown
//! instead of everything else when the tenant is inactive or its licence has expired.

use crate::AppState;
use crate::auth::CurrentUser;
use crate::error::{WebError, WebResult};
use crate::page::PageCtx;
use crate::routes::auth_pages::safe_next;
use crate::routes::table::Routes;
use crate::routes::{audit, render};
use askama::Template;
use axum::extract::{Form, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use tds_domain::{LicenceState, Role, TenantId};

pub fn routes() -> Routes {
    Routes::new().route("/tenants", get(pick_page).post(pick)).route("/licence", get(licence_page))
}

#[derive(Debug)]
pub struct TenantChoice {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub usable: bool,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "tenants.html")]
struct PickTemplate {
    ctx: PageCtx,
    choices: Vec<TenantChoice>,
    next: String,
}

#[derive(Debug, Deserialize, Default)]
struct NextQuery {
    next: Option<String>,
}

async fn pick_page(
    State(state): State<AppState>,
    me: CurrentUser,
    Query(q): Query<NextQuery>,
    ctx: PageCtx,
) -> WebResult<Response> {
    let ctx = ctx.section("", "tenants.title");
    let mut choices = Vec::new();
    for (tenant, role) in state.store().memberships().tenants_of(me.user.id).await? {
        let today = Utc::now().with_timezone(&tenant.timezone.tz()).date_naive();
        choices.push(TenantChoice {
            id: tenant.id.get(),
            name: tenant.name.to_string(),
            role,
            usable: tenant.licence().state_on(today) == LicenceState::Valid,
            current: me.session.tenant_id == Some(tenant.id),
        });
    }
    render(&PickTemplate { ctx, choices, next: safe_next(q.next.as_deref()) }, None)
}

#[derive(Debug, Deserialize)]
struct PickForm {
    tenant_id: i64,
    #[serde(default)]
    next: String,
}

/// Makes a tenant the session's active one; only a tenant the user belongs to (anything else
/// is 404, like a guessed URL).
async fn pick(
    State(state): State<AppState>,
    me: CurrentUser,
    Form(form): Form<PickForm>,
) -> WebResult<Response> {
    let tenant = TenantId::new(form.tenant_id);
    if state.store().memberships().role(tenant, me.user.id).await?.is_none() {
        return Err(WebError::NotFound);
    }
    state.store().sessions().set_tenant(&me.session.token_hash, Some(tenant)).await?;
    audit(&state, &me, None, "tenant.switched", ("tenant", Some(tenant.to_string())), json!({})).await?;
    Ok(Redirect::to(&safe_next(Some(&form.next))).into_response())
}

#[derive(Template)]
#[template(path = "licence.html")]
struct LicenceTemplate {
    ctx: PageCtx,
    tenant_name: String,
    state: LicenceState,
    valid_until: String,
    has_other_tenants: bool,
}

async fn licence_page(State(state): State<AppState>, me: CurrentUser, ctx: PageCtx) -> WebResult<Response> {
    let Some(tenant_id) = me.session.tenant_id else { return Ok(Redirect::to("/tenants").into_response()) };
    if state.store().memberships().role(tenant_id, me.user.id).await?.is_none() {
        return Ok(Redirect::to("/tenants").into_response());
    }
    let tenant = state.store().tenants().get(tenant_id).await?;
    let today = Utc::now().with_timezone(&tenant.timezone.tz()).date_naive();
    let licence_state = tenant.licence().state_on(today);
    if licence_state == LicenceState::Valid {
        return Ok(Redirect::to("/").into_response());
    }
    let ctx = ctx.section("", "licence.title");
    let valid_until = tenant.licence_valid_until.map(|d| ctx.lang.date(d)).unwrap_or_default();
    let has_other_tenants = state.store().memberships().tenants_of(me.user.id).await?.len() > 1;
    render(
        &LicenceTemplate {
            ctx,
            tenant_name: tenant.name.to_string(),
            state: licence_state,
            valid_until,
            has_other_tenants,
        },
        None,
    )
}
