//! Alert evaluation (SPEC §5): every enabled rule of every tenant, against the rollups, readings
//! and gateway state, through the pure decisions of `tds_domain::alerts`, applied to the alert
//! lifecycle of `tds_store::alerts` (raise is idempotent, so evaluating twice never duplicates).
//!
//! Two entries, both run by the job runner on one instance at a time across all instances:
//! - [`touched`], right after a rollup round, for the devices it refreshed (a backlog's rounds'
//!   devices once it is over: see [`crate::rollups::Worker`]): the rules on a device's data
//!   (consumption, gauge band, night and continuous flow), so that a consumption crossing raises
//!   within seconds of its commit;
//! - [`round`], every [`PERIOD`], for every rule: the clock rules (no data, gateway offline,
//!   certificate expiry, dead letters) raise though nothing arrives, and a new local day or
//!   month clears the consumption alerts of the old one.
//!
//! The rules themselves are kept between evaluations ([`RuleCache`]) and read again only for a
//! tenant whose rules changed. Reads are batched per tenant (its devices, gateways and open alerts once; consumption totals
//! for all its devices in one statement), so a round's cost grows with the tenants and the rules
//! that need raw data, not with one query per device rule. It writes only when a decision changes
//! something, so it does not compete with ingestion for the writer.
//!
//! Must not: notify anyone (the notifier does, from the alert history), or read a clock other
//! than the `now` it is given.

mod message;
mod rules;

pub use rules::RuleCache;

use crate::runner::Next;
use chrono::{DateTime, Duration, Utc};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use tds_domain::alerts::{AlertState, Decision, RuleKind, Target};
use tds_domain::alerts::{clock, evaluate, water};
use tds_domain::buckets::{bucket_start, next_bucket_start};
use tds_domain::{AlertRuleId, Bucket, DeviceId, GatewayId, LiveEvent, TenantId, TimeZone};
use tds_store::alert_rules::AlertRule;
use tds_store::alerts::NewAlert;
use tds_store::certificates::CertificateStatus;
use tds_store::devices::WatchedDevice;
use tds_store::gateways::Gateway;
use tds_store::{Store, StoreError};
use tokio::sync::broadcast;

/// Up to this many devices are read by id; more, and the tenant's are read whole.
const FEW_DEVICES: usize = 100;

/// How often every rule is evaluated.
pub const PERIOD: std::time::Duration = std::time::Duration::from_secs(5);

/// What one evaluation did (for logs, tests and the live badge).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Round {
    pub rules: usize,
    pub raised: usize,
    pub cleared: usize,
    /// The tenants whose alerts changed.
    pub tenants: BTreeSet<TenantId>,
}

impl Round {
    fn add(&mut self, other: Self) {
        self.rules += other.rules;
        self.raised += other.raised;
        self.cleared += other.cleared;
        self.tenants.extend(other.tenants);
    }
}

/// Where alert changes are announced: the live-event bus of the pages (`None`: nowhere).
pub type Live = Option<broadcast::Sender<LiveEvent>>;

/// The periodic job: one [`round`] at `Utc::now()` with the rules kept in `rules`, its changes
/// announced on `live`.
pub async fn job(store: Store, rules: Arc<RuleCache>, live: Live) -> anyhow::Result<Next> {
    let done = round(&store, &rules, Utc::now()).await?;
    if done.raised + done.cleared > 0 {
        tracing::info!(raised = done.raised, cleared = done.cleared, rules = done.rules, "alerts evaluated");
    }
    announce(&store, &live, &done).await;
    Ok(Next::Period)
}

/// Tells the pages of each tenant whose alerts changed how many are active now (the badge).
/// A failure only costs the live update: the pages show the truth on their next load.
pub async fn announce(store: &Store, live: &Live, done: &Round) {
    let Some(live) = live else { return };
    for tenant in &done.tenants {
        match store.alerts().active_counts(*tenant).await {
            Ok(active) => {
                let _ = live.send(LiveEvent::Alerts { tenant: *tenant, active });
            }
            Err(e) => tracing::debug!(error = %e, "cannot count active alerts for the live badge"),
        }
    }
}

/// Evaluates every enabled rule at `now` (the rules as `rules` keeps them).
pub async fn round(store: &Store, rules: &RuleCache, now: DateTime<Utc>) -> Result<Round, StoreError> {
    let mut done = Round::default();
    for (tenant, rules) in rules.enabled(store, None).await? {
        let all: Vec<&AlertRule> = rules.iter().collect();
        done.add(tenant_round(store, tenant, &all, None, now).await?);
    }
    Ok(done)
}

/// Evaluates the rules on device data (consumption, gauge band, night and continuous flow) for
/// `devices` only: the ones a rollup round has just refreshed.
pub async fn touched(
    store: &Store,
    rules: &RuleCache,
    devices: &[(TenantId, DeviceId)],
    now: DateTime<Utc>,
) -> Result<Round, StoreError> {
    let mut by_tenant: HashMap<TenantId, HashSet<DeviceId>> = HashMap::new();
    for (tenant, device) in devices {
        by_tenant.entry(*tenant).or_default().insert(*device);
    }
    let tenants: HashSet<TenantId> = by_tenant.keys().copied().collect();
    let mut done = Round::default();
    for (tenant, rules) in rules.enabled(store, Some(&tenants)).await? {
        let Some(devices) = by_tenant.get(&tenant) else { continue };
        let on_data: Vec<&AlertRule> = rules.iter().filter(|r| on_device_data(r)).collect();
        if !on_data.is_empty() {
            done.add(tenant_round(store, tenant, &on_data, Some(devices), now).await?);
        }
    }
    Ok(done)
}

/// Whether the rule looks at a device's readings or rollups (and so can change when they do).
fn on_device_data(rule: &AlertRule) -> bool {
    matches!(
        rule.rule.kind(),
        RuleKind::DailyConsumption(_)
            | RuleKind::MonthlyConsumption(_)
            | RuleKind::GaugeBand(_)
            | RuleKind::NightFlow(_)
            | RuleKind::ContinuousFlow(_)
    )
}

/// The tenant's devices and gateways and what is open, read once per evaluation; the
/// consumption totals are read the first time a rule needs them.
pub(super) struct TenantView {
    tenant: TenantId,
    zone: TimeZone,
    /// Its live devices, as evaluation needs them.
    devices: Vec<WatchedDevice>,
    by_id: HashMap<DeviceId, usize>,
    pub(super) gateways: HashMap<GatewayId, Gateway>,
    open: HashSet<(AlertRuleId, Target)>,
    /// Only these devices (a rollup round's); `None` for all.
    only: Option<HashSet<DeviceId>>,
    totals: HashMap<Bucket, HashMap<DeviceId, f64>>,
}

impl TenantView {
    async fn read(
        store: &Store,
        tenant: TenantId,
        only: Option<&HashSet<DeviceId>>,
    ) -> Result<Self, StoreError> {
        let zone = store.tenants().get(tenant).await?.timezone;
        let devices = store.devices().watched(tenant).await?;
        let gateways = store.gateways().all(tenant).await?.into_iter().map(|g| (g.id, g)).collect();
        let open = store
            .alerts()
            .open(tenant)
            .await?
            .into_iter()
            .filter_map(|a| Some((a.rule_id?, a.target)))
            .collect();
        let by_id = devices.iter().enumerate().map(|(i, d)| (d.id, i)).collect();
        Ok(Self { tenant, zone, devices, by_id, gateways, open, only: only.cloned(), totals: HashMap::new() })
    }

    pub(super) fn device(&self, id: DeviceId) -> Option<&WatchedDevice> {
        self.by_id.get(&id).and_then(|i| self.devices.get(*i))
    }

    fn state(&self, rule: AlertRuleId, target: Target) -> AlertState {
        if self.open.contains(&(rule, target)) { AlertState::Active } else { AlertState::Inactive }
    }

    /// The members of the rule's target that its kind is about: devices (of the scope). A
    /// device's own rule (most rules: every threshold is one) is a lookup, not a scan.
    fn devices_of(&self, target: Target) -> Vec<&WatchedDevice> {
        let in_scope = |d: &&WatchedDevice| self.only.as_ref().is_none_or(|only| only.contains(&d.id));
        match target {
            Target::Device(id) => {
                self.by_id.get(&id).and_then(|i| self.devices.get(*i)).filter(in_scope).into_iter().collect()
            }
            _ => self
                .devices
                .iter()
                .filter(|d| target.covers_device(d.id, d.gateway_id, d.medium))
                .filter(in_scope)
                .collect(),
        }
    }

    /// Gateways in service that the target covers, by MAC.
    fn gateways_of(&self, target: Target) -> Vec<&Gateway> {
        let mut found: Vec<&Gateway> = self
            .gateways
            .values()
            .filter(|g| g.status != tds_domain::GatewayStatus::Decommissioned && target.covers_gateway(g.id))
            .collect();
        found.sort_by_key(|g| g.mac);
        found
    }

    /// Reads each device's consumption in the current `bucket` (local day or month), the first
    /// time a rule needs it: of the scope's devices when they are few, else of the whole tenant
    /// in one statement (long `IN` lists plan badly once PostgreSQL turns to generic plans:
    /// measured with `tds bench alerts`).
    async fn load_totals(
        &mut self,
        store: &Store,
        bucket: Bucket,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if !self.totals.contains_key(&bucket) {
            let (start, end) =
                (bucket_start(self.zone, bucket, now), next_bucket_start(self.zone, bucket, now));
            let only: Option<Vec<DeviceId>> =
                self.only.as_ref().filter(|o| o.len() <= FEW_DEVICES).map(|o| o.iter().copied().collect());
            let found =
                store.rollups().totals_by_device(self.tenant, only.as_deref(), bucket, start, end).await?;
            self.totals.insert(bucket, found);
        }
        Ok(())
    }

    /// A device's consumption in the current `bucket` (after [`Self::load_totals`]); none is 0.
    fn total(&self, bucket: Bucket, device: DeviceId) -> f64 {
        self.totals.get(&bucket).and_then(|t| t.get(&device)).copied().unwrap_or(0.0)
    }
}

async fn tenant_round(
    store: &Store,
    tenant: TenantId,
    rules: &[&AlertRule],
    only: Option<&HashSet<DeviceId>>,
    now: DateTime<Utc>,
) -> Result<Round, StoreError> {
    let mut v = TenantView::read(store, tenant, only).await?;
    let mut done = Round { rules: rules.len(), ..Round::default() };
    for &rule in rules {
        let decided = match decide(store, &mut v, rule, now).await {
            Ok(decisions) => apply(store, &v, rule, decisions, now).await,
            Err(e) => Err(e),
        };
        match decided {
            Ok((raised, cleared)) => {
                done.raised += raised;
                done.cleared += cleared;
                if raised + cleared > 0 {
                    done.tenants.insert(tenant);
                }
            }
            // One broken rule never stops the others.
            Err(e) => tracing::warn!(rule = rule.id.get(), error = %e, "alert rule not evaluated"),
        }
    }
    Ok(done)
}

async fn decide(
    store: &Store,
    v: &mut TenantView,
    rule: &AlertRule,
    now: DateTime<Utc>,
) -> Result<Vec<(Target, Decision)>, StoreError> {
    let tenant = rule.tenant_id;
    let damping = rule.rule.damping();
    let mut decisions: Vec<(Target, Decision)> = Vec::new();
    match rule.rule.kind() {
        RuleKind::DailyConsumption(limit) | RuleKind::MonthlyConsumption(limit) => {
            let bucket = if matches!(rule.rule.kind(), RuleKind::DailyConsumption(_)) {
                Bucket::Day
            } else {
                Bucket::Month
            };
            v.load_totals(store, bucket, now).await?;
            for d in v.devices_of(rule.rule.target()) {
                let so_far = v.total(bucket, d.id);
                let t = Target::Device(d.id);
                decisions.push((t, evaluate::consumption(limit, damping, v.state(rule.id, t), so_far)));
            }
        }
        RuleKind::GaugeBand(band) => {
            let back = damping.hold.map_or(Duration::hours(1), |h| h.as_delta() + Duration::hours(1));
            for d in v.devices_of(rule.rule.target()) {
                let samples: Vec<(DateTime<Utc>, f64)> = store
                    .readings()
                    .for_device(tenant, d.id, now - back, now + Duration::seconds(1), 10_000)
                    .await?
                    .into_iter()
                    .map(|r| (r.time, r.value))
                    .collect();
                let t = Target::Device(d.id);
                decisions.push((t, evaluate::gauge_band(band, damping, v.state(rule.id, t), &samples)));
            }
        }
        RuleKind::NoData(period) => {
            for d in v.devices_of(rule.rule.target()) {
                // A device that never reported is silent since it was registered.
                let last = d.last_seen_at.or(Some(d.created_at));
                let t = Target::Device(d.id);
                decisions.push((t, clock::no_data(period, v.state(rule.id, t), last, now)));
            }
        }
        RuleKind::GatewayOffline(period) => {
            for g in v.gateways_of(rule.rule.target()) {
                let since = if g.online { None } else { Some(g.last_seen_at.unwrap_or(g.created_at)) };
                let t = Target::Gateway(g.id);
                decisions.push((t, clock::gateway_offline(period, v.state(rule.id, t), since, now)));
            }
        }
        RuleKind::CertificateExpiry(days) => {
            for g in v.gateways_of(rule.rule.target()) {
                let certs = store.certificates().for_gateway(tenant, g.id).await?;
                let expires = certs
                    .iter()
                    .find(|c| c.status == CertificateStatus::Active)
                    .or_else(|| certs.iter().max_by_key(|c| c.issued_at))
                    .map(|c| c.expires_at);
                let t = Target::Gateway(g.id);
                decisions
                    .push((t, clock::certificate_expiry(days, v.state(rule.id, t), v.zone, expires, now)));
            }
        }
        RuleKind::DeadLetterRate(rate) => {
            let back = damping.hold.map_or(Duration::hours(1), |h| h.as_delta() + Duration::hours(1));
            let times = store.rejected().times_since(tenant, now - back).await?;
            for g in v.gateways_of(rule.rule.target()) {
                let events: Vec<(DateTime<Utc>, u32)> =
                    times.iter().filter(|(gw, _)| *gw == Some(g.id)).map(|(_, at)| (*at, 1)).collect();
                let t = Target::Gateway(g.id);
                decisions
                    .push((t, evaluate::dead_letter_rate(rate, damping, v.state(rule.id, t), &events, now)));
            }
        }
        RuleKind::NightFlow(night) => {
            let back = Duration::days(i64::from(night.nights()) + 2);
            let hours = hourly(store, v, rule.rule.target(), now - back, now).await?;
            for d in v.devices_of(rule.rule.target()) {
                let t = Target::Device(d.id);
                let empty = Vec::new();
                let series = hours.get(&d.id).unwrap_or(&empty);
                decisions
                    .push((t, water::night_flow(night, damping, v.state(rule.id, t), v.zone, series, now)));
            }
        }
        RuleKind::ContinuousFlow(flow) => {
            let back = Duration::hours(i64::from(flow.hours()) + 2);
            let hours = hourly(store, v, rule.rule.target(), now - back, now).await?;
            for d in v.devices_of(rule.rule.target()) {
                let t = Target::Device(d.id);
                let empty = Vec::new();
                let series = hours.get(&d.id).unwrap_or(&empty);
                decisions.push((t, water::continuous_flow(flow, v.state(rule.id, t), v.zone, series, now)));
            }
        }
    }
    Ok(decisions)
}

/// The hourly consumption of the target's devices from their rollups (hours without
/// consumption are absent), by device, in one read per 500 devices.
async fn hourly(
    store: &Store,
    v: &TenantView,
    target: Target,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<HashMap<DeviceId, Vec<(DateTime<Utc>, f64)>>, StoreError> {
    let ids: Vec<DeviceId> = v.devices_of(target).iter().map(|d| d.id).collect();
    let mut found: HashMap<DeviceId, Vec<(DateTime<Utc>, f64)>> = HashMap::new();
    if ids.is_empty() {
        return Ok(found);
    }
    for r in store.rollups().for_devices(v.tenant, &ids, Bucket::Hour, from, to + Duration::hours(1)).await? {
        if let Some(c) = r.consumption {
            found.entry(r.device_id).or_default().push((r.start, c));
        }
    }
    Ok(found)
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
                    message: message::message(v, rule, target, &facts),
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
