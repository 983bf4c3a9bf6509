//! The MQTT side: who may connect (certificates from another CA, expired or revoked; the
//! development listener's password), which topics, revocation, replacement.

use crate::support::{Bench, Device, MAC, TOPIC, batch};
use std::sync::Arc;
use std::time::Duration;
use tds_domain::Mac;
use tds_testkit::{TestDb, fixtures, per_backend};

async fn a_client_id_other_than_the_certificates_mac_is_refused(db: TestDb) {
    let bench = Bench::start(db).await;
    let cert = bench.certificate(MAC).await;
    let refused = bench.connect(&cert, "aa:bb:cc:00:00:02").await.err().unwrap();
    assert!(refused.contains("BadClientId"), "{refused}");
    // Another spelling of the same MAC is the same identity.
    let mut ok = bench.connect(&cert, "AA-BB-CC-00-00-01").await.unwrap();
    ok.client.disconnect().await.unwrap();
    let _ = ok.closed_within(Duration::from_secs(2)).await;
    // The gateway page's connection history tells the story.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let history = bench.store.gateway_events().recent(bench.tenant, bench.gateway, 10).await.unwrap();
    let kinds: Vec<_> = history.iter().rev().map(|e| (e.kind.as_str(), e.detail.as_str())).collect();
    assert_eq!(kinds[0], ("refused", "BadClientId"), "{kinds:?}");
    assert_eq!(kinds[1].0, "connected");
    assert_eq!(kinds[2], ("disconnected", "disconnect"), "{kinds:?}");
}

async fn unknown_and_decommissioned_gateways_are_refused(db: TestDb) {
    let bench = Bench::start(db).await;
    let stranger = bench.certificate("aa:bb:cc:00:00:77").await;
    let refused = bench.connect(&stranger, "aa:bb:cc:00:00:77").await.err().unwrap();
    assert!(refused.contains("NotAuthorized"), "{refused}");
    let cert = bench.certificate(MAC).await;
    bench.store.gateways().decommission(bench.tenant, bench.gateway).await.unwrap();
    let refused = bench.connect(&cert, MAC).await.err().unwrap();
    assert!(refused.contains("NotAuthorized"), "{refused}");
}

async fn a_certificate_from_another_ca_cannot_even_complete_the_handshake(db: TestDb) {
    let bench = Bench::start(db).await;
    // A CA of another name (unknown issuer), and one that copies the platform CA's name (the
    // signature does not verify): both refused by the TLS handshake, before any MQTT packet.
    let renamed = tds_pki::CaSubject { common_name: "Someone Else CA".into(), organization: "Else".into() };
    for (subject, alert) in [(renamed, "UnknownCA"), (tds_pki::CaSubject::default(), "DecryptError")] {
        let dir = tempfile::tempdir().unwrap();
        let other = tds_pki::CaFiles::init(
            dir.path(),
            &subject,
            tds_pki::CaAlgorithm::EcdsaP384,
            None,
            &["localhost".to_owned()],
        )
        .unwrap();
        let forged =
            other.ca.issue_device(Mac::parse(MAC).unwrap(), tds_pki::DeviceKeyKind::EcdsaP256, 30).unwrap();
        // The client trusts the real server; only its own certificate is foreign.
        let refused = Device::connect(
            bench.port,
            bench.ca.ca.cert_pem(),
            &forged.cert_pem,
            forged.key_pem.as_deref().unwrap(),
            MAC,
        )
        .await
        .err()
        .unwrap();
        assert!(refused.contains(alert), "{}: {refused}", subject.common_name);
    }
    assert!(bench.dead_letters().await.is_empty());
}

async fn an_expired_certificate_cannot_complete_the_handshake(db: TestDb) {
    let bench = Bench::start(db).await;
    let now = chrono::Utc::now();
    let expired = bench
        .ca
        .ca
        .issue_device_valid_between(
            Mac::parse(MAC).unwrap(),
            tds_pki::DeviceKeyKind::EcdsaP256,
            now - chrono::Duration::days(30),
            now - chrono::Duration::days(1),
        )
        .unwrap();
    let refused = bench.connect(&expired, MAC).await.err().unwrap();
    eprintln!("DBG {refused}");
    assert!(
        !refused.contains("NotAuthorized") && !refused.contains("BadClientId"),
        "refused at TLS: {refused}"
    );
    // The same gateway with a certificate in its validity period is welcome.
    let mut device = bench.gateway_client().await;
    device.publish(TOPIC, batch(MAC, r#"{"dispositivo_codigo":"D01","valor":1}"#)).await.unwrap();
    assert_eq!(bench.readings().await.len(), 1);
}

async fn a_certificate_not_valid_yet_cannot_complete_the_handshake(db: TestDb) {
    let bench = Bench::start(db).await;
    let now = chrono::Utc::now();
    let early = bench
        .ca
        .ca
        .issue_device_valid_between(
            Mac::parse(MAC).unwrap(),
            tds_pki::DeviceKeyKind::EcdsaP256,
            now + chrono::Duration::days(1),
            now + chrono::Duration::days(30),
        )
        .unwrap();
    let refused = bench.connect(&early, MAC).await.err().unwrap();
    eprintln!("DBG {refused}");
    assert!(
        !refused.contains("NotAuthorized") && !refused.contains("BadClientId"),
        "refused at TLS: {refused}"
    );
}

fn with_plain_listener(config: &mut tds_ingest::IngestConfig) {
    config.plain = Some(tds_ingest::PlainListener {
        addr: "127.0.0.1:0".parse().unwrap(),
        password: tds_ingest::DevPassword::new("dev-only"),
    });
}

async fn the_plain_listener_takes_the_mac_and_development_password_and_stores_readings(db: TestDb) {
    let bench = Bench::start_with(db, with_plain_listener).await;
    let port = bench.plain_port.unwrap();
    let mut device = Device::connect_plain(port, MAC, MAC, "dev-only").await.unwrap();
    device.publish(TOPIC, batch(MAC, r#"{"dispositivo_codigo":"D01","valor":7.5}"#)).await.unwrap();
    let readings = bench.readings().await;
    assert_eq!(readings.len(), 1);
    assert_eq!(readings[0].1, 7.5);
    // Same ACL as over TLS: another gateway's topic ends the connection and is a dead letter.
    let other = "tds_new/gateway/aa:bb:cc:00:00:02/telemetria";
    assert!(device.publish(other, batch("aa:bb:cc:00:00:02", "")).await.is_err());
    assert_eq!(bench.dead_letters().await[0].reason_code, "topic_not_allowed");
    // The connection history says how it came in.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let history = bench.store.gateway_events().recent(bench.tenant, bench.gateway, 10).await.unwrap();
    assert!(
        history.iter().any(|e| e.kind == "connected" && e.detail.contains("plain listener")),
        "{history:?}"
    );
}

async fn the_plain_listener_refuses_a_wrong_password_or_a_user_name_that_is_not_a_mac(db: TestDb) {
    let bench = Bench::start_with(db, with_plain_listener).await;
    let port = bench.plain_port.unwrap();
    for (user, password) in [(MAC, "wrong"), (MAC, ""), ("gateway-1", "dev-only")] {
        let refused = Device::connect_plain(port, MAC, user, password).await.err().unwrap();
        assert!(refused.contains("BadUserNamePassword"), "{user}/{password}: {refused}");
    }
    // The right password does not make another MAC's client id acceptable.
    let refused = Device::connect_plain(port, "aa:bb:cc:00:00:02", MAC, "dev-only").await.err().unwrap();
    assert!(refused.contains("BadClientId"), "{refused}");
    // Nor an unregistered gateway.
    let stranger = "aa:bb:cc:00:00:77";
    let refused = Device::connect_plain(port, stranger, stranger, "dev-only").await.err().unwrap();
    assert!(refused.contains("NotAuthorized"), "{refused}");
    assert!(bench.readings().await.is_empty());
}

async fn there_is_no_plain_listener_unless_configured(db: TestDb) {
    let bench = Bench::start(db).await;
    assert_eq!(bench.plain_port, None);
    // And the TLS port does not speak plain MQTT.
    assert!(Device::connect_plain(bench.port, MAC, MAC, "anything").await.is_err());
}

async fn a_topic_outside_the_acl_disconnects_and_stores_nothing(db: TestDb) {
    let bench = Bench::start(db).await;
    let gw2 = fixtures::gateway(&bench.store, bench.tenant, "aa:bb:cc:00:00:02", "GW2").await;
    fixtures::meter(&bench.store, bench.tenant, &gw2, "D01").await;
    let mut device = bench.gateway_client().await;
    // Publishing as the other gateway: refused before anything is stored, and the line is cut.
    let other = "tds_new/gateway/aa:bb:cc:00:00:02/telemetria";
    let outcome =
        device.publish(other, batch("aa:bb:cc:00:00:02", r#"{"dispositivo_codigo":"D01","valor":1}"#)).await;
    assert!(outcome.is_err(), "no PUBACK for a forbidden topic");
    assert!(bench.readings().await.is_empty());
    assert!(
        bench
            .store
            .readings()
            .count_since(
                bench.tenant,
                chrono::DateTime::parse_from_rfc3339("2000-01-01T00:00:00Z").unwrap().to_utc()
            )
            .await
            .unwrap()
            == 0
    );
    let letters = bench.dead_letters().await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason_code, "topic_not_allowed");
    assert_eq!(letters[0].topic, other);

    let mut device = bench.gateway_client().await;
    assert!(
        device.publish("tds_new/gateway/aa:bb:cc:00:00:01/cert_update", "x").await.is_err(),
        "cert_update is TDS's"
    );
    let mut device = bench.gateway_client().await;
    assert!(device.publish("some/other/topic", "x").await.is_err());
}

async fn subscriptions_are_limited_to_the_gateways_own_cert_update(db: TestDb) {
    use rumqttc::{Event, Incoming, QoS, SubscribeReasonCode};
    let bench = Bench::start(db).await;
    let mut device = bench.gateway_client().await;
    device.client.subscribe("tds_new/gateway/aa:bb:cc:00:00:01/cert_update", QoS::AtLeastOnce).await.unwrap();
    device.client.subscribe("tds_new/gateway/+/telemetria", QoS::AtLeastOnce).await.unwrap();
    let mut codes = Vec::new();
    while codes.len() < 2 {
        if let Event::Incoming(Incoming::SubAck(ack)) =
            tokio::time::timeout(Duration::from_secs(5), device.events.poll()).await.unwrap().unwrap()
        {
            codes.extend(ack.return_codes);
        }
    }
    assert_eq!(codes, vec![SubscribeReasonCode::Success(QoS::AtLeastOnce), SubscribeReasonCode::Failure]);
}

async fn a_revoked_certificate_is_refused_and_its_live_session_closed_within_a_second(db: TestDb) {
    let bench = Bench::start(db).await;
    let cert = bench.certificate(MAC).await;
    let mut device = bench.connect(&cert, MAC).await.unwrap();
    device.publish(TOPIC, batch(MAC, r#"{"dispositivo_codigo":"D01","valor":1}"#)).await.unwrap();
    let stored = bench.store.certificates().for_gateway(bench.tenant, bench.gateway).await.unwrap();
    let active = stored.iter().find(|c| c.serial == cert.serial_hex).unwrap();
    bench.store.certificates().revoke(bench.tenant, active.id, "key_compromise", None).await.unwrap();
    let took = device.closed_within(Duration::from_secs(1)).await.unwrap();
    eprintln!("revoked session closed after {took:?}");
    assert!(bench.connect(&cert, MAC).await.is_err(), "and it cannot come back");
}

async fn a_gateway_reconnecting_resumes_its_tls_session_and_a_revocation_still_refuses_it(db: TestDb) {
    let bench = Bench::start(db).await;
    let cert = bench.certificate(MAC).await;
    let tickets = Arc::new(Tickets::default());
    let mut tls =
        crate::support::tls(bench.ca.ca.cert_pem(), &cert.cert_pem, cert.key_pem.as_deref().unwrap());
    tls.resumption = rustls::client::Resumption::store(tickets.clone());
    let tls = Arc::new(tls);
    let mut device = Device::connect_with(bench.port, tls.clone(), MAC).await.unwrap();
    device.publish(TOPIC, batch(MAC, r#"{"dispositivo_codigo":"D01","valor":1}"#)).await.unwrap();
    assert_eq!(tickets.offered(), 0, "the first connection is a full handshake");
    // The link drops (no DISCONNECT); the gateway comes back with its session's ticket.
    drop(device);
    let mut again = Device::connect_with(bench.port, tls.clone(), MAC).await.unwrap();
    assert_eq!(tickets.offered(), 1, "the second connection offered the first one's ticket");
    let later = batch(MAC, r#"{"dispositivo_codigo":"D01","valor":2}"#).replace("10:00:00Z", "10:01:00Z");
    again.publish(TOPIC, later).await.unwrap();
    assert_eq!(bench.readings().await.len(), 2);

    // Revoked: the resumed session is refused right after its handshake (no verifier ran for
    // it, and no CONNECT is read), not only by the allow-list's CONNACK.
    let stored = bench.store.certificates().for_gateway(bench.tenant, bench.gateway).await.unwrap();
    let active = stored.iter().find(|c| c.serial == cert.serial_hex).unwrap();
    bench.store.certificates().revoke(bench.tenant, active.id, "key_compromise", None).await.unwrap();
    again.closed_within(Duration::from_secs(1)).await.unwrap();
    let refused = Device::connect_with(bench.port, tls, MAC).await.err().unwrap();
    assert_eq!(tickets.offered(), 2, "the refused connection offered a ticket too");
    assert_ne!(refused, "NotAuthorized", "refused before CONNECT, by the TLS recheck");
    eprintln!("resumed connection of a revoked certificate: {refused}");
}

/// rustls's client session cache, counting the TLS 1.3 tickets it hands to a handshake.
#[derive(Debug)]
struct Tickets {
    inner: rustls::client::ClientSessionMemoryCache,
    offered: std::sync::atomic::AtomicUsize,
}

impl Default for Tickets {
    fn default() -> Self {
        Self { inner: rustls::client::ClientSessionMemoryCache::new(8), offered: Default::default() }
    }
}

impl Tickets {
    fn offered(&self) -> usize {
        self.offered.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl rustls::client::ClientSessionStore for Tickets {
    fn set_kx_hint(&self, server: rustls::pki_types::ServerName<'static>, group: rustls::NamedGroup) {
        self.inner.set_kx_hint(server, group);
    }
    fn kx_hint(&self, server: &rustls::pki_types::ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.inner.kx_hint(server)
    }
    fn set_tls12_session(
        &self,
        server: rustls::pki_types::ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        self.inner.set_tls12_session(server, value);
    }
    fn tls12_session(
        &self,
        server: &rustls::pki_types::ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.inner.tls12_session(server)
    }
    fn remove_tls12_session(&self, server: &rustls::pki_types::ServerName<'static>) {
        self.inner.remove_tls12_session(server);
    }
    fn insert_tls13_ticket(
        &self,
        server: rustls::pki_types::ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        self.inner.insert_tls13_ticket(server, value);
    }
    fn take_tls13_ticket(
        &self,
        server: &rustls::pki_types::ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        let ticket = self.inner.take_tls13_ticket(server);
        if ticket.is_some() {
            self.offered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        ticket
    }
}

async fn a_second_connection_with_the_same_identity_replaces_the_first(db: TestDb) {
    let bench = Bench::start(db).await;
    let cert = bench.certificate(MAC).await;
    let mut first = bench.connect(&cert, MAC).await.unwrap();
    let mut second = bench.connect(&cert, MAC).await.unwrap();
    first.closed_within(Duration::from_secs(2)).await.unwrap();
    second.publish(TOPIC, batch(MAC, r#"{"dispositivo_codigo":"D01","valor":1}"#)).await.unwrap();
    assert_eq!(bench.readings().await.len(), 1);
}

per_backend!(
    a_client_id_other_than_the_certificates_mac_is_refused,
    unknown_and_decommissioned_gateways_are_refused,
    a_certificate_from_another_ca_cannot_even_complete_the_handshake,
    an_expired_certificate_cannot_complete_the_handshake,
    a_certificate_not_valid_yet_cannot_complete_the_handshake,
    the_plain_listener_takes_the_mac_and_development_password_and_stores_readings,
    the_plain_listener_refuses_a_wrong_password_or_a_user_name_that_is_not_a_mac,
    there_is_no_plain_listener_unless_configured,
    a_topic_outside_the_acl_disconnects_and_stores_nothing,
    subscriptions_are_limited_to_the_gateways_own_cert_update,
    a_revoked_certificate_is_refused_and_its_live_session_closed_within_a_second,
    a_second_connection_with_the_same_identity_replaces_the_first,
    a_gateway_reconnecting_resumes_its_tls_session_and_a_revocation_still_refuses_it,
);
