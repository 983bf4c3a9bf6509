use crate::support::{Scratch, ca, mac, verify, x509_text};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use tds_pki::PkiError;

/// A CSR made by `openssl req` with a fresh key (`newkey` such as `rsa:2048`) and `subj`, plus
/// `-addext` extensions. Returns the CSR PEM and the scratch dir (holding `csr.pem`, `key.pem`).
fn openssl_csr(newkey: &str, subj: &str, addext: &[&str]) -> (String, Scratch) {
    let s = Scratch::new();
    let mut args = vec![
        "req", "-new", "-newkey", newkey, "-nodes", "-keyout", "key.pem", "-out", "csr.pem", "-subj", subj,
    ];
    for ext in addext {
        args.push("-addext");
        args.push(ext);
    }
    s.openssl(&args).success();
    (std::fs::read_to_string(s.path("csr.pem")).unwrap(), s)
}

#[test]
fn a_csr_from_openssl_is_signed_over_its_own_key() {
    let ca = ca();
    let (csr, s) = openssl_csr("rsa:2048", "/CN=AA-BB-CC-DD-EE-FF", &[]);
    let issued = ca.sign_csr(&csr, mac("aa:bb:cc:dd:ee:ff"), 3650).unwrap();
    assert!(issued.key_pem.is_none(), "the key stays on the device");
    assert_eq!(issued.key_algorithm, "RSA-2048");
    verify(ca.cert_pem(), &issued.cert_pem, &["-purpose", "sslclient"]).success();
    let text = x509_text(&issued.cert_pem);
    assert!(text.contains("Subject: CN = aa:bb:cc:dd:ee:ff\n"), "{text}");
    assert!(text.contains("Digital Signature, Key Encipherment"), "{text}");
    s.write("client.crt", &issued.cert_pem);
    let from_cert = s.openssl(&["x509", "-in", "client.crt", "-noout", "-pubkey"]).success();
    let from_csr = s.openssl(&["req", "-in", "csr.pem", "-noout", "-pubkey"]).success();
    assert_eq!(from_cert, from_csr);
}

#[test]
fn an_ecdsa_csr_gets_an_ecdsa_certificate() {
    let ca = ca();
    let s = Scratch::new();
    s.openssl(&["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "key.pem"]).success();
    s.openssl(&["req", "-new", "-key", "key.pem", "-out", "csr.pem", "-subj", "/CN=aabbccddeeff"]).success();
    let csr = std::fs::read_to_string(s.path("csr.pem")).unwrap();
    let issued = ca.sign_csr(&csr, mac("aa:bb:cc:dd:ee:ff"), 30).unwrap();
    assert_eq!(issued.key_algorithm, "ECDSA-P256");
    verify(ca.cert_pem(), &issued.cert_pem, &[]).success();
    let text = x509_text(&issued.cert_pem);
    assert!(!text.contains("Key Encipherment"), "{text}");
}

#[test]
fn a_csr_asking_for_a_ca_and_extra_usages_gets_a_plain_client_certificate() {
    let ca = ca();
    let (csr, _s) = openssl_csr(
        "rsa:2048",
        "/CN=aa:bb:cc:dd:ee:ff/O=Evil Corp/OU=Admins",
        &[
            "basicConstraints=critical,CA:TRUE",
            "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
            "extendedKeyUsage=serverAuth,clientAuth,codeSigning,1.3.6.1.4.1.99999.1",
            "subjectAltName=DNS:evil.example.com,IP:10.0.0.1",
            "nsComment=please",
        ],
    );
    let issued = ca.sign_csr(&csr, mac("aa:bb:cc:dd:ee:ff"), 30).unwrap();
    let text = x509_text(&issued.cert_pem);
    assert!(text.contains("CA:FALSE") && !text.contains("CA:TRUE"), "{text}");
    assert!(!text.contains("Certificate Sign") && !text.contains("CRL Sign"), "{text}");
    assert!(!text.contains("Server Authentication") && !text.contains("Code Signing"), "{text}");
    assert!(!text.contains("1.3.6.1.4.1.99999.1"), "{text}");
    assert!(!text.contains("evil.example.com") && !text.contains("Alternative Name"), "{text}");
    assert!(!text.contains("Evil Corp") && !text.contains("please"), "{text}");
    assert!(text.contains("Subject: CN = aa:bb:cc:dd:ee:ff\n"), "{text}");

    // The same seen through x509-parser.
    let (_, pem) = x509_parser::pem::parse_x509_pem(issued.cert_pem.as_bytes()).unwrap();
    let cert = pem.parse_x509().unwrap();
    assert!(!cert.is_ca());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth && !eku.code_signing && eku.other.is_empty());
    assert!(cert.subject_alternative_name().unwrap().is_none());
    assert!(!cert.key_usage().unwrap().unwrap().value.key_cert_sign());

    // And a CA certificate it is not: it cannot sign another certificate that openssl accepts.
    verify(ca.cert_pem(), &issued.cert_pem, &["-purpose", "sslserver"]).failure();
}

#[test]
fn an_rcgen_csr_asking_for_a_ca_is_issued_a_leaf() {
    let ca = ca();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name.remove(DnType::CommonName);
    params.distinguished_name.push(DnType::CommonName, "AA:BB:CC:DD:EE:FF");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::Any];
    params.subject_alt_names = vec![SanType::DnsName("evil.example.com".try_into().unwrap())];
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    let issued = ca.sign_csr(&csr, mac("aa:bb:cc:dd:ee:ff"), 30).unwrap();
    let info = tds_pki::parse_certificate(&issued.cert_pem).unwrap();
    assert!(!info.is_ca);
    let text = x509_text(&issued.cert_pem);
    assert!(text.contains("TLS Web Client Authentication") && !text.contains("Server"), "{text}");
    assert!(!text.contains("Any Extended Key Usage"), "{text}");
}

#[test]
fn a_csr_for_another_gateway_is_refused_naming_both_macs() {
    let ca = ca();
    let (csr, _s) = openssl_csr("rsa:2048", "/CN=11:22:33:44:55:66", &[]);
    let err = ca.sign_csr(&csr, mac("aa:bb:cc:dd:ee:ff"), 30).unwrap_err();
    assert!(matches!(err, PkiError::CsrWrongCommonName { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("11:22:33:44:55:66") && msg.contains("aa:bb:cc:dd:ee:ff"), "{msg}");

    let (csr, _s) = openssl_csr("rsa:2048", "/CN=gateway-01", &[]);
    let err = ca.sign_csr(&csr, mac("aa:bb:cc:dd:ee:ff"), 30).unwrap_err();
    assert!(err.to_string().contains("gateway-01"), "{err}");

    let (csr, _s) = openssl_csr("rsa:2048", "/O=No Name", &[]);
    let err = ca.sign_csr(&csr, mac("aa:bb:cc:dd:ee:ff"), 30).unwrap_err();
    assert!(matches!(err, PkiError::CsrMissingCommonName { .. }), "{err:?}");
}

#[test]
fn a_tampered_csr_is_refused() {
    let ca = ca();
    let (csr, s) = openssl_csr("rsa:2048", "/CN=aa:bb:cc:dd:ee:fe", &[]);
    s.openssl(&["req", "-in", "csr.pem", "-outform", "DER", "-out", "csr.der"]).success();
    let der = std::fs::read(s.path("csr.der")).unwrap();

    // Someone rewrites the CN to another gateway's MAC, keeping the signature.
    let at = der.windows(17).position(|w| w == b"aa:bb:cc:dd:ee:fe").unwrap();
    let mut renamed = der.clone();
    renamed[at + 16] = b'f';
    let err = ca.sign_csr(&to_pem(&s, &renamed), mac("aa:bb:cc:dd:ee:ff"), 30).unwrap_err();
    assert!(matches!(err, PkiError::CsrSignature), "{err:?}");

    // Or flips a bit of the signature itself.
    let mut flipped = der.clone();
    *flipped.last_mut().unwrap() ^= 0x01;
    let err = ca.sign_csr(&to_pem(&s, &flipped), mac("aa:bb:cc:dd:ee:fe"), 30).unwrap_err();
    assert!(matches!(err, PkiError::CsrSignature), "{err:?}");
    assert!(err.to_string().contains("signature"), "{err}");

    // The untouched one is fine.
    ca.sign_csr(&csr, mac("aa:bb:cc:dd:ee:fe"), 30).unwrap();
}

fn to_pem(s: &Scratch, der: &[u8]) -> String {
    s.write("tampered.der", der);
    s.openssl(&["base64", "-in", "tampered.der", "-out", "tampered.b64"]).success();
    let b64 = std::fs::read_to_string(s.path("tampered.b64")).unwrap();
    format!("-----BEGIN CERTIFICATE REQUEST-----\n{b64}-----END CERTIFICATE REQUEST-----\n")
}

#[test]
fn weak_or_unusual_keys_are_refused() {
    let ca = ca();
    let (csr, _s) = openssl_csr("rsa:1024", "/CN=aa:bb:cc:dd:ee:ff", &[]);
    let err = ca.sign_csr(&csr, mac("aa:bb:cc:dd:ee:ff"), 30).unwrap_err();
    assert!(matches!(err, PkiError::UnsupportedKey(_)), "{err:?}");
    assert!(err.to_string().contains("1024"), "{err}");

    let (csr, _s) = openssl_csr("ed25519", "/CN=aa:bb:cc:dd:ee:ff", &[]);
    let err = ca.sign_csr(&csr, mac("aa:bb:cc:dd:ee:ff"), 30).unwrap_err();
    assert!(matches!(err, PkiError::UnsupportedKey(_)), "{err:?}");
}

#[test]
fn text_that_is_not_a_csr_is_refused_as_bad_pem() {
    let ca = ca();
    for input in
        ["", "hello", "-----BEGIN CERTIFICATE REQUEST-----\n!!!\n-----END CERTIFICATE REQUEST-----\n"]
    {
        let err = ca.sign_csr(input, mac("aa:bb:cc:dd:ee:ff"), 30).unwrap_err();
        assert!(matches!(err, PkiError::BadPem { .. } | PkiError::BadDer { .. }), "{input:?}: {err:?}");
    }
    // A certificate is not a CSR.
    let err = ca.sign_csr(ca.cert_pem(), mac("aa:bb:cc:dd:ee:ff"), 30).unwrap_err();
    assert!(matches!(err, PkiError::BadPem { .. }), "{err:?}");
    assert!(err.to_string().contains("CERTIFICATE REQUEST"), "{err}");
}
