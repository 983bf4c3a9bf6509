//! `tds bench alerts`: how long alert evaluation takes for a tenant of many devices with rules
//! (SPEC §5, issue figures): a whole round (every rule, as the 5-second job runs it) and the
//! evaluation after a rollup round that refreshed every device (the worst case of the rules run
//! right after each rollup round). Nothing fires: the figures are of evaluation alone, the steady
//! state of a healthy fleet. The rules are kept between rounds as `tds serve` keeps them: the
//! first round reads them, the others only check their version.

use anyhow::{Context, bail};
use chrono::{Duration, Utc};
use std::time::Instant;
use tds_domain::alerts::{NightFlow, Period, Rule, RuleKind, Severity, Target};
use tds_domain::{Medium, Name};
use tds_store::alert_rules::NewAlertRule;
use tds_store::readings::NewReading;

/// Meters per gateway in the benchmark's fleet.
const PER_GATEWAY: usize = 32;

pub async fn run(
    config: &crate::config::Config,
    database_url: Option<&str>,
    devices: usize,
    rounds: usize,
) -> anyhow::Result<()> {
    if devices == 0 || rounds == 0 {
        bail!("--devices and --rounds must be at least 1");
    }
    let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let (store, url) = super::open_store(config, database_url, tmp.path()).await?;
    let gateways = devices.div_ceil(PER_GATEWAY);
    // Every meter with a daily and a monthly threshold, and the tenant-wide rules a careful
    // operator would add.
    let (tenant, _) = super::ingest::setup(&store, gateways, PER_GATEWAY.min(devices), true).await?;
    let all = store.devices().list(tenant).await?;
    let wide = [
        ("silent meters", RuleKind::NoData(Period::new(6 * 3600)?), Target::Tenant),
        ("offline gateways", RuleKind::GatewayOffline(Period::new(3600)?), Target::Tenant),
        ("water leaks", RuleKind::NightFlow(NightFlow::new(1000.0, 3)?), Target::Medium(Medium::Water)),
    ];
    for (name, kind, target) in wide {
        let rule = Rule::new(Severity::Warning, target, kind, None, None)?;
        let new = NewAlertRule { name: Name::parse("name", name)?, rule, enabled: true, created_by: None };
        store.alert_rules().create(tenant, &new).await?;
    }
    // Four readings of every meter in the last hour: today's and this month's rollups exist.
    let now = Utc::now();
    let ids: Vec<_> = all.iter().map(|d| d.id).collect();
    for chunk in ids.chunks(2_500) {
        let rows: Vec<NewReading> = chunk
            .iter()
            .flat_map(|d| {
                (0..4).map(move |i| NewReading {
                    device_id: *d,
                    time: now - Duration::minutes(60 - 15 * i),
                    value: f64::from(i as u32) * 0.5,
                    unit: "kWh".into(),
                })
            })
            .collect();
        store.readings().insert(tenant, &rows).await?;
    }
    tds_jobs::rollups::drain(&store).await?;
    let rules = store.alert_rules().list(tenant, None).await?.len();
    println!(
        "bench alerts: {} devices ({gateways} gateways), {rules} rules, on {} ({})",
        ids.len(),
        store.db().backend(),
        tds_store::redact_url(&url)
    );

    // As `tds serve` keeps them: the first round reads the rules, the next ones only check that
    // they have not changed.
    let kept = tds_jobs::alerts::RuleCache::default();
    let mut whole = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        let done = tds_jobs::alerts::round(&store, &kept, Utc::now()).await?;
        whole.push(started.elapsed().as_secs_f64() * 1000.0);
        if done.raised > 0 {
            bail!("{} alerts raised: the benchmark's rules must not fire", done.raised);
        }
    }
    let touched: Vec<_> = ids.iter().map(|d| (tenant, *d)).collect();
    let mut after_rollups = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        tds_jobs::alerts::touched(&store, &kept, &touched, Utc::now()).await?;
        after_rollups.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "whole round (every rule):              median {:.0} ms  {}, the first reading the rules",
        median(&whole),
        list(&whole)
    );
    println!(
        "after a rollup round of every device:  median {:.0} ms  {}",
        median(&after_rollups),
        list(&after_rollups)
    );
    store.db().close().await;
    Ok(())
}

fn median(ms: &[f64]) -> f64 {
    let mut sorted = ms.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
}

fn list(ms: &[f64]) -> String {
    let parts: Vec<String> = ms.iter().map(|m| format!("{m:.0}")).collect();
    format!("({} ms)", parts.join(", "))
}
