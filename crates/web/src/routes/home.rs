//! Início: the tenant's figures at a glance, from real data (SPEC §4), consumption by medium
//! (today and this month, each medium in its own units) from the rollups, and the open alerts
//! by severity with the latest of them.

use crate::AppState;
use crate::auth::Viewer;
use crate::error::WebResult;
use crate::page::PageCtx;
use crate::routes::render;
use askama::Template;
use axum::extract::State;
use axum::response::Response;
use chrono::Utc;
use tds_domain::DeviceStatus;
use tds_store::Page;
use tds_store::certificates::{CertificateFilter, CertificateStatus};
use tds_store::gateways::{Connection, GatewayFilter};

/// Certificates expiring within this many days are flagged on the home page.
pub const EXPIRY_WARNING_DAYS: i64 = 90;

#[derive(Debug, Default)]
pub struct HomeFigures {
    pub online: i64,
    pub offline: i64,
    pub never: i64,
    pub devices_active: i64,
    pub devices_inactive: i64,
    pub devices_maintenance: i64,
    pub readings_24h: i64,
    pub dead_letters_24h: i64,
    pub certs_expiring: i64,
    pub gateways: i64,
    pub max_gateways: i64,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomeTemplate {
    ctx: PageCtx,
    f: HomeFigures,
    /// (medium, unit, today, this month), from the rollups.
    consumption: Vec<(String, String, Option<f64>, Option<f64>)>,
    /// Active alerts by severity.
    active: tds_domain::AlertCounts,
    open_alerts: Vec<crate::routes::alerts::Row>,
}

pub async fn page(State(state): State<AppState>, Viewer(t): Viewer, ctx: PageCtx) -> WebResult<Response> {
    let ctx = ctx.section("home", "nav.home");
    let store = state.store();
    let tenant = t.tenant_id();
    let count = |connection| {
        let filter = GatewayFilter { connection: Some(connection), ..GatewayFilter::default() };
        async move { store.gateways().list(tenant, &filter, Page::new(1, 1)).await.map(|p| p.total) }
    };
    let mut f = HomeFigures {
        online: count(Connection::Online).await?,
        offline: count(Connection::Offline).await?,
        never: count(Connection::NeverConnected).await?,
        max_gateways: t.tenant.limits.max_gateways,
        ..HomeFigures::default()
    };
    f.gateways = f.online + f.offline + f.never;
    for device in store.devices().list(tenant).await? {
        match device.status {
            DeviceStatus::Active => f.devices_active += 1,
            DeviceStatus::Inactive => f.devices_inactive += 1,
            DeviceStatus::Maintenance => f.devices_maintenance += 1,
        }
    }
    let day_ago = Utc::now() - chrono::Duration::hours(24);
    f.readings_24h = store.readings().count_since(tenant, day_ago).await?;
    f.dead_letters_24h = store.rejected().count_since(tenant, day_ago).await?;
    let soon = CertificateFilter {
        status: Some(CertificateStatus::Active),
        expires_before: Some(Utc::now() + chrono::Duration::days(EXPIRY_WARNING_DAYS)),
        ..CertificateFilter::default()
    };
    f.certs_expiring = store.certificates().list(tenant, &soon, Page::new(1, 1)).await?.total;
    let (today, month) =
        crate::figures::tenant_by_medium(store, tenant, t.tenant.timezone, Utc::now()).await?;
    let mut consumption: Vec<(String, String, Option<f64>, Option<f64>)> =
        month.iter().map(|m| (m.medium.as_str().to_owned(), m.unit.clone(), None, Some(m.total))).collect();
    for d in today {
        match consumption.iter_mut().find(|c| c.0 == d.medium.as_str() && c.1 == d.unit) {
            Some(c) => c.2 = Some(d.total),
            None => consumption.push((d.medium.as_str().to_owned(), d.unit, Some(d.total), None)),
        }
    }
    let active = store.alerts().active_counts(tenant).await?;
    let open_alerts =
        crate::routes::alerts::open_rows(&state, &ctx, tenant, tds_store::alerts::AlertFilter::default())
            .await?;
    render(&HomeTemplate { ctx, f, consumption, active, open_alerts }, None)
}
