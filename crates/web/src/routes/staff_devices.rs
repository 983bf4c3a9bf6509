//! The staff console's archived devices: every tenant's, with their reading counts, and the purge
//! of an archived device's readings (SPEC §1: archiving keeps the readings and they stay
//! reportable; deleting them is this separate, explicit, confirmed and audited staff action). A
//! live device cannot be purged: archive it first, from the tenant's device page.

use crate::AppState;
use crate::auth::Staff;
use crate::error::{WebError, WebResult};
use crate::page::PageCtx;
use crate::routes::table::Routes;
use crate::routes::{PageQuery, audit, page_numbers, render};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::json;
use tds_domain::DeviceId;
use tds_store::archive::ArchivedDevice;
use tds_store::{Page, StoreError};

const PAGE_SIZE: u32 = 50;

pub fn routes() -> Routes {
    Routes::new()
        .route("/staff/archived-devices", get(archived))
        .route("/staff/archived-devices/{id}/purge", post(purge))
}

#[derive(Template)]
#[template(path = "staff/archived_devices.html")]
struct ArchivedTemplate {
    ctx: PageCtx,
    devices: Vec<ArchivedDevice>,
    total: i64,
    page: u32,
    pages: u32,
    page_links: Vec<u32>,
}

async fn archived(
    State(state): State<AppState>,
    Staff(_): Staff,
    Query(q): Query<PageQuery>,
    ctx: PageCtx,
) -> WebResult<Response> {
    let ctx = ctx.section("staff_archived", "staff.archived_devices");
    let page = Page::new(q.page.unwrap_or(1), PAGE_SIZE);
    let found = state.store().archive().staff_archived(page).await?;
    let (pages, page_links) = page_numbers(page.number, found.total, PAGE_SIZE);
    render(
        &ArchivedTemplate {
            ctx,
            devices: found.items,
            total: found.total,
            page: page.number,
            pages,
            page_links,
        },
        None,
    )
}

async fn purge(State(state): State<AppState>, Staff(me): Staff, Path(id): Path<i64>) -> WebResult<Response> {
    let id = DeviceId::new(id);
    let device = state.store().archive().staff_get(id).await?;
    let purged = match state.store().archive().staff_purge(id).await {
        Ok(p) => p,
        Err(StoreError::Conflict(why)) => return Err(WebError::BadRequest(why)),
        Err(e) => return Err(e.into()),
    };
    audit(
        &state,
        &me,
        None,
        "staff.device_readings_purged",
        ("device", Some(id.to_string())),
        json!({
            "tenant_id": device.tenant_id.get(),
            "gateway": device.gateway_mac,
            "code": device.code,
            "readings": purged.readings,
            "rollups": purged.rollups,
        }),
    )
    .await?;
    Ok(Redirect::to("/staff/archived-devices?done=readings_purged").into_response())
}
