use crate::support::{Scratch, ca, mac, verify, x509_text};
use chrono::Utc;
use tds_pki::{DEFAULT_DEVICE_VALIDITY_DAYS, DeviceKeyKind, parse_certificate};
use x509_parser::extensions::ParsedExtension;

/// The checks every device certificate must pass, whatever its key.
fn assert_client_only_leaf(text: &str, mac: &str) {
    assert!(text.contains(&format!("Subject: CN = {mac}\n")), "{text}");
    assert!(text.contains("TLS Web Client Authentication"), "{text}");
    assert!(!text.contains("TLS Web Server Authentication"), "{text}");
    assert!(!text.contains("Code Signing"), "{text}");
    assert!(text.contains("CA:FALSE"), "{text}");
    assert!(!text.contains("CA:TRUE"), "{text}");
    assert!(!text.contains("Certificate Sign"), "{text}");
    assert!(!text.contains("Subject Alternative Name"), "{text}");
    assert!(text.contains("X509v3 Subject Key Identifier"), "{text}");
    assert!(text.contains("X509v3 Authority Key Identifier"), "{text}");
}

#[test]
fn an_rsa_device_certificate_verifies_and_is_a_client_only_leaf() {
    let ca = ca();
    let issued = ca
        .issue_device(mac("AA-BB-CC-DD-EE-FF"), DeviceKeyKind::Rsa2048, DEFAULT_DEVICE_VALIDITY_DAYS)
        .unwrap();
    assert_eq!(issued.key_algorithm, "RSA-2048");
    assert!(verify(ca.cert_pem(), &issued.cert_pem, &["-purpose", "sslclient"]).success().contains("OK"));
    // A client certificate must not pass as a server certificate.
    verify(ca.cert_pem(), &issued.cert_pem, &["-purpose", "sslserver"]).failure();
    let text = x509_text(&issued.cert_pem);
    assert_client_only_leaf(&text, "aa:bb:cc:dd:ee:ff");
    assert!(text.contains("Digital Signature, Key Encipherment"), "{text}");
    assert!(text.contains("Public-Key: (2048 bit)"), "{text}");
}

#[test]
fn an_ecdsa_device_certificate_verifies_and_has_digital_signature_only() {
    let ca = ca();
    let issued = ca.issue_device(mac("aa:bb:cc:dd:ee:01"), DeviceKeyKind::EcdsaP256, 365).unwrap();
    assert_eq!(issued.key_algorithm, "ECDSA-P256");
    verify(ca.cert_pem(), &issued.cert_pem, &["-purpose", "sslclient"]).success();
    let text = x509_text(&issued.cert_pem);
    assert_client_only_leaf(&text, "aa:bb:cc:dd:ee:01");
    assert!(text.contains("Digital Signature"), "{text}");
    assert!(!text.contains("Key Encipherment"), "{text}");
    assert!(text.contains("NIST CURVE: P-256"), "{text}");
}

#[test]
fn the_private_key_belongs_to_the_certificate() {
    let ca = ca();
    for kind in [DeviceKeyKind::Rsa2048, DeviceKeyKind::EcdsaP256] {
        let issued = ca.issue_device(mac("aa:bb:cc:dd:ee:ff"), kind, 30).unwrap();
        let s = Scratch::new();
        s.write("client.crt", &issued.cert_pem);
        let key = issued.key_pem.as_deref().unwrap();
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
        s.write("client.key", key);
        let from_cert = s.openssl(&["x509", "-in", "client.crt", "-noout", "-pubkey"]).success();
        let from_key = s.openssl(&["pkey", "-in", "client.key", "-pubout"]).success();
        assert_eq!(from_cert, from_key, "{kind}");
    }
}

#[test]
fn serial_and_fingerprint_match_what_openssl_reports() {
    let ca = ca();
    let issued = ca.issue_device(mac("aa:bb:cc:dd:ee:ff"), DeviceKeyKind::EcdsaP256, 30).unwrap();
    assert_eq!(issued.serial_hex.len(), 32);
    assert!(issued.serial_hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    let s = Scratch::new();
    s.write("client.crt", &issued.cert_pem);
    let serial = s.openssl(&["x509", "-in", "client.crt", "-noout", "-serial"]).success();
    assert_eq!(serial.trim(), format!("serial={}", issued.serial_hex.to_uppercase()));
    let fp = s.openssl(&["x509", "-in", "client.crt", "-noout", "-fingerprint", "-sha256"]).success();
    let fp = fp.trim().split('=').nth(1).unwrap().replace(':', "").to_lowercase();
    assert_eq!(fp, issued.fingerprint_sha256);
}

#[test]
fn every_certificate_gets_its_own_random_serial() {
    let ca = ca();
    let serials: std::collections::HashSet<String> = (0..20)
        .map(|_| ca.issue_device(mac("aa:bb:cc:dd:ee:ff"), DeviceKeyKind::EcdsaP256, 30).unwrap().serial_hex)
        .collect();
    assert_eq!(serials.len(), 20);
}

#[test]
fn parse_certificate_reads_back_what_was_issued() {
    let ca = ca();
    let before = Utc::now();
    let issued = ca.issue_device(mac("aa:bb:cc:dd:ee:ff"), DeviceKeyKind::EcdsaP256, 3650).unwrap();
    let info = parse_certificate(&issued.cert_pem).unwrap();
    assert_eq!(info.subject_cn.as_deref(), Some("aa:bb:cc:dd:ee:ff"));
    assert_eq!(info.serial_hex, issued.serial_hex);
    assert_eq!(info.fingerprint_sha256, issued.fingerprint_sha256);
    assert_eq!(info.not_before, issued.not_before);
    assert_eq!(info.not_after, issued.not_after);
    assert!(!info.is_ca);
    assert!(info.not_before < before, "backdated so a lagging device clock accepts it");
    assert_eq!((info.not_after - before).num_days(), 3649, "ten years, to the second");

    let ca_info = parse_certificate(ca.cert_pem()).unwrap();
    assert!(ca_info.is_ca);
    assert_eq!(ca_info.subject_cn.as_deref(), Some("TDS Platform CA"));
    assert!(parse_certificate("not a certificate").is_err());
}

#[test]
fn x509_parser_sees_the_device_profile() {
    let ca = ca();
    let issued = ca.issue_device(mac("aa:bb:cc:dd:ee:ff"), DeviceKeyKind::Rsa2048, 30).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(issued.cert_pem.as_bytes()).unwrap();
    let cert = pem.parse_x509().unwrap();
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth && !eku.any && eku.other.is_empty());
    let bc = cert.basic_constraints().unwrap().unwrap();
    assert!(bc.critical && !bc.value.ca);
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && ku.key_encipherment() && !ku.key_cert_sign() && !ku.crl_sign());
    let ids = cert
        .iter_extensions()
        .filter(|e| {
            matches!(
                e.parsed_extension(),
                ParsedExtension::SubjectKeyIdentifier(_) | ParsedExtension::AuthorityKeyIdentifier(_)
            )
        })
        .count();
    assert_eq!(ids, 2);
    assert_eq!(cert.subject().iter().count(), 1, "the subject is the CN alone");
}
