//! Client certificates for TDS's own services, not for gateways: the identity TDS's consumer
//! uses to connect to an external broker in scale-out mode (CN `tds-ingest`, which the broker's
//! ACL names). ECDSA P-256, clientAuth only, one year; the key is never encrypted (the server
//! reads it unattended).
//!
//! Must not: issue a certificate whose CN is a MAC. The CN is the broker user name, and a MAC
//! would give the service a gateway's topics (and a gateway certificate a service's).

use crate::ca::Ca;
use crate::error::{PkiError, Result};
use chrono::{DateTime, Utc};
use rcgen::ExtendedKeyUsagePurpose;
use std::fmt;
use tds_domain::Mac;

pub const SERVICE_CLIENT_VALIDITY_DAYS: u32 = 365;

/// A service's client certificate and its key.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceCertificate {
    pub common_name: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub serial_hex: String,
    pub fingerprint_sha256: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
}

impl fmt::Debug for ServiceCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceCertificate")
            .field("common_name", &self.common_name)
            .field("serial_hex", &self.serial_hex)
            .field("not_after", &self.not_after)
            .field("key_pem", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// Checks a service name: printable ASCII letters, digits, `-`, `_` and `.`, and not a MAC.
fn check_name(common_name: &str) -> Result<()> {
    let valid = !common_name.is_empty()
        && common_name.len() <= 64
        && common_name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !valid || Mac::parse(common_name).is_ok() {
        return Err(PkiError::InvalidServiceName(common_name.to_owned()));
    }
    Ok(())
}

impl Ca {
    /// Issues a client certificate for the service `common_name` (such as `tds-ingest`), valid
    /// for `validity_days` (usually [`SERVICE_CLIENT_VALIDITY_DAYS`]).
    pub fn issue_service_client(&self, common_name: &str, validity_days: u32) -> Result<ServiceCertificate> {
        check_name(common_name)?;
        if !(1..=3650).contains(&validity_days) {
            return Err(PkiError::InvalidValidity(format!("{validity_days} days (expected 1 to 3650)")));
        }
        let leaf =
            self.issue_leaf(common_name, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth, validity_days)?;
        Ok(ServiceCertificate {
            common_name: common_name.to_owned(),
            cert_pem: leaf.cert_pem,
            key_pem: leaf.key_pem,
            serial_hex: leaf.serial_hex,
            fingerprint_sha256: leaf.fingerprint_sha256,
            not_before: leaf.not_before,
            not_after: leaf.not_after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CaAlgorithm, CaSubject, parse_certificate};

    #[test]
    fn a_service_certificate_names_the_service_and_never_a_gateway() {
        let ca = Ca::create(&CaSubject::default(), CaAlgorithm::EcdsaP384, 1).unwrap();
        let issued = ca.issue_service_client("tds-ingest", 30).unwrap();
        let info = parse_certificate(&issued.cert_pem).unwrap();
        assert_eq!(info.subject_cn.as_deref(), Some("tds-ingest"));
        assert!(!info.is_ca);
        assert_eq!(info.serial_hex, issued.serial_hex);
        assert!(!format!("{issued:?}").contains("PRIVATE KEY"));
        for bad in ["aa:bb:cc:dd:ee:ff", "AA-BB-CC-DD-EE-FF", "", "tds ingest", "tds/ingest"] {
            assert!(ca.issue_service_client(bad, 30).is_err(), "{bad:?}");
        }
        assert!(ca.issue_service_client("tds-ingest", 0).is_err());
    }
}
