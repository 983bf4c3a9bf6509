//! `/api/v1/alerts`: the tenant's alerts (active, acknowledged, cleared; newest first, keyset
//! paged) and acknowledging one, as the Alertas page does. Targets are named the API's way: a
//! device by its gateway's MAC and its code, a gateway by its MAC.

use super::auth::{ApiEditor, ApiViewer};
use super::body::{ApiPath, ApiQuery, OptionalJson, cursor, decode, limit, position};
use super::error::{ApiError, ApiResult};
use super::responses::{ReadErrors, WriteErrors};
use crate::AppState;
use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use tds_domain::alerts::Target;
use tds_domain::{AlertId, TenantId};
use tds_store::alerts::{Alert, AlertStatus};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Serialize, ToSchema)]
pub struct AlertOut {
    pub id: i64,
    /// The rule's name (a device threshold's is `alarm_daily` or `alarm_monthly`).
    pub rule: String,
    /// The rule's kind: `daily_consumption`, `monthly_consumption`, `gauge_band`, `no_data`,
    /// `gateway_offline`, `certificate_expiry`, `dead_letter_rate`, `night_flow`, `continuous_flow`.
    pub kind: String,
    /// `INFO`, `WARNING` or `CRITICAL`.
    pub severity: String,
    /// `active`, `acknowledged` or `cleared`.
    pub state: String,
    pub target: TargetOut,
    pub message: String,
    /// The value that raised it, refreshed while it stays open.
    pub value: Option<f64>,
    pub raised_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub ack_comment: Option<String>,
    pub cleared_at: Option<DateTime<Utc>>,
}

/// What an alert is about.
#[derive(Debug, Serialize, ToSchema)]
pub struct TargetOut {
    /// `device`, `gateway`, `medium` or `tenant`.
    pub kind: String,
    /// The gateway's MAC (devices and gateways).
    pub gateway: Option<String>,
    /// The device's code within its gateway.
    pub device: Option<String>,
    pub medium: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AlertPage {
    pub items: Vec<AlertOut>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertParams {
    /// `active`, `acknowledged` or `cleared` (default: all).
    pub state: Option<String>,
    /// `INFO`, `WARNING` or `CRITICAL`.
    pub severity: Option<String>,
    /// Alerts about this gateway (MAC) or its devices.
    pub gateway: Option<String>,
    /// With `gateway`: alerts about this device (code).
    pub device: Option<String>,
    /// Raised at or after (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Raised before (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// Items per page, 1 to 1000 (100).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckIn {
    /// What is being done about it (optional).
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub comment: Option<String>,
}

/// Names of the tenant's devices and gateways, for the targets of a page of alerts.
async fn names(
    state: &AppState,
    tenant: TenantId,
    alerts: &[Alert],
) -> ApiResult<(HashMap<tds_domain::DeviceId, (String, String)>, HashMap<tds_domain::GatewayId, String>)> {
    let devices: Vec<_> =
        alerts.iter().filter_map(|a| if let Target::Device(d) = a.target { Some(d) } else { None }).collect();
    let labels = state.store().devices().labels(tenant, &devices).await?;
    let devices =
        labels.into_iter().map(|(id, (code, mac))| (id, (mac.to_string(), code.to_string()))).collect();
    let mut gateways = HashMap::new();
    for a in alerts {
        if let Target::Gateway(g) = a.target
            && let std::collections::hash_map::Entry::Vacant(slot) = gateways.entry(g)
            && let Ok(found) = state.store().gateways().get(tenant, g).await
        {
            slot.insert(found.mac.to_string());
        }
    }
    Ok((devices, gateways))
}

fn out(
    a: &Alert,
    devices: &HashMap<tds_domain::DeviceId, (String, String)>,
    gateways: &HashMap<tds_domain::GatewayId, String>,
) -> AlertOut {
    let target = match a.target {
        Target::Device(d) => {
            let (mac, code) = devices.get(&d).cloned().unzip();
            TargetOut { kind: "device".into(), gateway: mac, device: code, medium: None }
        }
        Target::Gateway(g) => TargetOut {
            kind: "gateway".into(),
            gateway: gateways.get(&g).cloned(),
            device: None,
            medium: None,
        },
        Target::Medium(m) => {
            TargetOut { kind: "medium".into(), gateway: None, device: None, medium: Some(m.as_str().into()) }
        }
        Target::Tenant => TargetOut { kind: "tenant".into(), gateway: None, device: None, medium: None },
    };
    AlertOut {
        id: a.id.get(),
        rule: a.rule_name.clone(),
        kind: a.rule_kind.clone(),
        severity: a.severity.as_str().to_owned(),
        state: a.status().as_str().to_owned(),
        target,
        message: a.message.clone(),
        value: a.value,
        raised_at: a.raised_at,
        acknowledged_at: a.acknowledged_at,
        ack_comment: a.ack_comment.clone(),
        cleared_at: a.cleared_at,
    }
}

/// The tenant's alerts, newest first.
#[utoipa::path(get, path = "/api/v1/alerts", operation_id = "list_alerts", tag = "alerts", params(AlertParams),
    responses((status = 200, description = "A page of alerts", body = AlertPage), ReadErrors))]
pub async fn list(
    State(state): State<AppState>,
    ApiViewer(ctx): ApiViewer,
    ApiQuery(q): ApiQuery<AlertParams>,
) -> ApiResult<Json<AlertPage>> {
    let limit = limit(q.limit)?;
    let status =
        match q.state.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(AlertStatus::parse(s).ok_or_else(|| {
                ApiError::bad_param("state", "state must be active, acknowledged or cleared")
            })?),
        };
    let before = match position("alerts", q.cursor.as_deref())? {
        None => None,
        Some(p) => Some(AlertId::new(p.parse().map_err(|_| ApiError::bad_param("cursor", "bad cursor"))?)),
    };
    let severity = match q.severity.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            tds_domain::Severity::parse(s)
                .map_err(|_| ApiError::bad_param("severity", "severity must be INFO, WARNING or CRITICAL"))?,
        ),
    };
    let mut filter =
        tds_store::alerts::AlertFilter { status, severity, from: q.from, to: q.to, ..Default::default() };
    if let Some(mac) = q.gateway.as_deref().filter(|s| !s.is_empty()) {
        // Another tenant's MAC is simply not one of this tenant's gateways: nothing matches.
        let unknown = || ApiError::bad_param("gateway", "no such gateway in this tenant");
        let mac = tds_domain::Mac::parse(mac).map_err(|_| unknown())?;
        let g = state.store().gateways().by_mac(ctx.tenant_id(), mac).await.map_err(|_| unknown())?;
        filter.gateway = Some(g.id);
        if let Some(code) = q.device.as_deref().filter(|s| !s.is_empty()) {
            let unknown = || ApiError::bad_param("device", "no such device on this gateway");
            let code = tds_domain::DeviceCode::parse(code).map_err(|_| unknown())?;
            let d =
                state.store().devices().by_code(ctx.tenant_id(), g.id, &code).await.map_err(|_| unknown())?;
            filter.device = Some(d.id);
        }
    } else if q.device.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::bad_param(
            "device",
            "a device is named with its gateway (gateway=MAC&device=CODE)",
        ));
    }
    let found = state.store().alerts().list_filtered(ctx.tenant_id(), &filter, before, limit + 1).await?;
    let more = found.len() as i64 > limit;
    let found = &found[..found.len().min(limit as usize)];
    let (devices, gateways) = names(&state, ctx.tenant_id(), found).await?;
    let items: Vec<AlertOut> = found.iter().map(|a| out(a, &devices, &gateways)).collect();
    let next_cursor = more.then(|| items.last().map(|a| cursor("alerts", &a.id.to_string()))).flatten();
    Ok(Json(AlertPage { items, next_cursor }))
}

/// Acknowledges an active alert (it stays open until its condition ends).
#[utoipa::path(post, path = "/api/v1/alerts/{id}/ack", operation_id = "acknowledge_alert", tag = "alerts",
    request_body(content = Option<AckIn>, description = "An optional comment"),
    params(("id" = i64, Path, description = "The alert's id")),
    responses((status = 200, description = "The acknowledged alert", body = AlertOut), WriteErrors))]
pub async fn acknowledge(
    State(state): State<AppState>,
    ApiEditor(ctx): ApiEditor,
    ApiPath(id): ApiPath<i64>,
    OptionalJson(body): OptionalJson,
) -> ApiResult<Json<AlertOut>> {
    let input: AckIn = decode(body)?;
    let comment = input.comment.map(|c| c.chars().take(1000).collect::<String>());
    let alert = state
        .store()
        .alerts()
        .acknowledge(ctx.tenant_id(), AlertId::new(id), ctx.user_id(), comment.as_deref(), Utc::now())
        .await?;
    ctx.audit(&state, "alert.acknowledged", ("alert", Some(id.to_string())), json!({"comment": comment}))
        .await?;
    if let Ok(active) = state.store().alerts().active_counts(ctx.tenant_id()).await {
        state.publish(tds_domain::LiveEvent::Alerts { tenant: ctx.tenant_id(), active });
    }
    let (devices, gateways) = names(&state, ctx.tenant_id(), std::slice::from_ref(&alert)).await?;
    Ok(Json(out(&alert, &devices, &gateways)))
}
