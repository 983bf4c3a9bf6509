//! The load generator of `tds bench ingest` and `tds bench compare`: simulated gateways, each
//! connecting over mutual TLS with its own ECDSA-P256 certificate and publishing `QoS` 1
//! telemetry batches (one reading per device) with `--inflight` unacknowledged, at full speed or
//! paced. What they measure is what a gateway sees: acknowledged messages per second and the time
//! from a PUBLISH leaving the client to its PUBACK arriving.
//!
//! The gateways run on their own runtime, whose threads are named [`cpu::LOAD_THREADS`], so that
//! their CPU time can be told from the server's when both share the process.

use super::cpu;
use super::probe::{Probe, server_side};
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
use tds_domain::Mac;
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

/// One simulated gateway between runs: what it needs to connect and where its numbering is.
#[derive(Debug)]
pub(super) struct Gateway {
    pub mac: Mac,
    pub codes: Vec<String>,
    pub tls: Arc<rustls::ClientConfig>,
    /// Message `n` is stamped `t0 + n` seconds.
    pub t0: DateTime<Utc>,
    /// Number of its next message.
    pub next: u64,
}

/// What one gateway measured in one run.
#[derive(Debug, Default)]
struct Sample {
    /// Acknowledged before the end of the run.
    acked: u64,
    /// Publish→PUBACK of every message acknowledged before the end of the run, in microseconds,
    /// with the second of the run the PUBACK arrived in.
    latencies_us: Vec<(u32, u32)>,
    /// When the storm cut this gateway off: from the cut to its new CONNACK, in microseconds.
    reconnect_us: Option<u32>,
}

/// What a storm did to a run: how many gateways were cut off, when, and how long each took to
/// be connected again.
#[derive(Debug)]
pub(super) struct StormFigures {
    pub cut: usize,
    pub gateways: usize,
    /// The second of the run the cut came in.
    pub at_second: u64,
    pub reconnect_p50_ms: f64,
    pub reconnect_p99_ms: f64,
    pub reconnect_max_ms: f64,
}

/// A run's figures over all gateways.
#[derive(Debug)]
pub(super) struct Figures {
    pub messages_per_s: f64,
    pub readings_per_s: f64,
    /// Readings acknowledged during the run.
    pub readings: u64,
    pub run_for: Duration,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// p99 of the PUBACKs that arrived in each second of the run, in milliseconds.
    pub p99_by_second_ms: Vec<f64>,
    /// The endpoint's side, when the probe is installed.
    pub server: Option<String>,
    /// CPU time over the run (from its start to its deadline).
    pub cpu: Option<cpu::Used>,
    /// The run's storm, when it had one.
    pub storm: Option<StormFigures>,
}

/// How one run loads the server.
#[derive(Debug, Clone, Copy)]
pub(super) struct Run {
    /// The server's MQTT port on 127.0.0.1.
    pub port: u16,
    pub inflight: u16,
    pub duration: Duration,
    /// Messages per second over all gateways; `None`: as fast as they are acknowledged.
    pub rate: Option<f64>,
    /// A broker process whose CPU time is counted (`tds bench compare`'s Mosquitto).
    pub broker_pid: Option<u32>,
    /// Count the CPU time of the machine's PostgreSQL processes (the server's database).
    pub postgres_cpu: bool,
    /// A reconnection storm: this per cent of the gateways have their connections cut (no
    /// DISCONNECT, as when a site's link drops) halfway through the run, all at once, and connect
    /// again at once (a new TLS handshake and allow-list check each), then go on publishing.
    pub storm: Option<u8>,
}

/// Whether gateway `i` is among the `percent` % a storm cuts off (spread over the fleet).
fn in_storm(i: usize, percent: u8) -> bool {
    (i * usize::from(percent)) % 100 < usize::from(percent)
}

/// The load generator's runtime: two worker threads named [`cpu::LOAD_THREADS`]. Shut down
/// without waiting when dropped (a runtime dropped inside another one's task would panic).
pub(super) struct LoadRuntime(Option<tokio::runtime::Runtime>);

impl LoadRuntime {
    pub fn new() -> anyhow::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(cpu::LOAD_THREADS)
            .enable_all()
            .build()
            .context("cannot start the load generator's runtime")?;
        Ok(Self(Some(rt)))
    }

    pub fn handle(&self) -> Handle {
        self.0.as_ref().map_or_else(Handle::current, |rt| rt.handle().clone())
    }
}

impl Drop for LoadRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

pub(super) fn client_tls(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> anyhow::Result<rustls::ClientConfig> {
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

/// Connects every gateway (not timed), runs them together for `run.duration`, at full speed or
/// at `run.rate` messages per second in all, on the load generator's runtime (`on`), and gives
/// the gateways back with the run's figures; the endpoint's side from `probe`, when given.
pub(super) async fn load(
    on: &Handle,
    gateways: Vec<Gateway>,
    run: Run,
    probe: Option<&Probe>,
) -> anyhow::Result<(Vec<Gateway>, Figures)> {
    let Run { port, inflight, duration: run_for, rate, broker_pid, postgres_cpu, storm } = run;
    let count = gateways.len();
    let connect_started = Instant::now();
    let mut connecting = JoinSet::new();
    for (i, g) in gateways.into_iter().enumerate() {
        connecting.spawn_on(
            async move {
                let connected = connect(&g, port, inflight).await;
                (i, g, connected)
            },
            on,
        );
    }
    let mut sessions = Vec::with_capacity(count);
    while let Some(joined) = connecting.join_next().await {
        let (i, g, connected) = joined.context("a connecting gateway panicked")?;
        let (client, events) = connected.with_context(|| format!("gateway {} cannot connect", g.mac))?;
        sessions.push((i, g, client, events));
    }
    tracing::info!(gateways = count, took_ms = connect_started.elapsed().as_millis(), "gateways connected");

    if let Some(p) = probe {
        p.reset();
    }
    // Everyone starts together, a little after the last connection.
    let start = Instant::now() + Duration::from_millis(200);
    let deadline = start + run_for;
    let cpu = tokio::spawn(async move {
        tokio::time::sleep_until(start).await;
        let before = cpu::Sample::now(postgres_cpu, broker_pid);
        tokio::time::sleep_until(deadline).await;
        before.zip(cpu::Sample::now(postgres_cpu, broker_pid)).map(|(a, b)| b.since(&a))
    });
    let period = rate.map(|r| Duration::from_secs_f64(count as f64 / r));
    let storm_at = start + run_for / 2;
    let mut cut = 0;
    let mut running = JoinSet::new();
    for (i, mut g, client, events) in sessions {
        // Spread the paced gateways over one period instead of publishing all at once.
        let phase = period.map(|p| p.mul_f64(i as f64 / count as f64));
        let cut_at = storm.filter(|&p| in_storm(i, p)).map(|_| storm_at);
        cut += usize::from(cut_at.is_some());
        let times = Times { start, deadline, pacing: period.zip(phase), cut_at };
        running.spawn_on(
            async move {
                let sample = publish(&mut g, client, events, times, port, inflight).await;
                (i, g, sample)
            },
            on,
        );
    }
    let mut back: Vec<Option<Gateway>> = (0..count).map(|_| None).collect();
    let mut acked = 0u64;
    let mut latencies = Vec::new();
    let mut reconnects = Vec::new();
    while let Some(joined) = running.join_next().await {
        let (i, g, sample) = joined.context("a gateway panicked")?;
        let sample = sample.with_context(|| format!("gateway {}", g.mac))?;
        acked += sample.acked;
        latencies.extend(sample.latencies_us);
        reconnects.extend(sample.reconnect_us);
        back[i] = Some(g);
    }
    reconnects.sort_unstable();
    let storm = storm.map(|_| StormFigures {
        cut,
        gateways: count,
        at_second: (run_for / 2).as_secs(),
        reconnect_p50_ms: percentile_ms(&reconnects, 0.5),
        reconnect_p99_ms: percentile_ms(&reconnects, 0.99),
        reconnect_max_ms: percentile_ms(&reconnects, 1.0),
    });
    let gateways: Vec<Gateway> = back.into_iter().flatten().collect();
    let mut by_second: Vec<Vec<u32>> = vec![Vec::new(); usize::try_from(run_for.as_secs()).unwrap_or(0) + 1];
    for &(second, us) in &latencies {
        if let Some(s) = by_second.get_mut(second as usize) {
            s.push(us);
        }
    }
    let mut all: Vec<u32> = latencies.into_iter().map(|(_, us)| us).collect();
    all.sort_unstable();
    let seconds = run_for.as_secs_f64();
    let devices = gateways.first().map_or(0, |g| g.codes.len());
    let figures = Figures {
        messages_per_s: acked as f64 / seconds,
        readings_per_s: (acked * devices as u64) as f64 / seconds,
        readings: acked * devices as u64,
        run_for,
        p50_ms: percentile_ms(&all, 0.5),
        p99_ms: percentile_ms(&all, 0.99),
        max_ms: percentile_ms(&all, 1.0),
        p99_by_second_ms: by_second
            .into_iter()
            .map(|mut s| {
                s.sort_unstable();
                percentile_ms(&s, 0.99)
            })
            .collect(),
        server: probe.map(|p| server_side(p, run_for)),
        cpu: cpu.await.ok().flatten(),
        storm,
    };
    Ok((gateways, figures))
}

/// The `p` quantile of sorted microseconds, in milliseconds (NaN when there are none).
fn percentile_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    f64::from(sorted[((sorted.len() - 1) as f64 * p).round() as usize]) / 1e3
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

/// A gateway's telemetry batch `n` (of `mac` with meters `codes`): one reading per meter at `t0 +
/// n` seconds, as the simulated gateways send them (also `tds bench parse`'s).
pub(super) fn telemetry_text(mac: Mac, codes: &[String], t0: DateTime<Utc>, n: u64) -> String {
    let at = (t0 + chrono::Duration::seconds(n as i64)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut out = format!(r#"{{"gateway_mac":"{mac}","timestamp":"{at}","leituras":["#);
    for (d, code) in codes.iter().enumerate() {
        let sep = if d == 0 { "" } else { "," };
        let value = n as f64 * 0.5 + d as f64;
        let _ = write!(out, r#"{sep}{{"dispositivo_codigo":"{code}","valor":{value},"unidade":"kWh"}}"#);
    }
    out.push_str("]}");
    out
}

/// When one gateway's run happens.
#[derive(Debug, Clone, Copy)]
struct Times {
    start: Instant,
    deadline: Instant,
    /// (period, phase) when paced.
    pacing: Option<(Duration, Duration)>,
    /// When the storm cuts this gateway's connection, if it does.
    cut_at: Option<Instant>,
}

/// How a stretch of publishing ends once its last PUBACKs are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// DISCONNECT, at the end of the run.
    Disconnect,
    /// The connection dropped without a word (the storm).
    Cut,
}

/// One gateway's run: publishes until the deadline; when the storm takes it, its connection is
/// cut halfway (once what it sent is acknowledged, so that every message is stored once), and it
/// connects again with a new handshake and goes on.
async fn publish(
    g: &mut Gateway,
    mut client: AsyncClient,
    mut events: EventLoop,
    times: Times,
    port: u16,
    inflight: u16,
) -> anyhow::Result<Sample> {
    let mut sample = Sample::default();
    let mut from = times.start;
    let mut cut_at = times.cut_at;
    loop {
        let (until, ending) = match cut_at {
            Some(at) => (at, Ending::Cut),
            None => (times.deadline, Ending::Disconnect),
        };
        stretch(g, &client, &mut events, &mut sample, times, Span { from, until, ending }).await?;
        if ending == Ending::Disconnect {
            return Ok(sample);
        }
        cut_at = None;
        drop(client);
        drop(events);
        let cut = Instant::now();
        (client, events) = connect(g, port, inflight).await.context("reconnecting after the storm")?;
        sample.reconnect_us = Some(u32::try_from(cut.elapsed().as_micros()).unwrap_or(u32::MAX));
        from = Instant::now();
    }
}

/// The first tick of `pacing` (period, phase from `start`) at or after `from`.
fn first_tick(start: Instant, from: Instant, (period, phase): (Duration, Duration)) -> Instant {
    let first = start + phase;
    if from <= first || period.is_zero() {
        return first;
    }
    let periods = ((from - first).as_secs_f64() / period.as_secs_f64()).ceil();
    first + period.mul_f64(periods)
}

/// One connection's part of a gateway's run.
#[derive(Debug, Clone, Copy)]
struct Span {
    from: Instant,
    until: Instant,
    ending: Ending,
}

/// A stretch of one gateway's run on one connection: a producer publishes from `span.from`
/// (paced by `times.pacing`, or as fast as rumqttc's in-flight window allows) until
/// `span.until`, waits for its last PUBACKs and ends as `span.ending` says; meanwhile the event
/// loop times each PUBLISH to its PUBACK into `sample` (those arriving by the run's deadline, by
/// the second of the run).
async fn stretch(
    g: &mut Gateway,
    client: &AsyncClient,
    events: &mut EventLoop,
    sample: &mut Sample,
    times: Times,
    span: Span,
) -> anyhow::Result<()> {
    let Span { from, until, ending } = span;
    let topic = format!("tds_new/gateway/{}/telemetria", g.mac);
    let acked_total = AtomicU64::new(0);
    let ack_arrived = Notify::new();
    let first = g.next;
    let gateway: &Gateway = g;

    let producer = async {
        tokio::time::sleep_until(from).await;
        let mut ticker = times.pacing.map(|pacing| {
            let mut t = tokio::time::interval_at(first_tick(times.start, from, pacing), pacing.0);
            t.set_missed_tick_behavior(MissedTickBehavior::Skip);
            t
        });
        let mut n = first;
        loop {
            if let Some(t) = ticker.as_mut() {
                t.tick().await;
            }
            if Instant::now() >= until {
                break;
            }
            // Waits while the in-flight window and the request queue are full.
            client
                .publish(
                    topic.as_str(),
                    QoS::AtLeastOnce,
                    false,
                    telemetry_text(gateway.mac, &gateway.codes, gateway.t0, n),
                )
                .await?;
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
        if ending == Ending::Disconnect {
            client.disconnect().await?;
        }
        anyhow::Ok(n)
    };

    let poller = async {
        let mut sent: HashMap<u16, Instant> = HashMap::new();
        loop {
            match events.poll().await {
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                    sent.insert(pkid, Instant::now());
                }
                Ok(Event::Incoming(Incoming::PubAck(ack))) => {
                    let now = Instant::now();
                    if let Some(at) = sent.remove(&ack.pkid)
                        && now <= times.deadline
                    {
                        sample.acked += 1;
                        let second =
                            u32::try_from(now.saturating_duration_since(times.start).as_secs()).unwrap_or(0);
                        let us = u32::try_from((now - at).as_micros()).unwrap_or(u32::MAX);
                        sample.latencies_us.push((second, us));
                    }
                    acked_total.fetch_add(1, Ordering::Release);
                    ack_arrived.notify_one();
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => return anyhow::Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e).context("the connection failed during the run"),
            }
        }
    };
    let next = match ending {
        Ending::Disconnect => tokio::try_join!(producer, poller)?.0,
        // Cut: nothing more to poll once the producer has its PUBACKs.
        Ending::Cut => {
            tokio::pin!(poller);
            tokio::select! {
                next = producer => next?,
                ended = &mut poller => {
                    ended?;
                    bail!("the connection ended before the storm cut it");
                }
            }
        }
    };
    g.next = next;
    Ok(())
}
