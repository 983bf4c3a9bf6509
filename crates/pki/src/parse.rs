//! Reading certificates back: the facts the rest of TDS records or checks about a PEM
//! certificate (CN, canonical serial, validity, fingerprint, whether it is a CA).

use crate::common::{fingerprint_sha256, from_unix, pem_block, serial_hex_from_bytes};
use crate::error::{PkiError, Result};
use chrono::{DateTime, Utc};

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// The first subject CN, if any.
    pub subject_cn: Option<String>,
    /// Canonical serial: lower-case hex, no separators, no leading zeros.
    pub serial_hex: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// Lower-case hex of the SHA-256 of the DER.
    pub fingerprint_sha256: String,
    /// basicConstraints CA:TRUE.
    pub is_ca: bool,
}

/// Parses the first certificate of a PEM text.
pub fn parse_certificate(pem: &str) -> Result<CertificateInfo> {
    parse_certificate_der(&pem_block(pem, "the certificate", &["CERTIFICATE"])?)
}

/// Parses a DER certificate.
pub fn parse_certificate_der(der: &[u8]) -> Result<CertificateInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| PkiError::BadDer { what: "the certificate", reason: e.to_string() })?;
    let subject_cn =
        cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_owned);
    Ok(CertificateInfo {
        subject_cn,
        serial_hex: serial_hex_from_bytes(cert.raw_serial()),
        not_before: from_unix(cert.validity().not_before.timestamp())?,
        not_after: from_unix(cert.validity().not_after.timestamp())?,
        fingerprint_sha256: fingerprint_sha256(der),
        is_ca: cert.is_ca(),
    })
}
