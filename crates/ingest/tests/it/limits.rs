//! SPEC §2 Limits at the device endpoint: handshakes in progress, new connections per source
//! address, keep-alive 0, a client that stops reading, messages per second per gateway, and
//! status and connection-history writes per gateway.

use crate::support::{Bench, Device, MAC, TOPIC, batch, tls};
use bytes::BytesMut;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Connect, Subscribe, SubscribeFilter};
use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tds_testkit::{TestDb, per_backend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A TCP connection from `ip` (a loopback address) to the endpoint.
async fn tcp_from(ip: &str, port: u16) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    socket.connect(([127, 0, 0, 1], port).into()).await.unwrap()
}

/// Whether the server closed `tcp` within `within` (a read sees the end or a reset).
async fn closed_within(tcp: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(tokio::time::timeout(within, tcp.read(&mut buf)).await, Ok(Ok(0) | Err(_)))
}

async fn connections_beyond_the_handshakes_in_progress_are_closed_at_once(db: TestDb) {
    let bench = Bench::start_with(db, |c| c.max_handshakes = 2).await;
    let mut idle = vec![tcp_from("127.0.0.1", bench.port).await, tcp_from("127.0.0.1", bench.port).await];
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = tcp_from("127.0.0.1", bench.port).await;
    assert!(closed_within(&mut third, Duration::from_secs(2)).await, "no permit left: closed at once");
    assert!(
        !closed_within(&mut idle[0], Duration::from_millis(200)).await,
        "the first two wait for their handshake"
    );
    drop(idle);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut device = bench.gateway_client().await;
    device.publish(TOPIC, batch(MAC, r#"{"dispositivo_codigo":"D01","valor":1}"#)).await.unwrap();
}

async fn new_connections_per_second_are_limited_per_source_address(db: TestDb) {
    let bench = Bench::start_with(db, |c| {
        c.connects_per_second_per_ip = 0.01;
        c.connect_burst_per_ip = 3;
    })
    .await;
    let mut allowed = Vec::new();
    for _ in 0..3 {
        allowed.push(tcp_from("127.0.0.9", bench.port).await);
    }
    let mut fourth = tcp_from("127.0.0.9", bench.port).await;
    assert!(closed_within(&mut fourth, Duration::from_secs(2)).await, "over its burst: closed at once");
    assert!(!closed_within(&mut allowed[2], Duration::from_millis(200)).await);
    // Another address has its own allowance: the gateway connects from 127.0.0.1.
    let mut device = bench.gateway_client().await;
    device.publish(TOPIC, batch(MAC, r#"{"dispositivo_codigo":"D01","valor":1}"#)).await.unwrap();
}

async fn a_keep_alive_of_zero_gets_the_servers_maximum(db: TestDb) {
    let bench = Bench::start_with(db, |c| c.max_keep_alive = Duration::from_secs(1)).await;
    let cert = bench.certificate(MAC).await;
    let mut opts = MqttOptions::new(MAC, "localhost", bench.port);
    opts.set_keep_alive(Duration::ZERO);
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(tls(
        bench.ca.ca.cert_pem(),
        &cert.cert_pem,
        cert.key_pem.as_deref().unwrap(),
    )))));
    let mut device = Device::handshake(opts).await.unwrap();
    let took = device.closed_within(Duration::from_secs(10)).await.unwrap();
    assert!(took >= Duration::from_millis(1_400), "1.5 × the maximum of 1 s: {took:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let history = bench.store.gateway_events().recent(bench.tenant, bench.gateway, 5).await.unwrap();
        if history.iter().any(|e| e.detail == "keep_alive_timeout") {
            break;
        }
        assert!(Instant::now() < deadline, "{history:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A gateway that subscribes over and over without reading the SUBACKs: its socket stops
/// draining and the session ends after the write timeout instead of staying pinned.
async fn a_session_whose_socket_does_not_drain_is_closed_after_the_write_timeout(db: TestDb) {
    let bench = Bench::start_with(db, |c| c.write_timeout = Duration::from_secs(1)).await;
    let cert = bench.certificate(MAC).await;
    let config = tls(bench.ca.ca.cert_pem(), &cert.cert_pem, cert.key_pem.as_deref().unwrap());
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(([127, 0, 0, 1], bench.port).into()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap();
    let mut out = BytesMut::new();
    let mut connect = Connect::new(MAC);
    connect.keep_alive = 60;
    connect.write(&mut out).unwrap();
    stream.write_all(&out).await.unwrap();
    // Each SUBSCRIBE of 20,000 filters asks for a 20 KB SUBACK that is never read.
    let filters: Vec<SubscribeFilter> =
        (0..20_000).map(|i| SubscribeFilter::new(format!("x/{i}"), QoS::AtMostOnce)).collect();
    let mut subscribe = BytesMut::new();
    Subscribe::new_many(filters).write(&mut subscribe).unwrap();
    let started = Instant::now();
    let stalled = async {
        while started.elapsed() < Duration::from_secs(30) {
            if stream.write_all(&subscribe).await.is_err() {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(30), stalled).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let history = bench.store.gateway_events().recent(bench.tenant, bench.gateway, 5).await.unwrap();
        if history.iter().any(|e| e.kind == "disconnected" && e.detail == "write_timeout") {
            break;
        }
        assert!(Instant::now() < deadline, "still connected: {history:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Over its message rate a gateway is slowed down, not refused: every message is acknowledged
/// and stored.
async fn a_gateway_over_its_message_rate_is_slowed_down_and_loses_nothing(db: TestDb) {
    let bench = Bench::start_with(db, |c| {
        c.messages_per_second = 10.0;
        c.message_burst = 5;
    })
    .await;
    let mut device = bench.gateway_client().await;
    let started = Instant::now();
    for i in 0..25 {
        let msg = batch(
            MAC,
            &format!(r#"{{"dispositivo_codigo":"D01","valor":{i},"timestamp":"2026-11-23T09:{i:02}:00Z"}}"#),
        );
        device.client.publish(TOPIC, rumqttc::QoS::AtLeastOnce, false, msg).await.unwrap();
    }
    let mut acked = 0;
    while acked < 25 {
        match tokio::time::timeout(Duration::from_secs(10), device.events.poll()).await {
            Ok(Ok(rumqttc::Event::Incoming(rumqttc::Incoming::PubAck(_)))) => acked += 1,
            Ok(Ok(_)) => {}
            other => panic!("no PUBACK: {other:?}"),
        }
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1_500), "20 messages over the burst at 10 a second: {took:?}");
    assert_eq!(bench.readings().await.len(), 25, "nothing lost");
}

/// A gateway flapping its status writes it once per interval, and the latest state wins.
async fn status_flaps_are_written_once_per_interval_and_the_latest_state_wins(db: TestDb) {
    let bench = Bench::start_with(db, |c| c.status_interval = Duration::from_secs(2)).await;
    let mut device = bench.gateway_client().await;
    let status = "tds_new/gateway/aa:bb:cc:00:00:01/status";
    let online = || async { bench.store.gateways().get(bench.tenant, bench.gateway).await.unwrap().online };
    // The first change is written at once (just after the CONNACK).
    let deadline = Instant::now() + Duration::from_secs(1);
    while !online().await {
        assert!(Instant::now() < deadline, "the first change is written at once");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for payload in ["offline", "online", "offline", "online", "offline"] {
        device.publish(status, payload).await.unwrap();
    }
    assert!(online().await, "within the interval nothing more is written");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(!online().await, "the latest state is written when the interval ends");
}

/// A gateway reconnecting in a loop writes a few history entries, then one per interval.
async fn a_gateway_reconnecting_in_a_loop_writes_a_bounded_connection_history(db: TestDb) {
    let bench = Bench::start_with(db, |c| c.status_interval = Duration::from_mins(1)).await;
    let cert = bench.certificate(MAC).await;
    for _ in 0..10 {
        let device = bench.connect(&cert, MAC).await.unwrap();
        device.client.disconnect().await.unwrap();
        let mut device = device;
        let _ = device.closed_within(Duration::from_secs(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let history = bench.store.gateway_events().recent(bench.tenant, bench.gateway, 100).await.unwrap();
    assert!(history.len() <= 7, "20 connects and disconnects, a bounded history: {}", history.len());
}

per_backend!(
    connections_beyond_the_handshakes_in_progress_are_closed_at_once,
    new_connections_per_second_are_limited_per_source_address,
    a_keep_alive_of_zero_gets_the_servers_maximum,
    a_session_whose_socket_does_not_drain_is_closed_after_the_write_timeout,
    a_gateway_over_its_message_rate_is_slowed_down_and_loses_nothing,
    status_flaps_are_written_once_per_interval_and_the_latest_state_wins,
    a_gateway_reconnecting_in_a_loop_writes_a_bounded_connection_history,
);
