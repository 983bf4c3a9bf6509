//! Alert evaluation (SPEC §5): every enabled rule of every tenant, against the rollups, readings
//! and gateway state, through the pure decisions of `tds_domain::alerts`, applied to the alert
//! lifecycle of `tds_store::alerts` (raise is idempotent, so evaluating twice never duplicates).
//!
//! One round evaluates everything; the runner runs it every [`PERIOD`] on one instance at a time
//! across all instances (job lease), so a consumption crossing raises within a few seconds of the
//! rollup round that saw it, and the clock rules (no data, offline, certificate expiry) raise
//! even though nothing arrives. It reads through the pool and writes only when a decision
//! changes something, so it does not compete with ingestion for the writer.
//!
//! Must not: notify anyone (the outbox does, from the alert history), or read a clock other
//! than the `now` it is given.

use crate::runner::Next;
use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;
use tds_domain::alerts::{AlertState, Decision, Facts, RuleKind, Target};
use tds_domain::alerts::{clock, evaluate, water};
use tds_domain::buckets::{bucket_start, next_bucket_start};
use tds_domain::{Bucket, DeviceId, GatewayId, TenantId, TimeZone};
use tds_store::alert_rules::AlertRule;
use tds_store::alerts::NewAlert;
use tds_store::certificates::CertificateStatus;
use tds_store::devices::Device;
use tds_store::gateways::Gateway;
use tds_store::{Store, StoreError};

/// How often the rules are evaluated.
pub const PERIOD: std::time::Duration = std::time::Duration::from_secs(5);

/// What one round did (for logs and tests).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    pub rules: usize,
    pub raised: usize,
    pub cleared: usize,
}

/// The job: one round at `Utc::now()`.
pub async fn job(store: Store) -> anyhow::Result<Next> {
    let done = round(&store, Utc::now()).await?;
    if done.raised + done.cleared > 0 {
        tracing::info!(raised = done.raised, cleared = done.cleared, rules = done.rules, "alerts evaluated");
    }
    Ok(Next::Period)
}

/// The tenant's devices and gateways, read once per round.
struct TenantView {
    zone: TimeZone,
    devices: Vec<Device>,
    gateways: HashMap<GatewayId, Gateway>,
}

async fn view(store: &Store, tenant: TenantId) -> Result<TenantView, StoreError> {
    let zone = store.tenants().get(tenant).await?.timezone;
    let devices = store.devices().list(tenant).await?;
    let gateways = store.gateways().all(tenant).await?.into_iter().map(|g| (g.id, g)).collect();
    Ok(TenantView { zone, devices, gateways })
}

/// Evaluates every enabled rule at `now`.
pub async fn round(store: &Store, now: DateTime<Utc>) -> Result<Round, StoreError> {
    let rules = store.alert_rules().staff_enabled().await?;
    let mut done = Round { rules: rules.len(), ..Round::default() };
    let mut views: HashMap<TenantId, TenantView> = HashMap::new();
    for rule in rules {
        if let std::collections::hash_map::Entry::Vacant(slot) = views.entry(rule.tenant_id) {
            slot.insert(view(store, rule.tenant_id).await?);
        }
        let Some(v) = views.get(&rule.tenant_id) else { continue };
        match evaluate_rule(store, v, &rule, now).await {
            Ok((raised, cleared)) => {
                done.raised += raised;
                done.cleared += cleared;
            }
            // One broken rule never stops the others.
            Err(e) => tracing::warn!(rule = rule.id.get(), error = %e, "alert rule not evaluated"),
        }
    }
    Ok(done)
}

/// The members of the rule's target that its kind is about: devices, or gateways.
fn devices_of(v: &TenantView, target: Target) -> Vec<&Device> {
    v.devices
        .iter()
        .filter(|d| d.archived_at.is_none() && target.covers_device(d.id, d.gateway_id, d.medium))
        .collect()
}

fn gateways_of(v: &TenantView, target: Target) -> Vec<&Gateway> {
    let mut found: Vec<&Gateway> = v
        .gateways
        .values()
        .filter(|g| g.status != tds_domain::GatewayStatus::Decommissioned && target.covers_gateway(g.id))
        .collect();
    found.sort_by_key(|g| g.mac);
    found
}

async fn evaluate_rule(
    store: &Store,
    v: &TenantView,
    rule: &AlertRule,
    now: DateTime<Utc>,
) -> Result<(usize, usize), StoreError> {
    let tenant = rule.tenant_id;
    let open: std::collections::HashSet<Target> =
        store.alerts().open_for_rule(tenant, rule.id).await?.into_iter().map(|a| a.target).collect();
    let state = |t: Target| if open.contains(&t) { AlertState::Active } else { AlertState::Inactive };
    let damping = rule.rule.damping();
    let mut decisions: Vec<(Target, Decision)> = Vec::new();
    match rule.rule.kind() {
        RuleKind::DailyConsumption(limit) | RuleKind::MonthlyConsumption(limit) => {
            let bucket = if matches!(rule.rule.kind(), RuleKind::DailyConsumption(_)) {
                Bucket::Day
            } else {
                Bucket::Month
            };
            let start = bucket_start(v.zone, bucket, now);
            let end = next_bucket_start(v.zone, bucket, now);
            for d in devices_of(v, rule.rule.target()) {
                let so_far: f64 = store
                    .rollups()
                    .for_device(tenant, d.id, bucket, start, end)
                    .await?
                    .iter()
                    .filter_map(|r| r.consumption)
                    .sum();
                let t = Target::Device(d.id);
                decisions.push((t, evaluate::consumption(limit, damping, state(t), so_far)));
            }
        }
        RuleKind::GaugeBand(band) => {
            let back = damping.hold.map_or(Duration::hours(1), |h| h.as_delta() + Duration::hours(1));
            for d in devices_of(v, rule.rule.target()) {
                let samples: Vec<(DateTime<Utc>, f64)> = store
                    .readings()
                    .for_device(tenant, d.id, now - back, now + Duration::seconds(1), 10_000)
                    .await?
                    .into_iter()
                    .map(|r| (r.time, r.value))
                    .collect();
                let t = Target::Device(d.id);
                decisions.push((t, evaluate::gauge_band(band, damping, state(t), &samples)));
            }
        }
        RuleKind::NoData(period) => {
            for d in devices_of(v, rule.rule.target()) {
                // A device that never reported is silent since it was registered.
                let last = d.last_seen_at.or(Some(d.created_at));
                let t = Target::Device(d.id);
                decisions.push((t, clock::no_data(period, state(t), last, now)));
            }
        }
        RuleKind::GatewayOffline(period) => {
            for g in gateways_of(v, rule.rule.target()) {
                let since = if g.online { None } else { Some(g.last_seen_at.unwrap_or(g.created_at)) };
                let t = Target::Gateway(g.id);
                decisions.push((t, clock::gateway_offline(period, state(t), since, now)));
            }
        }
        RuleKind::CertificateExpiry(days) => {
            for g in gateways_of(v, rule.rule.target()) {
                let certs = store.certificates().for_gateway(tenant, g.id).await?;
                let expires = certs
                    .iter()
                    .find(|c| c.status == CertificateStatus::Active)
                    .or_else(|| certs.iter().max_by_key(|c| c.issued_at))
                    .map(|c| c.expires_at);
                let t = Target::Gateway(g.id);
                decisions.push((t, clock::certificate_expiry(days, state(t), v.zone, expires, now)));
            }
        }
        RuleKind::DeadLetterRate(rate) => {
            let back = damping.hold.map_or(Duration::hours(1), |h| h.as_delta() + Duration::hours(1));
            let times = store.rejected().times_since(tenant, now - back).await?;
            for g in gateways_of(v, rule.rule.target()) {
                let events: Vec<(DateTime<Utc>, u32)> =
                    times.iter().filter(|(gw, _)| *gw == Some(g.id)).map(|(_, at)| (*at, 1)).collect();
                let t = Target::Gateway(g.id);
                decisions.push((t, evaluate::dead_letter_rate(rate, damping, state(t), &events, now)));
            }
        }
        RuleKind::NightFlow(night) => {
            let back = Duration::days(i64::from(night.nights()) + 2);
            for d in devices_of(v, rule.rule.target()) {
                let hours = hourly(store, tenant, d.id, now - back, now).await?;
                let t = Target::Device(d.id);
                decisions.push((t, water::night_flow(night, damping, state(t), v.zone, &hours, now)));
            }
        }
        RuleKind::ContinuousFlow(flow) => {
            let back = Duration::hours(i64::from(flow.hours()) + 2);
            for d in devices_of(v, rule.rule.target()) {
                let hours = hourly(store, tenant, d.id, now - back, now).await?;
                let t = Target::Device(d.id);
                decisions.push((t, water::continuous_flow(flow, state(t), v.zone, &hours, now)));
            }
        }
    }
    apply(store, v, rule, decisions, now).await
}

/// A device's hourly consumption from its rollups (hours without consumption are absent).
async fn hourly(
    store: &Store,
    tenant: TenantId,
    device: DeviceId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(DateTime<Utc>, f64)>, StoreError> {
    Ok(store
        .rollups()
        .for_device(tenant, device, Bucket::Hour, from, to + Duration::hours(1))
        .await?
        .into_iter()
        .filter_map(|r| r.consumption.map(|c| (r.start, c)))
        .collect())
}

async fn apply(
    store: &Store,
    v: &TenantView,
    rule: &AlertRule,
    decisions: Vec<(Target, Decision)>,
    now: DateTime<Utc>,
) -> Result<(usize, usize), StoreError> {
    let (mut raised, mut cleared) = (0, 0);
    for (target, decision) in decisions {
        match decision {
            Decision::Raise(facts) => {
                let new = NewAlert {
                    rule: rule.id,
                    target,
                    severity: rule.rule.severity(),
                    message: message(v, rule, target, &facts),
                    value: Some(facts.value),
                    at: now,
                };
                if store.alerts().raise(rule.tenant_id, &new).await?.new {
                    raised += 1;
                }
            }
            Decision::Clear => {
                if store.alerts().clear(rule.tenant_id, rule.id, target, now).await?.is_some() {
                    cleared += 1;
                }
            }
            Decision::Hold | Decision::Nothing => {}
        }
    }
    Ok((raised, cleared))
}

/// What the alert says, in English for the record (pages and emails word it in the reader's
/// language from the kind, the value and the threshold).
fn message(v: &TenantView, rule: &AlertRule, target: Target, facts: &Facts) -> String {
    let what = match target {
        Target::Device(id) => v
            .devices
            .iter()
            .find(|d| d.id == id)
            .map(|d| {
                let gw = v.gateways.get(&d.gateway_id).map(|g| g.code.to_string()).unwrap_or_default();
                format!("device {} of {gw}", d.code)
            })
            .unwrap_or_default(),
        Target::Gateway(id) => v.gateways.get(&id).map(|g| format!("gateway {}", g.code)).unwrap_or_default(),
        Target::Tenant | Target::Medium(_) => String::new(),
    };
    let unit = match target {
        Target::Device(id) => {
            v.devices.iter().find(|d| d.id == id).map(|d| d.unit.to_string()).unwrap_or_default()
        }
        _ => String::new(),
    };
    let (value, threshold) = (facts.value, facts.threshold);
    match rule.rule.kind() {
        RuleKind::DailyConsumption(_) => {
            format!("{what}: {value} {unit} today, threshold {threshold} {unit}")
        }
        RuleKind::MonthlyConsumption(_) => {
            format!("{what}: {value} {unit} this month, threshold {threshold} {unit}")
        }
        RuleKind::GaugeBand(_) => format!("{what}: {value} {unit} outside the band (limit {threshold})"),
        RuleKind::NoData(_) => format!("{what}: no reading for {}", span(value)),
        RuleKind::GatewayOffline(_) => format!("{what}: offline for {}", span(value)),
        RuleKind::CertificateExpiry(_) => format!("{what}: certificate expires in {value} days"),
        RuleKind::DeadLetterRate(_) => format!("{what}: {value} rejected messages in an hour"),
        RuleKind::NightFlow(_) => format!("{what}: night flow {value} {unit}/h (level {threshold})"),
        RuleKind::ContinuousFlow(_) => format!("{what}: consumption in every hour for {value} hours"),
    }
}

/// Seconds as people say them.
fn span(seconds: f64) -> String {
    let s = seconds as i64;
    if s >= 86_400 {
        format!("{} d {} h", s / 86_400, (s % 86_400) / 3600)
    } else if s >= 3600 {
        format!("{} h {} min", s / 3600, (s % 3600) / 60)
    } else {
        format!("{} min", s / 60)
    }
}
