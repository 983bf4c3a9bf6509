//! Alertas (SPEC §4, §5): the tenant's alerts with filters (state, severity, gateway, device,
//! period), newest first and paged, kept current without a reload (the page's list is refreshed
//! when an `alerts` event arrives, see `tds.js`); acknowledging one with a comment (editors and
//! admins). Alerts are raised and cleared by the evaluation job; a device's daily and monthly
//! thresholds (on its form) are rules from the moment they are saved.
//!
//! - [`detail`]: one alert's page (timeline, deliveries, the data around the moment it fired);
//! - [`rules`]: the rule editor and its 30-day preview.

mod detail;
pub mod form;
pub mod rules;

use crate::AppState;
use crate::auth::{Editor, Viewer};
use crate::error::{WebError, WebResult};
use crate::forms::optional;
use crate::page::PageCtx;
use crate::routes::table::Routes;
use crate::routes::{audit, render};
use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use tds_domain::alerts::{Severity, Target};
use tds_domain::buckets::{day_start, end_of_day};
use tds_domain::{AlertId, DeviceId, GatewayId, TimeZone};
use tds_store::StoreError;
use tds_store::alerts::{Alert, AlertFilter, AlertStatus};

/// Alerts shown at once (newest first).
pub const PAGE_SIZE: i64 = 50;

pub fn routes() -> Routes {
    Routes::new()
        .route("/alerts", get(list))
        .route("/alerts/{id}", get(detail::show))
        .route("/alerts/{id}/ack", post(acknowledge))
        .merge(rules::routes())
}

#[derive(Debug, Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    state: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    gateway: String,
    #[serde(default)]
    device: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    before: String,
}

/// One row: the alert, and what it is about in people's terms.
#[derive(Debug)]
pub(crate) struct Row {
    pub alert: Alert,
    pub target: String,
    pub link: Option<String>,
}

#[derive(Template)]
#[template(path = "alerts/list.html")]
struct ListTemplate {
    ctx: PageCtx,
    rows: Vec<Row>,
    q: ListQuery,
    active: i64,
    gateways: Vec<(String, String)>,
    devices: Vec<(String, String)>,
    /// The query string without `before`, for the next page's link.
    base: String,
    next: Option<i64>,
}

pub(crate) fn severity_class(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "text-bg-danger",
        Severity::Warning => "text-bg-warning",
        Severity::Info => "text-bg-info",
    }
}

impl ListTemplate {
    fn severity_class(alert: &Alert) -> &'static str {
        severity_class(alert.severity)
    }
}

/// A local date of the filter, as the instant its day starts (`to` is inclusive: its end).
fn day(zone: TimeZone, input: &str, end: bool) -> Option<chrono::DateTime<chrono::Utc>> {
    let date = NaiveDate::parse_from_str(input.trim(), "%Y-%m-%d").ok()?;
    if end { end_of_day(zone, date) } else { Some(day_start(zone, date)) }
}

async fn list(
    State(state): State<AppState>,
    Viewer(t): Viewer,
    Query(q): Query<ListQuery>,
    ctx: PageCtx,
) -> WebResult<Response> {
    let ctx = ctx.section("alerts", "nav.alerts");
    let tenant = t.tenant_id();
    let store = state.store();
    let zone = store.tenants().get(tenant).await?.timezone;
    // Open alerts (active and acknowledged) unless a state is asked for: what needs attention.
    let status = AlertStatus::parse(&q.state);
    let filter = AlertFilter {
        status,
        severity: Severity::parse(&q.severity).ok(),
        gateway: q.gateway.parse().ok().map(GatewayId::new),
        device: q.device.parse().ok().map(DeviceId::new),
        from: day(zone, &q.from, false),
        to: day(zone, &q.to, true),
    };
    let before = q.before.parse().ok().map(AlertId::new);
    let mut alerts = Vec::new();
    if status.is_none() {
        for s in [AlertStatus::Active, AlertStatus::Acknowledged] {
            let open = AlertFilter { status: Some(s), ..filter };
            alerts.extend(store.alerts().list_filtered(tenant, &open, before, PAGE_SIZE + 1).await?);
        }
        alerts.sort_by_key(|a| std::cmp::Reverse(a.id));
        alerts.truncate(usize::try_from(PAGE_SIZE + 1).unwrap_or(usize::MAX));
    } else {
        alerts = store.alerts().list_filtered(tenant, &filter, before, PAGE_SIZE + 1).await?;
    }
    let next = (alerts.len() as i64 > PAGE_SIZE).then(|| {
        alerts.truncate(usize::try_from(PAGE_SIZE).unwrap_or(usize::MAX));
        alerts.last().map_or(0, |a| a.id.get())
    });
    let rows = describe(&state, &ctx, tenant, alerts).await?;
    let active = store.alerts().count_active(tenant).await?;
    let gateways: Vec<(String, String)> = store
        .gateways()
        .all(tenant)
        .await?
        .into_iter()
        .map(|g| (g.id.to_string(), format!("{} · {}", g.code, g.name)))
        .collect();
    let devices = match filter.gateway {
        Some(g) => store
            .devices()
            .list_for_gateway(tenant, g, true)
            .await?
            .into_iter()
            .map(|d| (d.id.to_string(), format!("{} · {}", d.code, d.name)))
            .collect(),
        None => Vec::new(),
    };
    let base = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("state", &q.state),
            ("severity", &q.severity),
            ("gateway", &q.gateway),
            ("device", &q.device),
            ("from", &q.from),
            ("to", &q.to),
        ])
        .finish();
    render(&ListTemplate { ctx, rows, q, active, gateways, devices, base, next }, None)
}

/// The open alerts (active, then acknowledged, newest first, at most 10) matching `filter`,
/// described: what Início, a gateway's and a device's pages show.
pub(crate) async fn open_rows(
    state: &AppState,
    ctx: &PageCtx,
    tenant: tds_domain::TenantId,
    filter: AlertFilter,
) -> WebResult<Vec<Row>> {
    let mut alerts = Vec::new();
    for s in [AlertStatus::Active, AlertStatus::Acknowledged] {
        let open = AlertFilter { status: Some(s), ..filter };
        alerts.extend(state.store().alerts().list_filtered(tenant, &open, None, 10).await?);
    }
    alerts.truncate(10);
    describe(state, ctx, tenant, alerts).await
}

/// Names what each alert is about (device code and gateway MAC, gateway code, medium, tenant)
/// and links to it.
pub(super) async fn describe(
    state: &AppState,
    ctx: &PageCtx,
    tenant: tds_domain::TenantId,
    alerts: Vec<Alert>,
) -> WebResult<Vec<Row>> {
    let store = state.store();
    let devices: Vec<_> =
        alerts.iter().filter_map(|a| if let Target::Device(d) = a.target { Some(d) } else { None }).collect();
    let labels = store.devices().labels(tenant, &devices).await?;
    let mut gateways: HashMap<GatewayId, String> = HashMap::new();
    for a in &alerts {
        if let Target::Gateway(g) = a.target
            && !gateways.contains_key(&g)
            && let Ok(found) = store.gateways().get(tenant, g).await
        {
            gateways.insert(g, format!("{} ({})", found.code, found.mac));
        }
    }
    Ok(alerts
        .into_iter()
        .map(|alert| {
            let (target, link) = match alert.target {
                Target::Device(d) => (
                    labels.get(&d).map(|(code, mac)| format!("{code} · {mac}")).unwrap_or_default(),
                    Some(format!("/devices/{d}")),
                ),
                Target::Gateway(g) => {
                    (gateways.get(&g).cloned().unwrap_or_default(), Some(format!("/gateways/{g}")))
                }
                Target::Medium(m) => (ctx.label("medium", m.as_str()), None),
                Target::Tenant => (ctx.t("alerts.whole_tenant"), None),
            };
            Row { alert, target, link }
        })
        .collect())
}

#[derive(Debug, Deserialize)]
struct AckForm {
    #[serde(default)]
    comment: String,
    /// Where to come back to: the alert's own page, or the list.
    #[serde(default)]
    back: String,
}

async fn acknowledge(
    State(state): State<AppState>,
    Editor(t): Editor,
    Path(id): Path<i64>,
    Form(form): Form<AckForm>,
) -> WebResult<Response> {
    let comment = optional(&form.comment).map(|c| c.chars().take(1000).collect::<String>());
    let back = if form.back == "alert" { format!("/alerts/{id}") } else { "/alerts".to_owned() };
    match state
        .store()
        .alerts()
        .acknowledge(
            t.tenant_id(),
            AlertId::new(id),
            Some(t.me.user.id),
            comment.as_deref(),
            chrono::Utc::now(),
        )
        .await
    {
        Ok(_) => {}
        // Acknowledged or cleared meanwhile: the page shows how it is now.
        Err(StoreError::Conflict(_)) => return Ok(Redirect::to(&back).into_response()),
        Err(e) => return Err(WebError::from(e)),
    }
    audit(
        &state,
        &t.me,
        Some(&t),
        "alert.acknowledged",
        ("alert", Some(id.to_string())),
        json!({"comment": comment}),
    )
    .await?;
    // Every open page of the tenant: the badge drops.
    if let Ok(active) = state.store().alerts().active_counts(t.tenant_id()).await {
        state.publish(tds_domain::LiveEvent::Alerts { tenant: t.tenant_id(), active });
    }
    Ok(Redirect::to(&format!("{back}?done=acknowledged")).into_response())
}
