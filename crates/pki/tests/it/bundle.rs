use crate::support::{ca, mac, verify};
use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use tds_pki::{BrokerInfo, DeviceKeyKind, PkiError, bundle_zip};
use zip::ZipArchive;

fn unzip(bytes: &[u8]) -> BTreeMap<String, (String, Option<u32>)> {
    let mut archive = ZipArchive::new(Cursor::new(bytes)).unwrap();
    let mut files = BTreeMap::new();
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).unwrap();
        let name = file.name().unwrap().into_owned();
        assert_eq!(file.compression(), zip::CompressionMethod::Deflated, "{name}");
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        files.insert(name, (text, file.unix_mode()));
    }
    files
}

#[test]
fn the_bundle_holds_the_certificates_the_key_the_nvs_table_and_a_bilingual_readme() {
    let ca = ca();
    let issued = ca.issue_device(mac("AA:BB:CC:DD:EE:FF"), DeviceKeyKind::Rsa2048, 3650).unwrap();
    let zip = bundle_zip(&issued, ca.cert_pem(), &BrokerInfo::new("mqtt.tds.example.com")).unwrap();
    let files = unzip(&zip);
    assert_eq!(
        files.keys().map(String::as_str).collect::<Vec<_>>(),
        ["README.txt", "ca.crt", "client.crt", "client.key", "nvs.csv"]
    );
    assert_eq!(files["ca.crt"].0, ca.cert_pem());
    assert_eq!(files["client.crt"].0, issued.cert_pem);
    assert_eq!(Some(files["client.key"].0.as_str()), issued.key_pem.as_deref());
    assert_eq!(files["client.key"].1.map(|m| m & 0o777), Some(0o600));
    // What was unpacked still verifies.
    verify(&files["ca.crt"].0, &files["client.crt"].0, &["-purpose", "sslclient"]).success();

    let csv = &files["nvs.csv"].0;
    assert_eq!(
        csv,
        "key,type,encoding,value\nns_certs,namespace,,\nca_crt,file,string,ca.crt\n\
         client_crt,file,string,client.crt\nclient_key,file,string,client.key\n"
    );

    let readme = &files["README.txt"].0;
    for needle in [
        "mqtt.tds.example.com",
        "8883",
        "Client ID:  aa:bb:cc:dd:ee:ff",
        "tds_new/gateway/aa:bb:cc:dd:ee:ff/telemetria",
        "tds_new/gateway/aa:bb:cc:dd:ee:ff/status",
        "tds_new/gateway/aa:bb:cc:dd:ee:ff/cert_update",
        "tds_new/gateway/aa:bb:cc:dd:ee:ff/cert_csr",
        "\"certs\"",
        "\"ns_certs\"",
        "ca_crt      <- ca.crt",
        "client_crt  <- client.crt",
        "client_key  <- client.key",
        "nvs_partition_gen.py generate nvs.csv certs.bin",
        "write_partition --partition-name=certs",
        "=== Português (Brasil) ===",
        "Gravação no ESP32 (NVS)",
        "=== English ===",
        "Flashing the ESP32 (NVS)",
        &issued.serial_hex,
        &issued.fingerprint_sha256,
    ] {
        assert!(readme.contains(needle), "README lacks {needle:?}:\n{readme}");
    }
    assert!(!readme.contains("PRIVATE KEY"));
}

#[test]
fn the_broker_port_can_be_changed() {
    let ca = ca();
    let issued = ca.issue_device(mac("aa:bb:cc:dd:ee:ff"), DeviceKeyKind::EcdsaP256, 30).unwrap();
    let broker = BrokerInfo { host: "10.0.0.5".into(), port: 18883 };
    let files = unzip(&bundle_zip(&issued, ca.cert_pem(), &broker).unwrap());
    assert!(files["README.txt"].0.contains("10.0.0.5, porta 18883"));
    assert!(files["README.txt"].0.contains("10.0.0.5, port 18883"));
}

#[test]
fn a_certificate_signed_from_a_csr_cannot_be_bundled() {
    let ca = ca();
    let mut issued = ca.issue_device(mac("aa:bb:cc:dd:ee:ff"), DeviceKeyKind::EcdsaP256, 30).unwrap();
    issued.key_pem = None;
    let err = bundle_zip(&issued, ca.cert_pem(), &BrokerInfo::new("localhost")).unwrap_err();
    assert!(matches!(err, PkiError::MissingPrivateKey(_)), "{err:?}");
    assert!(err.to_string().contains("aa:bb:cc:dd:ee:ff"), "{err}");
}
