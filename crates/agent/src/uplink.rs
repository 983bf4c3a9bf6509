//! The MQTT uplink: one session at a time over mutual TLS (client id = MAC, retained `offline`
//! will, retained `online` on connect), sending the disk queue oldest first with a window of
//! unacknowledged batches and removing each batch only on its PUBACK; reconnecting with
//! exponential back-off and jitter; handling `cert_update` offers (validate, stage beside the
//! old files, reconnect with the new identity, promote it once connected, fall back to the old
//! one if it is not accepted within the swap timeout).
//!
//! Every session starts from a fresh rumqttc event loop, so rumqttc never resends anything on
//! its own: the disk queue is the only source of what is unacknowledged, and after a reconnect
//! the queue is simply sent again from its oldest batch.

use crate::cert::{self, CertFiles, Identity, IdentityStore, OfferOutcome};
use crate::queue::DiskQueue;
use crate::status::Status;
use chrono::Utc;
use rand::Rng;
use rumqttc::{
    AsyncClient, Event, Incoming, LastWill, MqttOptions, Outgoing, QoS, TlsConfiguration, Transport,
};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tds_domain::Mac;
use tds_domain::renewal::StatusReport;
use tokio::sync::{Notify, watch};

/// What the poller and the uplink share.
#[derive(Debug)]
pub struct Shared {
    pub queue: Mutex<DiskQueue>,
    pub status: Mutex<Status>,
    /// Rung after each push to the queue.
    pub new_batch: Notify,
}

impl Shared {
    pub fn new(queue: DiskQueue, status: Status) -> Self {
        Self { queue: Mutex::new(queue), status: Mutex::new(status), new_batch: Notify::new() }
    }

    pub fn with_status(&self, f: impl FnOnce(&mut Status)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }

    /// Copies the queue's figures into the status.
    pub fn refresh_queue_status(&self) {
        let (len, bytes, dropped) = match self.queue.lock() {
            Ok(q) => (q.len(), q.bytes(), q.dropped()),
            Err(_) => return,
        };
        self.with_status(|s| {
            s.queue_batches = len;
            s.queue_bytes = bytes;
            s.dropped_batches = dropped;
        });
    }
}

#[derive(Debug, Clone)]
pub struct UplinkSettings {
    pub mac: Mac,
    pub host: String,
    pub port: u16,
    pub keep_alive: Duration,
    pub window: u16,
    pub swap_timeout: Duration,
    /// First and largest pause between connection attempts.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

/// Certificates given up since start.
#[derive(Default)]
struct Refused {
    /// Refused by our checks or by the server: a retained offer comes back after every
    /// reconnect and must not be tried again and again.
    pems: HashSet<String>,
    /// The serial of one the server refused, for the next status report.
    to_report: Option<String>,
}

enum SessionEnd {
    Stopped,
    /// The connection ended (or never came up).
    Lost {
        was_up: bool,
        error: String,
    },
    /// A validated certificate was staged: reconnect with it.
    Swap(Identity),
}

fn topics(mac: Mac) -> (String, String, String, String) {
    (
        format!("tds_new/gateway/{mac}/telemetria"),
        format!("tds_new/gateway/{mac}/status"),
        format!("tds_new/gateway/{mac}/cert_update"),
        format!("tds_new/gateway/{mac}/cert_csr"),
    )
}

/// Runs the uplink until `stop` turns true.
pub async fn run(
    settings: UplinkSettings,
    files: CertFiles,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    if let Err(e) = files.recover() {
        tracing::error!(error = %e, "cannot complete an interrupted certificate swap");
    }
    let mut candidate = files.pending_candidate();
    let mut refused = Refused::default();
    let mut backoff = settings.backoff_min;
    loop {
        if *stop.borrow() {
            return;
        }
        let trying = candidate.take();
        let identity = match trying.clone().map_or_else(|| files.current(), Ok) {
            Ok(id) => id,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the gateway's certificate files");
                shared.with_status(|s| s.last_connect_error = Some(e.to_string()));
                if pause(backoff, &mut stop).await {
                    return;
                }
                backoff = (backoff * 2).min(settings.backoff_max);
                continue;
            }
        };
        if let Ok(info) = cert::info(&identity.cert_pem) {
            shared.with_status(|s| {
                s.cert_serial = Some(info.serial.clone());
                s.cert_not_after = Some(info.not_after);
            });
        }
        let end =
            session(&settings, &files, &identity, trying.is_some(), &shared, &mut refused, &mut stop).await;
        shared.with_status(|s| {
            s.connected = false;
            s.connected_since = None;
        });
        match end {
            SessionEnd::Stopped => return,
            SessionEnd::Swap(next) => {
                candidate = Some(next);
                backoff = settings.backoff_min;
            }
            SessionEnd::Lost { was_up, error } => {
                // A candidate that connected was promoted at its CONNACK: losing that session
                // later is an ordinary lost connection, not a refusal.
                if trying.is_some() && !was_up {
                    tracing::warn!(error = %error, "the new certificate was not accepted; back to the old one");
                    shared.with_status(|s| {
                        s.last_cert_update = Some(format!("{}: rolled back: {error}", Utc::now()));
                    });
                    refused.pems.insert(identity.cert_pem.trim().to_owned());
                    refused.to_report = cert::info(&identity.cert_pem).ok().map(|i| i.serial);
                    files.reject();
                    continue;
                }
                shared.with_status(|s| s.last_connect_error = Some(error.clone()));
                if was_up {
                    backoff = settings.backoff_min;
                    tracing::info!(error = %error, "connection lost; reconnecting");
                } else {
                    tracing::warn!(error = %error, retry_in = ?backoff, "cannot connect");
                }
                if pause(backoff, &mut stop).await {
                    return;
                }
                backoff = (backoff * 2).min(settings.backoff_max);
            }
        }
    }
}

/// Sleeps `base` plus up to 50 % jitter (a fleet that lost its server together must not come
/// back in lock step); true if `stop` turned true meanwhile.
async fn pause(base: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    let jitter = base.mul_f64(rand::rng().random_range(0.0..0.5));
    tokio::select! {
        () = tokio::time::sleep(base + jitter) => false,
        () = crate::sim::stopped(stop) => true,
    }
}

/// The state of one session's sending.
#[derive(Default)]
struct Window {
    /// One entry per publish requested and not yet given a packet id, in request order: the
    /// batch's sequence, or `None` for a status or CSR message.
    requested: VecDeque<Option<u64>>,
    /// Packet id → batch sequence, written and not yet acknowledged.
    written: HashMap<u16, u64>,
    /// The newest batch requested in this session.
    last: Option<u64>,
}

impl Window {
    fn batches_out(&self) -> usize {
        self.requested.iter().filter(|r| r.is_some()).count() + self.written.len()
    }
}

#[allow(clippy::too_many_lines)]
async fn session(
    settings: &UplinkSettings,
    files: &CertFiles,
    identity: &Identity,
    is_candidate: bool,
    shared: &Shared,
    refused: &mut Refused,
    stop: &mut watch::Receiver<bool>,
) -> SessionEnd {
    let (telemetry, status_topic, update_topic, csr_topic) = topics(settings.mac);
    let tls = match crate::sim::client_tls(&identity.ca_pem, &identity.cert_pem, &identity.key_pem) {
        Ok(tls) => tls,
        Err(e) => return SessionEnd::Lost { was_up: false, error: e.to_string() },
    };
    let mut opts = MqttOptions::new(settings.mac.to_string(), settings.host.clone(), settings.port);
    opts.set_keep_alive(settings.keep_alive);
    opts.set_clean_session(true);
    // Room for the batches of the window plus `online` and a CSR.
    opts.set_inflight(settings.window.saturating_add(2));
    opts.set_max_packet_size(1024 * 1024, 1024 * 1024);
    opts.set_last_will(LastWill::new(status_topic.as_str(), "offline", QoS::AtLeastOnce, true));
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(tls))));
    let (client, mut events) = AsyncClient::new(opts, usize::from(settings.window) + 8);
    let mut window = Window::default();
    let mut up = false;
    // A candidate identity must be accepted within the swap timeout, or it is given up.
    let deadline =
        tokio::time::sleep(if is_candidate { settings.swap_timeout } else { Duration::from_hours(365 * 24) });
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = crate::sim::stopped(stop) => {
                if up {
                    let _ = client.try_publish(status_topic.as_str(), QoS::AtLeastOnce, true, "offline");
                    let _ = client.try_disconnect();
                    // Let the event loop write both before the session is dropped.
                    let _ = tokio::time::timeout(Duration::from_secs(2), async {
                        while let Ok(ev) = events.poll().await {
                            if matches!(ev, Event::Outgoing(Outgoing::Disconnect)) { break; }
                        }
                    }).await;
                }
                return SessionEnd::Stopped;
            }
            () = &mut deadline, if is_candidate && !up => {
                return SessionEnd::Lost { was_up: false, error: format!("not accepted within {:?}", settings.swap_timeout) };
            }
            () = shared.new_batch.notified(), if up => {
                top_up(&client, &telemetry, settings.window, &mut window, shared);
            }
            polled = events.poll() => match polled {
                Err(e) => return SessionEnd::Lost { was_up: up, error: e.to_string() },
                Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                    up = true;
                    let now = Utc::now();
                    shared.with_status(|s| { s.connected = true; s.connected_since = Some(now); s.last_connect_error = None; });
                    if is_candidate {
                        match files.promote() {
                            Ok(()) => {
                                tracing::info!("connected with the new certificate; it is now the gateway's");
                                shared.with_status(|s| s.last_cert_update = Some(format!("{now}: new certificate confirmed")));
                            }
                            Err(e) => tracing::error!(error = %e, "cannot keep the new certificate files"),
                        }
                    }
                    tracing::info!(host = %settings.host, "connected");
                    window.requested.push_back(None);
                    // Which certificate this connection uses (and one the server refused): what
                    // TDS confirms a renewal by when it sits behind an external broker.
                    let report = StatusReport {
                        status: "online".into(),
                        cert_serial: cert::info(&identity.cert_pem).ok().map(|i| i.serial),
                        refused_serial: refused.to_report.take(),
                    };
                    let _ = client.try_publish(status_topic.as_str(), QoS::AtLeastOnce, true, report.to_json());
                    let _ = client.try_subscribe(update_topic.as_str(), QoS::AtLeastOnce);
                    top_up(&client, &telemetry, settings.window, &mut window, shared);
                }
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                    if let Some(Some(seq)) = window.requested.pop_front() {
                        window.written.insert(pkid, seq);
                    }
                }
                Ok(Event::Incoming(Incoming::PubAck(ack))) => {
                    if let Some(seq) = window.written.remove(&ack.pkid) {
                        let removed = shared.queue.lock().map_err(|_| ()).and_then(|mut q| q.remove(seq).map_err(|e| {
                            tracing::error!(error = %e, "cannot remove an acknowledged batch");
                        }));
                        if removed.is_ok() {
                            let now = Utc::now();
                            shared.with_status(|s| { s.last_puback = Some(now); s.batches_acknowledged += 1; });
                        }
                        top_up(&client, &telemetry, settings.window, &mut window, shared);
                    }
                }
                Ok(Event::Incoming(Incoming::Publish(p))) if p.topic == update_topic => {
                    match handle_offer(settings, files, identity, &p.payload, &mut refused.pems, shared) {
                        OfferOutcome::Nothing | OfferOutcome::Refused(_) => {}
                        OfferOutcome::Csr(csr) => {
                            let body = serde_json::json!({ "csr_pem": csr }).to_string();
                            window.requested.push_back(None);
                            if client.try_publish(csr_topic.as_str(), QoS::AtLeastOnce, false, body).is_err() {
                                window.requested.pop_back();
                            }
                        }
                        OfferOutcome::Swap(next, _) => {
                            // Leave cleanly; what is in flight stays on disk and is sent again.
                            let _ = client.try_disconnect();
                            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                                while let Ok(ev) = events.poll().await {
                                    if matches!(ev, Event::Outgoing(Outgoing::Disconnect)) { break; }
                                }
                            }).await;
                            return SessionEnd::Swap(next);
                        }
                    }
                }
                Ok(_) => {}
            }
        }
    }
}

/// Asks for the next queued batches until the window is full.
fn top_up(client: &AsyncClient, topic: &str, size: u16, window: &mut Window, shared: &Shared) {
    while window.batches_out() < usize::from(size) {
        let next = match shared.queue.lock() {
            Ok(q) => q.next_after(window.last).map(|seq| (seq, q.read(seq))),
            Err(_) => return,
        };
        let Some((seq, bytes)) = next else { return };
        window.last = Some(seq);
        let bytes = match bytes {
            Ok(Some(b)) => b,
            Ok(None) => continue,
            Err(e) => {
                tracing::error!(error = %e, seq, "cannot read a queued batch; skipping it for this session");
                continue;
            }
        };
        window.requested.push_back(Some(seq));
        if client.try_publish(topic, QoS::AtLeastOnce, false, bytes).is_err() {
            // The request channel is full: the rest waits for the next acknowledgement.
            window.requested.pop_back();
            window.last = seq.checked_sub(1);
            return;
        }
    }
}

fn handle_offer(
    settings: &UplinkSettings,
    files: &CertFiles,
    current: &Identity,
    payload: &[u8],
    refused: &mut HashSet<String>,
    shared: &Shared,
) -> OfferOutcome {
    let outcome = cert::on_offer(files, settings.mac, current, payload, refused, Utc::now());
    let note = match &outcome {
        OfferOutcome::Nothing => None,
        OfferOutcome::Csr(_) => Some("CSR sent".to_owned()),
        OfferOutcome::Swap(_, info) => Some(format!("trying new certificate {}", info.serial)),
        OfferOutcome::Refused(e) => Some(format!("refused: {e}")),
    };
    if let Some(text) = note {
        shared.with_status(|s| s.last_cert_update = Some(format!("{}: {text}", Utc::now())));
    }
    outcome
}
