//! The gateway side of certificate renewal (SPEC §2 `cert_update`, §3), shared by the agent and
//! the simulator: parsing an offer, checking a new certificate before it is used (CN = the
//! gateway's MAC, within its validity dates, signed by the CA the gateway trusts, matching its
//! key), generating a key and CSR on the gateway for CSR mode, and the on-disk swap (new files
//! beside the old ones, promoted only once a connection with them succeeded).
//! Must not: decide when to reconnect (that is [`crate::uplink`]'s) or talk MQTT.

use chrono::{DateTime, Utc};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PublicKeyData};
use serde::Deserialize;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use tds_domain::Mac;
use x509_parser::prelude::{FromDer, X509Certificate};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cert_update payload is not an offer: {0}")]
    BadOffer(String),
    #[error("bad PEM: {0}")]
    Pem(String),
    #[error("certificate names {found:?}, not this gateway ({expected})")]
    WrongName { expected: String, found: Option<String> },
    #[error("certificate is valid from {not_before} to {not_after}, not now")]
    NotValidNow { not_before: DateTime<Utc>, not_after: DateTime<Utc> },
    #[error("certificate is not signed by the CA this gateway trusts: {0}")]
    WrongIssuer(String),
    #[error("certificate and key do not go together: {0}")]
    KeyMismatch(String),
    #[error("no key for the certificate (CSR mode, but no CSR key is pending)")]
    NoKey,
    #[error("cannot generate key or CSR: {0}")]
    Generate(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// What TDS published on `cert_update`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offer {
    /// A new certificate; `key_pem` is `None` when it answers our CSR.
    NewCert { cert_pem: String, key_pem: Option<String>, expires_at: Option<String> },
    /// TDS asks for a CSR (the key is generated here and never leaves the gateway).
    CsrRequired,
}

#[derive(Deserialize)]
struct RawOffer {
    new_cert: Option<String>,
    new_key: Option<String>,
    expires_at: Option<String>,
    #[serde(default)]
    csr_required: bool,
}

/// Parses a `cert_update` payload; an empty payload (the retained offer cleared) is `None`.
pub fn parse_offer(payload: &[u8]) -> Result<Option<Offer>, CertError> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let raw: RawOffer = serde_json::from_slice(payload).map_err(|e| CertError::BadOffer(e.to_string()))?;
    match (raw.csr_required, raw.new_cert) {
        (_, Some(cert_pem)) => {
            Ok(Some(Offer::NewCert { cert_pem, key_pem: raw.new_key, expires_at: raw.expires_at }))
        }
        (true, None) => Ok(Some(Offer::CsrRequired)),
        (false, None) => Err(CertError::BadOffer("neither new_cert nor csr_required".into())),
    }
}

/// What the checks found out about a good certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub not_after: DateTime<Utc>,
    /// Serial number, hex.
    pub serial: String,
}

fn first_der(pem: &str) -> Result<Vec<u8>, CertError> {
    let (_, parsed) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| CertError::Pem(e.to_string()))?;
    Ok(parsed.contents)
}

fn stamp(t: x509_parser::time::ASN1Time) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or_default()
}

/// Expiry and serial of a certificate (for `status`), without other checks.
pub fn info(cert_pem: &str) -> Result<CertInfo, CertError> {
    let der = first_der(cert_pem)?;
    let (_, cert) = X509Certificate::from_der(&der).map_err(|e| CertError::Pem(e.to_string()))?;
    Ok(CertInfo { not_after: stamp(cert.validity().not_after), serial: cert.raw_serial_as_string() })
}

/// Checks a new certificate for gateway `mac` before it is used: its CN is the MAC, `now` is
/// within its dates, it is signed by `ca_pem`, and `key_pem` is its key (by building the TLS
/// client configuration with them, which refuses a key that does not match).
pub fn validate(
    cert_pem: &str,
    key_pem: &str,
    ca_pem: &str,
    mac: Mac,
    now: DateTime<Utc>,
) -> Result<CertInfo, CertError> {
    let der = first_der(cert_pem)?;
    let (_, cert) = X509Certificate::from_der(&der).map_err(|e| CertError::Pem(e.to_string()))?;
    let cn = cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_owned);
    if cn.as_deref().and_then(|c| Mac::parse(c).ok()) != Some(mac) {
        return Err(CertError::WrongName { expected: mac.to_string(), found: cn });
    }
    let (not_before, not_after) = (stamp(cert.validity().not_before), stamp(cert.validity().not_after));
    if now < not_before || now > not_after {
        return Err(CertError::NotValidNow { not_before, not_after });
    }
    let ca_der = first_der(ca_pem)?;
    let (_, ca) = X509Certificate::from_der(&ca_der).map_err(|e| CertError::Pem(e.to_string()))?;
    if cert.issuer() != ca.subject() {
        return Err(CertError::WrongIssuer(format!(
            "issued by {}, the CA is {}",
            cert.issuer(),
            ca.subject()
        )));
    }
    cert.verify_signature(Some(ca.public_key())).map_err(|e| CertError::WrongIssuer(e.to_string()))?;
    let parsed_key = KeyPair::from_pem(key_pem).map_err(|e| CertError::KeyMismatch(e.to_string()))?;
    if parsed_key.subject_public_key_info() != cert.public_key().raw {
        return Err(CertError::KeyMismatch("the key's public half is not the certificate's".into()));
    }
    crate::sim::client_tls(ca_pem, cert_pem, key_pem).map_err(|e| CertError::KeyMismatch(e.to_string()))?;
    Ok(CertInfo { not_after, serial: cert.raw_serial_as_string() })
}

/// A new P-256 key and a CSR for it with CN = `mac`: (key PEM, CSR PEM).
pub fn generate_csr(mac: Mac) -> Result<(String, String), CertError> {
    let g = |e: rcgen::Error| CertError::Generate(e.to_string());
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(g)?;
    Ok((key.serialize_pem(), csr_for_key(mac, &key)?))
}

fn csr_for_key(mac: Mac, key: &KeyPair) -> Result<String, CertError> {
    let g = |e: rcgen::Error| CertError::Generate(e.to_string());
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(g)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, mac.to_string());
    params.distinguished_name = dn;
    let csr = params.serialize_request(key).map_err(g)?;
    csr.pem().map_err(g)
}

/// Where a gateway keeps its identity while a renewal goes on ([`CertFiles`], used by the agent
/// and by the simulator's gateways alike). [`on_offer`] decides what to do with an offer through
/// it, so both run the same checks and the same steps.
pub trait IdentityStore {
    /// Checks an offered certificate (with the offered key, or the CSR key waiting) and keeps it
    /// as the candidate beside the current identity.
    fn stage(
        &self,
        cert_pem: &str,
        key_pem: Option<&str>,
        mac: Mac,
        now: DateTime<Utc>,
    ) -> Result<(Identity, CertInfo), CertError>;
    /// Makes a key for CSR mode (or reuses the one waiting) and returns the CSR.
    fn start_csr(&self, mac: Mac) -> Result<String, CertError>;
    /// The candidate connected: it becomes the current identity.
    fn promote(&self) -> Result<(), CertError>;
    /// The candidate was not accepted: the current identity stays.
    fn reject(&self);
}

/// What to do with a `cert_update` message.
#[derive(Debug)]
pub enum OfferOutcome {
    Nothing,
    /// Publish this CSR on `cert_csr`.
    Csr(String),
    /// Reconnect with this (checked, staged) identity; promote it once connected.
    Swap(Identity, CertInfo),
    /// The offer failed the checks; the current identity stays.
    Refused(CertError),
}

/// Decides what an offer means for a gateway whose identity is `current`. `refused` remembers
/// the certificates refused since start (by the checks or by the server): a retained offer comes
/// back after every reconnect and must not be tried again and again; an offer of the certificate
/// already in use (retained until the server sees it) is nothing to do.
pub fn on_offer<H: std::hash::BuildHasher>(
    store: &impl IdentityStore,
    mac: Mac,
    current: &Identity,
    payload: &[u8],
    refused: &mut std::collections::HashSet<String, H>,
    now: DateTime<Utc>,
) -> OfferOutcome {
    match parse_offer(payload) {
        Ok(None) => OfferOutcome::Nothing,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring a cert_update message");
            OfferOutcome::Refused(e)
        }
        Ok(Some(Offer::CsrRequired)) => match store.start_csr(mac) {
            Ok(csr) => {
                tracing::info!("certificate renewal by CSR: sending the CSR (the key stays here)");
                OfferOutcome::Csr(csr)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot make a CSR");
                OfferOutcome::Refused(e)
            }
        },
        Ok(Some(Offer::NewCert { cert_pem, key_pem, .. })) => {
            let trimmed = cert_pem.trim().to_owned();
            if trimmed == current.cert_pem.trim() || refused.contains(&trimmed) {
                return OfferOutcome::Nothing;
            }
            match store.stage(&cert_pem, key_pem.as_deref(), mac, now) {
                Ok((next, info)) => {
                    tracing::info!(serial = %info.serial, not_after = %info.not_after, "new certificate checked; reconnecting with it");
                    OfferOutcome::Swap(next, info)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "refusing the offered certificate; keeping the current one");
                    refused.insert(trimmed);
                    OfferOutcome::Refused(e)
                }
            }
        }
    }
}

/// The certificate files of a gateway on disk, and their swap.
///
/// `cert_file`/`key_file` are what the gateway uses; a candidate is written beside them as
/// `*.new`, a CSR key waits as `key_file.csr`, the files replaced by a swap stay as `*.old`.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn write_durably(path: &Path, bytes: &[u8], private: bool) -> Result<(), CertError> {
    let err = |source| CertError::Io { path: path.to_owned(), source };
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts.open(path).map_err(err)?;
    file.write_all(bytes).map_err(err)?;
    file.sync_all().map_err(err)
}

fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent() {
        let _ = fs::File::open(dir).and_then(|d| d.sync_all());
    }
}

fn read(path: &Path) -> Result<String, CertError> {
    fs::read_to_string(path).map_err(|source| CertError::Io { path: path.to_owned(), source })
}

/// PEM texts of one identity.
#[derive(Clone)]
pub struct Identity {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key never goes into a log.
        f.debug_struct("Identity").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

impl CertFiles {
    pub fn candidate_cert(&self) -> PathBuf {
        with_suffix(&self.cert_file, ".new")
    }
    pub fn candidate_key(&self) -> PathBuf {
        with_suffix(&self.key_file, ".new")
    }
    fn csr_key(&self) -> PathBuf {
        with_suffix(&self.key_file, ".csr")
    }

    /// The identity in use.
    pub fn current(&self) -> Result<Identity, CertError> {
        Ok(Identity {
            ca_pem: read(&self.ca_file)?,
            cert_pem: read(&self.cert_file)?,
            key_pem: read(&self.key_file)?,
        })
    }

    /// A candidate left by an earlier run (a swap interrupted by a power cut), to try again.
    pub fn pending_candidate(&self) -> Option<Identity> {
        let current = self.current().ok()?;
        Some(Identity {
            cert_pem: fs::read_to_string(self.candidate_cert()).ok()?,
            key_pem: fs::read_to_string(self.candidate_key()).ok()?,
            ..current
        })
    }

    /// Completes a promotion cut short by a power cut (the key was moved, the certificate not):
    /// the candidate had connected, so it is the identity to keep.
    pub fn recover(&self) -> Result<(), CertError> {
        if self.candidate_cert().exists() && !self.candidate_key().exists() {
            fs::rename(self.candidate_cert(), &self.cert_file)
                .map_err(|source| CertError::Io { path: self.cert_file.clone(), source })?;
            sync_parent(&self.cert_file);
        }
        Ok(())
    }
}

impl IdentityStore for CertFiles {
    /// Writes a CSR key (kept until the signed certificate comes back) and returns the CSR.
    fn start_csr(&self, mac: Mac) -> Result<String, CertError> {
        // A CSR request is retained until answered, so it comes again after a reconnect: answer
        // with the key already waiting rather than a new one each time.
        if let Ok(existing) = fs::read_to_string(self.csr_key()) {
            let key = KeyPair::from_pem(&existing).map_err(|e| CertError::Generate(e.to_string()))?;
            return csr_for_key(mac, &key);
        }
        let (key, csr) = generate_csr(mac)?;
        write_durably(&self.csr_key(), key.as_bytes(), true)?;
        sync_parent(&self.key_file);
        Ok(csr)
    }

    /// Checks an offered certificate and writes it beside the current one as the candidate.
    fn stage(
        &self,
        offer_cert: &str,
        offer_key: Option<&str>,
        mac: Mac,
        now: DateTime<Utc>,
    ) -> Result<(Identity, CertInfo), CertError> {
        let current = self.current()?;
        let key_pem = match offer_key {
            Some(k) => k.to_owned(),
            None => fs::read_to_string(self.csr_key()).map_err(|_| CertError::NoKey)?,
        };
        let info = validate(offer_cert, &key_pem, &current.ca_pem, mac, now)?;
        write_durably(&self.candidate_key(), key_pem.as_bytes(), true)?;
        write_durably(&self.candidate_cert(), offer_cert.as_bytes(), false)?;
        sync_parent(&self.cert_file);
        Ok((Identity { cert_pem: offer_cert.to_owned(), key_pem, ..current }, info))
    }

    /// The candidate connected: it becomes the current identity, the old files stay as `*.old`.
    fn promote(&self) -> Result<(), CertError> {
        let mv = |from: &Path, to: &Path| {
            fs::rename(from, to).map_err(|source| CertError::Io { path: from.to_owned(), source })
        };
        let _ = fs::copy(&self.cert_file, with_suffix(&self.cert_file, ".old"));
        let _ = fs::copy(&self.key_file, with_suffix(&self.key_file, ".old"));
        // Key first: a cut between the two renames leaves the new key under `key_file` and the
        // candidate certificate without its key, which [`Self::recover`] completes at start.
        mv(&self.candidate_key(), &self.key_file)?;
        mv(&self.candidate_cert(), &self.cert_file)?;
        let _ = fs::remove_file(self.csr_key());
        sync_parent(&self.cert_file);
        Ok(())
    }

    /// The candidate was refused: it is set aside as `*.rejected`, the current files stay.
    fn reject(&self) {
        let _ = fs::rename(self.candidate_cert(), with_suffix(&self.cert_file, ".rejected"));
        let _ = fs::rename(self.candidate_key(), with_suffix(&self.key_file, ".rejected"));
        sync_parent(&self.cert_file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, IsCa, Issuer, SerialNumber};
    use std::collections::HashSet;

    fn ca() -> (Issuer<'static, KeyPair>, String) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, "test CA");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let pem = p.self_signed(&key).unwrap().pem();
        (Issuer::new(p, key), pem)
    }

    fn leaf(issuer: &Issuer<'static, KeyPair>, cn: &str, serial: u64) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.serial_number = Some(SerialNumber::from(serial));
        (p.signed_by(&key, issuer).unwrap().pem(), key.serialize_pem())
    }

    fn offer(cert: &str, key: Option<&str>) -> Vec<u8> {
        serde_json::json!({ "new_cert": cert, "new_key": key, "expires_at": "2036-01-01T00:00:00Z" })
            .to_string()
            .into_bytes()
    }

    /// The decisions the agent and the simulator share, on the files they share.
    #[test]
    fn the_files_swap_refuse_and_answer_a_csr() {
        let mac = Mac::parse("02:00:00:00:00:05").unwrap();
        let (issuer, ca_pem) = ca();
        let (cert, key) = leaf(&issuer, &mac.to_string(), 1);
        let dir = tempfile::tempdir().unwrap();
        let store = CertFiles {
            ca_file: dir.path().join("ca.crt"),
            cert_file: dir.path().join("gw.crt"),
            key_file: dir.path().join("gw.key"),
        };
        fs::write(&store.ca_file, &ca_pem).unwrap();
        fs::write(&store.cert_file, &cert).unwrap();
        fs::write(&store.key_file, &key).unwrap();
        let mut refused = HashSet::new();
        let now = Utc::now();
        let current = store.current().unwrap();

        assert!(matches!(on_offer(&store, mac, &current, b"", &mut refused, now), OfferOutcome::Nothing));
        let (other, other_key) = leaf(&issuer, "02:00:00:00:00:06", 2);
        let refusal = on_offer(&store, mac, &current, &offer(&other, Some(&other_key)), &mut refused, now);
        assert!(matches!(refusal, OfferOutcome::Refused(CertError::WrongName { .. })), "{refusal:?}");
        let (new, new_key) = leaf(&issuer, &mac.to_string(), 3);
        let (_, mismatched_key) = leaf(&issuer, &mac.to_string(), 4);
        let refusal = on_offer(&store, mac, &current, &offer(&new, Some(&mismatched_key)), &mut refused, now);
        assert!(matches!(refusal, OfferOutcome::Refused(CertError::KeyMismatch(_))), "{refusal:?}");
        refused.clear();
        let OfferOutcome::Swap(next, info) =
            on_offer(&store, mac, &current, &offer(&new, Some(&new_key)), &mut refused, now)
        else {
            panic!("a good offer is a swap")
        };
        assert_eq!(info.serial, "03");
        assert_eq!(store.current().unwrap().cert_pem, current.cert_pem, "not before it connected");
        store.promote().unwrap();
        assert_eq!(store.current().unwrap().cert_pem, next.cert_pem);
        let expired = on_offer(
            &store,
            mac,
            &current,
            &offer(&new, Some(&new_key)),
            &mut refused,
            DateTime::from_timestamp(0, 0).unwrap(),
        );
        assert!(matches!(expired, OfferOutcome::Refused(CertError::NotValidNow { .. })), "{expired:?}");

        let current = store.current().unwrap();
        let OfferOutcome::Csr(csr) =
            on_offer(&store, mac, &current, br#"{"csr_required":true}"#, &mut refused, now)
        else {
            panic!("a CSR request is answered with a CSR")
        };
        let OfferOutcome::Csr(again) =
            on_offer(&store, mac, &current, br#"{"csr_required":true}"#, &mut refused, now)
        else {
            panic!("…also when it comes again")
        };
        let params = rcgen::CertificateSigningRequestParams::from_pem(&csr).unwrap();
        let again = rcgen::CertificateSigningRequestParams::from_pem(&again).unwrap();
        assert_eq!(params.public_key.der_bytes(), again.public_key.der_bytes(), "the same key both times");
        let signed = params.signed_by(&issuer).unwrap().pem();
        let OfferOutcome::Swap(next, _) =
            on_offer(&store, mac, &current, &offer(&signed, None), &mut refused, now)
        else {
            panic!("the signed CSR is a swap with the gateway's own key")
        };
        store.promote().unwrap();
        assert_eq!(store.current().unwrap().key_pem, next.key_pem);
    }
}
