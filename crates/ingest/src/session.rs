//! One gateway's MQTT 3.1.1 conversation, after its certificate has been verified (or, on the
//! development listener, with the MAC and password its CONNECT gives).
//!
//! CONNECT must come first, within the connect timeout; on the plain listener its user name must
//! be a MAC and its password the development password (else "bad user name or password"); its
//! client id must be that MAC (the certificate's, over TLS) and the MAC must name a registered
//! gateway that is not decommissioned, else a CONNACK with the matching refusal code. Then: PUBLISH (`QoS` 0 or 1) to the gateway's own topics only,
//! the topic checked before anything is stored (a violation is dead-lettered, logged and ends the
//! connection); SUBSCRIBE to its own `cert_update` only (others get the failure code);
//! UNSUBSCRIBE; PINGREQ; DISCONNECT. PUBACKs go out in the order the messages came in, each only
//! after its message is committed. A session that misses its keep-alive (1.5 × the interval; a
//! keep-alive of 0, or one above the server's maximum, gets the maximum) ends, and its will,
//! when it is the gateway's own status topic, marks it offline.
//!
//! Limits (SPEC §2): a socket that does not take a packet within the write timeout ends the
//! session; beyond its message rate a gateway's session stops reading its socket for a while
//! (TCP then holds the gateway back: nothing is dropped); its status and connection history are
//! written at most once per status interval (the pipeline coalesces them).

use crate::config::DevPassword;
use crate::directory::GatewayEntry;
use crate::endpoint::{HandshakePermit, Shared};
use crate::limits::TokenBucket;
use crate::outbox::Outbox;
use crate::registry::{Close, Signal};
use crate::writer::{Done, Submission};
use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, LastWill, Packet, PingResp, PubAck, Publish, SubAck,
    SubscribeReasonCode, UnsubAck,
};
use rumqttc::mqttbytes::{Error as MqttError, QoS};
use std::sync::Arc;
use std::time::Duration;
use tds_domain::Mac;
use tds_domain::telemetry::Topic;
use tds_pki::tls::DeviceIdentity;
use tds_store::renewals::Admission;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

#[derive(Debug)]
enum ReadError {
    Closed,
    /// Nothing read within the keep-alive.
    KeepAlive,
    Io(std::io::Error),
    Protocol(MqttError),
    /// Not a read: the gateway's messages changed (see [`Outbox`]).
    Nudged,
}

/// Reads the next packet into `buf`. An idle gateway holds no read buffer: when everything read
/// has been parsed, the buffer is let go and the wait for the next bytes reads into a small
/// array of the session's own; a buffer is allocated again only for what arrives (a session
/// spends nearly all its life waiting, and at 10,000 gateways 8 KiB each was a third of the
/// server's memory).
async fn read_packet<S: AsyncRead>(
    rd: &mut ReadHalf<S>,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Packet, ReadError> {
    loop {
        match Packet::read(buf, max) {
            Ok(p) => return Ok(p),
            Err(MqttError::InsufficientBytes(_)) => {}
            Err(e) => return Err(ReadError::Protocol(e)),
        }
        let read = if buf.is_empty() {
            *buf = BytesMut::new();
            let mut first = [0u8; IDLE_READ];
            rd.read(&mut first).await.inspect(|&n| buf.extend_from_slice(&first[..n]))
        } else {
            buf.reserve(4096);
            rd.read_buf(buf).await
        };
        match read {
            Ok(0) => return Err(ReadError::Closed),
            Ok(_) => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
}

/// Bytes an idle session waits to read into (part of its future, so kept by every idle
/// gateway): enough for a small packet whole (PINGREQ, a PUBACK) and a message's fixed header;
/// the rest of a message is then read into a buffer sized for it (the TLS stream holds the
/// record's remaining plaintext meanwhile).
const IDLE_READ: usize = 64;

fn encode(packet: &Packet) -> Bytes {
    let mut out = BytesMut::with_capacity(packet.size() + 4);
    // Our own small packets always fit.
    let _ = packet.write(&mut out, usize::MAX);
    out.freeze()
}

/// Who the peer is, or how to find out.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// Verified by the TLS handshake: the certificate's MAC and serial.
    Certificate(DeviceIdentity),
    /// The plain development listener: CONNECT's user name is the MAC, its password this one.
    Password(DevPassword),
}

impl Credentials {
    /// Who the peer is known to be before CONNECT, for the log.
    fn known(&self) -> String {
        match self {
            Self::Certificate(id) => id.mac.to_string(),
            Self::Password(_) => "(plain listener)".to_owned(),
        }
    }

    /// The identity CONNECT gives, with these credentials: the MAC and the certificate serial
    /// (empty on the plain listener, which has no certificate to revoke).
    fn identify(&self, connect: &Connect) -> Result<DeviceIdentity, ConnectReturnCode> {
        match self {
            Self::Certificate(id) => Ok(id.clone()),
            Self::Password(password) => {
                let login = connect.login.as_ref().ok_or(ConnectReturnCode::BadUserNamePassword)?;
                let mac = Mac::parse(&login.username).map_err(|_| ConnectReturnCode::BadUserNamePassword)?;
                if !password.matches(login.password.as_bytes()) {
                    tracing::info!(gateway.mac = %mac, "refused: wrong development password");
                    return Err(ConnectReturnCode::BadUserNamePassword);
                }
                Ok(DeviceIdentity { mac, serial_hex: String::new() })
            }
        }
    }
}

/// Why a session ended, as logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Disconnect,
    KeepAlive,
    Closed,
    ProtocolError,
    AclViolation,
    Replaced,
    Revoked,
    Retired,
    Shutdown,
    CommitFailed,
    WriteTimeout,
}

impl End {
    /// The fault codes the sender task leaves in the session's [`Signal`].
    const fn fault_code(self) -> u8 {
        match self {
            Self::CommitFailed => 1,
            _ => 2,
        }
    }

    /// The fault the sender task left, if any.
    fn fault(signal: &Signal) -> Option<Self> {
        match signal.fault_code() {
            0 => None,
            1 => Some(Self::CommitFailed),
            _ => Some(Self::WriteTimeout),
        }
    }

    const fn as_str(self) -> &'static str {
        match self {
            Self::Disconnect => "disconnect",
            Self::KeepAlive => "keep_alive_timeout",
            Self::Closed => "connection_closed",
            Self::ProtocolError => "protocol_error",
            Self::AclViolation => "acl_violation",
            Self::Replaced => "replaced_by_new_connection",
            Self::Revoked => "certificate_revoked",
            Self::Retired => "certificate_retired_or_gateway_decommissioned",
            Self::Shutdown => "server_shutdown",
            Self::CommitFailed => "commit_failed",
            Self::WriteTimeout => "write_timeout",
        }
    }
}

/// Runs a verified connection to its end.
///
/// The stream is split (moved into the halves' shared allocation) before the session's future
/// exists, so that the future, which lives as long as the connection, does not also keep room
/// for the stream.
pub fn run<S>(
    stream: S,
    credentials: Credentials,
    shared: Arc<Shared>,
    permit: Option<HandshakePermit>,
) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(stream);
    converse(rd, wr, credentials, shared, permit)
}

/// The session itself. One function on purpose: the connection's phases (CONNECT, the packet
/// loop, the drain) share its halves, buffers and tasks.
///
/// An idle gateway's whole session is this future waiting in its read, kept for as long as the
/// gateway stays connected, and a future is as large as the largest state it may await: every
/// await of the store (CONNECT's checks, history, status, a message's devices, the outbox) is
/// boxed, so that its state is allocated only while it runs. Unboxed, they made the future
/// 15 KiB, a third of an idle gateway's memory.
#[allow(clippy::too_many_lines)]
async fn converse<S>(
    mut rd: ReadHalf<S>,
    mut wr: WriteHalf<S>,
    credentials: Credentials,
    shared: Arc<Shared>,
    permit: Option<HandshakePermit>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let mut buf = BytesMut::new();
    let mac = credentials.known();
    let first = tokio::time::timeout(
        shared.config.connect_timeout,
        read_packet(&mut rd, &mut buf, shared.config.max_packet_bytes),
    )
    .await;
    let connect = match first {
        Ok(Ok(Packet::Connect(c))) => c,
        Ok(Err(ReadError::Protocol(MqttError::InvalidProtocolLevel(level)))) => {
            tracing::info!(gateway.mac = %mac, level, "refused: not MQTT 3.1.1");
            let _ = wr
                .write_all(&encode(&Packet::ConnAck(ConnAck::new(
                    ConnectReturnCode::RefusedProtocolVersion,
                    false,
                ))))
                .await;
            let _ = wr.shutdown().await;
            return;
        }
        Ok(other) => {
            crate::metrics::refused("no_connect");
            shared.pipeline.refusals.note("no_connect", |suppressed| {
                tracing::info!(gateway.mac = %mac, first = ?other.map(|p| format!("{p:?}").chars().take(40).collect::<String>()), suppressed, "refused: CONNECT expected first");
            });
            return;
        }
        Err(_) => {
            crate::metrics::refused("connect_timeout");
            shared.pipeline.refusals.note("connect_timeout", |suppressed| {
                tracing::info!(gateway.mac = %mac, suppressed, "refused: no CONNECT within the connect timeout");
            });
            return;
        }
    };
    let identity = match credentials.identify(&connect) {
        Ok(identity) => identity,
        Err(code) => {
            if code == ConnectReturnCode::BadUserNamePassword {
                tracing::info!(gateway.mac = %mac, "refused: the user name is not a MAC or the password is wrong");
            }
            crate::metrics::refused("credentials");
            let _ = wr.write_all(&encode(&Packet::ConnAck(ConnAck::new(code, false)))).await;
            let _ = wr.shutdown().await;
            return;
        }
    };
    let mac = identity.mac;
    let gateway = match Box::pin(admit(&shared, &identity, &connect)).await {
        Ok(g) => g,
        Err((code, known)) => {
            if let Some(g) = known {
                Box::pin(shared.pipeline.history(&g, "refused", &format!("{code:?}"))).await;
            }
            crate::metrics::refused(match code {
                ConnectReturnCode::BadClientId => "client_id",
                ConnectReturnCode::ServiceUnavailable => "unavailable",
                _ => "not_authorized",
            });
            let _ = wr.write_all(&encode(&Packet::ConnAck(ConnAck::new(code, false)))).await;
            let _ = wr.shutdown().await;
            return;
        }
    };
    // The handshake is over: the permit goes to the next connection.
    drop(permit);
    let registration = shared.registry.register(mac, &identity.serial_hex);
    crate::metrics::connected(1.0);
    if wr.write_all(&encode(&Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false)))).await.is_err()
    {
        return;
    }
    let _ = wr.flush().await;
    tracing::info!(gateway.mac = %mac, keep_alive = connect.keep_alive, "gateway connected");
    // What the session needs of CONNECT later; the packet itself goes now: its will's message
    // is a slice of the buffer CONNECT was read into (4 KiB when it came in two reads), which
    // it would otherwise keep for as long as the gateway stays connected.
    let keep_alive = keep_alive_limit(connect.keep_alive, shared.config.max_keep_alive);
    let will_offline = connect.last_will.as_ref().is_some_and(|w| is_offline_will(w, mac));
    drop(connect);
    let how = if identity.serial_hex.is_empty() {
        "development password (plain listener)".to_owned()
    } else {
        format!("certificate {}", identity.serial_hex)
    };
    Box::pin(shared.pipeline.history(&gateway, "connected", &how)).await;
    Box::pin(shared.pipeline.set_online(&gateway, true)).await;

    // Outgoing packets: one task owns the write half, in the order the session queued them.
    // PUBACKs are queued with their commit and go out after it, so they leave in arrival order;
    // a failed commit ends the session so the gateway resends. A socket that does not take a
    // packet within the write timeout (a client that stopped reading) ends the session too.
    // One task and one queue for both (not one each): every connected gateway keeps them. The
    // queue is flume's, which allocates room for what is queued as it comes (tokio's allocates
    // a block of 32 slots up front, 1.8 KiB per gateway with its channel).
    let (out_tx, out_rx) = flume::bounded::<Outgoing>(shared.config.inflight_per_session + 8);
    let sender = tokio::spawn(send_in_order(
        wr,
        out_rx,
        Arc::clone(&registration.signal),
        shared.config.write_timeout,
    ));

    let mut outbox = Outbox::new(mac);
    let mut rate = TokenBucket::new(shared.config.messages_per_second, shared.config.message_burst);
    let mut wait_before_reading: Option<Duration> = None;
    let end = loop {
        // Over its message rate: the session stops reading for a while (back-pressure; the
        // gateway's messages wait in TCP, none is dropped).
        let wait = wait_before_reading.take();
        let read = async {
            if let Some(wait) = wait {
                tokio::time::sleep(wait).await;
            }
            tokio::time::timeout(keep_alive, read_packet(&mut rd, &mut buf, shared.config.max_packet_bytes))
                .await
                .unwrap_or(Err(ReadError::KeepAlive))
        };
        let signal = &registration.signal;
        let packet = tokio::select! {
            () = signal.changed() => {
                if let Some(why) = signal.closing() {
                    break match why {
                        Close::Replaced => End::Replaced,
                        Close::Revoked => End::Revoked,
                        Close::Retired => End::Retired,
                        Close::Open | Close::Shutdown => End::Shutdown,
                    };
                }
                if let Some(fault) = End::fault(signal) {
                    break fault;
                }
                if !signal.take_nudge() {
                    // A wake-up already answered: the pause for the message rate still holds.
                    wait_before_reading = wait;
                    continue;
                }
                Err(ReadError::Nudged)
            }
            r = read => r,
        };
        let packet = match packet {
            Ok(p) => p,
            Err(ReadError::KeepAlive) => break End::KeepAlive,
            Err(ReadError::Nudged) => {
                Box::pin(outbox.deliver(&shared, &out_tx)).await;
                continue;
            }
            Err(ReadError::Io(e)) => {
                tracing::debug!(gateway.mac = %mac, error = %e, "read failed");
                break End::Closed;
            }
            Err(ReadError::Closed) => break End::Closed,
            Err(ReadError::Protocol(e)) => {
                tracing::info!(gateway.mac = %mac, error = %e, "protocol error");
                break End::ProtocolError;
            }
        };
        match packet {
            Packet::Publish(publish) => {
                if let Err(end) = Box::pin(on_publish(&shared, &gateway, publish, &out_tx)).await {
                    // A socket that stopped draining, or a failed commit, also ends here (the
                    // queue is closed): say which.
                    break End::fault(&registration.signal).unwrap_or(end);
                }
                if let Some(wait) = rate.take_or_wait() {
                    // Counted here, once, where the pause is decided (the loop may take it up
                    // again after a wake-up that changed nothing).
                    crate::metrics::throttled("messages");
                    crate::metrics::throttled_for(wait);
                    shared.pipeline.refusals.note("message_rate", |suppressed| {
                        tracing::info!(gateway.mac = %mac, suppressed, "gateway over its message rate: reading paused");
                    });
                    wait_before_reading = Some(wait);
                }
            }
            Packet::Subscribe(sub) => {
                let codes = sub
                    .filters
                    .iter()
                    .map(|f| {
                        if Topic::may_subscribe(&f.path, mac) {
                            SubscribeReasonCode::Success(if f.qos == QoS::AtMostOnce {
                                QoS::AtMostOnce
                            } else {
                                QoS::AtLeastOnce
                            })
                        } else {
                            shared.pipeline.refusals.note("subscription", |suppressed| {
                                tracing::info!(gateway.mac = %mac, filter = %f.path.chars().take(120).collect::<String>(), suppressed, "subscription refused");
                            });
                            SubscribeReasonCode::Failure
                        }
                    })
                    .collect();
                let _ = out_tx
                    .send_async(Outgoing::Packet(encode(&Packet::SubAck(SubAck::new(sub.pkid, codes)))))
                    .await;
                // Messages kept for the gateway go out retained on every subscription to their
                // exact topic (SPEC §2), so again after each reconnect until confirmed.
                if sub.filters.iter().any(|f| f.path == Topic::CertUpdate(mac).to_string()) {
                    outbox.subscribed = true;
                    outbox.sent = None;
                    Box::pin(outbox.deliver(&shared, &out_tx)).await;
                }
            }
            Packet::Unsubscribe(u) => {
                let _ = out_tx
                    .send_async(Outgoing::Packet(encode(&Packet::UnsubAck(UnsubAck::new(u.pkid)))))
                    .await;
            }
            Packet::PingReq => {
                let _ = out_tx.send_async(Outgoing::Packet(encode(&Packet::PingResp))).await;
                let _ = PingResp;
            }
            Packet::PubAck(ack) => Box::pin(outbox.acknowledged(&shared, ack.pkid)).await,
            Packet::Disconnect => break End::Disconnect,
            Packet::Connect(_) => break End::ProtocolError,
            // Nothing else TDS sends needs an answer; ignore the rest.
            _ => {}
        }
    };

    // Let the acknowledgements of what was committed go out before closing.
    drop(out_tx);
    let _ = tokio::time::timeout(Duration::from_secs(5), sender).await;
    if end == End::WriteTimeout {
        crate::metrics::refused("write_timeout");
    }
    tracing::info!(gateway.mac = %mac, reason = end.as_str(), "gateway disconnected");
    crate::metrics::connected(-1.0);
    Box::pin(shared.pipeline.history(&gateway, "disconnected", end.as_str())).await;
    if end != End::Replaced {
        if end != End::Disconnect && !will_offline {
            tracing::debug!(gateway.mac = %mac, "no offline will; marking offline anyway (not connected)");
        }
        Box::pin(shared.pipeline.set_online(&gateway, false)).await;
    }
    drop(registration);
}

fn is_offline_will(will: &LastWill, mac: Mac) -> bool {
    matches!(Topic::parse(&will.topic), Ok(t @ Topic::Status(_)) if t.mac() == mac)
        && will.message.as_ref().eq_ignore_ascii_case(b"offline")
}

/// CONNECT checks, with the refusal code for each (and the gateway, when it is known, for its
/// connection history).
async fn admit(
    shared: &Shared,
    identity: &DeviceIdentity,
    connect: &Connect,
) -> Result<Arc<GatewayEntry>, (ConnectReturnCode, Option<Arc<GatewayEntry>>)> {
    let mac = identity.mac;
    let gateway = match shared.pipeline.directory.load(mac).await {
        Ok(Some(g)) => g,
        Ok(None) => {
            tracing::info!(gateway.mac = %mac, "refused: no gateway registered with this MAC");
            return Err((ConnectReturnCode::NotAuthorized, None));
        }
        Err(e) => {
            tracing::error!(gateway.mac = %mac, error = %e, "refused: store unavailable");
            return Err((ConnectReturnCode::ServiceUnavailable, None));
        }
    };
    if Mac::parse(&connect.client_id).ok() != Some(mac) {
        tracing::info!(gateway.mac = %mac, client_id = %connect.client_id.chars().take(64).collect::<String>(), "refused: client id is not the certificate's MAC");
        return Err((ConnectReturnCode::BadClientId, Some(gateway)));
    }
    if gateway.status == tds_domain::GatewayStatus::Decommissioned {
        tracing::info!(gateway.mac = %mac, "refused: gateway decommissioned");
        return Err((ConnectReturnCode::NotAuthorized, Some(gateway)));
    }
    // The allow-list (SPEC §2): only the gateway's current certificate, or the successor of a
    // renewal in progress. The plain listener has no certificate.
    if !identity.serial_hex.is_empty() {
        match shared.pipeline.store.renewals().staff_admit(gateway.id, mac, &identity.serial_hex).await {
            Ok(Admission::Current) => {}
            Ok(Admission::Confirmed(renewal)) => {
                tracing::info!(gateway.mac = %mac, renewal = renewal.get(), serial = %identity.serial_hex, "renewal confirmed: the gateway connected with its new certificate");
                crate::metrics::renewal("confirmed");
            }
            Ok(Admission::RolledBack(renewal)) => {
                tracing::warn!(gateway.mac = %mac, renewal = renewal.get(), "renewal rolled back: the gateway came back with its old certificate");
                crate::metrics::renewal("rolled_back");
            }
            Ok(Admission::Refused(why)) => {
                tracing::info!(gateway.mac = %mac, serial = %identity.serial_hex, reason = %why, "refused: not a certificate this gateway may use");
                return Err((ConnectReturnCode::NotAuthorized, Some(gateway)));
            }
            Err(e) => {
                tracing::error!(gateway.mac = %mac, error = %e, "refused: store unavailable");
                return Err((ConnectReturnCode::ServiceUnavailable, Some(gateway)));
            }
        }
    }
    Ok(gateway)
}

/// How long a session may stay silent: 1.5 × the keep-alive the gateway asked for, where 0 (none)
/// or more than `max` counts as `max`.
fn keep_alive_limit(requested_secs: u16, max: Duration) -> Duration {
    let asked = Duration::from_secs(u64::from(requested_secs));
    let granted = if asked.is_zero() || asked > max { max } else { asked };
    granted * 3 / 2
}

/// What the session's sender task writes, in order.
#[derive(Debug)]
pub enum Outgoing {
    /// A packet to write as it is.
    Packet(Bytes),
    /// A message handed to the writer: when its commit is done, its PUBACK (`QoS` 1) goes out,
    /// timed from `received`; a failed commit ends the session.
    Committed { pkid: Option<u16>, received: std::time::Instant, done: Done },
}

/// The sender task: writes what the session queues, in order, flushing when the queue is empty,
/// and says why it stopped early (a stalled socket, a failed commit) through the session's
/// `signal`, before it lets the queue go.
async fn send_in_order<W: AsyncWrite>(
    mut wr: WriteHalf<W>,
    queue: flume::Receiver<Outgoing>,
    signal: Arc<Signal>,
    write_timeout: Duration,
) {
    while let Ok(item) = queue.recv_async().await {
        let bytes = match item {
            Outgoing::Packet(bytes) => Some(bytes),
            Outgoing::Committed { pkid, received, done } => {
                let Ok(Ok(())) = done.await else {
                    signal.fault(End::CommitFailed.fault_code());
                    return;
                };
                // A QoS 0 message has no PUBACK, but may be the last of the queue: what was
                // written before it is flushed all the same.
                pkid.map(|pkid| {
                    crate::metrics::acked(received.elapsed());
                    encode(&Packet::PubAck(PubAck::new(pkid)))
                })
            }
        };
        let flush = queue.is_empty();
        if bytes.is_none() && !flush {
            continue;
        }
        let wrote = tokio::time::timeout(write_timeout, async {
            if let Some(bytes) = &bytes {
                wr.write_all(bytes).await?;
            }
            if flush {
                wr.flush().await?;
            }
            Ok::<(), std::io::Error>(())
        })
        .await;
        match wrote {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            Err(_) => {
                signal.fault(End::WriteTimeout.fault_code());
                // Not `shutdown`: it would wait on the same full socket.
                return;
            }
        }
    }
    let _ = tokio::time::timeout(write_timeout, wr.shutdown()).await;
}

/// Handles one PUBLISH; `Err` ends the session.
async fn on_publish(
    shared: &Shared,
    gateway: &Arc<GatewayEntry>,
    publish: Publish,
    out: &flume::Sender<Outgoing>,
) -> Result<(), End> {
    let received = std::time::Instant::now();
    let mac = gateway.mac;
    let pkid = (publish.qos == QoS::AtLeastOnce).then_some(publish.pkid);
    if publish.qos == QoS::ExactlyOnce {
        tracing::info!(gateway.mac = %mac, "QoS 2 is not supported; closing");
        return Err(End::ProtocolError);
    }
    // The ACL comes first: a message on a topic the gateway may not use is kept as a dead letter
    // (nothing a gateway sends is dropped silently) and ends the connection.
    let topic = match Topic::parse(&publish.topic) {
        Ok(t) if t.may_publish(mac) => t,
        other => {
            let (code, reason) = match other {
                Err(e) => (e.code(), e.to_string()),
                Ok(t) => ("topic_not_allowed", format!("gateway {mac} may not publish to {t}")),
            };
            tracing::warn!(gateway.mac = %mac, topic = %publish.topic.chars().take(120).collect::<String>(), reason = %code, "topic ACL violation: disconnecting");
            let done = shared
                .pipeline
                .refuse(Some(gateway), Some(mac), &publish.topic, &publish.payload, (code, reason))
                .await;
            let _ = done.await;
            return Err(End::AclViolation);
        }
    };
    let done = match shared.pipeline.accept(gateway, topic, &publish.topic, &publish.payload).await {
        Ok(done) => {
            crate::metrics::accepted(received.elapsed());
            done
        }
        Err(e) => {
            tracing::error!(gateway.mac = %mac, error = %e, "cannot read the gateway's devices; closing so it resends");
            return Err(End::CommitFailed);
        }
    };
    // Bounded: a gateway with too many unacknowledged messages waits here (back-pressure).
    if out.send_async(Outgoing::Committed { pkid, received, done }).await.is_err() {
        return Err(End::Closed);
    }
    Ok(())
}

impl Submission {
    /// A submission that only records dead letters (or nothing, to keep acknowledgements in order).
    pub fn dead_letters(gateway: &GatewayEntry, rejected: Vec<tds_store::rejected::NewRejected>) -> Self {
        Self {
            tenant: Some(gateway.tenant),
            gateway: Some(gateway.id),
            readings: Vec::new(),
            origins: Vec::new(),
            rejected,
            seen_at: None,
            conflict_template: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future an `async fn` returns, without calling it.
    fn future_size<Fut>(_: impl FnOnce() -> Fut) -> usize {
        std::mem::size_of::<Fut>()
    }

    /// An idle gateway's session is its future waiting in a read: anything awaited in it unboxed
    /// (a store query's state is several KiB) would be kept, unused, for every connected
    /// gateway. It was 15 KiB before the store's awaits were boxed, 2.4 KiB before the session's
    /// signals were merged and its idle read shrank (1.5 KiB now).
    #[test]
    #[allow(unreachable_code)]
    fn a_session_waiting_for_its_gateway_is_a_small_future() {
        let session = future_size(|| {
            run::<tokio::io::DuplexStream>(unreachable!(), unreachable!(), unreachable!(), unreachable!())
        });
        assert!(session <= 2 * 1024, "the session's future is {session} bytes");
    }
}
