//! Fuzzes CSR signing (`Ca::sign_csr`: PEM block, DER parsing, key and signature checks, CN) and
//! the certificate parsing the device endpoint and the CLI rely on (`device_identity`,
//! `parse_certificate_der`).
//!
//! Input: byte 0 says how the rest is given to `sign_csr`: even, as PEM text; odd, as DER (this
//! target wraps it in a PEM block, so that the DER parser sees every byte). One throw-away CA is
//! made per process. Invariant: whatever a CSR asks for, a signed certificate names the expected
//! MAC, is not a CA and parses back.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tds_domain::Mac;
use tds_pki::{Ca, CaAlgorithm, CaSubject, parse_certificate, parse_certificate_der};

fn ca() -> &'static Ca {
    static CA: OnceLock<Ca> = OnceLock::new();
    CA.get_or_init(|| Ca::create(&CaSubject::default(), CaAlgorithm::EcdsaP384, 1).unwrap())
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4 + bytes.len() / 48 + 1);
    for (i, chunk) in bytes.chunks(3).enumerate() {
        if i > 0 && i % 16 == 0 {
            out.push('\n');
        }
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(chunk.get(1).copied().unwrap_or(0)) << 8)
            | u32::from(chunk.get(2).copied().unwrap_or(0));
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * k)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&how, body)) = data.split_first() else { return };
    let mac = Mac::parse("aa:bb:cc:00:00:01").unwrap();
    let pem = if how & 1 == 0 {
        String::from_utf8_lossy(body).into_owned()
    } else {
        format!("-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n", base64(body))
    };
    let signed = ca().sign_csr(&pem, mac, 30);
    if std::env::var_os("TDS_FUZZ_VERBOSE").is_some() {
        eprintln!("sign_csr: {:?}", signed.as_ref().map(|i| &i.key_algorithm));
    }
    match signed {
        Ok(issued) => {
            assert_eq!(issued.mac, mac);
            let info = parse_certificate(&issued.cert_pem).unwrap();
            assert_eq!(info.subject_cn.as_deref(), Some("aa:bb:cc:00:00:01"));
            assert!(!info.is_ca, "a CSR cannot make itself a CA");
            assert_eq!(info.serial_hex, issued.serial_hex);
            assert!(issued.key_pem.is_none(), "the key stays on the device");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if how & 1 == 1 {
        // The same bytes as a client certificate (the endpoint's identity) and as a stored one.
        if let Ok(id) = tds_pki::tls::device_identity(body) {
            assert_eq!(Mac::parse(&id.mac.to_string()), Ok(id.mac));
        }
        let _ = parse_certificate_der(body);
    }
});
