//! Small shared pieces every issuing module needs: serial numbers and their one canonical hex form,
//! SHA-256 fingerprints, time conversion between chrono and the `time` crate rcgen speaks, PEM
//! reading, key description, and private-key PEM with optional PKCS#8 encryption. No certificate
//! policy lives here.

use crate::error::{PkiError, Result};
use chrono::{DateTime, Utc};
use pkcs8::der::pem::LineEnding;
use pkcs8::pkcs5::pbes2;
use pkcs8::{EncryptedPrivateKeyInfoRef, PrivateKeyInfoRef};
use rcgen::{KeyPair, SerialNumber};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use time::OffsetDateTime;
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384};
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

/// PBKDF2-HMAC-SHA256 rounds for passphrase-encrypted keys (OWASP's recommendation).
const PBKDF2_ROUNDS: u32 = 600_000;

/// Lower-case hex of bytes, no separators.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Hex of the SHA-256 of `der`, lower case, no separators.
pub(crate) fn fingerprint_sha256(der: &[u8]) -> String {
    hex(&Sha256::digest(der))
}

/// A fresh random 128-bit positive serial number with its top bit set, so that its canonical hex
/// form is always exactly 32 digits (127 random bits; RFC 5280 and the CA/B forum ask for 64).
pub(crate) fn random_serial() -> (SerialNumber, String) {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] |= 0x80;
    (SerialNumber::from_slice(&bytes), hex(&bytes))
}

/// The canonical hex form of a serial number's big-endian magnitude (DER content bytes may carry
/// a leading zero): lower case, no separators, no leading zeros ("0" for zero).
pub(crate) fn serial_hex_from_bytes(bytes: &[u8]) -> String {
    let h = hex(bytes);
    let trimmed = h.trim_start_matches('0');
    if trimmed.is_empty() { "0".to_owned() } else { trimmed.to_owned() }
}

/// Normalises a serial written by hand or by another tool (`0A:1B…`, upper case, leading zeros,
/// a `0x` prefix) to the canonical form. At most 20 octets (RFC 5280).
pub fn normalize_serial_hex(input: &str) -> Result<String> {
    let bad = || PkiError::InvalidSerial(input.to_owned());
    let s = input.trim();
    let s = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
    let digits: String = s.chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || digits.len() > 40 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let digits = digits.to_ascii_lowercase();
    let trimmed = digits.trim_start_matches('0');
    Ok(if trimmed.is_empty() { "0".to_owned() } else { trimmed.to_owned() })
}

/// The big-endian bytes of a serial given in any hex form [`normalize_serial_hex`] accepts.
pub(crate) fn serial_bytes(input: &str) -> Result<Vec<u8>> {
    let canonical = normalize_serial_hex(input)?;
    let padded = if canonical.len() % 2 == 1 { format!("0{canonical}") } else { canonical };
    (0..padded.len())
        .step_by(2)
        .map(|i| {
            padded
                .get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| PkiError::InvalidSerial(input.to_owned()))
        })
        .collect()
}

/// Now, truncated to whole seconds (certificate times have no fractions).
pub(crate) fn now_seconds() -> Result<DateTime<Utc>> {
    from_unix(Utc::now().timestamp())
}

pub(crate) fn from_unix(seconds: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp(seconds, 0)
        .ok_or_else(|| PkiError::InvalidValidity(format!("time {seconds} is out of range")))
}

/// chrono → `time` (what rcgen takes), to the second.
pub(crate) fn to_offset(at: DateTime<Utc>) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(at.timestamp())
        .map_err(|_| PkiError::InvalidValidity(format!("time {at} is out of range")))
}

/// Decodes one PEM block (the first one found) with x509-parser's lenient reader, checking its
/// label is one of `labels`.
pub(crate) fn pem_block(input: &str, what: &'static str, labels: &[&str]) -> Result<Vec<u8>> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(input.as_bytes())
        .map_err(|e| PkiError::BadPem { what, reason: e.to_string() })?;
    if !labels.contains(&pem.label.as_str()) {
        return Err(PkiError::BadPem {
            what,
            reason: format!("found a {:?} block, expected {}", pem.label, labels.join(" or ")),
        });
    }
    Ok(pem.contents)
}

pub(crate) fn pem_encode(label: &str, der: &[u8]) -> Result<String> {
    pkcs8::der::pem::encode_string(label, LineEnding::LF, der)
        .map_err(|e| PkiError::BadDer { what: "PEM output", reason: e.to_string() })
}

/// A subject public key as a short name (`RSA-2048`, `ECDSA-P256`, `ECDSA-P384`), refusing any
/// other kind of key and RSA keys outside `rsa_bits`.
pub(crate) fn describe_key(
    spki: &SubjectPublicKeyInfo<'_>,
    rsa_bits: std::ops::RangeInclusive<usize>,
) -> Result<String> {
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => {
            let bits = rsa.key_size();
            if rsa_bits.contains(&bits) {
                Ok(format!("RSA-{bits}"))
            } else {
                Err(PkiError::UnsupportedKey(format!("RSA key of {bits} bits")))
            }
        }
        Ok(PublicKey::EC(_)) if spki.algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY => {
            let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok());
            match curve {
                Some(oid) if oid == OID_EC_P256 => Ok("ECDSA-P256".to_owned()),
                Some(oid) if oid == OID_NIST_EC_P384 => Ok("ECDSA-P384".to_owned()),
                Some(oid) => Err(PkiError::UnsupportedKey(format!("elliptic curve {oid}"))),
                None => Err(PkiError::UnsupportedKey("elliptic curve key without a named curve".into())),
            }
        }
        Ok(_) => Err(PkiError::UnsupportedKey(format!("key algorithm {}", spki.algorithm.algorithm))),
        Err(e) => Err(PkiError::UnsupportedKey(format!("unreadable public key ({e})"))),
    }
}

/// A private key as PKCS#8 PEM; with a passphrase, as encrypted PKCS#8 (PBES2 with
/// PBKDF2-HMAC-SHA256 and AES-256-CBC, which OpenSSL, Mosquitto and Python read).
pub(crate) fn private_key_pem(key: &KeyPair, passphrase: Option<&str>) -> Result<String> {
    let Some(passphrase) = passphrase else {
        return Ok(key.serialize_pem());
    };
    if passphrase.is_empty() {
        return Err(PkiError::EmptyPassphrase);
    }
    let der = key.serialized_der();
    let info = PrivateKeyInfoRef::try_from(der).map_err(|e| PkiError::KeyEncryption(e.to_string()))?;
    let salt: [u8; 16] = rand::random();
    let iv: [u8; 16] = rand::random();
    let params = pbes2::Parameters::generate_pbkdf2_sha256_aes256cbc(PBKDF2_ROUNDS, &salt, iv)
        .map_err(|e| PkiError::KeyEncryption(e.to_string()))?;
    let doc =
        info.encrypt_with_params(params, passphrase).map_err(|e| PkiError::KeyEncryption(e.to_string()))?;
    let pem = doc
        .to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF)
        .map_err(|e| PkiError::KeyEncryption(e.to_string()))?;
    Ok(pem.as_str().to_owned())
}

/// Reads a private key PEM: plain PKCS#8 (or PKCS#1 / SEC1), or encrypted PKCS#8 with `passphrase`.
pub(crate) fn read_private_key(pem: &str, passphrase: Option<&str>) -> Result<KeyPair> {
    let bad = |reason: String| PkiError::BadPem { what: "the private key", reason };
    let (label, der) = pkcs8::der::pem::decode_vec(pem.trim().as_bytes()).map_err(|e| bad(e.to_string()))?;
    match label {
        "ENCRYPTED PRIVATE KEY" => {
            let passphrase = passphrase.ok_or(PkiError::PassphraseRequired)?;
            let info = EncryptedPrivateKeyInfoRef::try_from(der.as_slice())
                .map_err(|e| PkiError::BadDer { what: "the encrypted private key", reason: e.to_string() })?;
            let plain = info.decrypt(passphrase).map_err(|_| PkiError::WrongPassphrase)?;
            // A wrong passphrase that happens to leave valid padding yields garbage, not a key.
            KeyPair::try_from(plain.as_bytes()).map_err(|_| PkiError::WrongPassphrase)
        }
        "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" => KeyPair::try_from(der.as_slice())
            .map_err(|e| PkiError::BadDer { what: "the private key", reason: e.to_string() }),
        other => Err(bad(format!("found a {other:?} block, expected PRIVATE KEY or ENCRYPTED PRIVATE KEY"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_normalise_to_lower_case_hex_without_leading_zeros() {
        for (input, want) in
            [("00:AB:cd", "abcd"), ("0x0001", "1"), ("000", "0"), ("  DEADBEEF ", "deadbeef"), ("7f", "7f")]
        {
            assert_eq!(normalize_serial_hex(input).unwrap(), want, "{input}");
        }
        for bad in ["", "xyz", "0x", "12 34", &"a".repeat(41)] {
            assert!(normalize_serial_hex(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn serial_bytes_pad_an_odd_number_of_digits() {
        assert_eq!(serial_bytes("abc").unwrap(), vec![0x0a, 0xbc]);
        assert_eq!(serial_bytes("00:80").unwrap(), vec![0x80]);
    }

    #[test]
    fn random_serials_are_32_hex_digits_and_differ() {
        let (a, a_hex) = random_serial();
        let (_, b_hex) = random_serial();
        assert_eq!(a_hex.len(), 32);
        assert_ne!(a_hex, b_hex);
        assert_eq!(serial_hex_from_bytes(&a.to_bytes()), a_hex);
        assert_eq!(normalize_serial_hex(&a_hex).unwrap(), a_hex);
    }

    #[test]
    fn der_serial_with_a_sign_byte_has_the_same_canonical_form() {
        assert_eq!(serial_hex_from_bytes(&[0x00, 0x80, 0x01]), "8001");
        assert_eq!(serial_hex_from_bytes(&[0x00]), "0");
    }

    #[test]
    fn an_encrypted_key_reads_back_only_with_its_passphrase() {
        let key = KeyPair::generate().unwrap();
        let pem = private_key_pem(&key, Some("correct horse")).unwrap();
        assert!(pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
        let back = read_private_key(&pem, Some("correct horse")).unwrap();
        assert_eq!(back.public_key_raw(), key.public_key_raw());
        assert!(matches!(read_private_key(&pem, Some("wrong")), Err(PkiError::WrongPassphrase)));
        assert!(matches!(read_private_key(&pem, None), Err(PkiError::PassphraseRequired)));
        assert!(matches!(private_key_pem(&key, Some("")), Err(PkiError::EmptyPassphrase)));
    }
}
