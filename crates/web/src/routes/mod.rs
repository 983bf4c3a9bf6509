//! The page routes and the middleware around them. Each submodule owns one section of the UI.

pub mod account;
pub mod alert_prefs;
pub mod alerts;
pub mod auth_pages;
pub mod certificates;
pub mod channels;
pub mod dead_letters;
pub mod devices;
pub mod gateways;
pub mod home;
pub mod imports;
pub mod members;
pub mod renewals;
pub mod reports;
pub mod settings;
pub mod staff;
pub mod staff_devices;
pub mod staff_users;
pub mod table;
pub mod telemetry;
pub mod tenants;

use crate::auth::{CurrentUser, TenantCtx};
use crate::error::{ErrorPage, WebError, WebResult};
use crate::page::PageCtx;
use crate::{AppState, assets, csrf, security};
use askama::Template;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum_extra::extract::CookieJar;
use serde_json::Value;
use tds_store::audit::NewAuditEntry;

/// Every page route (see [`table::Routes`]).
fn all() -> table::Routes {
    table::Routes::new()
        .route("/", get(home::page))
        .merge(auth_pages::routes())
        .merge(tenants::routes())
        .merge(gateways::routes())
        .merge(devices::routes())
        .merge(imports::routes())
        .merge(certificates::routes())
        .merge(renewals::routes())
        .merge(dead_letters::routes())
        .merge(account::routes())
        .merge(members::routes())
        .merge(settings::routes())
        .merge(staff::routes())
        .merge(staff_users::routes())
        .merge(staff_devices::routes())
        .merge(telemetry::routes())
        .merge(alerts::routes())
        .merge(alert_prefs::routes())
        .merge(channels::routes())
        .merge(reports::routes())
        .route("/assets/{*path}", get(assets::serve))
        .route("/favicon.ico", get(assets::favicon))
}

/// The paths the router serves, for the attack suite's role matrix.
pub fn table() -> Vec<&'static str> {
    all().paths().to_vec()
}

pub fn router(state: AppState) -> Router {
    let max_body = state.config().max_upload_bytes;
    let pages = all()
        .into_router()
        .fallback(not_found)
        // The outer bound of any body a route reads; routes and the CSRF check set tighter ones.
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        // Order matters: the CSRF check runs inside the error-page renderer, so its refusals
        // are explained in the visitor's language too.
        .layer(middleware::from_fn_with_state(state.clone(), csrf::protect))
        .layer(middleware::from_fn_with_state(state.clone(), error_pages));
    // The API has its own errors (JSON) and its own CSRF rule (see `api::auth`); the pages'
    // layers above do not wrap it.
    let api = crate::api::router().layer(axum::extract::DefaultBodyLimit::max(max_body));
    pages.merge(api).layer(middleware::from_fn_with_state(state.clone(), security::headers)).with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/api/") {
        return crate::api::not_found();
    }
    WebError::NotFound.into_response()
}

/// Renders a template as an HTML response (adding the anonymous CSRF cookie when the page set
/// one up).
pub fn render<T: Template>(
    template: &T,
    cookie: Option<axum_extra::extract::cookie::Cookie<'static>>,
) -> WebResult<Response> {
    let html = template.render().map_err(|e| WebError::Internal(format!("template: {e}")))?;
    let mut jar = CookieJar::new();
    if let Some(c) = cookie {
        jar = jar.add(c);
    }
    Ok((jar, Html(html)).into_response())
}

/// Same, with a status code (form errors answer 422 so that scripts and tests can tell).
pub fn render_status<T: Template>(status: StatusCode, template: &T) -> WebResult<Response> {
    let html = template.render().map_err(|e| WebError::Internal(format!("template: {e}")))?;
    Ok((status, Html(html)).into_response())
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorTemplate {
    ctx: PageCtx,
    status: u16,
    message_key: &'static str,
}

/// Turns the bare error responses of [`WebError`] into pages in the visitor's language.
async fn error_pages(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.uri().path().starts_with("/assets/") {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let is_htmx = parts.headers.contains_key("hx-request");
    let ctx =
        <PageCtx as axum::extract::FromRequestParts<AppState>>::from_request_parts(&mut parts, &state).await;
    let response = next.run(Request::from_parts(parts, body)).await;
    let Some(kind) = response.extensions().get::<ErrorPage>().copied() else { return response };
    let Ok(ctx): Result<PageCtx, _> = ctx else { return response };
    let message_key = match kind {
        ErrorPage::NotFound => "error.not_found",
        ErrorPage::Forbidden => "error.forbidden",
        ErrorPage::Csrf => "error.csrf",
        ErrorPage::BadRequest => "error.bad_request",
        ErrorPage::TooManyRequests => "error.too_many",
        ErrorPage::Busy => "error.busy",
        ErrorPage::TooLarge => "error.too_large",
        ErrorPage::Internal => "error.internal",
    };
    let status = response.status();
    if is_htmx {
        return (status, ctx.t(message_key)).into_response();
    }
    let ctx = ctx.section("", "error.title");
    match render_status(status, &ErrorTemplate { ctx, status: status.as_u16(), message_key }) {
        Ok(r) => r,
        Err(_) => response,
    }
}

/// A link that no longer leads anywhere (used or expired invitation or reset link).
#[derive(Debug, Template)]
#[template(path = "gone.html")]
pub struct Gone {
    pub ctx: PageCtx,
    pub message_key: &'static str,
}

/// Records an audit entry for an action done in the web UI.
pub async fn audit(
    state: &AppState,
    who: &CurrentUser,
    tenant: Option<&TenantCtx>,
    action: &str,
    object: (&str, Option<String>),
    detail: Value,
) -> WebResult<()> {
    state
        .store()
        .audit()
        .record(&NewAuditEntry {
            tenant_id: tenant.map(TenantCtx::tenant_id),
            user_id: Some(who.user.id),
            actor: who.user.email.to_string(),
            action: action.to_owned(),
            object_kind: object.0.to_owned(),
            object_id: object.1,
            detail: detail.to_string(),
            ip: Some(who.ip.clone()),
        })
        .await?;
    Ok(())
}

/// Reads `?page=N` (1-based) for lists.
#[derive(Debug, serde::Deserialize, Default)]
pub struct PageQuery {
    pub page: Option<u32>,
}

/// Page numbers to show under a list: first, last, and the ones around the current page.
pub fn page_numbers(current: u32, total_items: i64, size: u32) -> (u32, Vec<u32>) {
    let pages =
        u32::try_from(((total_items.max(0) as u64).div_ceil(u64::from(size))).max(1)).unwrap_or(u32::MAX);
    let mut shown: Vec<u32> =
        (1..=pages).filter(|p| *p == 1 || *p == pages || p.abs_diff(current) <= 2).collect();
    shown.dedup();
    (pages, shown)
}
