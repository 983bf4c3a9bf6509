//! The device endpoint: a TCP listener, TLS with a mandatory client certificate verified against
//! the platform CA and a live revocation set, and one task per connection. When configured (for
//! development only), a second, plain listener takes the gateway MAC and a password from CONNECT
//! instead; its sessions are the same.
//!
//! The revocation set is reloaded from the store every `revocation_poll`; each reload also tells
//! the live sessions of newly revoked certificates to close, so a revocation takes effect on
//! connected gateways within that interval, and on every new handshake at once after it.

use crate::config::{DevPassword, IngestConfig};
use crate::error::IngestError;
use crate::pipeline::Pipeline;
use crate::registry::Registry;
use crate::session::{self, Credentials};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tds_pki::CaFiles;
use tds_pki::tls::{RevocationSet, device_identity, device_server_config};
use tds_store::Store;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// What every connection task shares.
#[derive(Debug)]
pub struct Shared {
    pub config: IngestConfig,
    pub pipeline: Pipeline,
    pub registry: Registry,
    pub revoked: RevocationSet,
}

pub struct Endpoint {
    listener: TcpListener,
    acceptor: TlsAcceptor,
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
        let shared = Arc::new(Shared {
            pipeline: Pipeline::start(store, &config),
            registry: Registry::default(),
            config,
            revoked,
        });
        Ok(Self { listener, acceptor: TlsAcceptor::from(tls), plain, shared })
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
                        let acceptor = self.acceptor.clone();
                        let shared = self.shared.clone();
                        tokio::spawn(async move { connection(tcp, peer, acceptor, shared).await });
                    }
                    Err(e) => accept_failed(&e).await,
                },
                accepted = plain => match (accepted, &self.plain) {
                    (Ok((tcp, peer)), Some((_, password))) => {
                        let _ = tcp.set_nodelay(true);
                        let credentials = Credentials::Password(password.clone());
                        let shared = self.shared.clone();
                        tracing::debug!(%peer, "plain MQTT connection");
                        tokio::spawn(async move { session::run(tcp, credentials, shared).await });
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
    }
}

/// Out of file descriptors, say: wait a little instead of spinning.
async fn accept_failed(e: &std::io::Error) {
    tracing::warn!(error = %e, "accept failed");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
}

async fn connection(tcp: TcpStream, peer: SocketAddr, acceptor: TlsAcceptor, shared: Arc<Shared>) {
    let _ = tcp.set_nodelay(true);
    let handshake = tokio::time::timeout(shared.config.connect_timeout, acceptor.accept(tcp)).await;
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            // Unknown CA, expired or revoked certificate, no certificate, not TLS at all.
            crate::metrics::refused("tls");
            tracing::info!(%peer, error = %e, "TLS handshake refused");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let identity = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|cert| device_identity(cert.as_ref()));
    match identity {
        Some(Ok(identity)) => session::run(tls, Credentials::Certificate(identity), shared).await,
        Some(Err(e)) => tracing::info!(%peer, error = %e, "refused: the certificate does not name a gateway"),
        None => tracing::info!(%peer, "refused: no client certificate"),
    }
}

async fn keep_revocations_current(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.config.revocation_poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match shared.pipeline.store.certificates().staff_revoked().await {
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
    }
}
