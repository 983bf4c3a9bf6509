//! The simulator: a fleet of virtual gateways ([`gateway`]) with realistic meters ([`meters`]),
//! publishing the wire format of SPEC §2 ([`payload`]) over real MQTT with mutual TLS, and
//! what they saw ([`stats`]).
//!
//! [`run_fleet`] starts the gateways at a bounded connection rate (a fleet of thousands coming
//! back after an outage must not be a handshake storm of the simulator's own making) and runs
//! them until `stop` turns true.

pub mod gateway;
pub mod meters;
pub mod payload;
pub mod renewal;
pub mod stats;

pub use gateway::{Faults, GatewaySpec, MeterSpec, Settings};
pub use meters::{Meter, MeterProfile};
pub use stats::{Latency, Snapshot, Stats};

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Runs every gateway of `fleet`, starting `connect_rate` of them per second, until `stop` turns
/// true and each has said goodbye.
pub async fn run_fleet(
    fleet: Vec<GatewaySpec>,
    settings: Settings,
    connect_rate: f64,
    stats: Arc<Stats>,
    mut stop: watch::Receiver<bool>,
) {
    let settings = Arc::new(settings);
    let gap = Duration::from_secs_f64(1.0 / connect_rate.max(0.001));
    let mut running = JoinSet::new();
    let mut next = tokio::time::Instant::now();
    for spec in fleet {
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            () = stopped(&mut stop) => break,
        }
        next += gap;
        running.spawn(gateway::run(spec, settings.clone(), stats.clone(), stop.clone()));
    }
    while running.join_next().await.is_some() {}
}

/// Completes when `stop` turns true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it here, not in the caller's `select!`.
    let _ = stop.wait_for(|s| *s).await;
}

/// A rustls client configuration for a gateway: trusts `ca_pem`, presents `cert_pem` with
/// `key_pem` (PEM, as in a bundle), with the aws-lc-rs provider TDS uses everywhere.
pub fn client_tls(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots
            .add(cert.map_err(|e| TlsError::Pem(e.to_string()))?)
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
    }
    let certs = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(e.to_string()))?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|e| TlsError::Pem(e.to_string()))?
        .ok_or_else(|| TlsError::Pem("no private key in the gateway's key file".into()))?;
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_root_certificates(roots).with_client_auth_cert(certs, key))
        .map_err(|e| TlsError::Rustls(e.to_string()))
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("bad PEM: {0}")]
    Pem(String),
    #[error("TLS configuration refused: {0}")]
    Rustls(String),
}
