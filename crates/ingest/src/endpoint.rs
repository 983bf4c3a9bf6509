//! The device endpoint: a TCP listener, TLS with a mandatory client certificate verified against
//! the platform CA and a live revocation set, and one task per connection. When configured (for
//! development only), a second, plain listener takes the gateway MAC and a password from CONNECT
//! instead; its sessions are the same.
//!
//! Before a handshake (SPEC §2 Limits): a source address that opened more than its share of
//! connections lately, or a connection beyond the handshakes allowed in progress at once, is
//! closed at once, counted and logged once a minute; a handshake (and then the CONNECT) must
//! finish within the connect timeout. A permit of the handshake semaphore is held until the
//! session has its CONNECT, so idle connections that never speak cannot pile up.
//!
//! The revocation set is reloaded from the store every `revocation_poll`; each reload also tells
//! the live sessions of newly revoked certificates to close, so a revocation takes effect on
//! connected gateways within that interval, and on every new handshake at once after it.

use crate::config::{DevPassword, IngestConfig};
use crate::error::IngestError;
use crate::limits::AddressBuckets;
use crate::pipeline::Pipeline;
use crate::registry::Registry;
use crate::session::{self, Credentials};
use crate::tls_stream;
use rustls::pki_types::UnixTime;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tds_domain::Mac;
use tds_pki::CaFiles;
use tds_pki::tls::{RevocationSet, device_identity, device_server_config, recheck_resumed};
use tds_store::Store;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What every connection task shares.
#[derive(Debug)]
pub struct Shared {
    pub config: IngestConfig,
    pub pipeline: Pipeline,
    pub registry: Registry,
    pub revoked: RevocationSet,
    /// Handshakes (and CONNECTs awaited) in progress.
    pub handshakes: Arc<Semaphore>,
    /// New connections per source address.
    pub per_address: AddressBuckets,
}

impl Shared {
    /// Starts the pipeline (its writer) for `store` with the limits of `config`.
    pub fn new(config: IngestConfig, store: Store, revoked: RevocationSet) -> Self {
        Self {
            pipeline: Pipeline::start(store, &config),
            registry: Registry::default(),
            handshakes: Arc::new(Semaphore::new(config.max_handshakes.max(1))),
            per_address: AddressBuckets::new(
                config.connects_per_second_per_ip,
                config.connect_burst_per_ip,
                config.tracked_addresses,
            ),
            config,
            revoked,
        }
    }
}

pub struct Endpoint {
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    plain: Option<(TcpListener, DevPassword)>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("addr", &self.listener.local_addr().ok()).finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Binds the listener (and the plain one, when configured) and loads the revoked serials;
    /// does not accept yet.
    pub async fn bind(config: IngestConfig, store: Store, ca: &CaFiles) -> Result<Self, IngestError> {
        let revoked =
            RevocationSet::new(store.certificates().staff_revoked().await?.into_iter().map(|r| r.serial));
        let tls = device_server_config(ca, revoked.clone())?;
        let listener = TcpListener::bind(config.addr)
            .await
            .map_err(|source| IngestError::Bind { addr: config.addr, source })?;
        let plain = match &config.plain {
            Some(p) => Some((
                TcpListener::bind(p.addr)
                    .await
                    .map_err(|source| IngestError::Bind { addr: p.addr, source })?,
                p.password.clone(),
            )),
            None => None,
        };
        let shared = Arc::new(Shared::new(config, store, revoked));
        Ok(Self { listener, tls, plain, shared })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The plain (development) listener's address, when there is one.
    pub fn plain_addr(&self) -> Option<SocketAddr> {
        self.plain.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// Gateways connected right now.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Accepts connections until `shutdown` completes, then closes every session (their
    /// committed messages are acknowledged first) and waits up to 5 s for them to end.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let refresher = tokio::spawn(keep_revocations_current(self.shared.clone()));
        tracing::info!(addr = %self.local_addr().map_or_else(|_| "?".into(), |a| a.to_string()), "device endpoint listening (MQTT over mutual TLS)");
        if let Some(addr) = self.plain_addr() {
            tracing::warn!(%addr, "plain MQTT listener WITHOUT TLS (user name = gateway MAC, development password): for development only, never expose it");
        }
        tokio::pin!(shutdown);
        loop {
            let plain = async {
                match &self.plain {
                    Some((listener, _)) => listener.accept().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        if let Some(permit) = admit_connection(&self.shared, peer) {
                            let tls = Arc::clone(&self.tls);
                            let shared = self.shared.clone();
                            tokio::spawn(async move { connection(tcp, peer, tls, shared, permit).await });
                        }
                    }
                    Err(e) => accept_failed(&e).await,
                },
                accepted = plain => match (accepted, &self.plain) {
                    (Ok((tcp, peer)), Some((_, password))) => {
                        if let Some(permit) = admit_connection(&self.shared, peer) {
                            let _ = tcp.set_nodelay(true);
                            let credentials = Credentials::Password(password.clone());
                            let shared = self.shared.clone();
                            tracing::debug!(%peer, "plain MQTT connection");
                            tokio::spawn(async move { session::run(tcp, credentials, shared, Some(permit)).await });
                        }
                    }
                    (Err(e), _) => accept_failed(&e).await,
                    (Ok(_), None) => {}
                },
            }
        }
        refresher.abort();
        self.shared.registry.close_all();
        // Let the sessions acknowledge what was committed and record their end (offline,
        // history) before the caller closes the database; a session deregisters last.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while !self.shared.registry.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // The latest status of gateways whose last change waited for its interval.
        self.shared.pipeline.flush_status().await;
    }
}

/// Whether a new TCP connection from `peer` may start its handshake: its address must have a
/// connection left in its bucket and a handshake permit must be free. A refused connection is
/// dropped (closed) by the caller at once.
fn admit_connection(shared: &Shared, peer: SocketAddr) -> Option<HandshakePermit> {
    if !shared.per_address.allow(peer.ip()) {
        crate::metrics::refused("connect_rate");
        shared.pipeline.refusals.note("connect_rate", |suppressed| {
            tracing::warn!(%peer, suppressed, "new connections refused: too many per second from one address");
        });
        return None;
    }
    let Ok(permit) = shared.handshakes.clone().try_acquire_owned() else {
        crate::metrics::refused("handshakes");
        shared.pipeline.refusals.note("handshakes", |suppressed| {
            tracing::warn!(%peer, suppressed, limit = shared.config.max_handshakes, "new connections refused: too many handshakes in progress");
        });
        return None;
    };
    crate::metrics::handshakes(1.0);
    Some(HandshakePermit(permit))
}

/// A handshake in progress (counted in the gauge); dropped once the session has its CONNECT.
#[derive(Debug)]
pub struct HandshakePermit(#[allow(dead_code)] OwnedSemaphorePermit);

impl Drop for HandshakePermit {
    fn drop(&mut self) {
        crate::metrics::handshakes(-1.0);
    }
}

/// Out of file descriptors, say: wait a little instead of spinning.
async fn accept_failed(e: &std::io::Error) {
    tracing::warn!(error = %e, "accept failed");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    shared: Arc<Shared>,
    permit: HandshakePermit,
) {
    let _ = tcp.set_nodelay(true);
    let handshake = tokio::time::timeout(shared.config.connect_timeout, tls_stream::accept(tcp, tls)).await;
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            // Unknown CA, expired or revoked certificate, no certificate, not TLS at all.
            crate::metrics::refused("tls");
            shared.pipeline.refusals.note("tls", |suppressed| {
                tracing::info!(%peer, error = %e, suppressed, "TLS handshake refused");
            });
            return;
        }
        Err(_) => {
            crate::metrics::refused("handshake_timeout");
            shared.pipeline.refusals.note("handshake_timeout", |suppressed| {
                tracing::info!(%peer, suppressed, "TLS handshake timed out");
            });
            return;
        }
    };
    let resumed = tls.resumed();
    crate::metrics::tls_handshake(resumed);
    if resumed
        && let Some(cert) = tls.peer_certificates().and_then(|certs| certs.first())
        && let Err(e) = recheck_resumed(cert.as_ref(), &shared.revoked, UnixTime::now())
    {
        // Expired or revoked since the full handshake its ticket came from.
        crate::metrics::refused("tls");
        shared.pipeline.refusals.note("tls", |suppressed| {
            tracing::info!(%peer, error = ?e, suppressed, "resumed TLS session refused");
        });
        return;
    }
    let identity =
        tls.peer_certificates().and_then(|certs| certs.first()).map(|cert| device_identity(cert.as_ref()));
    match identity {
        Some(Ok(identity)) => {
            // The session is a task of its own and this one ends: awaited here, it would keep
            // this task's room for the handshake (the TLS stream) beside its own for
            // as long as the gateway stays connected.
            tokio::spawn(session::run(tls, Credentials::Certificate(identity), shared, Some(permit)));
        }
        Some(Err(e)) => tracing::info!(%peer, error = %e, "refused: the certificate does not name a gateway"),
        None => tracing::info!(%peer, "refused: no client certificate"),
    }
}

/// Every `revocation_poll`: reloads the revocation set (closing revoked sessions), closes the
/// sessions of certificates retired and gateways decommissioned since the last look (SPEC §2:
/// at once, on whichever instance made the change), and nudges the sessions of gateways whose
/// messages changed. Each look reaches a little before the previous one so that a change
/// committed while it ran is not missed.
async fn keep_revocations_current(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.config.revocation_poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut since = chrono::Utc::now() - chrono::Duration::seconds(2);
    loop {
        tick.tick().await;
        let started = chrono::Utc::now();
        let store = &shared.pipeline.store;
        match store.certificates().staff_revoked().await {
            Ok(list) => {
                if list.len() != shared.revoked.len() {
                    shared.revoked.replace(list.into_iter().map(|r| r.serial));
                    let closed = shared.registry.close_revoked(|serial| shared.revoked.contains(serial));
                    if closed > 0 {
                        tracing::info!(sessions = closed, "closed sessions of revoked certificates");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot refresh the revocation set; keeping the last one"),
        }
        let retired = store.certificates().staff_retired_since(since).await;
        let messages = store.renewals().staff_messages_changed_since(since).await;
        match (retired, messages) {
            (Ok((serials, macs)), Ok(changed)) => {
                let macs: Vec<Mac> = macs.iter().filter_map(|m| Mac::parse(m).ok()).collect();
                let closed = shared.registry.close_retired(&serials, &macs);
                if closed > 0 {
                    tracing::info!(
                        sessions = closed,
                        "closed sessions of retired certificates or decommissioned gateways"
                    );
                }
                for (mac, _) in changed {
                    if let Ok(mac) = Mac::parse(&mac) {
                        shared.registry.nudge(mac);
                    }
                }
                since = started - chrono::Duration::seconds(2);
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "cannot read retired certificates or gateway messages; will look again");
            }
        }
    }
}
