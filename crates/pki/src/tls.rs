//! TLS for the device endpoint: the rustls server configuration (TLS 1.2 and 1.3, aws-lc-rs) with
//! a mandatory client certificate, verified by [`DeviceClientVerifier`]: chain to the platform CA
//! and validity by webpki, then the serial against a live [`RevocationSet`] that the server keeps
//! current from the store. A revocation therefore refuses the next handshake without a restart.
//! Reconnecting gateways resume their sessions from tickets; [`recheck_resumed`] makes the
//! checks a resumed session skipped.
//!
//! [`service_client_config`] is the other direction: TDS's broker consumer as a TLS client.
//!
//! Must not: decide whether the certificate's MAC names a known gateway (the endpoint asks the
//! store), or do I/O.

use crate::common::{normalize_serial_hex, serial_hex_from_bytes};
use crate::{CaFiles, PkiError};
use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use tds_domain::Mac;
use x509_parser::prelude::{FromDer, X509Certificate};

type Result<T> = std::result::Result<T, PkiError>;

/// The serials (canonical hex) of revoked device certificates, shared between the verifier and
/// whoever refreshes it; swapping the whole set is atomic and never blocks a handshake.
#[derive(Clone, Default)]
pub struct RevocationSet(Arc<ArcSwap<HashSet<String>>>);

impl fmt::Debug for RevocationSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevocationSet").field("len", &self.0.load().len()).finish()
    }
}

impl RevocationSet {
    pub fn new(serials: impl IntoIterator<Item = String>) -> Self {
        let set = Self::default();
        set.replace(serials);
        set
    }

    /// Replaces the whole set (after reading the revoked serials from the store). Serials that
    /// are not valid hex are skipped: they cannot match any certificate.
    pub fn replace(&self, serials: impl IntoIterator<Item = String>) {
        let set: HashSet<String> =
            serials.into_iter().filter_map(|s| normalize_serial_hex(&s).ok()).collect();
        self.0.store(Arc::new(set));
    }

    /// Adds one serial at once (a revocation made by this instance).
    pub fn insert(&self, serial: &str) {
        if let Ok(serial) = normalize_serial_hex(serial) {
            self.0.rcu(|old| {
                let mut new = HashSet::clone(old);
                new.insert(serial.clone());
                new
            });
        }
    }

    pub fn contains(&self, serial_hex: &str) -> bool {
        normalize_serial_hex(serial_hex).is_ok_and(|s| self.0.load().contains(&s))
    }

    pub fn len(&self) -> usize {
        self.0.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Who is on the other end of a verified connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceIdentity {
    pub mac: Mac,
    pub serial_hex: String,
}

/// Reads the gateway's identity from its certificate: the CN as a MAC, and the serial.
pub fn device_identity(cert_der: &[u8]) -> Result<DeviceIdentity> {
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| PkiError::BadDer { what: "client certificate", reason: e.to_string() })?;
    let serial_hex = serial_of(&cert);
    let cn = cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).ok_or_else(|| {
        PkiError::BadDer { what: "client certificate", reason: "it has no common name".into() }
    })?;
    let mac = Mac::parse(cn).map_err(|e| PkiError::BadDer {
        what: "client certificate",
        reason: format!("its CN is not a MAC: {e}"),
    })?;
    Ok(DeviceIdentity { mac, serial_hex })
}

fn serial_of(cert: &X509Certificate<'_>) -> String {
    serial_hex_from_bytes(cert.raw_serial())
}

/// Client-certificate verifier of the device endpoint: webpki chain and validity checks against
/// the platform CA, then the live revocation set.
pub struct DeviceClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    revoked: RevocationSet,
}

impl fmt::Debug for DeviceClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceClientVerifier").field("revoked", &self.revoked).finish_non_exhaustive()
    }
}

impl DeviceClientVerifier {
    pub fn new(ca_pem: &str, revoked: RevocationSet, provider: Arc<CryptoProvider>) -> Result<Self> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            let cert =
                cert.map_err(|e| PkiError::BadPem { what: "CA certificate", reason: e.to_string() })?;
            roots
                .add(cert)
                .map_err(|e| PkiError::BadDer { what: "CA certificate", reason: e.to_string() })?;
        }
        let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| PkiError::Tls(e.to_string()))?;
        Ok(Self { inner, revoked })
    }
}

impl ClientCertVerifier for DeviceClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        let (_, cert) = X509Certificate::from_der(end_entity.as_ref())
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let serial = serial_of(&cert);
        if self.revoked.contains(&serial) {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// TLS for TDS as a client of an external broker (scale-out mode): TLS 1.2 and 1.3 with
/// aws-lc-rs, the broker's certificate verified against `ca_pem` (the platform CA, which issued
/// the broker's server certificate with `tds broker-config`), and the service's client
/// certificate and key.
pub fn service_client_config(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert =
            cert.map_err(|e| PkiError::BadPem { what: "broker CA certificate", reason: e.to_string() })?;
        roots
            .add(cert)
            .map_err(|e| PkiError::BadDer { what: "broker CA certificate", reason: e.to_string() })?;
    }
    if roots.is_empty() {
        return Err(PkiError::BadPem {
            what: "broker CA certificate",
            reason: "no certificate found".into(),
        });
    }
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| PkiError::BadPem { what: "client certificate", reason: e.to_string() })?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| PkiError::BadPem { what: "client key", reason: e.to_string() })?;
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| PkiError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| PkiError::Tls(e.to_string()))?;
    Ok(Arc::new(config))
}

/// The device endpoint's TLS configuration: TLS 1.2 and 1.3 with aws-lc-rs, the MQTT server
/// certificate (sent with the CA certificate), and a mandatory device client certificate.
pub fn device_server_config(files: &CaFiles, revoked: RevocationSet) -> Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(DeviceClientVerifier::new(files.ca.cert_pem(), revoked, provider.clone())?);
    let mut chain = Vec::new();
    for cert in CertificateDer::pem_slice_iter(files.server_cert_pem.as_bytes())
        .chain(CertificateDer::pem_slice_iter(files.ca.cert_pem().as_bytes()))
    {
        chain.push(cert.map_err(|e| PkiError::BadPem { what: "server certificate", reason: e.to_string() })?);
    }
    let key = PrivateKeyDer::from_pem_slice(files.server_key_pem.as_bytes())
        .map_err(|e| PkiError::BadPem { what: "server key", reason: e.to_string() })?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| PkiError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| PkiError::Tls(e.to_string()))?;
    // Session tickets (the session's state encrypted under a key only this process has, rotated
    // every 6 hours): a gateway that lost its link resumes its session instead of a full
    // handshake (no certificate chain to verify, no signature), whatever the size of the fleet,
    // and the server keeps nothing per session. The default kept resumable sessions in a cache
    // of 256, so past 256 gateways a storm of reconnections was all full handshakes (`tds bench
    // ingest --gateways 1000 --storm 50`). A resumed session skips the verifier: the endpoint
    // checks it again with [`recheck_resumed`].
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| PkiError::Tls(e.to_string()))?;
    // One ticket per handshake: a gateway holds one connection, and each handshake, resumed or
    // not, gives it the ticket for the next.
    config.send_tls13_tickets = 1;
    Ok(Arc::new(config))
}

/// The checks of [`DeviceClientVerifier`] that can change after a handshake, made again for a
/// resumed session (which rustls admits on its ticket without calling the verifier): the
/// certificate must be within its validity period at `now` and not revoked since. Its chain
/// needs no second look: the ticket was issued by this process to a session whose chain the
/// verifier accepted, and it lives 12 hours at most.
pub fn recheck_resumed(
    cert_der: &[u8],
    revoked: &RevocationSet,
    now: UnixTime,
) -> std::result::Result<(), CertificateError> {
    let (_, cert) = X509Certificate::from_der(cert_der).map_err(|_| CertificateError::BadEncoding)?;
    let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    if now < cert.validity().not_before.timestamp() {
        return Err(CertificateError::NotValidYet);
    }
    if now > cert.validity().not_after.timestamp() {
        return Err(CertificateError::Expired);
    }
    if revoked.contains(&serial_of(&cert)) {
        return Err(CertificateError::Revoked);
    }
    Ok(())
}
