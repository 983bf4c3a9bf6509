//! Certificate revocation lists: the RFC 5280 reason codes and the CA's signed CRL (PEM and DER)
//! listing the revoked serials. Which serials are revoked, and the CRL number, are the store's;
//! this module only encodes and signs.

use crate::ca::Ca;
use crate::common::{serial_bytes, to_offset};
use crate::error::{PkiError, Result};
use chrono::{DateTime, Utc};
use rcgen::{CertificateRevocationListParams, RevokedCertParams, SerialNumber};
use std::fmt;
use std::str::FromStr;

/// Why a certificate was revoked (RFC 5280 §5.3.1; code 7 is unassigned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RevocationReason {
    #[default]
    Unspecified,
    KeyCompromise,
    CaCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    CertificateHold,
    RemoveFromCrl,
    PrivilegeWithdrawn,
    AaCompromise,
}

impl RevocationReason {
    pub const ALL: [Self; 10] = [
        Self::Unspecified,
        Self::KeyCompromise,
        Self::CaCompromise,
        Self::AffiliationChanged,
        Self::Superseded,
        Self::CessationOfOperation,
        Self::CertificateHold,
        Self::RemoveFromCrl,
        Self::PrivilegeWithdrawn,
        Self::AaCompromise,
    ];

    /// The reasons a device certificate may be revoked with. The others are refused: a CA or
    /// attribute-authority compromise is not a device's, `certificateHold` and `removeFromCRL`
    /// belong to a suspend-and-reinstate workflow TDS does not have (a `removeFromCRL` entry would
    /// look revoked in TDS while missing from the CRL, so brokers would still accept it).
    pub const FOR_DEVICES: [Self; 6] = [
        Self::Unspecified,
        Self::KeyCompromise,
        Self::AffiliationChanged,
        Self::Superseded,
        Self::CessationOfOperation,
        Self::PrivilegeWithdrawn,
    ];

    /// Like [`Self::parse`], for revoking a device certificate: only [`Self::FOR_DEVICES`].
    pub fn parse_for_device(input: &str) -> Result<Self> {
        let reason = Self::parse(input)?;
        if Self::FOR_DEVICES.contains(&reason) {
            Ok(reason)
        } else {
            Err(PkiError::ReasonNotForDevice(reason.rfc_name()))
        }
    }

    /// The `snake_case` name stored in the database (`key_compromise`, `ca_compromise`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::KeyCompromise => "key_compromise",
            Self::CaCompromise => "ca_compromise",
            Self::AffiliationChanged => "affiliation_changed",
            Self::Superseded => "superseded",
            Self::CessationOfOperation => "cessation_of_operation",
            Self::CertificateHold => "certificate_hold",
            Self::RemoveFromCrl => "remove_from_crl",
            Self::PrivilegeWithdrawn => "privilege_withdrawn",
            Self::AaCompromise => "aa_compromise",
        }
    }

    /// The RFC 5280 name (`keyCompromise`, `cACompromise`, …).
    pub const fn rfc_name(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::KeyCompromise => "keyCompromise",
            Self::CaCompromise => "cACompromise",
            Self::AffiliationChanged => "affiliationChanged",
            Self::Superseded => "superseded",
            Self::CessationOfOperation => "cessationOfOperation",
            Self::CertificateHold => "certificateHold",
            Self::RemoveFromCrl => "removeFromCRL",
            Self::PrivilegeWithdrawn => "privilegeWithdrawn",
            Self::AaCompromise => "aACompromise",
        }
    }

    /// The `CRLReason` code.
    pub const fn code(self) -> u8 {
        match self {
            Self::Unspecified => 0,
            Self::KeyCompromise => 1,
            Self::CaCompromise => 2,
            Self::AffiliationChanged => 3,
            Self::Superseded => 4,
            Self::CessationOfOperation => 5,
            Self::CertificateHold => 6,
            Self::RemoveFromCrl => 8,
            Self::PrivilegeWithdrawn => 9,
            Self::AaCompromise => 10,
        }
    }

    /// Accepts the `snake_case` name, the RFC 5280 camelCase name, or either written with `-`,
    /// spaces or any case (`key_compromise`, `keyCompromise`, `Key Compromise`, `KEY-COMPROMISE`).
    pub fn parse(input: &str) -> Result<Self> {
        let squashed: String =
            input.chars().filter(|c| !matches!(c, '_' | '-' | ' ')).flat_map(char::to_lowercase).collect();
        Self::ALL
            .into_iter()
            .find(|r| r.rfc_name().to_ascii_lowercase() == squashed)
            .ok_or_else(|| PkiError::UnknownReason(input.to_owned()))
    }

    const fn to_rcgen(self) -> rcgen::RevocationReason {
        use rcgen::RevocationReason as R;
        match self {
            Self::Unspecified => R::Unspecified,
            Self::KeyCompromise => R::KeyCompromise,
            Self::CaCompromise => R::CaCompromise,
            Self::AffiliationChanged => R::AffiliationChanged,
            Self::Superseded => R::Superseded,
            Self::CessationOfOperation => R::CessationOfOperation,
            Self::CertificateHold => R::CertificateHold,
            Self::RemoveFromCrl => R::RemoveFromCrl,
            Self::PrivilegeWithdrawn => R::PrivilegeWithdrawn,
            Self::AaCompromise => R::AaCompromise,
        }
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RevocationReason {
    type Err = PkiError;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

/// One revoked certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEntry {
    /// The serial in any hex form [`crate::normalize_serial_hex`] accepts.
    pub serial_hex: String,
    pub revoked_at: DateTime<Utc>,
    pub reason: RevocationReason,
}

/// A signed CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crl {
    pub pem: String,
    pub der: Vec<u8>,
    pub number: u64,
    pub this_update: DateTime<Utc>,
    pub next_update: DateTime<Utc>,
}

impl Ca {
    /// Signs a CRL (v2, with AKI and CRL number) listing `revoked`.
    ///
    /// Per RFC 5280 §5.3.1 an `unspecified` reason is written as no reason code at all, and
    /// `removeFromCRL` entries (meaningful only in delta CRLs) are left out: such a certificate is
    /// no longer revoked. `next_update` must be after `this_update`.
    pub fn issue_crl(
        &self,
        revoked: &[RevokedEntry],
        crl_number: u64,
        this_update: DateTime<Utc>,
        next_update: DateTime<Utc>,
    ) -> Result<Crl> {
        if next_update <= this_update {
            return Err(PkiError::InvalidValidity(format!(
                "CRL next update {next_update} is not after this update {this_update}"
            )));
        }
        let revoked_certs = revoked
            .iter()
            .filter(|r| r.reason != RevocationReason::RemoveFromCrl)
            .map(|r| {
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&serial_bytes(&r.serial_hex)?),
                    revocation_time: to_offset(r.revoked_at)?,
                    reason_code: (r.reason != RevocationReason::Unspecified).then(|| r.reason.to_rcgen()),
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let params = CertificateRevocationListParams {
            this_update: to_offset(this_update)?,
            next_update: to_offset(next_update)?,
            crl_number: SerialNumber::from(crl_number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: self.key_id_method().clone(),
        };
        let crl = params.signed_by(self.issuer())?;
        Ok(Crl {
            pem: crl.pem()?,
            der: crl.der().to_vec(),
            number: crl_number,
            this_update: crate::common::from_unix(this_update.timestamp())?,
            next_update: crate::common::from_unix(next_update.timestamp())?,
        })
    }
}

/// The serials a CRL (DER) lists, canonical hex, sorted: to tell whether a stored CRL still
/// covers every revoked certificate.
pub fn crl_serials(der: &[u8]) -> Result<Vec<String>> {
    use x509_parser::prelude::FromDer;
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(der)
        .map_err(|e| PkiError::BadDer { what: "CRL", reason: e.to_string() })?;
    let mut serials: Vec<String> = crl
        .iter_revoked_certificates()
        .map(|r| crate::common::serial_hex_from_bytes(r.raw_serial()))
        .collect();
    serials.sort();
    Ok(serials)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serials_of_a_crl_read_back_in_canonical_form() {
        let ca = Ca::create(&crate::CaSubject::default(), crate::CaAlgorithm::EcdsaP384, 1).unwrap();
        let now = Utc::now();
        let entry =
            |serial: &str, reason| RevokedEntry { serial_hex: serial.into(), revoked_at: now, reason };
        let revoked = [
            entry("0A:1B", RevocationReason::KeyCompromise),
            entry("ff", RevocationReason::Unspecified),
            entry("1234", RevocationReason::RemoveFromCrl),
        ];
        let crl = ca.issue_crl(&revoked, 3, now, now + chrono::TimeDelta::days(1)).unwrap();
        assert_eq!(crl_serials(&crl.der).unwrap(), ["a1b", "ff"]);
        assert!(crl_serials(b"not a crl").is_err());
    }

    #[test]
    fn reasons_parse_from_snake_case_and_rfc_names() {
        for r in RevocationReason::ALL {
            assert_eq!(RevocationReason::parse(r.as_str()).unwrap(), r);
            assert_eq!(RevocationReason::parse(r.rfc_name()).unwrap(), r);
            assert_eq!(RevocationReason::parse(&r.as_str().to_uppercase().replace('_', "-")).unwrap(), r);
        }
        assert_eq!(RevocationReason::parse("keyCompromise").unwrap(), RevocationReason::KeyCompromise);
        assert_eq!(RevocationReason::parse("cACompromise").unwrap(), RevocationReason::CaCompromise);
        assert_eq!(RevocationReason::parse("removeFromCRL").unwrap(), RevocationReason::RemoveFromCrl);
        assert!(RevocationReason::parse("stolen").is_err());
        assert!(RevocationReason::parse("").is_err());
    }

    #[test]
    fn reason_codes_follow_rfc_5280() {
        let codes: Vec<u8> = RevocationReason::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(codes, [0, 1, 2, 3, 4, 5, 6, 8, 9, 10]);
        for r in RevocationReason::ALL {
            assert_eq!(r.to_rcgen() as u8, r.code());
        }
    }
}
