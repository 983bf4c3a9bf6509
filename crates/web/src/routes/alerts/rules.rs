//! The rule editor (SPEC §5): the tenant's rules (a device's own thresholds listed with a link to
//! its form, where they are edited), a form for every kind with its target, severity,
//! hysteresis and hold time, and the preview: the rule replayed over the last 30 days of rollups
//! ("would have raised N alerts") before it is saved. Viewers read; editors and admins change.

use super::form::{KINDS, RuleForm, target_value};
use crate::AppState;
use crate::auth::{Editor, TenantCtx, Viewer};
use crate::error::{WebError, WebResult};
use crate::forms::FieldErrors;
use crate::page::PageCtx;
use crate::routes::table::Routes;
use crate::routes::{audit, render, render_status};
use askama::Template;
use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use std::collections::HashMap;
use tds_domain::alerts::preview::{self, HourRow};
use tds_domain::alerts::{AlertState, Decision, Rule, RuleKind, Target, clock};
use tds_domain::buckets::bucket_start;
use tds_domain::{AlertRuleId, Bucket, DeviceId, Medium, TenantId};
use tds_store::StoreError;
use tds_store::alert_rules::{AlertRule, AlertRuleFields, NewAlertRule, RuleSource};

/// Days a preview looks back.
pub const PREVIEW_DAYS: i64 = 30;
/// Devices a preview replays at most (the first by code); the page says when there were more.
pub const PREVIEW_DEVICES: usize = 200;

pub fn routes() -> Routes {
    Routes::new()
        .route("/alerts/rules", get(list))
        .route("/alerts/rules/new", get(new_form).post(create))
        .route("/alerts/rules/preview", post(preview_fragment))
        .route("/alerts/rules/{id}", get(edit_form).post(update))
        .route("/alerts/rules/{id}/enabled", post(set_enabled))
        .route("/alerts/rules/{id}/delete", post(delete))
}

#[derive(Template)]
#[template(path = "alerts/rules.html")]
struct ListTemplate {
    ctx: PageCtx,
    rules: Vec<(AlertRule, String)>,
}

impl ListTemplate {
    fn severity_class(rule: &AlertRule) -> &'static str {
        super::severity_class(rule.rule.severity())
    }

    /// A device's or gateway's page, for a rule on one.
    fn target_link(rule: &AlertRule) -> Option<String> {
        match rule.rule.target() {
            Target::Device(d) => Some(format!("/devices/{d}")),
            Target::Gateway(g) => Some(format!("/gateways/{g}")),
            Target::Tenant | Target::Medium(_) => None,
        }
    }
}

#[derive(Template)]
#[template(path = "alerts/rule_form.html")]
struct FormTemplate {
    ctx: PageCtx,
    id: Option<i64>,
    form: RuleForm,
    errors: FieldErrors,
    targets: Vec<(String, String)>,
    kinds: [&'static str; 9],
}

#[derive(Template)]
#[template(path = "alerts/preview.html")]
struct PreviewTemplate {
    ctx: PageCtx,
    outcome: Result<Outcome, FieldErrors>,
}

/// What a preview found.
#[derive(Debug)]
pub struct Outcome {
    /// Raises the rule would have made.
    pub raised: usize,
    /// Targets (devices or gateways) looked at, and whether there were more than that.
    pub looked_at: usize,
    pub more: bool,
    /// The latest raises: when, what about, the value.
    pub latest: Vec<(DateTime<Utc>, String, f64)>,
    /// Whether the kind was replayed over 30 days (else evaluated now).
    pub replayed: bool,
}

/// The targets a rule can have, as the form's select lists them.
async fn targets(state: &AppState, ctx: &PageCtx, tenant: TenantId) -> WebResult<Vec<(String, String)>> {
    let mut out = vec![("tenant".to_owned(), ctx.t("alerts.whole_tenant"))];
    for m in Medium::ALL {
        out.push((
            format!("medium:{}", m.as_str()),
            format!("{}: {}", ctx.t("rules.all_of"), ctx.label("medium", m.as_str())),
        ));
    }
    let gateways = state.store().gateways().all(tenant).await?;
    let codes: HashMap<_, _> = gateways.iter().map(|g| (g.id, g.code.to_string())).collect();
    for g in &gateways {
        out.push((
            format!("gateway:{}", g.id),
            format!("{} {} · {}", ctx.t("alerts.gateway"), g.code, g.name),
        ));
    }
    let mut devices = state.store().devices().list(tenant).await?;
    devices.retain(|d| d.archived_at.is_none());
    devices.sort_by(|a, b| (codes.get(&a.gateway_id), &a.code).cmp(&(codes.get(&b.gateway_id), &b.code)));
    for d in devices {
        let gw = codes.get(&d.gateway_id).cloned().unwrap_or_default();
        out.push((format!("device:{}", d.id), format!("{gw} / {} · {}", d.code, d.name)));
    }
    Ok(out)
}

/// What a rule's target is, in people's terms.
async fn describe_target(state: &AppState, ctx: &PageCtx, tenant: TenantId, target: Target) -> String {
    match target {
        Target::Tenant => ctx.t("alerts.whole_tenant"),
        Target::Medium(m) => format!("{}: {}", ctx.t("rules.all_of"), ctx.label("medium", m.as_str())),
        Target::Gateway(g) => match state.store().gateways().get(tenant, g).await {
            Ok(g) => format!("{} {}", ctx.t("alerts.gateway"), g.code),
            Err(_) => String::new(),
        },
        Target::Device(d) => match state.store().devices().get(tenant, d).await {
            Ok(d) => format!("{} {} · {}", ctx.t("alerts.device"), d.code, d.name),
            Err(_) => String::new(),
        },
    }
}

async fn list(State(state): State<AppState>, Viewer(t): Viewer, ctx: PageCtx) -> WebResult<Response> {
    let ctx = ctx.section("alerts", "rules.title");
    let mut rules = Vec::new();
    for r in state.store().alert_rules().list(t.tenant_id(), None).await? {
        let target = describe_target(&state, &ctx, t.tenant_id(), r.rule.target()).await;
        rules.push((r, target));
    }
    render(&ListTemplate { ctx, rules }, None)
}

async fn form_page(
    state: &AppState,
    t: &TenantCtx,
    ctx: PageCtx,
    id: Option<i64>,
    form: RuleForm,
    errors: FieldErrors,
) -> WebResult<Response> {
    let title = if id.is_some() { "rules.edit" } else { "rules.new" };
    let ctx = ctx.section("alerts", title);
    let targets = targets(state, &ctx, t.tenant_id()).await?;
    let page = FormTemplate { ctx, id, form, errors, targets, kinds: KINDS };
    if page.errors.is_empty() {
        render(&page, None)
    } else {
        render_status(axum::http::StatusCode::UNPROCESSABLE_ENTITY, &page)
    }
}

async fn new_form(State(state): State<AppState>, Editor(t): Editor, ctx: PageCtx) -> WebResult<Response> {
    form_page(&state, &t, ctx, None, RuleForm::blank(), FieldErrors::default()).await
}

/// A device's own threshold rule is edited on its form, not here.
fn editable(rule: &AlertRule) -> Result<(), WebError> {
    if rule.source == RuleSource::DeviceAlarm { Err(WebError::Forbidden) } else { Ok(()) }
}

async fn edit_form(
    State(state): State<AppState>,
    Viewer(t): Viewer,
    Path(id): Path<i64>,
    ctx: PageCtx,
) -> WebResult<Response> {
    let rule = state.store().alert_rules().get(t.tenant_id(), AlertRuleId::new(id)).await?;
    if let (RuleSource::DeviceAlarm, Target::Device(d)) = (rule.source, rule.rule.target()) {
        return Ok(Redirect::to(&format!("/devices/{d}/edit")).into_response());
    }
    let form = RuleForm::of(&rule.name, &rule.rule, rule.enabled);
    form_page(&state, &t, ctx, Some(id), form, FieldErrors::default()).await
}

/// The store's refusals as field errors: a target of another tenant (or gone), a taken name.
fn store_errors(ctx: &PageCtx, e: StoreError) -> Result<FieldErrors, WebError> {
    let mut errors = FieldErrors::default();
    match e {
        StoreError::NotFound => errors.set("target", ctx.t("rules.target_gone")),
        StoreError::Conflict(m) => errors.set("name", m),
        StoreError::Invalid(v) => errors.set("target", ctx.lang.validation(&v)),
        e => return Err(e.into()),
    }
    Ok(errors)
}

async fn create(
    State(state): State<AppState>,
    Editor(t): Editor,
    ctx: PageCtx,
    Form(form): Form<RuleForm>,
) -> WebResult<Response> {
    let (name, rule, enabled) = match form.parse(ctx.lang) {
        Ok(parsed) => parsed,
        Err(errors) => return form_page(&state, &t, ctx, None, form, errors).await,
    };
    let new = NewAlertRule { name, rule, enabled, created_by: Some(t.me.user.id) };
    let saved = match state.store().alert_rules().create(t.tenant_id(), &new).await {
        Ok(saved) => saved,
        Err(e) => {
            let errors = store_errors(&ctx, e)?;
            return form_page(&state, &t, ctx, None, form, errors).await;
        }
    };
    audit(
        &state,
        &t.me,
        Some(&t),
        "alert_rule.created",
        ("alert_rule", Some(saved.id.to_string())),
        rule_json(&saved),
    )
    .await?;
    Ok(Redirect::to("/alerts/rules?done=saved").into_response())
}

async fn update(
    State(state): State<AppState>,
    Editor(t): Editor,
    Path(id): Path<i64>,
    ctx: PageCtx,
    Form(form): Form<RuleForm>,
) -> WebResult<Response> {
    let store = state.store();
    let current = store.alert_rules().get(t.tenant_id(), AlertRuleId::new(id)).await?;
    editable(&current)?;
    let (name, rule, enabled) = match form.parse(ctx.lang) {
        Ok(parsed) => parsed,
        Err(errors) => return form_page(&state, &t, ctx, Some(id), form, errors).await,
    };
    let fields = AlertRuleFields { name, rule };
    let saved = match store.alert_rules().update(t.tenant_id(), current.id, &fields, Some(t.me.user.id)).await
    {
        Ok(saved) => saved,
        Err(e) => {
            let errors = store_errors(&ctx, e)?;
            return form_page(&state, &t, ctx, Some(id), form, errors).await;
        }
    };
    if saved.enabled != enabled {
        store.alert_rules().set_enabled(t.tenant_id(), saved.id, enabled, Some(t.me.user.id)).await?;
    }
    audit(
        &state,
        &t.me,
        Some(&t),
        "alert_rule.updated",
        ("alert_rule", Some(id.to_string())),
        rule_json(&saved),
    )
    .await?;
    Ok(Redirect::to("/alerts/rules?done=saved").into_response())
}

#[derive(Debug, serde::Deserialize)]
struct EnabledForm {
    #[serde(default)]
    enabled: String,
}

async fn set_enabled(
    State(state): State<AppState>,
    Editor(t): Editor,
    Path(id): Path<i64>,
    Form(form): Form<EnabledForm>,
) -> WebResult<Response> {
    let enabled = form.enabled == "true";
    // A device's threshold can be muted here too (its value stays on the device).
    let rule = state.store().alert_rules().get(t.tenant_id(), AlertRuleId::new(id)).await?;
    state.store().alert_rules().set_enabled(t.tenant_id(), rule.id, enabled, Some(t.me.user.id)).await?;
    let action = if enabled { "alert_rule.enabled" } else { "alert_rule.disabled" };
    audit(&state, &t.me, Some(&t), action, ("alert_rule", Some(id.to_string())), json!({"name": rule.name}))
        .await?;
    Ok(Redirect::to("/alerts/rules?done=saved").into_response())
}

async fn delete(
    State(state): State<AppState>,
    Editor(t): Editor,
    Path(id): Path<i64>,
) -> WebResult<Response> {
    let rule = state.store().alert_rules().get(t.tenant_id(), AlertRuleId::new(id)).await?;
    editable(&rule)?;
    state.store().alert_rules().delete(t.tenant_id(), rule.id, Some(t.me.user.id)).await?;
    audit(
        &state,
        &t.me,
        Some(&t),
        "alert_rule.deleted",
        ("alert_rule", Some(id.to_string())),
        json!({"name": rule.name}),
    )
    .await?;
    Ok(Redirect::to("/alerts/rules?done=deleted").into_response())
}

pub(crate) fn rule_json(r: &AlertRule) -> serde_json::Value {
    json!({
        "name": r.name,
        "kind": r.rule.kind().name(),
        "params": serde_json::from_str::<serde_json::Value>(&r.rule.kind().params_json()).unwrap_or_default(),
        "severity": r.rule.severity().as_str(),
        "target": target_value(r.rule.target()),
        "enabled": r.enabled,
    })
}

async fn preview_fragment(
    State(state): State<AppState>,
    Viewer(t): Viewer,
    ctx: PageCtx,
    Form(form): Form<RuleForm>,
) -> WebResult<Response> {
    let outcome = match form.parse(ctx.lang) {
        Ok((_, rule, _)) => Ok(preview(&state, t.tenant_id(), &rule, Utc::now()).await?),
        Err(errors) => Err(errors),
    };
    render(&PreviewTemplate { ctx, outcome }, None)
}

/// The rule against the tenant's data: replayed over the last [`PREVIEW_DAYS`] days of hourly
/// rollups for the kinds on device data (at most [`PREVIEW_DEVICES`] devices), or evaluated now
/// for the kinds about gateways.
pub async fn preview(
    state: &AppState,
    tenant: TenantId,
    rule: &Rule,
    now: DateTime<Utc>,
) -> Result<Outcome, StoreError> {
    let store = state.store();
    let zone = store.tenants().get(tenant).await?.timezone;
    let mut latest: Vec<(DateTime<Utc>, String, f64)> = Vec::new();
    if preview::replays_from_rollups(rule.kind()) {
        let mut devices = store.devices().list(tenant).await?;
        devices
            .retain(|d| d.archived_at.is_none() && rule.target().covers_device(d.id, d.gateway_id, d.medium));
        devices.sort_by(|a, b| a.code.cmp(&b.code).then(a.id.cmp(&b.id)));
        let more = devices.len() > PREVIEW_DEVICES;
        devices.truncate(PREVIEW_DEVICES);
        let from = now - Duration::days(PREVIEW_DAYS);
        // Far enough back for the kind's inputs at `from`: its month so far, nights, hold time.
        let reach = bucket_start(zone, Bucket::Month, from).min(from - Duration::days(33));
        let ids: Vec<DeviceId> = devices.iter().map(|d| d.id).collect();
        let mut hours: HashMap<DeviceId, Vec<HourRow>> = HashMap::new();
        for r in
            store.rollups().for_devices(tenant, &ids, Bucket::Hour, reach, now + Duration::hours(1)).await?
        {
            hours.entry(r.device_id).or_default().push(HourRow {
                start: r.start,
                consumption: r.consumption,
                min: r.min,
                max: r.max,
                count: r.count,
            });
        }
        let mut raised = 0;
        for d in &devices {
            let rows = hours.remove(&d.id).unwrap_or_default();
            for hit in preview::replay(rule, zone, &rows, from, now) {
                raised += 1;
                latest.push((hit.at, format!("{} · {}", d.code, d.name), hit.value));
            }
        }
        latest.sort_by_key(|l| std::cmp::Reverse(l.0));
        latest.truncate(10);
        return Ok(Outcome { raised, looked_at: devices.len(), more, latest, replayed: true });
    }
    // Gateways and the clock: who would be alerted now.
    let gateways: Vec<_> = store
        .gateways()
        .all(tenant)
        .await?
        .into_iter()
        .filter(|g| {
            g.status != tds_domain::GatewayStatus::Decommissioned && rule.target().covers_gateway(g.id)
        })
        .collect();
    let rejected = match rule.kind() {
        RuleKind::DeadLetterRate(_) => store.rejected().times_since(tenant, now - Duration::hours(1)).await?,
        _ => Vec::new(),
    };
    let mut raised = 0;
    for g in &gateways {
        let decision = match rule.kind() {
            RuleKind::GatewayOffline(p) => {
                let since = if g.online { None } else { Some(g.last_seen_at.unwrap_or(g.created_at)) };
                clock::gateway_offline(p, AlertState::Inactive, since, now)
            }
            RuleKind::CertificateExpiry(days) => {
                let certs = store.certificates().for_gateway(tenant, g.id).await?;
                let expires = certs
                    .iter()
                    .find(|c| c.status == tds_store::certificates::CertificateStatus::Active)
                    .map(|c| c.expires_at);
                clock::certificate_expiry(days, AlertState::Inactive, zone, expires, now)
            }
            RuleKind::DeadLetterRate(rate) => {
                let events: Vec<_> =
                    rejected.iter().filter(|(gw, _)| *gw == Some(g.id)).map(|(_, at)| (*at, 1)).collect();
                tds_domain::alerts::evaluate::dead_letter_rate(
                    rate,
                    rule.damping(),
                    AlertState::Inactive,
                    &events,
                    now,
                )
            }
            _ => Decision::Nothing,
        };
        if let Decision::Raise(facts) = decision {
            raised += 1;
            latest.push((now, format!("{} · {}", g.code, g.name), facts.value));
        }
    }
    latest.truncate(10);
    Ok(Outcome { raised, looked_at: gateways.len(), more: false, latest, replayed: false })
}
