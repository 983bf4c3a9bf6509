use crate::support::{Scratch, ca, mac};
use std::collections::HashSet;
use tds_domain::Mac;
use tds_pki::{DeviceKeyKind, PkiError, issue_batch};

#[test]
fn a_batch_keeps_the_order_of_its_macs_and_every_certificate_verifies() {
    let ca = ca();
    let macs: Vec<Mac> = (0..6u8).map(|i| Mac::from_bytes([0x24, 0x0a, 0xc4, 0, 0, i])).collect();
    let issued = issue_batch(&ca, &macs, DeviceKeyKind::Rsa2048, 3650).unwrap();
    assert_eq!(issued.iter().map(|c| c.mac).collect::<Vec<_>>(), macs);
    assert_eq!(issued.iter().map(|c| &c.serial_hex).collect::<HashSet<_>>().len(), macs.len());

    let s = Scratch::new();
    s.write("ca.crt", ca.cert_pem());
    let mut args = vec!["verify".to_owned(), "-CAfile".into(), "ca.crt".into()];
    for (i, cert) in issued.iter().enumerate() {
        assert!(cert.key_pem.is_some());
        assert_eq!(
            tds_pki::parse_certificate(&cert.cert_pem).unwrap().subject_cn,
            Some(cert.mac.to_string())
        );
        let name = format!("c{i}.crt");
        s.write(&name, &cert.cert_pem);
        args.push(name);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = s.openssl(&args).success();
    assert_eq!(out.matches(": OK").count(), macs.len(), "{out}");
}

#[test]
fn a_batch_naming_a_mac_twice_is_refused() {
    let ca = ca();
    let macs = [mac("aa:bb:cc:dd:ee:01"), mac("aa:bb:cc:dd:ee:02"), mac("AA-BB-CC-DD-EE-01")];
    let err = issue_batch(&ca, &macs, DeviceKeyKind::EcdsaP256, 30).unwrap_err();
    assert!(matches!(err, PkiError::DuplicateMac(m) if m == macs[0]), "{err:?}");
}

#[test]
fn an_empty_batch_issues_nothing() {
    assert!(issue_batch(&ca(), &[], DeviceKeyKind::Rsa2048, 30).unwrap().is_empty());
}

#[test]
fn a_batch_with_a_bad_validity_fails_as_a_whole() {
    let macs = [mac("aa:bb:cc:dd:ee:01"), mac("aa:bb:cc:dd:ee:02")];
    assert!(matches!(
        issue_batch(&ca(), &macs, DeviceKeyKind::EcdsaP256, 0),
        Err(PkiError::InvalidValidity(_))
    ));
}
