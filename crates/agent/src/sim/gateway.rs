//! One virtual gateway: connects over MQTT with mutual TLS as a DCU does (client id = its MAC,
//! a retained `offline` will on its status topic, `online` once connected), reads its meters
//! every interval and publishes a `QoS` 1 batch. Now and then it loses its uplink for a few
//! intervals and then flushes the backlog in one late batch with per-reading timestamps, or sends
//! a bad message. It reconnects with a growing back-off when the connection drops. It takes
//! certificate renewals as a gateway in the field does ([`super::renewal`]).

use super::meters::{Meter, MeterProfile};
use super::payload::{self, BadMessage, Reading};
use super::renewal::{Renewal, Step};
use super::stats::Stats;
use super::stopped;
use chrono::{DateTime, SubsecRound, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, Incoming, LastWill, MqttOptions, Outgoing, QoS,
    TlsConfiguration, Transport,
};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tds_domain::Mac;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

/// A gateway to simulate, as provisioned: its MAC, its meters and its TLS identity.
#[derive(Debug, Clone)]
pub struct GatewaySpec {
    pub mac: Mac,
    pub meters: Vec<MeterSpec>,
    /// The instant of the gateway's last stored batch, if any: its next one comes after it, even
    /// when a new run starts within the same second as the previous one ended.
    pub last_reported: Option<DateTime<Utc>>,
    /// The gateway's identity files (CA, certificate, key), where renewals swap them.
    pub files: crate::cert::CertFiles,
}

#[derive(Debug, Clone)]
pub struct MeterSpec {
    /// The device code registered in TDS.
    pub code: String,
    pub profile: MeterProfile,
    /// Where a counter's register stands (its last stored reading), so that a simulated meter
    /// goes on from there instead of jumping; `None` starts a meter somewhere plausible.
    pub start: Option<f64>,
}

/// How often things go wrong, per message (or per counter reading for resets).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    pub reset_chance: f64,
    /// Chance that the uplink drops for 1..=`gap_max` intervals (readings are kept meanwhile).
    pub gap_chance: f64,
    pub gap_max: u32,
    pub bad_chance: f64,
}

impl Faults {
    /// Every message well formed and on time.
    pub const NONE: Faults = Faults { reset_chance: 0.0, gap_chance: 0.0, gap_max: 0, bad_chance: 0.0 };
    /// What a fleet in the field looks like over a day: a meter replaced now and then, an uplink
    /// that drops for a few intervals about every 200 messages, a bad message in 500.
    pub const FIELD: Faults =
        Faults { reset_chance: 0.000_2, gap_chance: 0.005, gap_max: 6, bad_chance: 0.002 };
    /// Much more often than in the field, to exercise dead letters and late batches in tests.
    pub const HEAVY: Faults = Faults { reset_chance: 0.02, gap_chance: 0.2, gap_max: 3, bad_chance: 0.3 };

    /// `none`, `field` or `heavy`.
    pub fn named(name: &str) -> Option<Faults> {
        match name.trim().to_ascii_lowercase().as_str() {
            "none" => Some(Self::NONE),
            "field" => Some(Self::FIELD),
            "heavy" => Some(Self::HEAVY),
            _ => None,
        }
    }
}

/// What every gateway of a run shares.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The TDS device endpoint (or broker): host name checked against its certificate, and port.
    pub host: String,
    pub port: u16,
    pub interval: Duration,
    /// Unacknowledged messages a gateway keeps before it waits.
    pub inflight: u16,
    pub keep_alive: Duration,
    pub faults: Faults,
    pub seed: u64,
}

/// Most instants in one backlog message, to stay well under the endpoint's size limit.
const BACKLOG_INSTANTS_PER_MESSAGE: usize = 50;

/// The state a gateway's publisher and its event loop share.
#[derive(Debug, Default)]
struct Flight {
    /// Readings in each publish requested and not yet written, in the order requested (the
    /// event loop writes them in that order).
    queued: std::sync::Mutex<VecDeque<u64>>,
    /// Publishes requested and not yet acknowledged.
    outstanding: std::sync::atomic::AtomicU64,
    acked: tokio::sync::Notify,
    /// Set by the event loop on every successful CONNACK, so the publisher says `online` with
    /// the status report in `online`.
    connected: tokio::sync::Notify,
    online: std::sync::Mutex<Vec<u8>>,
    /// A CSR for the publisher to send (every publish goes through it, see `queued`).
    csr: std::sync::Mutex<Option<String>>,
    csr_ready: tokio::sync::Notify,
}

/// Runs one gateway until `stop` turns true: then it publishes `offline`, waits (at most 5 s) for
/// its last acknowledgements and disconnects.
pub async fn run(spec: GatewaySpec, settings: Arc<Settings>, stats: Arc<Stats>, stop: watch::Receiver<bool>) {
    let mac = spec.mac;
    let status_topic = format!("tds_new/gateway/{mac}/status");
    let (renewal, tls) = match Renewal::load(mac, spec.files.clone()) {
        Ok(loaded) => loaded,
        Err(e) => {
            tracing::error!(%mac, error = %e, "simulated gateway has no usable identity");
            Stats::add(&stats.connect_failures, 1);
            return;
        }
    };
    let mut opts = MqttOptions::new(mac.to_string(), settings.host.clone(), settings.port);
    opts.set_keep_alive(settings.keep_alive);
    opts.set_clean_session(true);
    opts.set_inflight(settings.inflight.max(1));
    opts.set_max_packet_size(1024 * 1024, 1024 * 1024);
    opts.set_last_will(LastWill::new(status_topic.as_str(), "offline", QoS::AtLeastOnce, true));
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
    let (client, events) = AsyncClient::new(opts, usize::from(settings.inflight.max(1)) + 4);
    let mut seed_bytes = [0u8; 8];
    seed_bytes[2..].copy_from_slice(&mac.bytes());
    let seed = settings.seed ^ u64::from_be_bytes(seed_bytes);
    let flight = Flight::default();
    let producer = produce(&spec, &settings, &stats, &client, &flight, stop.clone(), seed);
    let poller = poll(Session { events, client: &client, renewal, mac }, &stats, &flight, stop);
    tokio::join!(producer, poller);
}

/// The gateway's firmware loop: read the meters every interval and publish.
async fn produce(
    spec: &GatewaySpec,
    settings: &Settings,
    stats: &Stats,
    client: &AsyncClient,
    flight: &Flight,
    mut stop: watch::Receiver<bool>,
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut meters: Vec<Meter> = spec
        .meters
        .iter()
        .map(|m| match m.start {
            Some(value) => Meter::at(m.profile, value),
            None => Meter::new(m.profile, &mut rng),
        })
        .collect();
    let telemetry = format!("tds_new/gateway/{}/telemetria", spec.mac);
    let status_topic = format!("tds_new/gateway/{}/status", spec.mac);
    let csr_topic = format!("tds_new/gateway/{}/cert_csr", spec.mac);
    // Gateways of a fleet start spread over one interval, as real ones do.
    let phase = settings.interval.mul_f64(rng.random_range(0.0..1.0));
    let mut ticker = tokio::time::interval_at(Instant::now() + phase, settings.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut backlog: Vec<(DateTime<Utc>, Vec<Reading>)> = Vec::new();
    let mut gap_left = 0u32;
    let mut last_at: Option<DateTime<Utc>> = spec.last_reported;
    // Every publish goes through here, so that `queued` is in the order of the request channel.
    let publish = |topic: &str, payload: Vec<u8>, readings: u64, retain: bool| {
        if let Ok(mut q) = flight.queued.lock() {
            q.push_back(readings);
        }
        flight.outstanding.fetch_add(1, Ordering::AcqRel);
        Stats::add(&stats.messages_sent, 1);
        client.publish(topic.to_owned(), QoS::AtLeastOnce, retain, payload)
    };
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = flight.connected.notified() => {
                let report = flight.online.lock().map_or_else(|_| b"online".to_vec(), |r| r.clone());
                if publish(&status_topic, report, 0, true).await.is_err() {
                    return;
                }
                continue;
            }
            () = flight.csr_ready.notified() => {
                let csr = flight.csr.lock().ok().and_then(|mut c| c.take());
                if let Some(body) = csr
                    && publish(&csr_topic, body.into_bytes(), 0, false).await.is_err()
                {
                    return;
                }
                continue;
            }
            () = stopped(&mut stop) => break,
        }
        // Whole seconds, as DCU clocks report; never the instant of the previous batch, which a
        // tick a few milliseconds early could otherwise repeat.
        let mut now = Utc::now().trunc_subsecs(0);
        if last_at.is_some_and(|last| now <= last) {
            now = last_at.map_or(now, |last| last + chrono::Duration::seconds(1));
        }
        last_at = Some(now);
        let readings: Vec<Reading> = spec
            .meters
            .iter()
            .zip(meters.iter_mut())
            .map(|(spec, meter)| {
                let r = meter.read(now, settings.faults.reset_chance, &mut rng);
                if r.reset {
                    Stats::add(&stats.resets, 1);
                }
                Reading { code: spec.code.clone(), value: r.value, unit: spec.profile.unit(), at: None }
            })
            .collect();
        if gap_left == 0 && settings.faults.gap_max > 0 && rng.random_bool(settings.faults.gap_chance) {
            gap_left = rng.random_range(1..=settings.faults.gap_max);
        }
        if gap_left > 0 {
            gap_left -= 1;
            backlog.push((now, readings));
            continue;
        }
        // Back online: the backlog first, oldest first, each reading with its own instant.
        for chunk in backlog.chunks(BACKLOG_INSTANTS_PER_MESSAGE) {
            let late: Vec<Reading> = chunk
                .iter()
                .flat_map(|(at, rs)| rs.iter().map(move |r| Reading { at: Some(*at), ..r.clone() }))
                .collect();
            Stats::add(&stats.late_batches, 1);
            if publish(&telemetry, payload::telemetry(spec.mac, now, &late), late.len() as u64, false)
                .await
                .is_err()
            {
                return;
            }
        }
        backlog.clear();
        let count = readings.len() as u64;
        if publish(&telemetry, payload::telemetry(spec.mac, now, &readings), count, false).await.is_err() {
            return;
        }
        if settings.faults.bad_chance > 0.0 && rng.random_bool(settings.faults.bad_chance) {
            let bad = BadMessage::ALL[rng.random_range(0..BadMessage::ALL.len())];
            let code = spec.meters.first().map_or("D01", |m| m.code.as_str());
            Stats::add(&stats.bad_messages, 1);
            if publish(&telemetry, bad.payload(spec.mac, now, code), 0, false).await.is_err() {
                return;
            }
        }
    }
    // A clean goodbye: `offline` instead of the will, then wait for what is in flight.
    let _ = publish(&status_topic, b"offline".to_vec(), 0, true).await;
    let drained = async {
        while flight.outstanding.load(Ordering::Acquire) > 0 {
            flight.acked.notified().await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), drained).await;
    let _ = client.disconnect().await;
}

/// What the event loop drives: the connection and the gateway's identity.
struct Session<'a> {
    events: EventLoop,
    client: &'a AsyncClient,
    renewal: Renewal,
    mac: Mac,
}

/// The MQTT event loop: connection state, each PUBLISH timed to its PUBACK, and renewal offers.
async fn poll(session: Session<'_>, stats: &Stats, flight: &Flight, stop: watch::Receiver<bool>) {
    let Session { mut events, client, mut renewal, mac } = session;
    let update_topic = format!("tds_new/gateway/{mac}/cert_update");
    // pkid → (written at, readings); a retransmission after a reconnect keeps the first time.
    let mut sent: HashMap<u16, (Instant, u64)> = HashMap::new();
    let mut up = false;
    // A DISCONNECT sent to reconnect with a new certificate, not to stop.
    let mut swapping = false;
    let mut backoff = Duration::from_millis(500);
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                if ack.code == ConnectReturnCode::Success {
                    up = true;
                    backoff = Duration::from_millis(500);
                    stats.connected(true);
                    if renewal.connected() {
                        Stats::add(&stats.renewals, 1);
                    }
                    // Clean sessions: subscribe again on every connection; a retained offer
                    // comes with the SUBACK.
                    let _ = client.try_subscribe(update_topic.as_str(), QoS::AtLeastOnce);
                    if let Ok(mut online) = flight.online.lock() {
                        *online = renewal.status_report();
                    }
                    flight.connected.notify_one();
                } else {
                    Stats::add(&stats.connect_failures, 1);
                    tracing::warn!(code = ?ack.code, "simulated gateway refused");
                }
            }
            Ok(Event::Incoming(Incoming::Publish(p))) if p.topic == update_topic => {
                match renewal.on_offer(&p.payload) {
                    Step::Nothing => {}
                    Step::SendCsr(body) => {
                        if let Ok(mut c) = flight.csr.lock() {
                            *c = Some(body);
                        }
                        flight.csr_ready.notify_one();
                    }
                    Step::Reconnect(tls) => {
                        events
                            .mqtt_options
                            .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
                        swapping = client.try_disconnect().is_ok();
                        if !swapping {
                            // The request channel is full: drop the connection instead.
                            events.clean();
                            up = false;
                            stats.connected(false);
                        }
                    }
                }
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                if let std::collections::hash_map::Entry::Vacant(slot) = sent.entry(pkid) {
                    let readings = flight.queued.lock().ok().and_then(|mut q| q.pop_front()).unwrap_or(0);
                    slot.insert((Instant::now(), readings));
                }
            }
            Ok(Event::Incoming(Incoming::PubAck(ack))) => {
                if let Some((at, readings)) = sent.remove(&ack.pkid) {
                    stats.ack(readings, at.elapsed());
                    flight.outstanding.fetch_sub(1, Ordering::AcqRel);
                    flight.acked.notify_one();
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                if up {
                    up = false;
                    stats.connected(false);
                }
                if swapping && !*stop.borrow() {
                    // Reconnect at once, presenting the staged certificate.
                    swapping = false;
                    events.clean();
                    continue;
                }
                return;
            }
            Ok(_) => {}
            Err(e) => {
                if up {
                    up = false;
                    stats.connected(false);
                    Stats::add(&stats.disconnects, 1);
                    tracing::info!(error = %e, "simulated gateway lost its connection; reconnecting");
                } else {
                    Stats::add(&stats.connect_failures, 1);
                    tracing::debug!(error = %e, "simulated gateway cannot connect; retrying");
                    if let Some(old) = renewal.connect_failed() {
                        Stats::add(&stats.rollbacks, 1);
                        events
                            .mqtt_options
                            .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(old)));
                    }
                }
                if *stop.borrow() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}
