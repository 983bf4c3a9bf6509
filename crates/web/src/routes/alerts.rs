//! Alertas (SPEC §4, §5): the tenant's alerts, active first by default, with their severity,
//! what they are about, the value that raised them, and acknowledging one with a comment
//! (editors and admins). Alerts are raised and cleared by the evaluation job; a device's daily
//! and monthly thresholds (on its form) are rules from the moment they are saved.

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
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use tds_domain::AlertId;
use tds_domain::alerts::Target;
use tds_store::StoreError;
use tds_store::alerts::{Alert, AlertStatus};

/// Alerts shown at once (newest first).
pub const PAGE_SIZE: i64 = 100;

pub fn routes() -> Routes {
    Routes::new().route("/alerts", get(list)).route("/alerts/{id}/ack", post(acknowledge))
}

#[derive(Debug, Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    state: String,
}

/// One row: the alert, and what it is about in people's terms.
#[derive(Debug)]
struct Row {
    alert: Alert,
    target: String,
    link: Option<String>,
}

#[derive(Template)]
#[template(path = "alerts/list.html")]
struct ListTemplate {
    ctx: PageCtx,
    rows: Vec<Row>,
    state: String,
    active: i64,
}

impl ListTemplate {
    fn severity_class(alert: &Alert) -> &'static str {
        match alert.severity.as_str() {
            "CRITICAL" => "text-bg-danger",
            "WARNING" => "text-bg-warning",
            _ => "text-bg-info",
        }
    }
}

async fn list(
    State(state): State<AppState>,
    Viewer(t): Viewer,
    Query(q): Query<ListQuery>,
    ctx: PageCtx,
) -> WebResult<Response> {
    let ctx = ctx.section("alerts", "nav.alerts");
    // Open alerts (active and acknowledged) unless another state is asked for.
    let status = AlertStatus::parse(&q.state);
    let store = state.store();
    let mut alerts = if let Some(s) = status {
        store.alerts().list(t.tenant_id(), Some(s), None, PAGE_SIZE).await?
    } else {
        let mut open = store.alerts().list(t.tenant_id(), Some(AlertStatus::Active), None, PAGE_SIZE).await?;
        open.extend(
            store.alerts().list(t.tenant_id(), Some(AlertStatus::Acknowledged), None, PAGE_SIZE).await?,
        );
        open
    };
    alerts.sort_by_key(|a| std::cmp::Reverse(a.raised_at));
    let devices: Vec<_> =
        alerts.iter().filter_map(|a| if let Target::Device(d) = a.target { Some(d) } else { None }).collect();
    let labels = store.devices().labels(t.tenant_id(), &devices).await?;
    let mut gateways: HashMap<tds_domain::GatewayId, String> = HashMap::new();
    for a in &alerts {
        if let Target::Gateway(g) = a.target
            && !gateways.contains_key(&g)
            && let Ok(found) = store.gateways().get(t.tenant_id(), g).await
        {
            gateways.insert(g, format!("{} ({})", found.code, found.mac));
        }
    }
    let rows = alerts
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
        .collect();
    let active = store.alerts().count_active(t.tenant_id()).await?;
    render(
        &ListTemplate { ctx, rows, state: status.map(|s| s.as_str().to_owned()).unwrap_or_default(), active },
        None,
    )
}

#[derive(Debug, Deserialize)]
struct AckForm {
    #[serde(default)]
    comment: String,
}

async fn acknowledge(
    State(state): State<AppState>,
    Editor(t): Editor,
    Path(id): Path<i64>,
    Form(form): Form<AckForm>,
) -> WebResult<Response> {
    let comment = optional(&form.comment).map(|c| c.chars().take(1000).collect::<String>());
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
        // Acknowledged or cleared meanwhile: the list shows how it is now.
        Err(StoreError::Conflict(_)) => return Ok(Redirect::to("/alerts").into_response()),
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
    Ok(Redirect::to("/alerts?done=acknowledged").into_response())
}
