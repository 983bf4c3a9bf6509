//! The certificate allow-list and renewal over MQTT, with a real rumqttc client playing the
//! gateway (the swap done by hand): replaced, transferred and retired certificates refused and
//! their sessions closed; the `cert_update` offer delivered retained on subscribe and again after
//! a reconnect, confirmed by the first connection with the new certificate, rolled back when the
//! gateway comes back on the old one; CSR mode without the server ever holding the key.

use crate::support::{Bench, Device, MAC, TOPIC, batch};
use rumqttc::{Event, Incoming, MqttOptions, QoS, TlsConfiguration, Transport};
use std::sync::Arc;
use std::time::Duration;
use tds_domain::Mac;
use tds_domain::renewal::{CertUpdate, RenewalMode, RenewalState};
use tds_pki::{DeviceKeyKind, IssuedCertificate};
use tds_store::certificates::{CertificateStatus, NewCertificate};
use tds_testkit::{TestDb, fixtures, per_backend};

const UPDATE: &str = "tds_new/gateway/aa:bb:cc:00:00:01/cert_update";

fn record(issued: &IssuedCertificate) -> NewCertificate {
    NewCertificate {
        mac: issued.mac,
        serial: issued.serial_hex.clone(),
        fingerprint_sha256: issued.fingerprint_sha256.clone(),
        pem: issued.cert_pem.clone(),
        key_algorithm: issued.key_algorithm.clone(),
        issued_at: issued.not_before,
        expires_at: issued.not_after,
    }
}

/// A client that acknowledges only when told (`ack`), to tell "delivered" from "received".
async fn manual_client(bench: &Bench, cert_pem: &str, key_pem: &str) -> Result<Device, String> {
    let mut opts = MqttOptions::new(MAC, "localhost", bench.port);
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_manual_acks(true);
    opts.set_clean_session(true);
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(crate::support::tls(
        bench.ca.ca.cert_pem(),
        cert_pem,
        key_pem,
    )))));
    Device::handshake(opts).await
}

/// Subscribes to the gateway's `cert_update` and waits for the retained message on it.
async fn receive_offer(device: &mut Device) -> rumqttc::Publish {
    device.client.subscribe(UPDATE, QoS::AtLeastOnce).await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), device.events.poll()).await {
            Ok(Ok(Event::Incoming(Incoming::Publish(p)))) => return p,
            Ok(Ok(_)) => {}
            other => panic!("no cert_update: {other:?}"),
        }
    }
}

async fn stored_status(bench: &Bench, serial: &str) -> (CertificateStatus, Option<String>) {
    let c = bench.store.certificates().staff_by_serial(serial).await.unwrap();
    (c.status, c.revocation_reason)
}

async fn a_replaced_certificate_is_refused_and_its_live_session_closed_within_a_second(db: TestDb) {
    let bench = Bench::start(db).await;
    let old = bench.certificate(MAC).await;
    let mut device = bench.connect(&old, MAC).await.unwrap();
    device.publish(TOPIC, batch(MAC, r#"{"dispositivo_codigo":"D01","valor":1}"#)).await.unwrap();
    let new = bench.certificate(MAC).await;
    let took = device.closed_within(Duration::from_secs(1)).await.unwrap();
    eprintln!("replaced certificate's session closed after {took:?}");
    assert!(bench.connect(&old, MAC).await.is_err(), "the replaced certificate cannot come back");
    assert_eq!(
        stored_status(&bench, &old.serial_hex).await,
        (CertificateStatus::Superseded, Some("superseded".into()))
    );
    let revoked = bench.store.certificates().staff_revoked().await.unwrap();
    assert!(revoked.iter().any(|r| r.serial == old.serial_hex && r.reason == "superseded"));
    let mut device = bench.connect(&new, MAC).await.unwrap();
    device.publish(TOPIC, batch(MAC, r#"{"dispositivo_codigo":"D01","valor":2}"#)).await.unwrap();
}

async fn a_certificate_that_is_not_the_gateways_current_one_is_refused(db: TestDb) {
    let bench = Bench::start(db).await;
    bench.certificate(MAC).await;
    // Signed by the platform CA, valid, naming the gateway, never revoked: but not recorded as
    // the gateway's certificate. Only the allow-list refuses it.
    let unknown = bench.ca.ca.issue_device(Mac::parse(MAC).unwrap(), DeviceKeyKind::EcdsaP256, 30).unwrap();
    let refused = bench.connect(&unknown, MAC).await.err().unwrap();
    assert!(refused.contains("NotAuthorized"), "{refused}");
}

async fn a_transferred_gateways_certificate_is_refused_and_its_session_closed(db: TestDb) {
    let bench = Bench::start(db).await;
    let cert = bench.certificate(MAC).await;
    let mut device = bench.connect(&cert, MAC).await.unwrap();
    let other = fixtures::tenant(&bench.store, "Other").await;
    bench.store.gateways().staff_transfer(bench.gateway, other.id, false, None).await.unwrap();
    device.closed_within(Duration::from_secs(1)).await.unwrap();
    assert!(bench.connect(&cert, MAC).await.is_err());
    assert_eq!(
        stored_status(&bench, &cert.serial_hex).await,
        (CertificateStatus::Revoked, Some("affiliation_changed".into()))
    );
    // The CRL the CA issues from the store lists both retirements; openssl reads it.
    let entries: Vec<tds_pki::RevokedEntry> = bench
        .store
        .certificates()
        .staff_revoked()
        .await
        .unwrap()
        .into_iter()
        .map(|r| tds_pki::RevokedEntry {
            serial_hex: r.serial,
            revoked_at: r.revoked_at,
            reason: tds_pki::RevocationReason::parse(&r.reason).unwrap(),
        })
        .collect();
    let now = chrono::Utc::now();
    let crl = bench.ca.ca.issue_crl(&entries, 1, now, now + chrono::Duration::days(7)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crl.pem");
    std::fs::write(&path, &crl.pem).unwrap();
    let out =
        std::process::Command::new("openssl").args(["crl", "-noout", "-text", "-in"]).arg(&path).output();
    if let Ok(out) = out {
        let text = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
        assert!(text.contains(&cert.serial_hex), "{text}");
        assert!(text.contains("affiliation changed"), "{text}");
    }
}

async fn decommissioning_closes_the_live_session_at_once_and_first_use_is_recorded(db: TestDb) {
    let bench = Bench::start(db).await;
    let cert = bench.certificate(MAC).await;
    assert!(stored_first_use(&bench, &cert).await.is_none(), "never used");
    let mut device = bench.connect(&cert, MAC).await.unwrap();
    assert!(stored_first_use(&bench, &cert).await.is_some(), "used");
    bench.store.gateways().decommission(bench.tenant, bench.gateway).await.unwrap();
    device.closed_within(Duration::from_secs(1)).await.unwrap();
}

async fn stored_first_use(bench: &Bench, cert: &IssuedCertificate) -> Option<chrono::DateTime<chrono::Utc>> {
    bench.store.certificates().staff_by_serial(&cert.serial_hex).await.unwrap().first_used_at
}

/// Starts a server-key renewal of the bench gateway, as the campaign does.
async fn offer_server_key(bench: &Bench) -> (tds_store::renewals::Renewal, IssuedCertificate) {
    let new = bench.ca.ca.issue_device(Mac::parse(MAC).unwrap(), DeviceKeyKind::EcdsaP256, 30).unwrap();
    let payload = CertUpdate::Certificate {
        new_cert: new.cert_pem.clone(),
        new_key: new.key_pem.clone(),
        expires_at: new.not_after,
    }
    .to_json();
    let renewal = bench
        .store
        .renewals()
        .start(
            bench.tenant,
            bench.gateway,
            RenewalMode::ServerKey,
            false,
            Some((&record(&new), &payload)),
            None,
        )
        .await
        .unwrap();
    (renewal, new)
}

async fn a_server_key_offer_is_retained_until_the_gateway_connects_with_it_then_the_old_one_is_refused(
    db: TestDb,
) {
    let bench = Bench::start(db).await;
    let old = bench.certificate(MAC).await;
    let (renewal, _) = offer_server_key(&bench).await;
    assert_eq!(renewal.state, RenewalState::Issued);

    // Delivered retained on subscribe; not acknowledged (the gateway lost it), so it comes again
    // after a reconnect.
    let mut device = manual_client(&bench, &old.cert_pem, old.key_pem.as_deref().unwrap()).await.unwrap();
    let first = receive_offer(&mut device).await;
    assert!(first.retain, "retained");
    assert_eq!(first.qos, QoS::AtLeastOnce);
    device.client.disconnect().await.unwrap();
    let _ = device.closed_within(Duration::from_secs(2)).await;
    let mut device = manual_client(&bench, &old.cert_pem, old.key_pem.as_deref().unwrap()).await.unwrap();
    let again = receive_offer(&mut device).await;
    assert_eq!(again.payload, first.payload);
    device.client.ack(&again).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The gateway validates, writes the new pair beside the old one, and reconnects with it.
    let offer: CertUpdate = serde_json::from_slice(&again.payload).unwrap();
    let CertUpdate::Certificate { new_cert, new_key: Some(new_key), .. } = offer else { panic!("{offer:?}") };
    device.client.disconnect().await.unwrap();
    let _ = device.closed_within(Duration::from_secs(2)).await;
    let mut renewed = manual_client(&bench, &new_cert, &new_key).await.unwrap();
    let r = bench.store.renewals().get(bench.tenant, renewal.id).await.unwrap();
    assert_eq!(r.state, RenewalState::Confirmed);
    // The retained offer is cleared: nothing comes on subscribe.
    renewed.client.subscribe(UPDATE, QoS::AtLeastOnce).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(800);
    while let Ok(Ok(event)) = tokio::time::timeout_at(deadline, renewed.events.poll()).await {
        assert!(!matches!(event, Event::Incoming(Incoming::Publish(_))), "cleared: {event:?}");
    }
    assert!(bench.store.renewals().staff_pending(Mac::parse(MAC).unwrap(), UPDATE).await.unwrap().is_none());
    assert_eq!(stored_status(&bench, &old.serial_hex).await.0, CertificateStatus::Superseded);
    // The old certificate is refused at the handshake once the revocation set has it.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let refused = bench.connect(&old, MAC).await.err().unwrap();
    assert!(!refused.contains("NotAuthorized"), "refused by TLS, not after it: {refused}");
    let log = bench.store.renewals().log(bench.tenant, bench.gateway, 10).await.unwrap();
    let steps: Vec<_> = log.iter().rev().map(|e| e.step.as_str()).collect();
    assert_eq!(steps, ["offered", "issued", "confirmed"]);
}

async fn a_gateway_back_on_its_old_certificate_after_receiving_the_new_one_is_rolled_back(db: TestDb) {
    let bench = Bench::start(db).await;
    let old = bench.certificate(MAC).await;
    let (renewal, new) = offer_server_key(&bench).await;
    let mut device = manual_client(&bench, &old.cert_pem, old.key_pem.as_deref().unwrap()).await.unwrap();
    let offer = receive_offer(&mut device).await;
    device.client.ack(&offer).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    device.client.disconnect().await.unwrap();
    let _ = device.closed_within(Duration::from_secs(2)).await;
    // The new one "failed" on the gateway: it comes back on the old one.
    let _back = bench.connect(&old, MAC).await.unwrap();
    let r = bench.store.renewals().get(bench.tenant, renewal.id).await.unwrap();
    assert_eq!(r.state, RenewalState::RolledBack);
    assert_eq!(stored_status(&bench, &new.serial_hex).await.0, CertificateStatus::Revoked);
    assert!(bench.connect(&new, MAC).await.is_err(), "the new certificate is refused");
    assert_eq!(stored_status(&bench, &old.serial_hex).await.0, CertificateStatus::Active);
}

fn csr_for(mac: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, mac);
    let csr = params.serialize_request(&key).unwrap();
    (csr.pem().unwrap(), key.serialize_pem())
}

async fn a_csr_renewal_round_trip_never_gives_the_server_the_key(db: TestDb) {
    let bench = Bench::start(db).await;
    let old = bench.certificate(MAC).await;
    let renewal = bench
        .store
        .renewals()
        .start(bench.tenant, bench.gateway, RenewalMode::Csr, true, None, None)
        .await
        .unwrap();
    assert_eq!(renewal.state, RenewalState::Offered);
    let mut device = bench.connect(&old, MAC).await.unwrap();
    let request = receive_offer(&mut device).await;
    assert_eq!(&request.payload[..], br#"{"csr_required":true}"#);
    let (csr, key) = csr_for(MAC);
    let csr_topic = "tds_new/gateway/aa:bb:cc:00:00:01/cert_csr";
    device.publish(csr_topic, serde_json::json!({ "csr_pem": csr }).to_string()).await.unwrap();
    // The signed certificate follows on the same subscription, without a key.
    let offer = loop {
        let event =
            tokio::time::timeout(Duration::from_secs(5), device.events.poll()).await.unwrap().unwrap();
        if let Event::Incoming(Incoming::Publish(p)) = event {
            break p;
        }
    };
    let update: CertUpdate = serde_json::from_slice(&offer.payload).unwrap();
    let CertUpdate::Certificate { new_cert, new_key: None, .. } = update else { panic!("{update:?}") };
    let r = bench.store.renewals().get(bench.tenant, renewal.id).await.unwrap();
    assert_eq!(r.state, RenewalState::Issued);
    let stored = bench.store.certificates().for_gateway(bench.tenant, bench.gateway).await.unwrap();
    assert!(stored.iter().all(|c| !c.pem.contains("PRIVATE KEY")));
    device.client.disconnect().await.unwrap();
    let _ = device.closed_within(Duration::from_secs(2)).await;
    let _renewed = manual_client(&bench, &new_cert, &key).await.unwrap();
    let r = bench.store.renewals().get(bench.tenant, renewal.id).await.unwrap();
    assert_eq!(r.state, RenewalState::Confirmed);
    let log = bench.store.renewals().log(bench.tenant, bench.gateway, 10).await.unwrap();
    let steps: Vec<_> = log.iter().rev().map(|e| e.step.as_str()).collect();
    assert_eq!(steps, ["offered", "csr_received", "issued", "confirmed"]);
}

async fn a_bad_csr_is_a_dead_letter_with_its_reason_and_fails_the_renewal(db: TestDb) {
    let bench = Bench::start(db).await;
    let old = bench.certificate(MAC).await;
    let renewal = bench
        .store
        .renewals()
        .start(bench.tenant, bench.gateway, RenewalMode::Csr, true, None, None)
        .await
        .unwrap();
    let mut device = bench.connect(&old, MAC).await.unwrap();
    let (csr, _) = csr_for("aa:bb:cc:00:00:99");
    let csr_topic = "tds_new/gateway/aa:bb:cc:00:00:01/cert_csr";
    device.publish(csr_topic, serde_json::json!({ "csr_pem": csr }).to_string()).await.unwrap();
    device.publish(csr_topic, "not json").await.unwrap();
    let letters = bench.dead_letters().await;
    let codes: Vec<_> = letters.iter().map(|l| l.reason_code.as_str()).collect();
    assert_eq!(codes, ["csr_invalid", "csr_bad_json"], "{letters:?}");
    let r = bench.store.renewals().get(bench.tenant, renewal.id).await.unwrap();
    assert_eq!(r.state, RenewalState::Failed);
}

per_backend!(
    a_replaced_certificate_is_refused_and_its_live_session_closed_within_a_second,
    a_certificate_that_is_not_the_gateways_current_one_is_refused,
    a_transferred_gateways_certificate_is_refused_and_its_session_closed,
    decommissioning_closes_the_live_session_at_once_and_first_use_is_recorded,
    a_server_key_offer_is_retained_until_the_gateway_connects_with_it_then_the_old_one_is_refused,
    a_gateway_back_on_its_old_certificate_after_receiving_the_new_one_is_rolled_back,
    a_csr_renewal_round_trip_never_gives_the_server_the_key,
    a_bad_csr_is_a_dead_letter_with_its_reason_and_fails_the_renewal,
);
