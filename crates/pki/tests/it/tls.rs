//! The device endpoint's TLS: real handshakes over loopback with tokio-rustls. A device with a
//! certificate of the platform CA gets in; no certificate, a foreign CA's certificate or a revoked
//! one (revoked while the server runs) does not.

use crate::support::mac;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::sync::Arc;
use tds_pki::{
    Ca, CaAlgorithm, CaFiles, CaSubject, DeviceKeyKind, IssuedCertificate, RevocationSet, device_identity,
    device_server_config,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn files(dir: &std::path::Path) -> CaFiles {
    CaFiles::init(dir, &CaSubject::default(), CaAlgorithm::EcdsaP384, None, &[]).unwrap()
}

fn client_config(ca_pem: &str, device: Option<&IssuedCertificate>) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match device {
        Some(d) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(d.cert_pem.as_bytes()).map(Result::unwrap).collect(),
                PrivateKeyDer::from_pem_slice(d.key_pem.as_ref().unwrap().as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    })
}

/// One connection: the server's verdict (the peer's identity, or the handshake error) and
/// whether the client could exchange a byte.
async fn connect(
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
) -> (Result<tds_pki::DeviceIdentity, String>, bool) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let server_side = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        match acceptor.accept(tcp).await {
            Ok(mut tls) => {
                let der = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
                let mut byte = [0u8; 1];
                tls.read_exact(&mut byte).await.ok();
                tls.write_all(&byte).await.ok();
                tls.flush().await.ok();
                device_identity(der.as_ref()).map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        }
    });
    let connector = tokio_rustls::TlsConnector::from(client);
    let tcp = TcpStream::connect(addr).await.unwrap();
    let exchanged = match connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await {
        Ok(mut tls) => {
            let mut byte = [0u8; 1];
            tls.write_all(b"x").await.is_ok()
                && tls.flush().await.is_ok()
                && tls.read_exact(&mut byte).await.is_ok()
        }
        Err(_) => false,
    };
    (server_side.await.unwrap(), exchanged)
}

#[tokio::test]
async fn a_device_with_a_platform_certificate_is_identified_by_its_mac() {
    let dir = tempfile::tempdir().unwrap();
    let files = files(dir.path());
    let device = files.ca.issue_device(mac("AA:BB:CC:00:00:01"), DeviceKeyKind::EcdsaP256, 30).unwrap();
    let server = device_server_config(&files, RevocationSet::default()).unwrap();
    let (identity, exchanged) = connect(server, client_config(files.ca.cert_pem(), Some(&device))).await;
    let identity = identity.unwrap();
    assert_eq!(identity.mac, mac("aa:bb:cc:00:00:01"));
    assert_eq!(identity.serial_hex, device.serial_hex);
    assert!(exchanged);
}

#[tokio::test]
async fn an_rsa_device_certificate_works_over_tls_1_2_too() {
    let dir = tempfile::tempdir().unwrap();
    let files = files(dir.path());
    let device = files.ca.issue_device(mac("aa:bb:cc:00:00:02"), DeviceKeyKind::Rsa2048, 30).unwrap();
    let server = device_server_config(&files, RevocationSet::default()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(files.ca.cert_pem().as_bytes()).unwrap()).unwrap();
    // An ESP32 mbedTLS stack may only speak TLS 1.2.
    let tls12 = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(device.cert_pem.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(device.key_pem.as_ref().unwrap().as_bytes()).unwrap(),
        )
        .unwrap();
    let (identity, exchanged) = connect(server, Arc::new(tls12)).await;
    assert_eq!(identity.unwrap().mac, mac("aa:bb:cc:00:00:02"));
    assert!(exchanged);
}

#[tokio::test]
async fn no_client_certificate_or_a_foreign_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let files = files(dir.path());
    let server = device_server_config(&files, RevocationSet::default()).unwrap();
    let (verdict, exchanged) = connect(server.clone(), client_config(files.ca.cert_pem(), None)).await;
    assert!(verdict.is_err() && !exchanged, "a client without a certificate must be refused: {verdict:?}");

    let foreign = Ca::create(&CaSubject::default(), CaAlgorithm::EcdsaP384, 1).unwrap();
    let impostor = foreign.issue_device(mac("aa:bb:cc:00:00:01"), DeviceKeyKind::EcdsaP256, 30).unwrap();
    let (verdict, exchanged) = connect(server, client_config(files.ca.cert_pem(), Some(&impostor))).await;
    assert!(verdict.is_err() && !exchanged, "a certificate of another CA must be refused: {verdict:?}");
}

#[tokio::test]
async fn a_revocation_refuses_the_next_handshake_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let files = files(dir.path());
    let device = files.ca.issue_device(mac("aa:bb:cc:00:00:03"), DeviceKeyKind::EcdsaP256, 30).unwrap();
    let other = files.ca.issue_device(mac("aa:bb:cc:00:00:04"), DeviceKeyKind::EcdsaP256, 30).unwrap();
    let revoked = RevocationSet::default();
    let server = device_server_config(&files, revoked.clone()).unwrap();
    assert!(connect(server.clone(), client_config(files.ca.cert_pem(), Some(&device))).await.0.is_ok());

    // The store says so; the same running server configuration now refuses it.
    revoked.insert(&device.serial_hex.to_uppercase());
    let (verdict, exchanged) =
        connect(server.clone(), client_config(files.ca.cert_pem(), Some(&device))).await;
    let err = verdict.unwrap_err();
    assert!(err.contains("Revoked") || err.contains("revoked"), "{err}");
    assert!(!exchanged);
    assert!(connect(server.clone(), client_config(files.ca.cert_pem(), Some(&other))).await.0.is_ok());

    // A refresh from the store replaces the whole set.
    revoked.replace(vec![other.serial_hex.clone()]);
    assert!(connect(server.clone(), client_config(files.ca.cert_pem(), Some(&device))).await.0.is_ok());
    assert!(connect(server, client_config(files.ca.cert_pem(), Some(&other))).await.0.is_err());
}

/// One connection's server side: its handshake kind and the client's certificate.
async fn handshake(
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
) -> (rustls::HandshakeKind, CertificateDer<'static>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let server_side = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.unwrap();
        let conn = tls.get_ref().1;
        let seen = (conn.handshake_kind().unwrap(), conn.peer_certificates().unwrap()[0].clone());
        // The ticket for the next connection goes out with the first data.
        tls.write_all(b"y").await.unwrap();
        tls.flush().await.unwrap();
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await.ok();
        seen
    });
    let connector = tokio_rustls::TlsConnector::from(client);
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    let mut byte = [0u8; 1];
    tls.read_exact(&mut byte).await.unwrap();
    tls.write_all(b"x").await.unwrap();
    tls.flush().await.unwrap();
    server_side.await.unwrap()
}

#[tokio::test]
async fn a_reconnecting_device_resumes_its_session_and_the_resumed_certificate_is_checked_again() {
    let dir = tempfile::tempdir().unwrap();
    let files = files(dir.path());
    let device = files.ca.issue_device(mac("aa:bb:cc:00:00:05"), DeviceKeyKind::EcdsaP256, 30).unwrap();
    let revoked = RevocationSet::default();
    let server = device_server_config(&files, revoked.clone()).unwrap();
    // One client configuration across connections, as a gateway's MQTT client keeps it.
    let client = client_config(files.ca.cert_pem(), Some(&device));
    let (first, _) = handshake(server.clone(), client.clone()).await;
    assert_eq!(first, rustls::HandshakeKind::Full);
    // More gateways than the 256 sessions rustls's default cache kept: each one's ticket
    // still resumes, as the server keeps nothing per session.
    for n in 0..260u32 {
        let other = files
            .ca
            .issue_device(
                mac(&format!("aa:bb:cd:00:{:02x}:{:02x}", n >> 8, n & 0xff)),
                DeviceKeyKind::EcdsaP256,
                30,
            )
            .unwrap();
        handshake(server.clone(), client_config(files.ca.cert_pem(), Some(&other))).await;
    }
    let (again, cert) = handshake(server.clone(), client.clone()).await;
    assert_eq!(again, rustls::HandshakeKind::Resumed, "the device's ticket resumes its session");
    assert_eq!(device_identity(cert.as_ref()).unwrap().serial_hex, device.serial_hex);

    // What the verifier would have checked, checked again for the resumed session.
    let now = rustls::pki_types::UnixTime::now();
    assert_eq!(tds_pki::recheck_resumed(cert.as_ref(), &revoked, now), Ok(()));
    let later = rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        device.not_after.timestamp().unsigned_abs() + 1,
    ));
    assert_eq!(
        tds_pki::recheck_resumed(cert.as_ref(), &revoked, later),
        Err(rustls::CertificateError::Expired)
    );
    let earlier = rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        device.not_before.timestamp().unsigned_abs() - 1,
    ));
    assert_eq!(
        tds_pki::recheck_resumed(cert.as_ref(), &revoked, earlier),
        Err(rustls::CertificateError::NotValidYet)
    );
    revoked.insert(&device.serial_hex);
    assert_eq!(
        tds_pki::recheck_resumed(cert.as_ref(), &revoked, now),
        Err(rustls::CertificateError::Revoked)
    );
}
