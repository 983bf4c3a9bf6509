//! Mensagens rejeitadas (dead letters): everything a gateway sent that was not stored as a
//! reading, with its raw bytes and reason; tenant admins list, filter, inspect and replay them
//! (one, or all of a filter) after fixing the cause. Staff see every tenant's. Lists show a
//! preview and the size of each payload; only the detail page and a replay load one whole.

use crate::auth::{Admin, Staff};
use crate::error::WebResult;
use crate::forms::optional;
use crate::page::PageCtx;
use crate::routes::table::Routes;
use crate::routes::{audit, page_numbers, render};
use crate::{AppState, replay};
use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use tds_domain::RejectedId;
use tds_store::Page;
use tds_store::rejected::{Rejected, RejectedSummary};

const PAGE_SIZE: u32 = 50;
/// Most dead letters one "replay all" takes on (the page says so when there are more).
const REPLAY_ALL_MAX: usize = 500;
/// Dead letters "replay all" looks up at a time; their payloads are loaded one by one.
const REPLAY_PAGE: i64 = 50;

/// Reason codes offered in the filter (the dead-letter reasons of SPEC §2).
pub const REASONS: &[&str] = &[
    "unknown_device",
    "unit_conflict",
    "duplicate_conflict",
    "invalid_value",
    "future_timestamp",
    "gateway_mac_mismatch",
    "invalid_json",
    "payload_too_large",
    "topic_not_allowed",
];

pub fn routes() -> Routes {
    Routes::new()
        .route("/dead-letters", get(list))
        .route("/dead-letters/replay", post(replay_all))
        .route("/dead-letters/{id}", get(show))
        .route("/dead-letters/{id}/replay", post(replay_one))
        .route("/staff/dead-letters", get(staff_list))
}

#[derive(Debug, Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    reason: String,
    page: Option<u32>,
}

#[derive(Template)]
#[template(path = "dead_letters/list.html")]
struct ListTemplate {
    ctx: PageCtx,
    items: Vec<RejectedSummary>,
    total: i64,
    reason: String,
    reasons: &'static [&'static str],
    page: u32,
    pages: u32,
    page_links: Vec<u32>,
    base: &'static str,
    staff: bool,
}

/// The list of one tenant's dead letters, or (`tenant` `None`) of every tenant's for staff.
async fn list_page(
    state: &AppState,
    ctx: PageCtx,
    tenant: Option<tds_domain::TenantId>,
    q: ListQuery,
    base: &'static str,
) -> WebResult<Response> {
    let page = Page::new(q.page.unwrap_or(1), PAGE_SIZE);
    let reason = optional(&q.reason);
    let rejected = state.store().rejected();
    let found = match tenant {
        Some(t) => rejected.list(t, reason.as_deref(), page).await?,
        None => rejected.staff_list(reason.as_deref(), page).await?,
    };
    let (pages, page_links) = page_numbers(page.number, found.total, PAGE_SIZE);
    render(
        &ListTemplate {
            ctx,
            items: found.items,
            total: found.total,
            reason: q.reason,
            reasons: REASONS,
            page: page.number,
            pages,
            page_links,
            base,
            staff: tenant.is_none(),
        },
        None,
    )
}

async fn list(
    State(state): State<AppState>,
    Admin(t): Admin,
    Query(q): Query<ListQuery>,
    ctx: PageCtx,
) -> WebResult<Response> {
    let ctx = ctx.section("dead_letters", "dead.title");
    list_page(&state, ctx, Some(t.tenant_id()), q, "/dead-letters").await
}

async fn staff_list(
    State(state): State<AppState>,
    Staff(_): Staff,
    Query(q): Query<ListQuery>,
    ctx: PageCtx,
) -> WebResult<Response> {
    let ctx = ctx.section("staff_dead_letters", "staff.dead_letters");
    list_page(&state, ctx, None, q, "/staff/dead-letters").await
}

#[derive(Template)]
#[template(path = "dead_letters/show.html")]
struct ShowTemplate {
    ctx: PageCtx,
    d: Rejected,
    text: Option<String>,
    hex: String,
}

async fn show(
    State(state): State<AppState>,
    Admin(t): Admin,
    Path(id): Path<i64>,
    ctx: PageCtx,
) -> WebResult<Response> {
    let d = state.store().rejected().get(t.tenant_id(), RejectedId::new(id)).await?;
    let ctx = ctx.section("dead_letters", "dead.title");
    // JSON is shown pretty when it parses, as text when it is UTF-8, and always as hex.
    let text = serde_json::from_slice::<serde_json::Value>(&d.payload)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .or_else(|| String::from_utf8(d.payload.clone()).ok());
    let hex = d.payload.iter().take(4096).map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ");
    render(&ShowTemplate { ctx, d, text, hex }, None)
}

async fn replay_one(
    State(state): State<AppState>,
    Admin(t): Admin,
    Path(id): Path<i64>,
) -> WebResult<Response> {
    let d = state.store().rejected().get(t.tenant_id(), RejectedId::new(id)).await?;
    let outcome = replay::replay(state.store(), t.tenant_id(), &d).await?;
    audit(
        &state,
        &t.me,
        Some(&t),
        "dead_letter.replayed",
        ("dead_letter", Some(id.to_string())),
        json!({"stored": outcome.stored, "outcome": outcome.summary}),
    )
    .await?;
    Ok(Redirect::to(&format!("/dead-letters/{id}?done=replayed")).into_response())
}

#[derive(Debug, Deserialize)]
struct ReplayAllForm {
    #[serde(default)]
    reason: String,
}

async fn replay_all(
    State(state): State<AppState>,
    Admin(t): Admin,
    Form(form): Form<ReplayAllForm>,
) -> WebResult<Response> {
    let reason = optional(&form.reason);
    let rejected = state.store().rejected();
    let (mut replayed, mut stored) = (0u64, 0u64);
    let mut before = None;
    'pages: loop {
        let ids = rejected
            .pending_ids(t.tenant_id(), reason.as_deref(), replay::DONE_PREFIX, before, REPLAY_PAGE)
            .await?;
        let Some(&last) = ids.last() else { break };
        for id in ids {
            // One payload in memory at a time.
            let d = rejected.get(t.tenant_id(), id).await?;
            let outcome = replay::replay(state.store(), t.tenant_id(), &d).await?;
            replayed += 1;
            stored += outcome.stored;
            if replayed as usize >= REPLAY_ALL_MAX {
                break 'pages;
            }
        }
        before = Some(last);
    }
    audit(
        &state,
        &t.me,
        Some(&t),
        "dead_letter.replayed_all",
        ("dead_letter", None),
        json!({"reason": reason, "replayed": replayed, "stored": stored}),
    )
    .await?;
    let back = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("reason", &form.reason)
        .append_pair("done", "replayed")
        .finish();
    Ok(Redirect::to(&format!("/dead-letters?{back}")).into_response())
}
