//! One alert's page: what it is about, its rule, its timeline (raised, acknowledged with the
//! comment, reminders, cleared), who was notified and how each delivery went, and a chart of the
//! device's data around the moment it fired: readings for a gauge, hourly consumption for a
//! meter, with the raise marked.

use super::{Row, describe};
use crate::AppState;
use crate::auth::Viewer;
use crate::error::WebResult;
use crate::page::PageCtx;
use crate::routes::render;
use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;
use tds_domain::alerts::Target;
use tds_domain::{AlertId, Bucket, MeasurementKind, UserId};
use tds_store::alerts::AlertEvent;
use tds_store::notifications::OutboxItem;

/// Hours of data shown before the raise (and after it, up to the clear or now).
const AROUND_HOURS: i64 = 12;

/// A delivery as the page lists it.
struct Delivery {
    item: OutboxItem,
    to: String,
}

#[derive(Template)]
#[template(path = "alerts/show.html")]
struct ShowTemplate {
    ctx: PageCtx,
    row: Row,
    timeline: Vec<(AlertEvent, String)>,
    deliveries: Vec<Delivery>,
    /// `[[ms, value], …]` for the chart; empty when the alert is not about one device.
    points: String,
    chart_kind: &'static str,
    unit: String,
    raised_ms: i64,
    rule_exists: bool,
}

impl ShowTemplate {
    fn severity_class(&self) -> &'static str {
        super::severity_class(self.row.alert.severity)
    }
}

pub(super) async fn show(
    State(state): State<AppState>,
    Viewer(t): Viewer,
    Path(id): Path<i64>,
    ctx: PageCtx,
) -> WebResult<Response> {
    let tenant = t.tenant_id();
    let store = state.store();
    let alert = store.alerts().get(tenant, AlertId::new(id)).await?;
    let ctx = ctx.section("alerts", "alerts.one");
    let history = store.alerts().history(tenant, alert.id).await?;
    let mut names: HashMap<UserId, String> = HashMap::new();
    for user in history.iter().filter_map(|e| e.user_id) {
        if let std::collections::hash_map::Entry::Vacant(slot) = names.entry(user)
            && let Ok(u) = store.users().get(user).await
        {
            slot.insert(u.display_name.to_string());
        }
    }
    let timeline = history
        .into_iter()
        .map(|e| {
            let who = e.user_id.and_then(|u| names.get(&u).cloned()).unwrap_or_default();
            (e, who)
        })
        .collect();
    let channels: HashMap<_, _> =
        store.notification_channels().list(tenant).await?.into_iter().map(|c| (c.id, c.name)).collect();
    let mut deliveries = Vec::new();
    for item in store.outbox().list_for_alert(tenant, alert.id).await? {
        let to = match (item.channel_id, item.user_id) {
            (Some(c), _) => channels.get(&c).cloned().unwrap_or_else(|| format!("#{c}")),
            (None, Some(u)) => match store.users().get(u).await {
                Ok(user) => user.email.to_string(),
                Err(_) => format!("#{u}"),
            },
            (None, None) => String::new(),
        };
        deliveries.push(Delivery { item, to });
    }
    let rule_exists = match alert.rule_id {
        Some(r) => store.alert_rules().get(tenant, r).await.is_ok(),
        None => false,
    };
    let (points, chart_kind, unit) = chart(&state, &alert).await?;
    let raised_ms = alert.raised_at.timestamp_millis();
    let row = describe(&state, &ctx, tenant, vec![alert]).await?.pop();
    let Some(row) = row else { return Err(tds_store::StoreError::NotFound.into()) };
    render(
        &ShowTemplate { ctx, row, timeline, deliveries, points, chart_kind, unit, raised_ms, rule_exists },
        None,
    )
}

/// The device's data around the raise: readings of a gauge, or hourly consumption of a meter.
async fn chart(
    state: &AppState,
    alert: &tds_store::alerts::Alert,
) -> WebResult<(String, &'static str, String)> {
    let Target::Device(device) = alert.target else { return Ok((String::new(), "", String::new())) };
    let store = state.store();
    let Ok(d) = store.devices().get(alert.tenant_id, device).await else {
        return Ok((String::new(), "", String::new()));
    };
    let from = alert.raised_at - Duration::hours(AROUND_HOURS);
    let to = alert.cleared_at.unwrap_or_else(Utc::now).min(alert.raised_at + Duration::hours(AROUND_HOURS));
    let to = to.max(alert.raised_at + Duration::hours(1));
    let points: Vec<(DateTime<Utc>, f64)> = if d.kind == MeasurementKind::Gauge {
        store
            .readings()
            .for_device(alert.tenant_id, device, from, to, 5_000)
            .await?
            .into_iter()
            .map(|r| (r.time, r.value))
            .collect()
    } else {
        store
            .rollups()
            .for_device(alert.tenant_id, device, Bucket::Hour, from, to)
            .await?
            .into_iter()
            .filter_map(|r| r.consumption.map(|c| (r.start, c)))
            .collect()
    };
    let json: Vec<(i64, f64)> = points.into_iter().map(|(t, v)| (t.timestamp_millis(), v)).collect();
    let kind = if d.kind == MeasurementKind::Gauge { "line" } else { "bar" };
    Ok((serde_json::to_string(&json).unwrap_or_default(), kind, d.unit.to_string()))
}
