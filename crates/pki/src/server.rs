//! The MQTT endpoint's TLS server certificate: ECDSA P-256, serverAuth only, two years, with the
//! names devices connect to as SANs (DNS names and IP addresses). Its key is never encrypted: the
//! server (or an external broker) must read it unattended.

use crate::ca::Ca;
use crate::error::{PkiError, Result};
use chrono::{DateTime, Utc};
use rcgen::{ExtendedKeyUsagePurpose, SanType};
use std::fmt;
use std::net::IpAddr;

/// The server certificate's names when none are given.
pub const DEFAULT_SERVER_SANS: [&str; 2] = ["localhost", "127.0.0.1"];
pub const SERVER_VALIDITY_DAYS: u32 = 730;

/// A TLS server certificate and its key.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerCertificate {
    pub cert_pem: String,
    pub key_pem: String,
    pub serial_hex: String,
    pub fingerprint_sha256: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub sans: Vec<String>,
}

impl fmt::Debug for ServerCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerCertificate")
            .field("sans", &self.sans)
            .field("serial_hex", &self.serial_hex)
            .field("not_after", &self.not_after)
            .field("key_pem", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// Each name as an IP address SAN if it parses as one, else as a DNS name SAN.
fn san(name: &str) -> Result<SanType> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').enumerate().all(|(i, label)| {
            let wildcard = i == 0 && label == "*";
            wildcard
                || (!label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        });
    if !valid {
        return Err(PkiError::InvalidSan(name.to_owned()));
    }
    Ok(SanType::DnsName(name.try_into().map_err(|_| PkiError::InvalidSan(name.to_owned()))?))
}

impl Ca {
    /// Issues the MQTT server certificate for `sans` (empty: [`DEFAULT_SERVER_SANS`]); its CN is
    /// the first name.
    pub fn issue_server_certificate(&self, sans: &[String]) -> Result<ServerCertificate> {
        let names: Vec<String> = if sans.iter().all(|s| s.trim().is_empty()) {
            DEFAULT_SERVER_SANS.iter().map(|s| (*s).to_owned()).collect()
        } else {
            sans.iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()
        };
        let sans = names.iter().map(|n| san(n)).collect::<Result<_>>()?;
        let common_name = names.first().map_or("localhost", String::as_str);
        let leaf =
            self.issue_leaf(common_name, sans, ExtendedKeyUsagePurpose::ServerAuth, SERVER_VALIDITY_DAYS)?;
        Ok(ServerCertificate {
            cert_pem: leaf.cert_pem,
            key_pem: leaf.key_pem,
            serial_hex: leaf.serial_hex,
            fingerprint_sha256: leaf.fingerprint_sha256,
            not_before: leaf.not_before,
            not_after: leaf.not_after,
            sans: names,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_are_dns_names_or_ip_addresses() {
        assert!(matches!(san("mqtt.example.com").unwrap(), SanType::DnsName(_)));
        assert!(matches!(san("*.example.com").unwrap(), SanType::DnsName(_)));
        assert!(matches!(san("10.0.0.1").unwrap(), SanType::IpAddress(_)));
        assert!(matches!(san("::1").unwrap(), SanType::IpAddress(_)));
        for bad in ["", "a b", "-x.com", "x..com", "ação.com", "a*.com"] {
            assert!(san(bad).is_err(), "{bad:?}");
        }
    }
}
