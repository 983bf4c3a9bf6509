use crate::support::{Scratch, ca, mac, openssl_in, verify, x509_text};
use tds_pki::files::{CA_CERT_FILE, CA_KEY_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE};
use tds_pki::{Ca, CaAlgorithm, CaFiles, CaSubject, DeviceKeyKind, PkiError};

#[test]
fn the_default_rsa_4096_ca_signs_certificates_openssl_accepts() {
    let ca = Ca::create(&CaSubject::default(), CaAlgorithm::default(), 20).unwrap();
    assert_eq!(ca.key_algorithm(), "RSA-4096");
    let text = x509_text(ca.cert_pem());
    assert!(text.contains("Subject: CN = TDS Platform CA, O = TDS"), "{text}");
    assert!(text.contains("Public-Key: (4096 bit)"), "{text}");
    assert!(text.contains("CA:TRUE, pathlen:0"), "{text}");
    assert!(text.contains("Certificate Sign, CRL Sign"), "{text}");
    assert!(text.contains("sha256WithRSAEncryption"), "{text}");
    let device = ca.issue_device(mac("aa:bb:cc:dd:ee:ff"), DeviceKeyKind::Rsa2048, 3650).unwrap();
    verify(ca.cert_pem(), &device.cert_pem, &["-purpose", "sslclient"]).success();
    // The key survives a trip through PEM.
    let again = Ca::load(ca.cert_pem(), &ca.key_pem(None).unwrap(), None).unwrap();
    let ecdsa = again.issue_device(mac("aa:bb:cc:dd:ee:01"), DeviceKeyKind::EcdsaP256, 30).unwrap();
    verify(ca.cert_pem(), &ecdsa.cert_pem, &[]).success();
}

#[test]
fn an_ecdsa_ca_is_p384_and_self_signed() {
    let ca = Ca::create(
        &CaSubject { common_name: "Acme CA".into(), organization: "Acme Ltda".into() },
        CaAlgorithm::EcdsaP384,
        20,
    )
    .unwrap();
    let text = x509_text(ca.cert_pem());
    assert!(text.contains("Subject: CN = Acme CA, O = Acme Ltda"), "{text}");
    assert!(text.contains("NIST CURVE: P-384"), "{text}");
    assert!(text.contains("ecdsa-with-SHA384"), "{text}");
    let s = Scratch::new();
    s.write("ca.crt", ca.cert_pem());
    s.openssl(&["verify", "-CAfile", "ca.crt", "ca.crt"]).success();
}

#[test]
fn a_passphrase_encrypted_ca_key_round_trips() {
    let ca = ca();
    let key_pem = ca.key_pem(Some("s3nha forte")).unwrap();
    assert!(key_pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"), "{key_pem}");
    assert!(!key_pem.contains("-----BEGIN PRIVATE KEY-----"));
    let loaded = Ca::load(ca.cert_pem(), &key_pem, Some("s3nha forte")).unwrap();
    assert_eq!(loaded.fingerprint_sha256(), ca.fingerprint_sha256());
    let issued = loaded.issue_device(mac("aa:bb:cc:dd:ee:ff"), DeviceKeyKind::EcdsaP256, 30).unwrap();
    verify(ca.cert_pem(), &issued.cert_pem, &[]).success();

    // OpenSSL (and so Mosquitto) reads the encrypted key with the same passphrase.
    let s = Scratch::new();
    s.write("ca.key", &key_pem);
    s.openssl(&["pkey", "-in", "ca.key", "-passin", "pass:s3nha forte", "-noout"]).success();
    s.openssl(&["pkey", "-in", "ca.key", "-passin", "pass:wrong", "-noout"]).failure();
}

#[test]
fn a_wrong_or_missing_passphrase_gives_a_clear_error() {
    let ca = ca();
    let key_pem = ca.key_pem(Some("right")).unwrap();
    let wrong = Ca::load(ca.cert_pem(), &key_pem, Some("wrong")).unwrap_err();
    assert!(matches!(wrong, PkiError::WrongPassphrase), "{wrong:?}");
    assert!(wrong.to_string().contains("wrong passphrase"), "{wrong}");
    let missing = Ca::load(ca.cert_pem(), &key_pem, None).unwrap_err();
    assert!(matches!(missing, PkiError::PassphraseRequired), "{missing:?}");
    assert!(missing.to_string().contains("passphrase is required"), "{missing}");
    assert!(matches!(ca.key_pem(Some("")), Err(PkiError::EmptyPassphrase)));
}

#[test]
fn a_key_written_by_openssl_loads() {
    // An operator may bring a CA made with openssl (SEC1 EC key, SHA-1 key identifiers).
    let s = Scratch::new();
    s.openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-384",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "30",
        "-subj",
        "/CN=Imported CA",
    ])
    .success();
    let ca = Ca::load(
        &std::fs::read_to_string(s.path("ca.crt")).unwrap(),
        &std::fs::read_to_string(s.path("ca.key")).unwrap(),
        None,
    )
    .unwrap();
    assert_eq!(ca.common_name(), "Imported CA");
    let issued = ca.issue_device(mac("aa:bb:cc:dd:ee:ff"), DeviceKeyKind::Rsa2048, 30).unwrap();
    s.write("client.crt", &issued.cert_pem);
    s.openssl(&["verify", "-CAfile", "ca.crt", "client.crt"]).success();
}

#[test]
fn a_leaf_certificate_cannot_be_loaded_as_the_ca() {
    let ca = ca();
    let leaf = ca.issue_device(mac("aa:bb:cc:dd:ee:ff"), DeviceKeyKind::EcdsaP256, 30).unwrap();
    let err = Ca::load(&leaf.cert_pem, leaf.key_pem.as_deref().unwrap(), None).unwrap_err();
    assert!(matches!(err, PkiError::NotACa), "{err:?}");
    let err = Ca::load("garbage", &ca.key_pem(None).unwrap(), None).unwrap_err();
    assert!(matches!(err, PkiError::BadPem { .. }), "{err:?}");
}

#[test]
fn init_writes_the_four_files_with_keys_readable_by_their_owner_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let sans = vec!["mqtt.example.com".to_owned(), "10.1.2.3".to_owned()];
    let files = CaFiles::init(&dir, &CaSubject::default(), CaAlgorithm::EcdsaP384, None, &sans).unwrap();
    for name in [CA_CERT_FILE, CA_KEY_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE] {
        assert!(dir.join(name).is_file(), "{name}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for name in [CA_KEY_FILE, SERVER_KEY_FILE] {
            let mode = std::fs::metadata(dir.join(name)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name}");
        }
    }
    assert!(!format!("{files:?}").contains("PRIVATE KEY"));

    // The server certificate is what an MQTT client expects from mqtt.example.com.
    let out =
        openssl_in(&dir, &["verify", "-CAfile", "ca.crt", "-purpose", "sslserver", "server.crt"]).success();
    assert!(out.contains("server.crt: OK"), "{out}");
    let text = openssl_in(&dir, &["x509", "-in", "server.crt", "-noout", "-text"]).success();
    assert!(text.contains("DNS:mqtt.example.com, IP Address:10.1.2.3"), "{text}");
    assert!(text.contains("TLS Web Server Authentication"), "{text}");
    assert!(!text.contains("TLS Web Client Authentication"), "{text}");
    assert!(text.contains("CA:FALSE"), "{text}");
    assert!(text.contains("NIST CURVE: P-256"), "{text}");
    let server = tds_pki::parse_certificate(&files.server_cert_pem).unwrap();
    assert_eq!((server.not_after - server.not_before).num_days(), 730);
    openssl_in(&dir, &["pkey", "-in", "server.key", "-noout"]).success();

    let loaded = CaFiles::load(&dir, None).unwrap();
    assert_eq!(loaded.ca.fingerprint_sha256(), files.ca.fingerprint_sha256());
    assert_eq!(loaded.server_cert_pem, files.server_cert_pem);
}

#[test]
fn init_uses_localhost_and_loopback_when_no_server_names_are_given() {
    let tmp = tempfile::tempdir().unwrap();
    CaFiles::init(tmp.path(), &CaSubject::default(), CaAlgorithm::EcdsaP384, None, &[]).unwrap();
    let text = openssl_in(tmp.path(), &["x509", "-in", "server.crt", "-noout", "-text"]).success();
    assert!(text.contains("DNS:localhost, IP Address:127.0.0.1"), "{text}");
    assert!(text.contains("Subject: CN = localhost"), "{text}");
}

#[test]
fn init_with_a_passphrase_encrypts_the_ca_key_only() {
    let tmp = tempfile::tempdir().unwrap();
    CaFiles::init(tmp.path(), &CaSubject::default(), CaAlgorithm::EcdsaP384, Some("pw"), &[]).unwrap();
    let ca_key = std::fs::read_to_string(tmp.path().join(CA_KEY_FILE)).unwrap();
    let server_key = std::fs::read_to_string(tmp.path().join(SERVER_KEY_FILE)).unwrap();
    assert!(ca_key.contains("ENCRYPTED PRIVATE KEY"));
    assert!(server_key.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(matches!(CaFiles::load(tmp.path(), None), Err(PkiError::PassphraseRequired)));
    assert!(matches!(CaFiles::load(tmp.path(), Some("nope")), Err(PkiError::WrongPassphrase)));
    CaFiles::load(tmp.path(), Some("pw")).unwrap();
}

#[test]
fn init_refuses_to_overwrite_an_existing_ca_key() {
    let tmp = tempfile::tempdir().unwrap();
    CaFiles::init(tmp.path(), &CaSubject::default(), CaAlgorithm::EcdsaP384, None, &[]).unwrap();
    let key_before = std::fs::read(tmp.path().join(CA_KEY_FILE)).unwrap();
    let cert_before = std::fs::read(tmp.path().join(CA_CERT_FILE)).unwrap();
    let err =
        CaFiles::init(tmp.path(), &CaSubject::default(), CaAlgorithm::EcdsaP384, None, &[]).unwrap_err();
    assert!(matches!(err, PkiError::CaKeyExists { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("refusing to overwrite") && msg.contains("ca.key"), "{msg}");
    assert_eq!(std::fs::read(tmp.path().join(CA_KEY_FILE)).unwrap(), key_before);
    assert_eq!(std::fs::read(tmp.path().join(CA_CERT_FILE)).unwrap(), cert_before);

    // A lone ca.crt (key kept elsewhere) is protected too.
    std::fs::remove_file(tmp.path().join(CA_KEY_FILE)).unwrap();
    let err =
        CaFiles::init(tmp.path(), &CaSubject::default(), CaAlgorithm::EcdsaP384, None, &[]).unwrap_err();
    assert!(matches!(err, PkiError::CaCertExists { .. }), "{err:?}");
}

#[test]
fn a_missing_ca_directory_is_reported_with_its_path() {
    let tmp = tempfile::tempdir().unwrap();
    let err = CaFiles::load(&tmp.path().join("nowhere"), None).unwrap_err();
    assert!(err.to_string().contains("nowhere"), "{err}");
}

#[test]
fn the_consumer_certificate_is_issued_once_then_reused_and_openssl_accepts_it_for_clients() {
    let tmp = tempfile::tempdir().unwrap();
    let files = CaFiles::init(tmp.path(), &CaSubject::default(), CaAlgorithm::EcdsaP384, None, &[]).unwrap();
    let (cert, key) = files.consumer_certificate("tds-ingest").unwrap();
    assert!(key.contains("PRIVATE KEY"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tmp.path().join("consumer.key")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let out =
        openssl_in(tmp.path(), &["verify", "-CAfile", "ca.crt", "-purpose", "sslclient", "consumer.crt"])
            .success();
    assert!(out.contains("consumer.crt: OK"), "{out}");
    let text = openssl_in(tmp.path(), &["x509", "-in", "consumer.crt", "-noout", "-text"]).success();
    assert!(text.contains("Subject: CN = tds-ingest"), "{text}");
    assert!(text.contains("TLS Web Client Authentication") && text.contains("CA:FALSE"), "{text}");
    // Asked again: the same files. For another service, or from another CA: a new one.
    assert_eq!(files.consumer_certificate("tds-ingest").unwrap(), (cert.clone(), key));
    let other = files.consumer_certificate("tds-other").unwrap();
    assert_ne!(other.0, cert);
    let tmp2 = tempfile::tempdir().unwrap();
    let second =
        CaFiles::init(tmp2.path(), &CaSubject::default(), CaAlgorithm::EcdsaP384, None, &[]).unwrap();
    std::fs::copy(tmp.path().join("consumer.crt"), tmp2.path().join("consumer.crt")).unwrap();
    std::fs::copy(tmp.path().join("consumer.key"), tmp2.path().join("consumer.key")).unwrap();
    let reissued = second.consumer_certificate("tds-other").unwrap();
    assert_ne!(reissued.0, other.0, "a certificate of another CA is replaced");
    assert!(!tmp.path().join("consumer.key.lock").exists());
}
