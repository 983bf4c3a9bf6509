//! The platform CA: creating it (RSA 4096 or ECDSA P-384, 20 years), loading it from PEM (the key
//! optionally passphrase-encrypted) and handing out its certificate and key. What the CA signs
//! lives in `device`, `csr`, `server` and `crl`; files on disk in `files`. The private key never
//! appears in `Debug` or in an error.

use crate::common::{
    describe_key, fingerprint_sha256, from_unix, now_seconds, pem_block, pem_encode, private_key_pem,
    random_serial, read_private_key, to_offset,
};
use crate::error::{PkiError, Result};
use chrono::{DateTime, Months, TimeDelta, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyIdMethod, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P384_SHA384, PKCS_RSA_SHA256, RsaKeySize,
};
use std::fmt;
use std::str::FromStr;
use x509_parser::extensions::ParsedExtension;

/// How long a new CA is valid unless told otherwise.
pub const DEFAULT_CA_VALIDITY_YEARS: u32 = 20;
const MAX_CA_VALIDITY_YEARS: u32 = 50;

/// Certificates are valid from this long before they are issued, so that a device whose clock
/// lags a little (an ESP32 before SNTP settles) does not refuse a fresh certificate.
pub(crate) const BACKDATE: TimeDelta = TimeDelta::hours(1);

/// The CA's key type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CaAlgorithm {
    /// RSA 4096 with SHA-256 signatures: what every device TLS stack verifies.
    #[default]
    Rsa4096,
    /// ECDSA P-384 with SHA-384 signatures: smaller and faster, needs ECDSA in the device stack.
    EcdsaP384,
}

impl CaAlgorithm {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Rsa4096 => "rsa4096",
            Self::EcdsaP384 => "ecdsa-p384",
        }
    }
}

impl fmt::Display for CaAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CaAlgorithm {
    type Err = PkiError;
    /// Accepts `rsa4096`, `rsa-4096`, `rsa`, `ecdsa-p384`, `ecdsa_p384`, `p384`, `ecdsa` (any case).
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "rsa4096" | "rsa-4096" | "rsa" => Ok(Self::Rsa4096),
            "ecdsa-p384" | "ecdsap384" | "p384" | "p-384" | "ecdsa" => Ok(Self::EcdsaP384),
            _ => {
                Err(PkiError::UnsupportedKey(format!("CA algorithm {s:?} (expected rsa4096 or ecdsa-p384)")))
            }
        }
    }
}

/// The CA certificate's subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaSubject {
    pub common_name: String,
    pub organization: String,
}

impl Default for CaSubject {
    fn default() -> Self {
        Self { common_name: "TDS Platform CA".to_owned(), organization: "TDS".to_owned() }
    }
}

/// The platform CA: its certificate and its signing key.
pub struct Ca {
    cert_pem: String,
    cert_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
    key_id_method: KeyIdMethod,
    common_name: String,
    key_algorithm: String,
    not_after: DateTime<Utc>,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("common_name", &self.common_name)
            .field("key_algorithm", &self.key_algorithm)
            .field("not_after", &self.not_after)
            .field("key", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Creates a new self-signed CA (basicConstraints CA:TRUE, pathlen 0: it signs end-entity
    /// certificates only; key usage keyCertSign, cRLSign, digitalSignature).
    pub fn create(subject: &CaSubject, algorithm: CaAlgorithm, validity_years: u32) -> Result<Self> {
        if subject.common_name.trim().is_empty() {
            return Err(PkiError::InvalidValidity("the CA common name is empty".into()));
        }
        if !(1..=MAX_CA_VALIDITY_YEARS).contains(&validity_years) {
            return Err(PkiError::InvalidValidity(format!(
                "CA validity of {validity_years} years (expected 1 to {MAX_CA_VALIDITY_YEARS})"
            )));
        }
        let key = match algorithm {
            CaAlgorithm::Rsa4096 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_4096)?,
            CaAlgorithm::EcdsaP384 => KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384)?,
        };
        let now = now_seconds()?;
        let not_after = now
            .checked_add_months(Months::new(validity_years * 12))
            .ok_or_else(|| PkiError::InvalidValidity(format!("{validity_years} years from now")))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, subject.common_name.trim());
        if !subject.organization.trim().is_empty() {
            dn.push(DnType::OrganizationName, subject.organization.trim());
        }
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.serial_number = Some(random_serial().0);
        params.not_before = to_offset(now - BACKDATE)?;
        params.not_after = to_offset(not_after)?;
        let cert = params.self_signed(&key)?;
        Self::from_parts(cert.der().to_vec(), key)
    }

    /// Loads a CA from its certificate PEM and its key PEM (PKCS#8, PKCS#1 or SEC1; or encrypted
    /// PKCS#8, which needs `passphrase`). Checks the certificate is a CA and the key is its key.
    pub fn load(cert_pem: &str, key_pem: &str, passphrase: Option<&str>) -> Result<Self> {
        let der = pem_block(cert_pem, "the CA certificate", &["CERTIFICATE"])?;
        let key = read_private_key(key_pem, passphrase)?;
        Self::from_parts(der, key)
    }

    fn from_parts(cert_der: Vec<u8>, key: KeyPair) -> Result<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|e| PkiError::BadDer { what: "the CA certificate", reason: e.to_string() })?;
        if !cert.is_ca() {
            return Err(PkiError::NotACa);
        }
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(PkiError::KeyMismatch);
        }
        let key_algorithm = describe_key(cert.public_key(), 2048..=8192)?;
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_owned();
        let key_id_method = cert
            .iter_extensions()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => Some(KeyIdMethod::PreSpecified(id.0.to_vec())),
                _ => None,
            })
            .unwrap_or(KeyIdMethod::Sha256);
        let not_after = from_unix(cert.validity().not_after.timestamp())?;
        let cert_pem = pem_encode("CERTIFICATE", &cert_der)?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)?;
        Ok(Self { cert_pem, cert_der, issuer, key_id_method, common_name, key_algorithm, not_after })
    }

    /// The CA certificate as PEM (what devices and the broker trust: `ca.crt`).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The CA key as PKCS#8 PEM; with a passphrase, encrypted PKCS#8 (PBES2: PBKDF2-HMAC-SHA256,
    /// 600 000 rounds, AES-256-CBC). An empty passphrase is refused rather than silently used.
    pub fn key_pem(&self, passphrase: Option<&str>) -> Result<String> {
        private_key_pem(self.issuer.key(), passphrase)
    }

    pub fn common_name(&self) -> &str {
        &self.common_name
    }

    /// `RSA-4096`, `ECDSA-P384`, … (other sizes and curves only for imported CAs).
    pub fn key_algorithm(&self) -> &str {
        &self.key_algorithm
    }

    pub fn not_after(&self) -> DateTime<Utc> {
        self.not_after
    }

    /// Hex SHA-256 of the CA certificate's DER.
    pub fn fingerprint_sha256(&self) -> String {
        fingerprint_sha256(&self.cert_der)
    }

    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    /// How the CA's own key identifier is formed, for the AKI of its CRLs.
    pub(crate) fn key_id_method(&self) -> &KeyIdMethod {
        &self.key_id_method
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names_parse_in_their_usual_spellings() {
        for (s, want) in [
            ("rsa4096", CaAlgorithm::Rsa4096),
            ("RSA-4096", CaAlgorithm::Rsa4096),
            ("ecdsa_p384", CaAlgorithm::EcdsaP384),
            ("P-384", CaAlgorithm::EcdsaP384),
        ] {
            assert_eq!(s.parse::<CaAlgorithm>().unwrap(), want, "{s}");
        }
        assert!("dsa".parse::<CaAlgorithm>().is_err());
        assert_eq!(CaAlgorithm::default(), CaAlgorithm::Rsa4096);
    }

    #[test]
    fn a_new_ca_is_a_ca_with_the_given_subject() {
        let ca = Ca::create(&CaSubject::default(), CaAlgorithm::EcdsaP384, 20).unwrap();
        assert_eq!(ca.common_name(), "TDS Platform CA");
        assert_eq!(ca.key_algorithm(), "ECDSA-P384");
        let years = (ca.not_after() - Utc::now()).num_days() / 365;
        assert!((19..=20).contains(&years), "{years}");
        let (_, cert) = x509_parser::parse_x509_certificate(ca.cert_der()).unwrap();
        assert!(cert.is_ca());
        assert!(!format!("{ca:?}").contains("PRIVATE"));
    }

    #[test]
    fn a_ca_with_an_absurd_validity_is_refused() {
        assert!(Ca::create(&CaSubject::default(), CaAlgorithm::EcdsaP384, 0).is_err());
        assert!(Ca::create(&CaSubject::default(), CaAlgorithm::EcdsaP384, 51).is_err());
    }

    #[test]
    fn a_key_of_another_ca_does_not_load() {
        let a = Ca::create(&CaSubject::default(), CaAlgorithm::EcdsaP384, 1).unwrap();
        let b = Ca::create(&CaSubject::default(), CaAlgorithm::EcdsaP384, 1).unwrap();
        let err = Ca::load(a.cert_pem(), &b.key_pem(None).unwrap(), None).unwrap_err();
        assert!(matches!(err, PkiError::KeyMismatch), "{err}");
    }
}
