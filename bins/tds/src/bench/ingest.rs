//! `tds bench ingest`: the device endpoint end to end, in one process. A fresh database gets a
//! tenant with `--gateways` gateways of `--devices` meters; the endpoint listens on 127.0.0.1:0
//! with a new CA; each gateway connects over mutual TLS with its own ECDSA-P256 certificate and
//! publishes `QoS` 1 telemetry batches (one reading per device, all stored) keeping `--inflight`
//! unacknowledged. The figures are what the gateways see: acknowledged messages per second and
//! the time from a PUBLISH leaving the client to its PUBACK arriving (so after the commit).
//!
//! The simulated gateways ([`super::load`]) share the machine with the endpoint, so the client
//! side's TLS and MQTT work is counted against the server's throughput; they run on their own
//! threads, so their CPU time is not counted as the server's (`CPU per stored reading`).
//!
//! A run at full load is followed by one at half the load sustained; `--overload SECONDS` adds
//! a run offered twice the sustained load, then one at half load again that shows how soon the
//! latency recovers. At the end every reading published must be stored exactly once.

use super::load::{Figures, Gateway, Run, client_tls, load};
use super::probe::{Probe, probe};
use crate::cli::IngestBenchArgs;
use crate::config::Config;
use anyhow::{Context, bail};
use chrono::Utc;
use std::sync::Arc;
use std::time::Duration;
use tds_domain::limits::MaxDevices;
use tds_domain::{DeviceCode, GatewayCode, Mac, Name, TenantId};
use tds_ingest::endpoint::Shared;
use tds_ingest::{Endpoint, IngestConfig};
use tds_pki::{CaAlgorithm, CaFiles, CaSubject, DeviceKeyKind};
use tds_store::tenants::{NewTenant, TenantLimits};
use tds_store::{Page, Store};
use tokio::time::Instant;

/// Every rule, on the job's period, as `tds serve` runs it, until the task is aborted; `rules`
/// are kept between rounds, shared with the rollup rounds' evaluations.
async fn every_rule(store: Store, rules: Arc<tds_jobs::alerts::RuleCache>) {
    loop {
        let started = Instant::now();
        match tds_jobs::alerts::round(&store, &rules, Utc::now()).await {
            Ok(done) => tracing::debug!(rules = done.rules, "alert round"),
            Err(e) => tracing::warn!(error = %e, "alert round failed"),
        }
        tokio::time::sleep(tds_jobs::alerts::PERIOD.saturating_sub(started.elapsed())).await;
    }
}

pub async fn run(config: &Config, args: IngestBenchArgs) -> anyhow::Result<()> {
    if args.gateways == 0 || args.inflight == 0 || args.seconds == 0 {
        bail!("--gateways, --inflight and --seconds must be at least 1");
    }
    if !(1..=32).contains(&args.devices) {
        bail!("--devices must be between 1 and 32 (a gateway has at most 32 devices)");
    }
    let inflight = u16::try_from(args.inflight).context("--inflight must be at most 65535")?;
    if let Some(rate) = args.rate
        && !(rate.is_finite() && rate > 0.0)
    {
        bail!("--rate must be a positive number of messages per second");
    }
    let alerts = match (args.alerts.as_str(), args.rollups.as_str()) {
        ("on", "on") => true,
        ("off", _) => false,
        ("on", _) => bail!("--alerts on needs --rollups on (the rules read the rollups)"),
        (other, _) => bail!("--alerts {other:?}: expected on or off"),
    };
    let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let (store, url) = super::open_store(config, args.database_url.as_deref(), tmp.path()).await?;
    let (tenant, fleet) = setup(&store, args.gateways, args.devices, alerts).await?;
    if probe().is_none() {
        tracing::warn!("another metrics recorder is installed: no figures from the endpoint's side");
    }

    let ca = CaFiles::init(
        &tmp.path().join("pki"),
        &CaSubject::default(),
        CaAlgorithm::EcdsaP384,
        None,
        &["localhost".to_owned()],
    )
    .context("cannot create the benchmark's CA")?;
    // Far enough in the past that no run reaches the present (later times are refused).
    let t0 = Utc::now() - chrono::Duration::days(60);
    let mut gateways = Vec::with_capacity(fleet.len());
    for (mac, codes) in fleet {
        let issued =
            ca.ca.issue_device(mac, DeviceKeyKind::EcdsaP256, 30).context("cannot issue a certificate")?;
        // Recorded as the gateway's certificate: the endpoint admits only those (allow-list).
        let gateway =
            store.gateways().staff_by_mac(mac).await.context("the fleet's gateway is registered")?;
        store
            .certificates()
            .record_issued(gateway.tenant_id, gateway.id, &tds_web::certs::record(&issued), true, None)
            .await
            .context("cannot record a certificate")?;
        let key = issued.key_pem.as_deref().context("an issued certificate comes with its key")?;
        let tls = Arc::new(client_tls(ca.ca.cert_pem(), &issued.cert_pem, key)?);
        gateways.push(Gateway { mac, codes, tls, t0, next: 0 });
    }

    let mut ingest = IngestConfig::new(([127, 0, 0, 1], 0).into());
    // Every simulated gateway connects from 127.0.0.1: the per-address connection limit (against
    // one misbehaving source among many) would refuse the fleet itself; and each gateway sends
    // as fast as it is acknowledged, past the per-gateway message rate that protects the server
    // from one runaway gateway: the benchmark measures the endpoint, not those limits.
    ingest.connects_per_second_per_ip = 1_000_000.0;
    ingest.connect_burst_per_ip = 1_000_000;
    ingest.messages_per_second = 1_000_000.0;
    ingest.message_burst = 1_000_000;
    // And the whole fleet connects at once: more handshakes at a time than a server allows
    // (256) would be refused, and the run would end before it began.
    ingest.max_handshakes = ingest.max_handshakes.max(args.gateways);
    if let Some(n) = args.commit_readings {
        ingest.commit_max_readings = n.max(1);
    }
    if let Some(n) = args.queue_capacity {
        ingest.queue_capacity = n.max(1);
    }
    if let Some(n) = args.queue_readings {
        ingest.queue_readings = n.max(1);
    }
    if let Some(ms) = args.commit_delay_ms {
        ingest.commit_max_delay = Duration::from_millis(ms);
    }
    let endpoint = Endpoint::bind(ingest.clone(), store.clone(), &ca)
        .await
        .context("cannot start the device endpoint")?;
    let port = endpoint.local_addr()?.port();
    let shared = endpoint.shared();
    let rules = Arc::new(tds_jobs::alerts::RuleCache::default());
    let rollups = match args.rollups.as_str() {
        "on" => Some(tokio::spawn(tds_jobs::rollups::run(store.clone(), alerts.then(|| rules.clone())))),
        "off" => None,
        other => bail!("--rollups {other:?}: expected on or off"),
    };
    let clock_rules = alerts.then(|| tokio::spawn(every_rule(store.clone(), rules)));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(endpoint.run(async {
        let _ = stopped.await;
    }));

    println!(
        "bench ingest: {} gateways x {} devices over MQTT/TLS (mutual, ECDSA-P256 clients), QoS 1, {} in flight \
         per gateway, {} s per run, commits of up to {} readings, rollups {}, alerts {}, on {} ({})",
        args.gateways,
        args.devices,
        args.inflight,
        args.seconds,
        ingest.commit_max_readings,
        args.rollups,
        args.alerts,
        store.db().backend(),
        tds_store::redact_url(&url)
    );
    let plan = Plan {
        run: Run {
            port,
            inflight,
            duration: Duration::from_secs(args.seconds),
            rate: args.rate,
            broker_pid: None,
            postgres_cpu: matches!(store.db(), tds_store::Db::Postgres(_)),
            storm: args.storm,
        },
        overload: (args.overload > 0).then(|| Duration::from_secs(args.overload)),
    };
    let load_runtime = super::load::LoadRuntime::new()?;
    let on = load_runtime.handle();
    let runs = async {
        let (gateways, broker) = match args.compare.as_deref() {
            None => (gateways, None),
            Some("mosquitto") => {
                let (g, f) = super::compare::mosquitto(&on, gateways, plan.run, &ca, tmp.path()).await?;
                (g, Some(f))
            }
            Some(other) => bail!("--compare {other:?}: expected mosquitto"),
        };
        // Messages numbered below these went to the other server, not to TDS.
        let first_to_tds: Vec<u64> =
            if broker.is_some() { gateways.iter().map(|g| g.next).collect() } else { Vec::new() };
        let (gateways, figures) = runs(&on, gateways, plan, &shared).await?;
        anyhow::Ok((gateways, first_to_tds, figures.zip(broker)))
    }
    .await;
    drop(load_runtime);
    let _ = stop.send(());
    let _ = server.await;
    let (gateways, first_to_tds, compared) = runs?;
    if let Some(task) = clock_rules {
        task.abort();
    }
    let sent: u64 = gateways.iter().map(|g| g.next).sum::<u64>() - first_to_tds.iter().sum::<u64>();
    check_stored(&store, tenant, t0, sent, args.devices, rollups).await?;
    if let Some(((full, half), broker)) = compared {
        super::compare::table(&broker, &full, &half, store.db().backend());
    }
    store.db().close().await;
    Ok(())
}

/// After the runs: the rollup worker's backlog caught up, no dead letter, and every reading of
/// the `sent` messages (all acknowledged: each run waits for its last PUBACKs) stored once.
async fn check_stored(
    store: &Store,
    tenant: TenantId,
    t0: chrono::DateTime<Utc>,
    sent: u64,
    devices: usize,
    rollups: Option<tokio::task::JoinHandle<()>>,
) -> anyhow::Result<()> {
    if let Some(worker) = rollups {
        // What the worker had not caught up with when the load stopped, and how long it takes.
        let behind = store.rollups().staff_pending().await?;
        let started = Instant::now();
        worker.abort();
        tds_jobs::rollups::drain(store).await?;
        println!(
            "rollups: {behind} devices still to refresh when the load stopped, caught up in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let feed = store.rollup_feed_counts();
        println!(
            "rollups: {} device refreshes took their new readings from memory, {} read them from the database",
            feed.fed, feed.read
        );
    }
    let dead = store.rejected().staff_list(None, Page::new(1, 1)).await?;
    if dead.total > 0 {
        bail!(
            "{} messages or readings were dead-lettered: the figures are not of stored readings",
            dead.total
        );
    }
    let published = sent * devices as u64;
    // Each reading has its own instant: a count of the tenant's readings is a count of distinct
    // (device, instant) pairs.
    let stored = store.readings().count_since(tenant, t0 - chrono::Duration::days(1)).await?;
    if u64::try_from(stored).ok() != Some(published) {
        bail!("{published} readings published and acknowledged, but {stored} stored");
    }
    println!(
        "{sent} messages ({published} readings) published to TDS in all, {stored} readings stored: none lost, \
         none twice; no dead letters"
    );
    Ok(())
}

/// The runs of one benchmark.
#[derive(Debug, Clone, Copy)]
struct Plan {
    run: Run,
    /// How long to offer twice the sustained load, if at all.
    overload: Option<Duration>,
}

/// At `rate`; or at full load, then at half the load sustained, and with an overload, twice
/// the sustained load and half of it again.
async fn runs(
    on: &tokio::runtime::Handle,
    gateways: Vec<Gateway>,
    plan: Plan,
    shared: &Shared,
) -> anyhow::Result<(Vec<Gateway>, Option<(Figures, Figures)>)> {
    let probe = probe();
    let base = plan.run;
    if let Some(rate) = base.rate {
        let (gateways, f) = load(on, gateways, base, probe).await?;
        report(&format!("offered {rate:.0} msg/s"), &f);
        settle(shared).await;
        return Ok((gateways, None));
    }
    let (gateways, full) = load(on, gateways, base, probe).await?;
    report("full load", &full);
    settle(shared).await;
    let half = full.messages_per_s / 2.0;
    let (mut gateways, steady) = load(on, gateways, Run { rate: Some(half), ..base }, probe).await?;
    report(&format!("half load ({half:.0} msg/s offered)"), &steady);
    settle(shared).await;
    if let Some(overload) = plan.overload {
        gateways =
            overload_runs(on, gateways, Run { duration: overload, ..base }, &full, &steady, probe).await?;
        settle(shared).await;
    }
    Ok((gateways, Some((full, steady))))
}

/// Twice the sustained load for `run.run_for`, with the process's memory sampled, then half the
/// sustained load again, second by second, to show when the latency is back to `steady`'s.
async fn overload_runs(
    on: &tokio::runtime::Handle,
    gateways: Vec<Gateway>,
    run: Run,
    full: &Figures,
    steady: &Figures,
    probe: Option<&Probe>,
) -> anyhow::Result<Vec<Gateway>> {
    let offered = full.messages_per_s * 2.0;
    let rss_before = rss_kib();
    let memory = tokio::spawn(peak_rss_until(Instant::now() + run.duration + Duration::from_secs(5)));
    let (gateways, over) = load(on, gateways, Run { rate: Some(offered), ..run }, probe).await?;
    let peak = memory.await.unwrap_or(0);
    report(&format!("overload ({offered:.0} msg/s offered, twice the sustained load)"), &over);
    println!(
        "  overload: {:.0} % of the sustained throughput; server RSS {} MiB before, {} MiB at the peak",
        over.messages_per_s / full.messages_per_s * 100.0,
        rss_before / 1024,
        peak / 1024
    );
    let half = full.messages_per_s / 2.0;
    // As long as the steady half-load run.
    let after = Run { rate: Some(half), duration: steady.run_for, ..run };
    let (gateways, recovery) = load(on, gateways, after, probe).await?;
    report(&format!("half load again after the overload ({half:.0} msg/s offered)"), &recovery);
    let target = steady.p99_ms * 1.5;
    let recovered = recovery.p99_by_second_ms.iter().position(|p| *p <= target);
    // And the second from which every later one is within it: a spike after the first good
    // second is not a recovery yet.
    let seconds_run = recovery.p99_by_second_ms.len();
    let settled = recovery.p99_by_second_ms.iter().rposition(|p| *p > target).map_or(0, |last| last + 1);
    let seconds: Vec<String> = recovery
        .p99_by_second_ms
        .iter()
        .filter(|p| !p.is_nan())
        .take(10)
        .map(|p| format!("{p:.0}"))
        .collect();
    println!(
        "  recovery: PUBACK p99 per second {} ms; within 1.5x the steady p99 ({target:.1} ms) {}, {}",
        seconds.join(" "),
        recovered.map_or_else(|| "not within the run".to_owned(), |s| format!("first at second {s}")),
        if settled < seconds_run {
            format!("every second from second {settled} on")
        } else {
            "not every second to the end of the run".to_owned()
        }
    );
    Ok(gateways)
}

/// This process's resident memory, in KiB (0 when /proc cannot tell).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The highest [`rss_kib`] sampled every 250 ms until `until`.
async fn peak_rss_until(until: Instant) -> u64 {
    let mut peak = 0;
    while Instant::now() < until {
        peak = peak.max(rss_kib());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    peak
}

/// Waits (at most 10 s) for the sessions of the last run to finish their bookkeeping (history,
/// offline status), so that they neither run into the next run nor outlive the database.
async fn settle(shared: &Shared) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !shared.registry.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(super) fn report(label: &str, f: &Figures) {
    println!(
        "{label}: {:.0} messages/s, {:.0} readings/s; PUBACK latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        f.messages_per_s, f.readings_per_s, f.p50_ms, f.p99_ms, f.max_ms
    );
    // Whether the tail is spread over the run or made in a few seconds (a stall); a long run's
    // would fill the screen.
    if f.run_for <= Duration::from_mins(2) {
        let by_second: Vec<String> =
            f.p99_by_second_ms.iter().filter(|p| !p.is_nan()).map(|p| format!("{p:.0}")).collect();
        println!("  PUBACK p99 second by second, ms: {}", by_second.join(" "));
    }
    if let Some(s) = &f.storm {
        println!(
            "  storm: {} of {} gateways cut off at second {} and connected again (mutual TLS): CONNACK after \
             p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            s.cut, s.gateways, s.at_second, s.reconnect_p50_ms, s.reconnect_p99_ms, s.reconnect_max_ms
        );
    }
    if let Some(server) = &f.server {
        println!("  {server}");
    }
    if let Some(cpu) = &f.cpu {
        let seconds = f.run_for.as_secs_f64();
        let messages = (f.messages_per_s * seconds).round() as u64;
        println!(
            "  {}",
            cpu.broker_summary(seconds, messages).unwrap_or_else(|| cpu.summary(seconds, f.readings))
        );
    }
}

/// A tenant for this run with `gateways` gateways of `devices` meters `D00`, `D01`, …
/// A tenant with the fleet's gateways and devices; with `alerts`, each device has a daily
/// and monthly threshold (two rules), high enough that evaluating it is the whole cost.
pub(super) async fn setup(
    store: &Store,
    gateways: usize,
    devices: usize,
    alerts: bool,
) -> anyhow::Result<(TenantId, Vec<(Mac, Vec<String>)>)> {
    let tag = format!("{:08x}", rand::random::<u32>());
    let mut new = NewTenant::named(Name::parse("name", &format!("bench-{tag}"))?);
    new.limits = TenantLimits { max_gateways: 1_000_000, max_devices: 10_000_000, max_users: 10 };
    let tenant: TenantId = store.tenants().staff_create(&new).await?.id;
    let mut rows = Vec::with_capacity(gateways);
    for g in 0..gateways {
        let n = rand::random::<u16>();
        let mac = Mac::from_bytes([0x02, (g >> 16) as u8, (g >> 8) as u8, g as u8, (n >> 8) as u8, n as u8]);
        let mut fields = tds_store::gateways::GatewayFields::new(
            GatewayCode::parse(&format!("I{tag}-{g}"))?,
            Name::parse("name", &format!("bench gateway {g}"))?,
        );
        fields.max_devices = MaxDevices::new(devices as i64)?;
        rows.push((mac, fields));
    }
    let created = store.gateways().import(tenant, &rows, None).await?;
    let codes: Vec<String> = (0..devices).map(|d| format!("D{d:02}")).collect();
    let mut device_rows = Vec::with_capacity(gateways * devices);
    for (g, gateway) in created.iter().enumerate() {
        for (d, code) in codes.iter().enumerate() {
            let mut f = super::meter(g * devices + d)?;
            f.code = DeviceCode::parse(code)?;
            if alerts {
                f.alarm_daily = Some(tds_domain::limits::Amount::parse("alarm_daily", "1000000000")?);
                f.alarm_monthly = Some(tds_domain::limits::Amount::parse("alarm_monthly", "1000000000")?);
            }
            device_rows.push((gateway.id, f));
        }
    }
    store.devices().import(tenant, &device_rows, None).await?;
    Ok((tenant, rows.into_iter().map(|(mac, _)| (mac, codes.clone())).collect()))
}
