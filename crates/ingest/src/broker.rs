//! External-broker mode (SPEC §2, scale-out): instead of terminating MQTT itself, TDS consumes
//! the gateways' messages from a broker (Mosquitto, EMQX, …) through a shared subscription, so
//! that several TDS instances share the load, each message going to one of them.
//!
//! The broker does mutual TLS with the gateways and enforces the ACL (`use_identity_as_username`,
//! `pattern write tds_new/gateway/%u/telemetria`), so the gateway is the `{mac}` of the topic; the
//! payload's `gateway_mac` must still match it. TDS connects with its own client certificate (CN
//! `tds-ingest`), subscribes to [`SUBSCRIPTIONS`] with `QoS` 1 and acknowledges each message only
//! after what it gave (readings, dead letters) is committed by the same pipeline and group-commit
//! writer as the device endpoint. Messages of unknown or decommissioned gateways are dead letters.
//!
//! The session is persistent (clean session off, a stable client id per instance): messages
//! delivered but not acknowledged when TDS stops, crashes or loses the broker are delivered again
//! when it comes back, and a resend stores nothing twice. Acknowledgements are only sent on the
//! connection that delivered the message. When the broker goes away, the consumer reconnects
//! with a backoff from half a second to half a minute.
//!
//! Messages TDS keeps for gateways (`cert_update`) are published retained on the broker by
//! [`crate::broker_outbox`], through this consumer's connection. Behind a broker TDS does not see
//! the gateways' certificates: what a gateway reports in its status confirms its renewal
//! ([`crate::reported`]).
//!
//! Must not: publish on gateways' topics other than `cert_update`, or acknowledge a message
//! before its commit.

use crate::config::IngestConfig;
use crate::pipeline::Pipeline;
use crate::writer::Done;
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, Incoming, MqttOptions, Publish, QoS, SubscribeReasonCode,
    TlsConfiguration, Transport,
};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tds_domain::GatewayStatus;
use tds_domain::telemetry::Topic;
use tds_store::{Store, StoreError};
use tokio::sync::mpsc;

/// The shared subscriptions: telemetry (and its alias), status and CSRs, in the share group
/// `tds`.
pub const SUBSCRIPTIONS: [&str; 4] = [
    "$share/tds/tds_new/gateway/+/telemetria",
    "$share/tds/tds_new/devices/+/telemetry",
    "$share/tds/tds_new/gateway/+/status",
    "$share/tds/tds_new/gateway/+/cert_csr",
];

/// Requests (acknowledgements, subscriptions) waiting for the MQTT event loop, and messages
/// waiting for their commit. Both must exceed the broker's in-flight window for this client
/// (Mosquitto's `max_inflight_messages`, 20 by default; `tds broker-config` sets 100), so that
/// the acknowledging task never waits for the event loop while the event loop waits for it.
const REQUESTS_CAPACITY: usize = 1024;
const PENDING_CAPACITY: usize = 4096;

/// Where and how to reach the broker.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    pub host: String,
    pub port: u16,
    /// Stable and different for every instance: the broker keeps the instance's session (its
    /// unacknowledged messages) under this id.
    pub client_id: String,
    /// TLS with TDS's client certificate and the CA that signed the broker's certificate.
    pub tls: Arc<rustls::ClientConfig>,
    pub keep_alive: Duration,
    /// First wait after a lost or refused connection; doubled after each failure…
    pub backoff_min: Duration,
    /// …up to this.
    pub backoff_max: Duration,
}

impl BrokerOptions {
    pub fn new(host: String, port: u16, client_id: String, tls: Arc<rustls::ClientConfig>) -> Self {
        Self {
            host,
            port,
            client_id,
            tls,
            keep_alive: Duration::from_secs(30),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// A message waiting for its commit: acknowledged when `done` completes, if the connection
/// that delivered it (`connection`) is still the current one.
struct Pending {
    publish: Publish,
    connection: u64,
    received: std::time::Instant,
    done: Done,
}

/// The broker consumer: the MQTT client, the pipeline, and the task that acknowledges.
#[derive(Debug)]
pub struct BrokerConsumer {
    options: BrokerOptions,
    max_packet_bytes: usize,
    /// How often the messages kept for gateways are looked at.
    message_poll: Duration,
    pipeline: Arc<Pipeline>,
}

impl BrokerConsumer {
    /// Starts the pipeline (the writer); does not connect yet.
    pub fn new(options: BrokerOptions, config: &IngestConfig, store: Store) -> Self {
        let mut pipeline = Pipeline::start(store, config);
        pipeline.certificate_reports = true;
        Self {
            options,
            max_packet_bytes: config.max_packet_bytes,
            message_poll: config.revocation_poll,
            pipeline: Arc::new(pipeline),
        }
    }

    /// Consumes until `shutdown` completes, then acknowledges what was committed (up to 5 s) and
    /// disconnects; what was not acknowledged stays with the broker for the next start.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let o = &self.options;
        let broker = format!("{}:{}", o.host, o.port);
        let mut mqtt = MqttOptions::new(&o.client_id, &o.host, o.port);
        mqtt.set_keep_alive(o.keep_alive)
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_max_packet_size(self.max_packet_bytes, 64 * 1024)
            .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(o.tls.clone())));
        let (client, mut events) = AsyncClient::new(mqtt, REQUESTS_CAPACITY);
        // Bumped on every connect and every loss: an acknowledgement of an earlier connection is
        // never sent on a later one (the broker may have reused its packet id).
        let connection = Arc::new(AtomicU64::new(0));
        let (pending_tx, pending_rx) = mpsc::channel::<Pending>(PENDING_CAPACITY);
        let acker = tokio::spawn(acknowledge(client.clone(), pending_rx, connection.clone()));
        let (connected_tx, connected_rx) = tokio::sync::watch::channel(0u64);
        let outbox = tokio::spawn(crate::broker_outbox::run(
            client.clone(),
            self.pipeline.store.clone(),
            connected_rx,
            self.message_poll,
        ));
        tracing::info!(%broker, client_id = %o.client_id, "consuming from an external broker (scale-out mode)");
        let mut backoff = o.backoff_min;
        let mut failures = 0u32;
        tokio::pin!(shutdown);
        loop {
            let event = tokio::select! {
                () = &mut shutdown => break,
                event = events.poll() => event,
            };
            match event {
                Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                    connection.fetch_add(1, Ordering::SeqCst);
                    backoff = o.backoff_min;
                    failures = 0;
                    tracing::info!(%broker, session_present = ack.session_present, "connected to the broker");
                    connected_tx.send_modify(|n| *n += 1);
                    // Again on every connection: a broker that lost the session lost them too.
                    for filter in SUBSCRIPTIONS {
                        if let Err(e) = client.try_subscribe(filter, QoS::AtLeastOnce) {
                            tracing::error!(%filter, error = %e, "cannot subscribe");
                        }
                    }
                }
                Ok(Event::Incoming(Incoming::SubAck(ack))) => {
                    if ack.return_codes.contains(&SubscribeReasonCode::Failure) {
                        tracing::error!(%broker, codes = ?ack.return_codes, "the broker refused a subscription: does its ACL let user tds-ingest read the gateways' topics?");
                    }
                }
                Ok(Event::Incoming(Incoming::Publish(publish))) => {
                    let (current, received) = (connection.load(Ordering::SeqCst), std::time::Instant::now());
                    match self.handle(&publish).await {
                        // QoS 0 needs no acknowledgement; its commit still happens.
                        Ok(done) if publish.qos == QoS::AtMostOnce => drop(done),
                        Ok(done) => {
                            let pending = Pending { publish, connection: current, received, done };
                            if pending_tx.send(pending).await.is_err() {
                                break;
                            }
                        }
                        Err(e) => {
                            // Unacknowledged, it is delivered again once we reconnect.
                            tracing::error!(error = %e, "cannot read the gateway from the store; reconnecting so that the broker delivers again");
                            connection.fetch_add(1, Ordering::SeqCst);
                            events.clean();
                            sleep_or_shutdown(backoff, &mut shutdown).await;
                            backoff = (backoff * 2).min(o.backoff_max);
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    connection.fetch_add(1, Ordering::SeqCst);
                    failures += 1;
                    log_failure(&broker, &e, failures, backoff);
                    if sleep_or_shutdown(backoff, &mut shutdown).await {
                        break;
                    }
                    backoff = (backoff * 2).min(o.backoff_max);
                }
            }
        }
        drop(pending_tx);
        outbox.abort();
        finish(client, events, acker).await;
        // The gateways' states the status messages gave, written before the caller closes the
        // database.
        self.pipeline.flush_status().await;
    }

    /// The work one message gives: dead letters for a topic outside the protocol or a gateway
    /// TDS does not know (or no longer serves), else what the pipeline makes of it.
    async fn handle(&self, publish: &Publish) -> Result<Done, StoreError> {
        let p = &self.pipeline;
        let topic = match Topic::parse(&publish.topic) {
            Ok(
                t @ (Topic::Telemetry(_) | Topic::TelemetryAlias(_) | Topic::Status(_) | Topic::CertCsr(_)),
            ) => t,
            Ok(t) => {
                let reason = format!("{t} is written by TDS, not by gateways");
                return Ok(p
                    .refuse(
                        None,
                        Some(t.mac()),
                        &publish.topic,
                        &publish.payload,
                        ("topic_not_allowed", reason),
                    )
                    .await);
            }
            Err(e) => {
                return Ok(p
                    .refuse(None, None, &publish.topic, &publish.payload, (e.code(), e.to_string()))
                    .await);
            }
        };
        let mac = topic.mac();
        match p.directory.gateway(mac).await? {
            Some(g) if g.status != GatewayStatus::Decommissioned => {
                p.accept(&g, topic, &publish.topic, &publish.payload).await
            }
            Some(g) => {
                tracing::info!(gateway.mac = %mac, "message of a decommissioned gateway: dead letter");
                let reason = format!("gateway {mac} is decommissioned");
                Ok(p.refuse(
                    Some(&g),
                    Some(mac),
                    &publish.topic,
                    &publish.payload,
                    ("gateway_decommissioned", reason),
                )
                .await)
            }
            None => {
                tracing::info!(gateway.mac = %mac, "message of an unknown gateway: dead letter");
                let reason = format!("no gateway is registered with MAC {mac}");
                Ok(p.refuse(None, Some(mac), &publish.topic, &publish.payload, ("unknown_gateway", reason))
                    .await)
            }
        }
    }
}

/// Acknowledges each message, in delivery order, once it is committed and only on the connection
/// that delivered it. A failed commit is not acknowledged and makes the consumer reconnect, so
/// that the broker delivers it (and those after it) again.
async fn acknowledge(client: AsyncClient, mut pending: mpsc::Receiver<Pending>, connection: Arc<AtomicU64>) {
    // The connection already told to end, so that it is told (and logged) once.
    let mut ending = None;
    while let Some(Pending { publish, connection: delivered_on, received, done }) = pending.recv().await {
        let current = || connection.load(Ordering::SeqCst) == delivered_on;
        match done.await {
            Ok(Ok(())) => {
                if current() {
                    if client.ack(&publish).await.is_err() {
                        return;
                    }
                    crate::metrics::acked(received.elapsed());
                }
            }
            _ => {
                if current() && ending != Some(delivered_on) {
                    ending = Some(delivered_on);
                    tracing::error!(
                        "commit failed; disconnecting so that the broker delivers the messages again"
                    );
                    // The session stays with the broker (clean session off); a DISCONNECT only
                    // ends this connection and the loop reconnects.
                    let _ = client.try_disconnect();
                }
            }
        }
    }
}

/// Sleeps `wait`, or less when `shutdown` completes (then `true`).
async fn sleep_or_shutdown(
    wait: Duration,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> bool {
    tokio::select! {
        () = shutdown.as_mut() => true,
        () = tokio::time::sleep(wait) => false,
    }
}

fn log_failure(broker: &str, e: &ConnectionError, failures: u32, retry_in: Duration) {
    let retry_in_ms = retry_in.as_millis() as u64;
    match e {
        ConnectionError::ConnectionRefused(code) => {
            tracing::error!(%broker, ?code, retry_in_ms, "the broker refused the connection");
        }
        _ if failures <= 1 => {
            tracing::warn!(%broker, error = %e, retry_in_ms, "lost the broker; reconnecting");
        }
        _ => tracing::warn!(%broker, error = %e, failures, retry_in_ms, "cannot reach the broker"),
    }
}

/// After shutdown: lets the acknowledgements of committed messages go out (up to 5 s), then
/// disconnects. Messages delivered in the meantime are left unacknowledged for the next start.
async fn finish(client: AsyncClient, mut events: EventLoop, acker: tokio::task::JoinHandle<()>) {
    let drained = async {
        let _ = acker.await;
        // One more round for the last acknowledgements, then the DISCONNECT.
        let _ = client.try_disconnect();
        loop {
            match events.poll().await {
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    tokio::select! {
        () = drained => {}
        () = tokio::time::sleep(Duration::from_secs(5)) => tracing::warn!("broker consumer did not finish within 5 s"),
    }
}
