//! End-entity certificates for TDS's own parties, the MQTT server and its services (not for
//! gateways, whose policy lives in `device`): a fresh ECDSA P-256 key, one extended key usage,
//! valid from a little before now (clock skew) for a number of days. The callers choose the names,
//! the purpose and the validity; this module owns how such a certificate is made.

use crate::ca::{BACKDATE, Ca};
use crate::common::{fingerprint_sha256, now_seconds, private_key_pem, random_serial, to_offset};
use crate::error::Result;
use chrono::{DateTime, TimeDelta, Utc};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, SanType,
};

/// An issued leaf: the certificate, its unencrypted key (read unattended by a server), and the
/// figures recorded about it.
pub(crate) struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub serial_hex: String,
    pub fingerprint_sha256: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
}

impl Ca {
    /// Issues a leaf with CN `common_name`, the subject alternative names `sans`, the single
    /// extended key usage `purpose`, valid for `validity_days`.
    pub(crate) fn issue_leaf(
        &self,
        common_name: &str,
        sans: Vec<SanType>,
        purpose: ExtendedKeyUsagePurpose,
        validity_days: u32,
    ) -> Result<Leaf> {
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![purpose];
        params.use_authority_key_identifier_extension = true;
        let (serial, serial_hex) = random_serial();
        params.serial_number = Some(serial);
        let now = now_seconds()?;
        let not_before = now - BACKDATE;
        let not_after = now + TimeDelta::days(i64::from(validity_days));
        params.not_before = to_offset(not_before)?;
        params.not_after = to_offset(not_after)?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = params.signed_by(&key, self.issuer())?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            key_pem: private_key_pem(&key, None)?,
            serial_hex,
            fingerprint_sha256: fingerprint_sha256(cert.der()),
            not_before,
            not_after,
        })
    }
}
