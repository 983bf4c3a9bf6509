//! The staff console's people: every user of the platform, searchable, with deactivation and
//! reactivation. A deactivated user cannot log in and loses every open session at once; their
//! memberships, history and audit trail stay, so reactivating restores them as they were.
//! Staff cannot deactivate themselves (that would lock the console's last door). Audited.

use crate::AppState;
use crate::auth::Staff;
use crate::error::{WebError, WebResult};
use crate::forms::optional;
use crate::page::PageCtx;
use crate::routes::table::Routes;
use crate::routes::{audit, page_numbers, render};
use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use tds_domain::UserId;
use tds_store::Page;
use tds_store::users::User;

const PAGE_SIZE: u32 = 50;

pub fn routes() -> Routes {
    Routes::new().route("/staff/users", get(users)).route("/staff/users/{id}/active", post(set_active))
}

#[derive(Debug, Deserialize, Default)]
struct UsersQuery {
    #[serde(default)]
    q: String,
    page: Option<u32>,
}

#[derive(Template)]
#[template(path = "staff/users.html")]
struct UsersTemplate {
    ctx: PageCtx,
    users: Vec<User>,
    me: UserId,
    total: i64,
    q: String,
    page: u32,
    pages: u32,
    page_links: Vec<u32>,
}

async fn users(
    State(state): State<AppState>,
    Staff(me): Staff,
    Query(q): Query<UsersQuery>,
    ctx: PageCtx,
) -> WebResult<Response> {
    let ctx = ctx.section("staff_users", "staff.users");
    let page = Page::new(q.page.unwrap_or(1), PAGE_SIZE);
    let found = state.store().users().staff_search(&optional(&q.q).unwrap_or_default(), page).await?;
    let (pages, page_links) = page_numbers(page.number, found.total, PAGE_SIZE);
    render(
        &UsersTemplate {
            ctx,
            users: found.items,
            me: me.user.id,
            total: found.total,
            q: q.q,
            page: page.number,
            pages,
            page_links,
        },
        None,
    )
}

#[derive(Debug, Deserialize)]
struct ActiveForm {
    active: bool,
}

async fn set_active(
    State(state): State<AppState>,
    Staff(me): Staff,
    Path(id): Path<i64>,
    Form(form): Form<ActiveForm>,
) -> WebResult<Response> {
    let id = UserId::new(id);
    if id == me.user.id {
        return Err(WebError::BadRequest("staff cannot deactivate themselves".into()));
    }
    let user = state.store().users().get(id).await?;
    state.store().users().staff_set_active(id, form.active).await?;
    let sessions = if form.active { 0 } else { state.store().sessions().delete_for_user(id).await? };
    audit(
        &state,
        &me,
        None,
        if form.active { "staff.user_reactivated" } else { "staff.user_deactivated" },
        ("user", Some(id.to_string())),
        json!({"email": user.email.as_str(), "active": {"from": user.active, "to": form.active}, "sessions_closed": sessions}),
    )
    .await?;
    let done = if form.active { "user_reactivated" } else { "user_deactivated" };
    Ok(Redirect::to(&format!("/staff/users?done={done}")).into_response())
}
