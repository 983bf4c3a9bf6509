//! `/api/v1/alert-rules`: the tenant's alert rules (SPEC §5, §7): list, create, read, change,
//! delete, and the rule editor's preview over the last 30 days. Targets are named as everywhere
//! in the API (a gateway by MAC, a device by its gateway's MAC and its code); a rule's parameters
//! are the JSON object of its kind (`{"threshold": 10}`, `{"min": 1, "max": 4}`, `{"seconds": 3600}`,
//! `{"days": 30}`, `{"per_hour": 20}`, `{"level": 0.05, "nights": 3}`, `{"hours": 24}`).
//! A device's own daily and monthly thresholds are listed with `source: device_alarm`; they change
//! with the device (`PATCH /devices/…`) and can only be enabled or disabled here.

use super::auth::{ApiCtx, ApiEditor, ApiViewer};
use super::body::{ApiPath, ApiQuery, JsonObject, cursor, decode, limit, position};
use super::error::{ApiError, ApiResult};
use super::responses::{ReadErrors, WriteErrors};
use crate::AppState;
use crate::routes::alerts::rules::{Outcome, preview};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tds_domain::alerts::{HoldTime, Hysteresis, Rule, RuleKind, Severity, Target};
use tds_domain::{AlertRuleId, DeviceCode, Mac, Medium, Name, ValidationError};
use tds_store::alert_rules::{AlertRule, AlertRuleFields, NewAlertRule, RuleSource};
use utoipa::{IntoParams, ToSchema};

/// What a rule applies to.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleTarget {
    /// `device`, `gateway`, `medium` or `tenant`.
    pub kind: String,
    /// The gateway's MAC (devices and gateways).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// The device's code within its gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// `water`, `energy`, `gas` or `other`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<String>,
}

/// A rule.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertRuleOut {
    pub id: i64,
    pub name: String,
    /// `daily_consumption`, `monthly_consumption`, `gauge_band`, `no_data`, `gateway_offline`,
    /// `certificate_expiry`, `dead_letter_rate`, `night_flow` or `continuous_flow`.
    pub kind: String,
    /// The kind's parameters.
    #[schema(value_type = Object)]
    pub params: Value,
    /// `INFO`, `WARNING` or `CRITICAL`.
    pub severity: String,
    pub target: RuleTarget,
    pub hysteresis: Option<f64>,
    pub hold_seconds: Option<i64>,
    pub enabled: bool,
    /// `user` (made here or in the editor) or `device_alarm` (a device's own threshold).
    pub source: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AlertRulePage {
    pub items: Vec<AlertRuleOut>,
    pub next_cursor: Option<String>,
}

/// A rule to create (every field but `hysteresis`, `hold_seconds` and `enabled` is required), or,
/// in a `PATCH`, the fields to change.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertRuleIn {
    pub name: Option<String>,
    pub kind: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub params: Option<Value>,
    pub severity: Option<String>,
    pub target: Option<RuleTarget>,
    /// `null` removes it.
    #[serde(default, deserialize_with = "some")]
    pub hysteresis: Option<Option<f64>>,
    /// `null` removes it.
    #[serde(default, deserialize_with = "some")]
    pub hold_seconds: Option<Option<i64>>,
    pub enabled: Option<bool>,
}

/// A present field, even `null`, is `Some` (absent stays `None` through `#[serde(default)]`).
fn some<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PreviewHit {
    pub at: DateTime<Utc>,
    /// The device or gateway, in people's terms.
    pub target: String,
    pub value: f64,
}

/// What the rule would have done.
#[derive(Debug, Serialize, ToSchema)]
pub struct PreviewOut {
    /// Alerts the rule would have raised over the last 30 days (or would raise now, for the
    /// kinds about gateways: see `replayed`).
    pub raised: usize,
    /// Whether the rule was replayed over 30 days of hourly rollups (device data), else
    /// evaluated now (gateways, certificates, dead letters).
    pub replayed: bool,
    /// Targets looked at; `more` when there were more than the preview takes (200 devices).
    pub looked_at: usize,
    pub more: bool,
    /// The latest raises, at most 10.
    pub latest: Vec<PreviewHit>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertRuleParams {
    /// Items per page, 1 to 1000 (100).
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

fn invalid(e: &ValidationError, field: &str) -> ApiError {
    ApiError::invalid(field, e.to_string())
}

/// The API's target as the domain's, looking the gateway and device up in the caller's tenant
/// (another tenant's MAC is unknown here: 422 naming `target`).
async fn target(state: &AppState, ctx: &ApiCtx, t: &RuleTarget) -> ApiResult<Target> {
    let unknown = |what: &str| ApiError::invalid("target", format!("no such {what} in this tenant"));
    let gateway = |mac: &Option<String>| -> ApiResult<Mac> {
        let mac = mac.as_deref().ok_or_else(|| ApiError::invalid("target", "target.gateway is required"))?;
        Mac::parse(mac).map_err(|e| invalid(&e, "target"))
    };
    match t.kind.as_str() {
        "tenant" => Ok(Target::Tenant),
        "medium" => {
            let m = t
                .medium
                .as_deref()
                .ok_or_else(|| ApiError::invalid("target", "target.medium is required"))?;
            Medium::parse(m).map(Target::Medium).map_err(|e| invalid(&e, "target"))
        }
        "gateway" => {
            let mac = gateway(&t.gateway)?;
            let g = state
                .store()
                .gateways()
                .by_mac(ctx.tenant_id(), mac)
                .await
                .map_err(|_| unknown("gateway"))?;
            Ok(Target::Gateway(g.id))
        }
        "device" => {
            let mac = gateway(&t.gateway)?;
            let g = state
                .store()
                .gateways()
                .by_mac(ctx.tenant_id(), mac)
                .await
                .map_err(|_| unknown("gateway"))?;
            let code = t
                .device
                .as_deref()
                .ok_or_else(|| ApiError::invalid("target", "target.device is required"))?;
            let code = DeviceCode::parse(code).map_err(|e| invalid(&e, "target"))?;
            let d = state
                .store()
                .devices()
                .by_code(ctx.tenant_id(), g.id, &code)
                .await
                .map_err(|_| unknown("device"))?;
            Ok(Target::Device(d.id))
        }
        other => Err(ApiError::invalid(
            "target",
            format!("target.kind {other:?}: expected device, gateway, medium or tenant"),
        )),
    }
}

async fn target_out(state: &AppState, ctx: &ApiCtx, t: Target) -> RuleTarget {
    let mut out = RuleTarget { kind: t.kind_name().to_owned(), gateway: None, device: None, medium: None };
    match t {
        Target::Tenant => {}
        Target::Medium(m) => out.medium = Some(m.as_str().to_owned()),
        Target::Gateway(g) => {
            out.gateway =
                state.store().gateways().get(ctx.tenant_id(), g).await.ok().map(|g| g.mac.to_string());
        }
        Target::Device(d) => {
            if let Ok(dev) = state.store().devices().get(ctx.tenant_id(), d).await {
                out.device = Some(dev.code.to_string());
                out.gateway = state
                    .store()
                    .gateways()
                    .get(ctx.tenant_id(), dev.gateway_id)
                    .await
                    .ok()
                    .map(|g| g.mac.to_string());
            }
        }
    }
    out
}

async fn out(state: &AppState, ctx: &ApiCtx, r: &AlertRule) -> AlertRuleOut {
    AlertRuleOut {
        id: r.id.get(),
        name: r.name.clone(),
        kind: r.rule.kind().name().to_owned(),
        params: serde_json::from_str(&r.rule.kind().params_json()).unwrap_or(Value::Null),
        severity: r.rule.severity().as_str().to_owned(),
        target: target_out(state, ctx, r.rule.target()).await,
        hysteresis: r.rule.hysteresis().map(Hysteresis::get),
        hold_seconds: r.rule.hold().map(HoldTime::seconds),
        enabled: r.enabled,
        source: r.source.as_str().to_owned(),
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

/// The rule a body describes, over `base` (a stored rule's settings, for a `PATCH`).
async fn rule_of(
    state: &AppState,
    ctx: &ApiCtx,
    input: &AlertRuleIn,
    base: Option<&Rule>,
) -> ApiResult<Rule> {
    let required = |field: &str| ApiError::invalid(field, format!("{field} is required"));
    let kind = match (&input.kind, &input.params, base) {
        (Some(kind), Some(params), _) => {
            RuleKind::from_parts(kind, &params.to_string()).map_err(|e| invalid(&e, "params"))?
        }
        (None, Some(params), Some(b)) => {
            RuleKind::from_parts(b.kind().name(), &params.to_string()).map_err(|e| invalid(&e, "params"))?
        }
        (Some(_), None, _) => return Err(required("params")),
        (None, None, Some(b)) => *b.kind(),
        (None, _, None) => return Err(required("kind")),
    };
    let severity = match (&input.severity, base) {
        (Some(s), _) => Severity::parse(s).map_err(|e| invalid(&e, "severity"))?,
        (None, Some(b)) => b.severity(),
        (None, None) => return Err(required("severity")),
    };
    let target = match (&input.target, base) {
        (Some(t), _) => target(state, ctx, t).await?,
        (None, Some(b)) => b.target(),
        (None, None) => return Err(required("target")),
    };
    let hysteresis = match input.hysteresis {
        Some(Some(h)) => Some(Hysteresis::new(h).map_err(|e| invalid(&e, "hysteresis"))?),
        Some(None) => None,
        None => base.and_then(Rule::hysteresis),
    };
    let hold = match input.hold_seconds {
        Some(Some(s)) => Some(HoldTime::new(s).map_err(|e| invalid(&e, "hold_seconds"))?),
        Some(None) => None,
        None => base.and_then(Rule::hold),
    };
    Rule::new(severity, target, kind, hysteresis, hold).map_err(|e| invalid(&e, "target"))
}

async fn find(state: &AppState, ctx: &ApiCtx, id: i64) -> ApiResult<AlertRule> {
    Ok(state.store().alert_rules().get(ctx.tenant_id(), AlertRuleId::new(id)).await?)
}

/// The tenant's rules, by id.
#[utoipa::path(get, path = "/api/v1/alert-rules", operation_id = "list_alert_rules", tag = "alert-rules",
    params(AlertRuleParams),
    responses((status = 200, description = "A page of rules", body = AlertRulePage), ReadErrors))]
pub async fn list(
    State(state): State<AppState>,
    ApiViewer(ctx): ApiViewer,
    ApiQuery(q): ApiQuery<AlertRuleParams>,
) -> ApiResult<Json<AlertRulePage>> {
    let limit = usize::try_from(limit(q.limit)?).unwrap_or(100);
    let after: i64 = match position("alert-rules", q.cursor.as_deref())? {
        None => 0,
        Some(p) => p.parse().map_err(|_| ApiError::bad_param("cursor", "bad cursor"))?,
    };
    let mut rules = state.store().alert_rules().list(ctx.tenant_id(), None).await?;
    rules.sort_by_key(|r| r.id);
    rules.retain(|r| r.id.get() > after);
    let more = rules.len() > limit;
    rules.truncate(limit);
    let mut items = Vec::with_capacity(rules.len());
    for r in &rules {
        items.push(out(&state, &ctx, r).await);
    }
    let next_cursor = more.then(|| items.last().map(|r| cursor("alert-rules", &r.id.to_string()))).flatten();
    Ok(Json(AlertRulePage { items, next_cursor }))
}

/// Creates a rule.
#[utoipa::path(post, path = "/api/v1/alert-rules", operation_id = "create_alert_rule", tag = "alert-rules",
    request_body = AlertRuleIn,
    responses((status = 201, description = "The rule", body = AlertRuleOut), WriteErrors))]
pub async fn create(
    State(state): State<AppState>,
    ApiEditor(ctx): ApiEditor,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<AlertRuleOut>)> {
    let input: AlertRuleIn = decode(body)?;
    let name = input.name.as_deref().ok_or_else(|| ApiError::invalid("name", "name is required"))?;
    let name = Name::parse("name", name).map_err(|e| invalid(&e, "name"))?;
    let rule = rule_of(&state, &ctx, &input, None).await?;
    let new = NewAlertRule { name, rule, enabled: input.enabled.unwrap_or(true), created_by: ctx.user_id() };
    let saved = state.store().alert_rules().create(ctx.tenant_id(), &new).await?;
    ctx.audit(
        &state,
        "alert_rule.created",
        ("alert_rule", Some(saved.id.to_string())),
        crate::routes::alerts::rules::rule_json(&saved),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(out(&state, &ctx, &saved).await)))
}

/// One rule.
#[utoipa::path(get, path = "/api/v1/alert-rules/{id}", operation_id = "get_alert_rule", tag = "alert-rules",
    params(("id" = i64, Path, description = "The rule's id")),
    responses((status = 200, description = "The rule", body = AlertRuleOut), ReadErrors))]
pub async fn show(
    State(state): State<AppState>,
    ApiViewer(ctx): ApiViewer,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<AlertRuleOut>> {
    let r = find(&state, &ctx, id).await?;
    Ok(Json(out(&state, &ctx, &r).await))
}

/// Changes a rule: the fields given. A device's own threshold takes only `enabled`.
#[utoipa::path(patch, path = "/api/v1/alert-rules/{id}", operation_id = "update_alert_rule", tag = "alert-rules",
    request_body = AlertRuleIn, params(("id" = i64, Path, description = "The rule's id")),
    responses((status = 200, description = "The rule", body = AlertRuleOut), WriteErrors))]
pub async fn update(
    State(state): State<AppState>,
    ApiEditor(ctx): ApiEditor,
    ApiPath(id): ApiPath<i64>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<AlertRuleOut>> {
    let input: AlertRuleIn = decode(body)?;
    let current = find(&state, &ctx, id).await?;
    let store = state.store().alert_rules();
    let changes_rule = input.name.is_some()
        || input.kind.is_some()
        || input.params.is_some()
        || input.severity.is_some()
        || input.target.is_some()
        || input.hysteresis.is_some()
        || input.hold_seconds.is_some();
    if changes_rule {
        if current.source == RuleSource::DeviceAlarm {
            return Err(ApiError::Conflict {
                message:
                    "a device's threshold changes with the device; here it can only be enabled or disabled"
                        .into(),
                field: None,
            });
        }
        let name = match &input.name {
            Some(n) => Name::parse("name", n).map_err(|e| invalid(&e, "name"))?,
            None => Name::parse("name", &current.name).map_err(|e| invalid(&e, "name"))?,
        };
        let rule = rule_of(&state, &ctx, &input, Some(&current.rule)).await?;
        store.update(ctx.tenant_id(), current.id, &AlertRuleFields { name, rule }, ctx.user_id()).await?;
    }
    if let Some(enabled) = input.enabled.filter(|e| *e != current.enabled) {
        store.set_enabled(ctx.tenant_id(), current.id, enabled, ctx.user_id()).await?;
    }
    let saved = find(&state, &ctx, id).await?;
    ctx.audit(
        &state,
        "alert_rule.updated",
        ("alert_rule", Some(id.to_string())),
        crate::routes::alerts::rules::rule_json(&saved),
    )
    .await?;
    Ok(Json(out(&state, &ctx, &saved).await))
}

/// Deletes a rule; its open alerts are cleared (their history stays).
#[utoipa::path(delete, path = "/api/v1/alert-rules/{id}", operation_id = "delete_alert_rule", tag = "alert-rules",
    params(("id" = i64, Path, description = "The rule's id")),
    responses((status = 204, description = "Deleted"), WriteErrors))]
pub async fn delete(
    State(state): State<AppState>,
    ApiEditor(ctx): ApiEditor,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    let current = find(&state, &ctx, id).await?;
    state.store().alert_rules().delete(ctx.tenant_id(), current.id, ctx.user_id()).await?;
    ctx.audit(
        &state,
        "alert_rule.deleted",
        ("alert_rule", Some(id.to_string())),
        json!({"name": current.name}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What a rule would have done over the last 30 days (nothing is saved).
#[utoipa::path(post, path = "/api/v1/alert-rules/preview", operation_id = "preview_alert_rule", tag = "alert-rules",
    request_body = AlertRuleIn,
    responses((status = 200, description = "The preview", body = PreviewOut), WriteErrors))]
pub async fn preview_rule(
    State(state): State<AppState>,
    ApiViewer(ctx): ApiViewer,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<PreviewOut>> {
    let input: AlertRuleIn = decode(body)?;
    let rule = rule_of(&state, &ctx, &input, None).await?;
    let Outcome { raised, looked_at, more, latest, replayed } =
        preview(&state, ctx.tenant_id(), &rule, Utc::now()).await?;
    let latest = latest.into_iter().map(|(at, target, value)| PreviewHit { at, target, value }).collect();
    Ok(Json(PreviewOut { raised, replayed, looked_at, more, latest }))
}
