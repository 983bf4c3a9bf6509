use crate::support::{Scratch, ca, mac};
use chrono::{TimeDelta, Utc};
use tds_pki::{DeviceKeyKind, PkiError, RevocationReason, RevokedEntry};

#[test]
fn openssl_reads_the_crl_with_each_serial_and_reason() {
    let ca = ca();
    let a = ca.issue_device(mac("aa:bb:cc:dd:ee:01"), DeviceKeyKind::EcdsaP256, 30).unwrap();
    let b = ca.issue_device(mac("aa:bb:cc:dd:ee:02"), DeviceKeyKind::EcdsaP256, 30).unwrap();
    let now = Utc::now();
    let crl = ca
        .issue_crl(
            &[
                RevokedEntry {
                    serial_hex: a.serial_hex.clone(),
                    revoked_at: now,
                    reason: RevocationReason::KeyCompromise,
                },
                RevokedEntry {
                    // Any hex form of the serial is accepted.
                    serial_hex: b.serial_hex.to_uppercase(),
                    revoked_at: now,
                    reason: RevocationReason::parse("cessationOfOperation").unwrap(),
                },
            ],
            7,
            now,
            now + TimeDelta::days(7),
        )
        .unwrap();
    assert_eq!(crl.number, 7);
    assert!(crl.pem.starts_with("-----BEGIN X509 CRL-----"), "{}", crl.pem);

    let s = Scratch::new();
    s.write("ca.crt", ca.cert_pem());
    s.write("crl.pem", &crl.pem);
    s.write("crl.der", &crl.der);
    let text = s.openssl(&["crl", "-in", "crl.pem", "-noout", "-text"]).success();
    assert!(text.contains(&format!("Serial Number: {}", a.serial_hex.to_uppercase())), "{text}");
    assert!(text.contains(&format!("Serial Number: {}", b.serial_hex.to_uppercase())), "{text}");
    assert!(text.contains("Key Compromise"), "{text}");
    assert!(text.contains("Cessation Of Operation"), "{text}");
    let number = text.split("X509v3 CRL Number:").nth(1).and_then(|rest| rest.split_whitespace().next());
    assert_eq!(number, Some("7"), "{text}");
    assert!(text.contains("Authority Key Identifier"), "{text}");
    // Signed by the CA, and the DER is the same CRL.
    s.openssl(&["crl", "-in", "crl.pem", "-CAfile", "ca.crt", "-noout"]).success();
    let der_text = s.openssl(&["crl", "-inform", "DER", "-in", "crl.der", "-noout", "-text"]).success();
    assert_eq!(der_text, text);
}

#[test]
fn openssl_rejects_a_revoked_certificate_and_accepts_the_others() {
    let ca = ca();
    let revoked = ca.issue_device(mac("aa:bb:cc:dd:ee:01"), DeviceKeyKind::Rsa2048, 30).unwrap();
    let good = ca.issue_device(mac("aa:bb:cc:dd:ee:02"), DeviceKeyKind::EcdsaP256, 30).unwrap();
    let now = Utc::now();
    let crl = ca
        .issue_crl(
            &[RevokedEntry {
                serial_hex: revoked.serial_hex.clone(),
                revoked_at: now - TimeDelta::minutes(1),
                reason: RevocationReason::KeyCompromise,
            }],
            1,
            now - TimeDelta::minutes(1),
            now + TimeDelta::days(1),
        )
        .unwrap();
    let s = Scratch::new();
    s.write("ca.crt", ca.cert_pem());
    s.write("crl.pem", &crl.pem);
    s.write("revoked.crt", &revoked.cert_pem);
    s.write("good.crt", &good.cert_pem);
    let out = s
        .openssl(&["verify", "-crl_check", "-CRLfile", "crl.pem", "-CAfile", "ca.crt", "revoked.crt"])
        .failure();
    assert!(out.contains("certificate revoked"), "{out}");
    let out = s
        .openssl(&["verify", "-crl_check", "-CRLfile", "crl.pem", "-CAfile", "ca.crt", "good.crt"])
        .success();
    assert!(out.contains("good.crt: OK"), "{out}");
}

#[test]
fn an_empty_crl_is_valid_and_revokes_nothing() {
    let ca = ca();
    let good = ca.issue_device(mac("aa:bb:cc:dd:ee:02"), DeviceKeyKind::EcdsaP256, 30).unwrap();
    let now = Utc::now();
    let crl = ca.issue_crl(&[], 1, now - TimeDelta::minutes(1), now + TimeDelta::days(1)).unwrap();
    let s = Scratch::new();
    s.write("ca.crt", ca.cert_pem());
    s.write("crl.pem", &crl.pem);
    s.write("good.crt", &good.cert_pem);
    let text = s.openssl(&["crl", "-in", "crl.pem", "-noout", "-text"]).success();
    assert!(text.contains("No Revoked Certificates"), "{text}");
    s.openssl(&["verify", "-crl_check", "-CRLfile", "crl.pem", "-CAfile", "ca.crt", "good.crt"]).success();
}

#[test]
fn unspecified_reasons_are_omitted_and_remove_from_crl_entries_left_out() {
    let ca = ca();
    let now = Utc::now();
    let crl = ca
        .issue_crl(
            &[
                RevokedEntry {
                    serial_hex: "0a".into(),
                    revoked_at: now,
                    reason: RevocationReason::Unspecified,
                },
                RevokedEntry {
                    serial_hex: "0b".into(),
                    revoked_at: now,
                    reason: RevocationReason::RemoveFromCrl,
                },
            ],
            2,
            now,
            now + TimeDelta::hours(1),
        )
        .unwrap();
    let s = Scratch::new();
    s.write("crl.pem", &crl.pem);
    let text = s.openssl(&["crl", "-in", "crl.pem", "-noout", "-text"]).success();
    assert!(text.contains("Serial Number: 0A"), "{text}");
    assert!(!text.contains("Serial Number: 0B"), "{text}");
    assert!(!text.contains("Reason Code"), "{text}");
}

#[test]
fn a_crl_whose_next_update_is_not_after_this_update_is_refused() {
    let ca = ca();
    let now = Utc::now();
    assert!(matches!(ca.issue_crl(&[], 1, now, now), Err(PkiError::InvalidValidity(_))));
}

#[test]
fn a_malformed_serial_is_refused() {
    let ca = ca();
    let now = Utc::now();
    let entry =
        RevokedEntry { serial_hex: "not-hex".into(), revoked_at: now, reason: RevocationReason::Superseded };
    let err = ca.issue_crl(&[entry], 1, now, now + TimeDelta::hours(1)).unwrap_err();
    assert!(matches!(err, PkiError::InvalidSerial(_)), "{err:?}");
}
