//! `tds bench ingest`: the device endpoint end to end, in one process. A fresh database gets a
//! tenant with `--gateways` gateways of `--devices` meters; the endpoint listens on 127.0.0.1:0
//! with a new CA; each gateway connects over mutual TLS with its own ECDSA-P256 certificate and
//! publishes `QoS` 1 telemetry batches (one reading per device, all stored) keeping `--inflight`
//! unacknowledged. The figures are what the gateways see: acknowledged messages per second and
//! the time from a PUBLISH leaving the client to its PUBACK arriving (so after the commit).
//!
//! The simulated gateways share the machine (and the async runtime) with the endpoint, so the
//! client side's TLS and MQTT work is counted against the server's throughput.

use crate::cli::IngestBenchArgs;
use crate::config::Config;
use anyhow::{Context, anyhow, bail};
use chrono::{DateTime, Utc};
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, Incoming, MqttOptions, Outgoing, QoS, TlsConfiguration,
    Transport,
};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tds_domain::limits::MaxDevices;
use tds_domain::{DeviceCode, GatewayCode, Mac, Name, TenantId};
use tds_ingest::endpoint::Shared;
use tds_ingest::{Endpoint, IngestConfig};
use tds_pki::{CaAlgorithm, CaFiles, CaSubject, DeviceKeyKind};
use tds_store::tenants::{NewTenant, TenantLimits};
use tds_store::{Page, Store};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

/// One simulated gateway between runs: what it needs to connect and where its numbering is.
#[derive(Debug)]
struct Gateway {
    mac: Mac,
    codes: Vec<String>,
    tls: Arc<rustls::ClientConfig>,
    /// Message `n` is stamped `t0 + n` seconds.
    t0: DateTime<Utc>,
    /// Number of its next message.
    next: u64,
}

/// What one gateway measured in one run.
#[derive(Debug, Default)]
struct Sample {
    /// Acknowledged before the end of the run.
    acked: u64,
    /// Publish→PUBACK of every message acknowledged before the end of the run, in microseconds.
    latencies_us: Vec<u32>,
}

/// A run's figures over all gateways.
#[derive(Debug)]
struct Figures {
    messages_per_s: f64,
    readings_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// The endpoint's side, when the probe is installed.
    server: Option<String>,
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
    let (_, fleet) = setup(&store, args.gateways, args.devices, alerts).await?;
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
    if let Some(n) = args.commit_readings {
        ingest.commit_max_readings = n.max(1);
    }
    if let Some(ms) = args.commit_delay_ms {
        ingest.commit_max_delay = Duration::from_millis(ms);
    }
    let endpoint = Endpoint::bind(ingest.clone(), store.clone(), &ca)
        .await
        .context("cannot start the device endpoint")?;
    let port = endpoint.local_addr()?.port();
    let shared = endpoint.shared();
    let rollups = match args.rollups.as_str() {
        "on" => Some(tokio::spawn(tds_jobs::rollups::run(store.clone(), alerts))),
        "off" => None,
        other => bail!("--rollups {other:?}: expected on or off"),
    };
    // Every rule, on the job's period, as `tds serve` runs it.
    let clock_rules = alerts.then(|| {
        let store = store.clone();
        tokio::spawn(async move {
            loop {
                let started = Instant::now();
                match tds_jobs::alerts::round(&store, Utc::now()).await {
                    Ok(done) => tracing::debug!(rules = done.rules, "alert round"),
                    Err(e) => tracing::warn!(error = %e, "alert round failed"),
                }
                tokio::time::sleep(tds_jobs::alerts::PERIOD.saturating_sub(started.elapsed())).await;
            }
        })
    });
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
    let run_for = Duration::from_secs(args.seconds);
    let runs = runs(gateways, port, inflight, run_for, args.rate, &shared).await;
    let _ = stop.send(());
    let _ = server.await;
    let gateways = runs?;
    if let Some(task) = clock_rules {
        task.abort();
    }
    if let Some(worker) = rollups {
        // What the worker had not caught up with when the load stopped, and how long it takes.
        let behind = store.rollups().staff_pending().await?;
        let started = Instant::now();
        worker.abort();
        tds_jobs::rollups::drain(&store).await?;
        println!(
            "rollups: {behind} devices still to refresh when the load stopped, caught up in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    let dead = store.rejected().staff_list(None, Page::new(1, 1)).await?;
    if dead.total > 0 {
        bail!(
            "{} messages or readings were dead-lettered: the figures are not of stored readings",
            dead.total
        );
    }
    let sent: u64 = gateways.iter().map(|g| g.next).sum();
    println!("{sent} messages ({} readings) published in all; no dead letters", sent * args.devices as u64);
    store.db().close().await;
    Ok(())
}

/// At `rate`, or at full load then at half the load sustained.
async fn runs(
    gateways: Vec<Gateway>,
    port: u16,
    inflight: u16,
    run_for: Duration,
    rate: Option<f64>,
    shared: &Shared,
) -> anyhow::Result<Vec<Gateway>> {
    if let Some(rate) = rate {
        let (gateways, f) = load(gateways, port, inflight, run_for, Some(rate)).await?;
        report(&format!("offered {rate:.0} msg/s"), &f);
        settle(shared).await;
        return Ok(gateways);
    }
    let (gateways, full) = load(gateways, port, inflight, run_for, None).await?;
    report("full load", &full);
    settle(shared).await;
    let half = full.messages_per_s / 2.0;
    let (gateways, f) = load(gateways, port, inflight, run_for, Some(half)).await?;
    report(&format!("half load ({half:.0} msg/s offered)"), &f);
    settle(shared).await;
    Ok(gateways)
}

/// Waits (at most 10 s) for the sessions of the last run to finish their bookkeeping (history,
/// offline status), so that they neither run into the next run nor outlive the database.
async fn settle(shared: &Shared) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !shared.registry.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn report(label: &str, f: &Figures) {
    println!(
        "{label}: {:.0} messages/s, {:.0} readings/s; PUBACK latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        f.messages_per_s, f.readings_per_s, f.p50_ms, f.p99_ms, f.max_ms
    );
    if let Some(server) = &f.server {
        println!("  {server}");
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

fn client_tls(ca_pem: &str, cert_pem: &str, key_pem: &str) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let certs = rustls_pemfile::certs(&mut cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())?.context("no key in the device's PEM")?;
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)?)
}

/// Connects every gateway (not timed), runs them together for `run_for`, at full speed or at
/// `rate` messages per second in all, and gives the gateways back with the run's figures.
async fn load(
    gateways: Vec<Gateway>,
    port: u16,
    inflight: u16,
    run_for: Duration,
    rate: Option<f64>,
) -> anyhow::Result<(Vec<Gateway>, Figures)> {
    let count = gateways.len();
    let connect_started = Instant::now();
    let mut connecting = JoinSet::new();
    for (i, g) in gateways.into_iter().enumerate() {
        connecting.spawn(async move {
            let connected = connect(&g, port, inflight).await;
            (i, g, connected)
        });
    }
    let mut sessions = Vec::with_capacity(count);
    while let Some(joined) = connecting.join_next().await {
        let (i, g, connected) = joined.context("a connecting gateway panicked")?;
        let (client, events) = connected.with_context(|| format!("gateway {} cannot connect", g.mac))?;
        sessions.push((i, g, client, events));
    }
    tracing::info!(gateways = count, took_ms = connect_started.elapsed().as_millis(), "gateways connected");

    if let Some(p) = probe() {
        p.reset();
    }
    // Everyone starts together, a little after the last connection.
    let start = Instant::now() + Duration::from_millis(200);
    let deadline = start + run_for;
    let period = rate.map(|r| Duration::from_secs_f64(count as f64 / r));
    let mut running = JoinSet::new();
    for (i, mut g, client, events) in sessions {
        // Spread the paced gateways over one period instead of publishing all at once.
        let phase = period.map(|p| p.mul_f64(i as f64 / count as f64));
        running.spawn(async move {
            let sample = publish(&mut g, client, events, start, deadline, period.zip(phase)).await;
            (i, g, sample)
        });
    }
    let mut back: Vec<Option<Gateway>> = (0..count).map(|_| None).collect();
    let mut acked = 0u64;
    let mut latencies = Vec::new();
    while let Some(joined) = running.join_next().await {
        let (i, g, sample) = joined.context("a gateway panicked")?;
        let sample = sample.with_context(|| format!("gateway {}", g.mac))?;
        acked += sample.acked;
        latencies.extend(sample.latencies_us);
        back[i] = Some(g);
    }
    let gateways: Vec<Gateway> = back.into_iter().flatten().collect();
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        f64::from(latencies[((latencies.len() - 1) as f64 * p).round() as usize]) / 1e3
    };
    let seconds = run_for.as_secs_f64();
    let devices = gateways.first().map_or(0, |g| g.codes.len());
    let figures = Figures {
        messages_per_s: acked as f64 / seconds,
        readings_per_s: (acked * devices as u64) as f64 / seconds,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        max_ms: pct(1.0),
        server: probe().map(|p| server_side(p, run_for)),
    };
    Ok((gateways, figures))
}

async fn connect(g: &Gateway, port: u16, inflight: u16) -> anyhow::Result<(AsyncClient, EventLoop)> {
    let mut opts = MqttOptions::new(g.mac.to_string(), "localhost", port);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_clean_session(true);
    opts.set_inflight(inflight);
    opts.set_max_packet_size(1024 * 1024, 1024 * 1024);
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(g.tls.clone())));
    let (client, mut events) = AsyncClient::new(opts, usize::from(inflight));
    loop {
        match tokio::time::timeout(Duration::from_secs(30), events.poll()).await {
            Ok(Ok(Event::Incoming(Incoming::ConnAck(ack)))) => {
                if ack.code != ConnectReturnCode::Success {
                    bail!("refused: {:?}", ack.code);
                }
                return Ok((client, events));
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e).context("connection failed"),
            Err(_) => bail!("no CONNACK within 30 s"),
        }
    }
}

/// The telemetry batch of message `n`: one reading per device at `t0 + n` seconds.
fn message(g: &Gateway, n: u64) -> String {
    let at = (g.t0 + chrono::Duration::seconds(n as i64)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut out = format!(r#"{{"gateway_mac":"{}","timestamp":"{at}","leituras":["#, g.mac);
    for (d, code) in g.codes.iter().enumerate() {
        let sep = if d == 0 { "" } else { "," };
        let value = n as f64 * 0.5 + d as f64;
        let _ = write!(out, r#"{sep}{{"dispositivo_codigo":"{code}","valor":{value},"unidade":"kWh"}}"#);
    }
    out.push_str("]}");
    out
}

/// One gateway's run: a producer publishes (paced by `pacing` = (period, phase), or as fast as
/// rumqttc's in-flight window allows) until `deadline`, waits for its last PUBACKs and
/// disconnects; meanwhile the event loop times each PUBLISH to its PUBACK.
async fn publish(
    g: &mut Gateway,
    client: AsyncClient,
    mut events: EventLoop,
    start: Instant,
    deadline: Instant,
    pacing: Option<(Duration, Duration)>,
) -> anyhow::Result<Sample> {
    let topic = format!("tds_new/gateway/{}/telemetria", g.mac);
    let acked_total = AtomicU64::new(0);
    let ack_arrived = Notify::new();
    let first = g.next;

    let producer = async {
        tokio::time::sleep_until(start).await;
        let mut ticker = pacing.map(|(period, phase)| {
            let mut t = tokio::time::interval_at(start + phase, period);
            t.set_missed_tick_behavior(MissedTickBehavior::Skip);
            t
        });
        let mut n = first;
        loop {
            if let Some(t) = ticker.as_mut() {
                t.tick().await;
            }
            if Instant::now() >= deadline {
                break;
            }
            // Waits while the in-flight window and the request queue are full.
            client.publish(topic.as_str(), QoS::AtLeastOnce, false, message(g, n)).await?;
            n += 1;
        }
        let published = n - first;
        let drained = async {
            while acked_total.load(Ordering::Acquire) < published {
                ack_arrived.notified().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), drained)
            .await
            .map_err(|_| anyhow!("messages still unacknowledged 30 s after the run"))?;
        client.disconnect().await?;
        anyhow::Ok(n)
    };

    let poller = async {
        let mut sent: HashMap<u16, Instant> = HashMap::new();
        let mut sample = Sample::default();
        loop {
            match events.poll().await {
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                    sent.insert(pkid, Instant::now());
                }
                Ok(Event::Incoming(Incoming::PubAck(ack))) => {
                    let now = Instant::now();
                    if let Some(at) = sent.remove(&ack.pkid)
                        && now <= deadline
                    {
                        sample.acked += 1;
                        sample.latencies_us.push(u32::try_from((now - at).as_micros()).unwrap_or(u32::MAX));
                    }
                    acked_total.fetch_add(1, Ordering::Release);
                    ack_arrived.notify_one();
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => return anyhow::Ok(sample),
                Ok(_) => {}
                Err(e) => return Err(e).context("the connection failed during the run"),
            }
        }
    };
    let (next, sample) = tokio::try_join!(producer, poller)?;
    g.next = next;
    Ok(sample)
}

/// Values of one histogram of the endpoint, kept for the run's summary.
#[derive(Debug, Default)]
struct Values(std::sync::Mutex<Vec<f64>>);

impl metrics::HistogramFn for Values {
    fn record(&self, value: f64) {
        if let Ok(mut v) = self.0.lock() {
            v.push(value);
        }
    }
}

impl Probe {
    fn reset(&self) {
        self.commit_seconds.take();
        self.commit_readings.take();
        self.ack_seconds.take();
    }
}

impl Values {
    fn take(&self) -> Vec<f64> {
        self.0.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default()
    }
}

/// The endpoint's own measurements (its `metrics` histograms), to tell where the time goes:
/// commits (size and duration) and the server-side time from a PUBLISH read to its PUBACK queued.
#[derive(Debug, Default)]
struct Probe {
    commit_seconds: Arc<Values>,
    commit_readings: Arc<Values>,
    ack_seconds: Arc<Values>,
}

impl metrics::Recorder for Probe {
    fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn register_counter(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::noop()
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
        let values = match key.name() {
            tds_ingest::metrics::COMMIT_SECONDS => &self.commit_seconds,
            tds_ingest::metrics::BATCH_READINGS => &self.commit_readings,
            tds_ingest::metrics::ACK_SECONDS => &self.ack_seconds,
            _ => return metrics::Histogram::noop(),
        };
        metrics::Histogram::from_arc(values.clone())
    }
}

/// The probe of this process, installed on first use; `None` if another recorder is installed.
fn probe() -> Option<&'static Probe> {
    static PROBE: std::sync::OnceLock<Option<&'static Probe>> = std::sync::OnceLock::new();
    *PROBE.get_or_init(|| {
        let probe: &'static Probe = Box::leak(Box::default());
        metrics::set_global_recorder(probe).ok().map(|()| probe)
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The endpoint's side of a run: how busy the writer was and with what commits.
fn server_side(probe: &Probe, run_for: Duration) -> String {
    let mut commits = probe.commit_seconds.take();
    let readings = probe.commit_readings.take();
    let mut acks = probe.ack_seconds.take();
    if commits.is_empty() {
        return "endpoint: no commits".into();
    }
    let busy: f64 = commits.iter().sum();
    commits.sort_by(f64::total_cmp);
    acks.sort_by(f64::total_cmp);
    format!(
        "endpoint: {} commits of {:.0} readings on average, commit p50 {:.1} ms, p99 {:.1} ms, writer busy {:.0}% \
         of the run; PUBLISH read→PUBACK queued p50 {:.1} ms, p99 {:.1} ms",
        commits.len(),
        readings.iter().sum::<f64>() / readings.len().max(1) as f64,
        percentile(&commits, 0.5) * 1e3,
        percentile(&commits, 0.99) * 1e3,
        busy / run_for.as_secs_f64() * 100.0,
        percentile(&acks, 0.5) * 1e3,
        percentile(&acks, 0.99) * 1e3,
    )
}
