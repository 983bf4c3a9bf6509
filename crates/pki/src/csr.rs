//! Signing a device's CSR, so that the device's key never leaves it. The CSR is trusted for
//! exactly one thing, its public key, and only after its self-signature verifies and its subject
//! CN names the expected gateway. Everything else in the certificate comes from the device
//! profile (`device`): requested extensions (CA:TRUE, other EKUs, SANs, key usages) and any other
//! subject attributes are ignored, never copied.

use crate::ca::Ca;
use crate::common::{describe_key, pem_block};
use crate::device::{IssuedCertificate, device_profile};
use crate::error::{PkiError, Result};
use rcgen::SubjectPublicKeyInfo;
use tds_domain::Mac;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::error::X509Error;
use x509_parser::prelude::FromDer;

impl Ca {
    /// Verifies `csr_pem` and issues the device certificate for `expected_mac` over the CSR's
    /// public key (RSA 2048–4096 or ECDSA P-256/P-384). The CSR's CN may be written in any form
    /// [`Mac::parse`] accepts (upper case, `-` separators); the certificate's CN is always the
    /// canonical `aa:bb:cc:dd:ee:ff`.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        expected_mac: Mac,
        validity_days: u32,
    ) -> Result<IssuedCertificate> {
        let der = pem_block(csr_pem, "the CSR", &["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"])?;
        let (rest, csr) = X509CertificationRequest::from_der(&der)
            .map_err(|e| PkiError::BadDer { what: "the CSR", reason: e.to_string() })?;
        if !rest.is_empty() {
            return Err(PkiError::BadDer {
                what: "the CSR",
                reason: "trailing bytes after the request".into(),
            });
        }
        let info = &csr.certification_request_info;

        // The key first: a key we would not certify makes the signature question moot, and
        // verification itself needs a supported algorithm.
        let key_algorithm = describe_key(&info.subject_pki, 2048..=4096)?;
        match csr.verify_signature() {
            Ok(()) => {}
            Err(X509Error::SignatureUnsupportedAlgorithm) => {
                return Err(PkiError::UnsupportedKey(format!(
                    "CSR signature algorithm {}",
                    csr.signature_algorithm.algorithm
                )));
            }
            Err(_) => return Err(PkiError::CsrSignature),
        }

        let mut names = info.subject.iter_common_name();
        let cn = match (names.next(), names.next()) {
            (Some(cn), None) => cn.as_str().map_err(|_| PkiError::CsrWrongCommonName {
                expected: expected_mac,
                found: "(not a text string)".into(),
            })?,
            (None, _) => return Err(PkiError::CsrMissingCommonName { expected: expected_mac }),
            (Some(_), Some(_)) => {
                return Err(PkiError::CsrWrongCommonName {
                    expected: expected_mac,
                    found: "(more than one CN)".into(),
                });
            }
        };
        match Mac::parse(cn) {
            Ok(mac) if mac == expected_mac => {}
            _ => return Err(PkiError::CsrWrongCommonName { expected: expected_mac, found: cn.to_owned() }),
        }

        let public_key = SubjectPublicKeyInfo::from_der(info.subject_pki.raw)
            .map_err(|e| PkiError::UnsupportedKey(e.to_string()))?;
        let profile = device_profile(expected_mac, key_algorithm.starts_with("RSA"), validity_days)?;
        let cert = profile.params.signed_by(&public_key, self.issuer())?;
        Ok(profile.finish(expected_mac, &cert, None, key_algorithm))
    }
}
