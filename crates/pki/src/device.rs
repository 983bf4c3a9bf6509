//! Device (gateway) client certificates: the profile every gateway certificate follows, whether
//! its key is generated here (`Ca::issue_device`) or stays on the device (`Ca::sign_csr`).
//!
//! Profile: subject CN = the MAC as `aa:bb:cc:dd:ee:ff` and nothing else; extended key usage
//! clientAuth only; key usage digitalSignature (+ keyEncipherment for RSA); basicConstraints
//! CA:FALSE (critical); subject and authority key identifiers; a random positive serial with
//! its top bit set (so `serial_hex` is always 32 lower-case hex digits, see
//! [`crate::normalize_serial_hex`] for the canonical form); valid from one hour before issue.

use crate::ca::{BACKDATE, Ca};
use crate::common::{fingerprint_sha256, now_seconds, private_key_pem, random_serial, to_offset};
use crate::error::{PkiError, Result};
use chrono::{DateTime, TimeDelta, Utc};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256, RsaKeySize,
};
use std::fmt;
use std::str::FromStr;
use tds_domain::Mac;

/// Ten years, the device certificate lifetime of SPEC §3.
pub const DEFAULT_DEVICE_VALIDITY_DAYS: u32 = 3650;
const MAX_VALIDITY_DAYS: u32 = 36_500;

/// The key generated for a device when TDS makes the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceKeyKind {
    /// RSA 2048: what ESP32 mbedTLS handles everywhere.
    #[default]
    Rsa2048,
    EcdsaP256,
}

impl DeviceKeyKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Rsa2048 => "rsa2048",
            Self::EcdsaP256 => "ecdsa-p256",
        }
    }

    /// The name recorded with the certificate (`IssuedCertificate::key_algorithm`).
    pub const fn key_algorithm(self) -> &'static str {
        match self {
            Self::Rsa2048 => "RSA-2048",
            Self::EcdsaP256 => "ECDSA-P256",
        }
    }

    /// The kind of a recorded certificate's key (its `key_algorithm`), so that a renewal keeps
    /// the key type the gateway already handles; anything not P-256 is taken as RSA 2048.
    pub fn of_recorded(key_algorithm: &str) -> Self {
        let a = key_algorithm.to_ascii_uppercase();
        if a.contains("P256") || a.contains("P-256") { Self::EcdsaP256 } else { Self::Rsa2048 }
    }
}

impl fmt::Display for DeviceKeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeviceKeyKind {
    type Err = PkiError;
    /// Accepts `rsa2048`, `rsa-2048`, `rsa`, `ecdsa-p256`, `ecdsa_p256`, `p256`, `ecdsa` (any case).
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "rsa2048" | "rsa-2048" | "rsa" => Ok(Self::Rsa2048),
            "ecdsa-p256" | "ecdsap256" | "p256" | "p-256" | "ecdsa" => Ok(Self::EcdsaP256),
            _ => Err(PkiError::UnsupportedKey(format!("device key {s:?} (expected rsa2048 or ecdsa-p256)"))),
        }
    }
}

/// A certificate the CA issued to a gateway.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    pub mac: Mac,
    pub cert_pem: String,
    /// The device's private key (PKCS#8 PEM, unencrypted: it goes into the device's NVS), or
    /// `None` when the certificate was signed from a CSR and the key never left the device.
    pub key_pem: Option<String>,
    /// Canonical serial: lower-case hex, no separators, no leading zeros.
    pub serial_hex: String,
    /// Lower-case hex of the SHA-256 of the certificate's DER.
    pub fingerprint_sha256: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// `RSA-2048`, `ECDSA-P256`, … (from the key actually certified).
    pub key_algorithm: String,
}

impl fmt::Debug for IssuedCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCertificate")
            .field("mac", &self.mac)
            .field("serial_hex", &self.serial_hex)
            .field("fingerprint_sha256", &self.fingerprint_sha256)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("key_algorithm", &self.key_algorithm)
            .field("key_pem", &self.key_pem.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

/// The parameters of a device certificate, and what the caller records about it.
pub(crate) struct DeviceProfile {
    pub params: CertificateParams,
    pub serial_hex: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
}

/// Builds the device profile for `mac`; `rsa` adds keyEncipherment.
pub(crate) fn device_profile(mac: Mac, rsa: bool, validity_days: u32) -> Result<DeviceProfile> {
    if !(1..=MAX_VALIDITY_DAYS).contains(&validity_days) {
        return Err(PkiError::InvalidValidity(format!(
            "{validity_days} days (expected 1 to {MAX_VALIDITY_DAYS})"
        )));
    }
    let now = now_seconds()?;
    device_profile_between(mac, rsa, now - BACKDATE, now + TimeDelta::days(i64::from(validity_days)))
}

/// The device profile for `mac`, valid from `not_before` to `not_after` exactly.
fn device_profile_between(
    mac: Mac,
    rsa: bool,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> Result<DeviceProfile> {
    let (serial, serial_hex) = random_serial();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, mac.to_string());
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = if rsa {
        vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment]
    } else {
        vec![KeyUsagePurpose::DigitalSignature]
    };
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(serial);
    params.not_before = to_offset(not_before)?;
    params.not_after = to_offset(not_after)?;
    Ok(DeviceProfile { params, serial_hex, not_before, not_after })
}

impl DeviceProfile {
    pub(crate) fn finish(
        self,
        mac: Mac,
        cert: &rcgen::Certificate,
        key_pem: Option<String>,
        key_algorithm: String,
    ) -> IssuedCertificate {
        IssuedCertificate {
            mac,
            cert_pem: cert.pem(),
            key_pem,
            serial_hex: self.serial_hex,
            fingerprint_sha256: fingerprint_sha256(cert.der()),
            not_before: self.not_before,
            not_after: self.not_after,
            key_algorithm,
        }
    }
}

impl Ca {
    /// Generates a key of `kind` for gateway `mac` and issues its client certificate
    /// (`validity_days`, usually [`DEFAULT_DEVICE_VALIDITY_DAYS`]). RSA 2048 key generation takes
    /// tens of milliseconds: use [`crate::issue_batch`] for many.
    pub fn issue_device(
        &self,
        mac: Mac,
        kind: DeviceKeyKind,
        validity_days: u32,
    ) -> Result<IssuedCertificate> {
        let profile = device_profile(mac, kind == DeviceKeyKind::Rsa2048, validity_days)?;
        self.issue_device_profile(mac, kind, profile)
    }

    /// Test support, not for production: a device certificate valid from `not_before` to
    /// `not_after` exactly, such as one that has already expired, so that tests can show the
    /// endpoint refuses it. Certificates for gateways come from [`Ca::issue_device`].
    #[doc(hidden)]
    pub fn issue_device_valid_between(
        &self,
        mac: Mac,
        kind: DeviceKeyKind,
        not_before: DateTime<Utc>,
        not_after: DateTime<Utc>,
    ) -> Result<IssuedCertificate> {
        if not_after <= not_before {
            return Err(PkiError::InvalidValidity(format!("{not_after} is not after {not_before}")));
        }
        let profile = device_profile_between(mac, kind == DeviceKeyKind::Rsa2048, not_before, not_after)?;
        self.issue_device_profile(mac, kind, profile)
    }

    fn issue_device_profile(
        &self,
        mac: Mac,
        kind: DeviceKeyKind,
        profile: DeviceProfile,
    ) -> Result<IssuedCertificate> {
        let key = match kind {
            DeviceKeyKind::Rsa2048 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048)?,
            DeviceKeyKind::EcdsaP256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?,
        };
        let cert = profile.params.signed_by(&key, self.issuer())?;
        let key_pem = private_key_pem(&key, None)?;
        Ok(profile.finish(mac, &cert, Some(key_pem), kind.key_algorithm().to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CaAlgorithm, CaSubject};

    #[test]
    fn debug_output_never_shows_the_private_key() {
        let ca = Ca::create(&CaSubject::default(), CaAlgorithm::EcdsaP384, 1).unwrap();
        let mac = Mac::parse("aa:bb:cc:dd:ee:ff").unwrap();
        let issued = ca.issue_device(mac, DeviceKeyKind::EcdsaP256, 30).unwrap();
        let shown = format!("{issued:?}");
        assert!(issued.key_pem.as_deref().unwrap().contains("PRIVATE KEY"));
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        assert!(shown.contains("[redacted]"));
    }

    #[test]
    fn validity_outside_one_day_to_a_century_is_refused() {
        let mac = Mac::parse("aa:bb:cc:dd:ee:ff").unwrap();
        assert!(device_profile(mac, true, 0).is_err());
        assert!(device_profile(mac, true, 36_501).is_err());
        let p = device_profile(mac, true, 3650).unwrap();
        assert_eq!((p.not_after - p.not_before).num_days(), 3650);
    }

    #[test]
    fn key_kinds_parse_in_their_usual_spellings() {
        assert_eq!("RSA".parse::<DeviceKeyKind>().unwrap(), DeviceKeyKind::Rsa2048);
        assert_eq!("ecdsa_p256".parse::<DeviceKeyKind>().unwrap(), DeviceKeyKind::EcdsaP256);
        assert!("ed25519".parse::<DeviceKeyKind>().is_err());
        assert_eq!(DeviceKeyKind::default(), DeviceKeyKind::Rsa2048);
    }
}
