//! SPEC §2 Limits against the real binary: while a gateway with a valid certificate floods the
//! endpoint (messages as fast as it can, batches over the readings limit, status flaps) and a
//! thousand connections from other loopback addresses start a TLS handshake and stall, a
//! well-behaved gateway keeps its PUBACKs prompt and loses nothing, and the server's memory
//! stays bounded.
//!
//! Bounds asserted (generous, for a loaded 2-core CI machine): the good gateway's publish→PUBACK
//! p99 under [`P99_LIMIT`], every acknowledged reading stored, the server's peak resident memory
//! (`VmHWM`) under [`MEMORY_LIMIT_KB`]. The figures are printed.

use crate::durability::tls;
use crate::pki::unzip;
use crate::support::{Tds, free_port, text};
use chrono::{DateTime, TimeZone, Utc};
use rumqttc::{
    AsyncClient, Event, EventLoop, Incoming, MqttOptions, Outgoing, QoS, TlsConfiguration, Transport,
};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tds_store::{DbOptions, Store};
use tds_testkit::{TestDb, per_backend};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

const GOOD: &str = "aa:bb:cc:00:02:01";
const FLOODER: &str = "aa:bb:cc:00:02:02";
/// How long the abuse lasts.
const ABUSE: Duration = Duration::from_secs(20);
/// Stalled handshakes held open at once, from [`ADDRESSES`] loopback addresses.
const IDLE_CONNECTIONS: usize = 1_000;
const ADDRESSES: usize = 50;
const P99_LIMIT: Duration = Duration::from_secs(1);
/// The server's per-gateway message rate and burst in this test, below the defaults (50 and
/// 200): the flooding gateway must outrun them however slow the machine. A loaded CI machine
/// read only 1,243 of its messages in 21 s with a debug build, under the default allowance of
/// 200 + 50 × 21 = 1,250, and nothing was throttled. The good gateway sends 10 a second.
const MESSAGES_PER_SECOND: u32 = 20;
const MESSAGE_BURST: u32 = 40;
const MEMORY_LIMIT_KB: u64 = 400 * 1024;

/// One abused server at a time: the SQLite and PostgreSQL runs start together (the first tests
/// of the binary), and two floods of handshakes on a 2-core machine measure the tests fighting
/// for the cores, not the server. Run side by side, a CI run saw the good gateway's p99 at 1.3 s
/// (p50 25 ms) where one alone gives 11 ms (p50 2.8 ms).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn connect(port: u16, mac: &str, bundle: &Path, window: usize) -> (AsyncClient, EventLoop) {
    let mut opts = MqttOptions::new(mac, "localhost", port);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_inflight(u16::try_from(window).unwrap());
    opts.set_max_packet_size(1024 * 1024, 1024 * 1024);
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(tls(bundle)))));
    let (client, mut events) = AsyncClient::new(opts, 2 * window);
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.poll()).await {
            Ok(Ok(Event::Incoming(Incoming::ConnAck(_)))) => return (client, events),
            Ok(Ok(_)) => {}
            other => panic!("{mac} cannot connect: {other:?}"),
        }
    }
}

fn reading_time(n: u64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().unwrap() + chrono::Duration::seconds(n as i64)
}

/// The good gateway's message `n`: one reading of G01 at its own instant.
fn good_message(n: u64) -> String {
    let t = reading_time(n).to_rfc3339();
    format!(
        r#"{{"gateway_mac":"{GOOD}","timestamp":"{t}","leituras":[{{"dispositivo_codigo":"G01","valor":{n},"unidade":"kWh"}}]}}"#
    )
}

/// Publishes a message every 100 ms (up to 20 unacknowledged) until `stop`; returns the
/// acknowledged message numbers and each one's publish→PUBACK latency.
async fn good_gateway(port: u16, bundle: &Path, stop: Arc<AtomicBool>) -> (BTreeSet<u64>, Vec<Duration>) {
    let (client, mut events) = connect(port, GOOD, bundle, 20).await;
    let topic = format!("tds_new/gateway/{GOOD}/telemetria");
    let mut next = 0u64;
    let mut queued: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut by_pkid: HashMap<u16, (u64, Instant)> = HashMap::new();
    let mut acked = BTreeSet::new();
    let mut latencies = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        if stop.load(Ordering::SeqCst) && queued.is_empty() && by_pkid.is_empty() {
            let _ = client.disconnect().await;
            return (acked, latencies);
        }
        tokio::select! {
            _ = tick.tick(), if !stop.load(Ordering::SeqCst) && queued.len() + by_pkid.len() < 20 => {
                client.try_publish(&topic, QoS::AtLeastOnce, false, good_message(next)).unwrap();
                queued.push_back((next, Instant::now()));
                next += 1;
            }
            event = tokio::time::timeout(Duration::from_secs(30), events.poll()) => match event {
                Ok(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => {
                    by_pkid.insert(pkid, queued.pop_front().expect("a publish was queued"));
                }
                Ok(Ok(Event::Incoming(Incoming::PubAck(ack)))) => {
                    let (n, sent) = by_pkid.remove(&ack.pkid).expect("a PUBACK names a packet in flight");
                    latencies.push(sent.elapsed());
                    acked.insert(n);
                }
                Ok(Ok(_)) => {}
                other => panic!("the good gateway lost its connection: {other:?}"),
            },
        }
    }
}

/// The flooding gateway: as fast as the server reads, status flaps, batches over the readings
/// limit (about 100 KB of zeros) and ordinary batches; returns the messages it got acknowledged.
async fn flooder(
    port: u16,
    bundle: &Path,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    connected: Arc<AtomicBool>,
) {
    let (client, mut events) = connect(port, FLOODER, bundle, 100).await;
    connected.store(true, Ordering::SeqCst);
    let zeros = format!(
        r#"{{"gateway_mac":"{FLOODER}","timestamp":"2026-11-01T00:00:00Z","leituras":[{}0]}}"#,
        "0,".repeat(50_000)
    );
    let publisher = {
        let client = client.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let telemetry = format!("tds_new/gateway/{FLOODER}/telemetria");
            let status = format!("tds_new/gateway/{FLOODER}/status");
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let sent = match n % 3 {
                    0 => client.publish(&telemetry, QoS::AtLeastOnce, false, zeros.clone()).await,
                    1 => {
                        let state = if n.is_multiple_of(2) { "online" } else { "offline" };
                        client.publish(&status, QoS::AtLeastOnce, false, state).await
                    }
                    _ => {
                        let t = reading_time(n).to_rfc3339();
                        let msg = format!(
                            r#"{{"gateway_mac":"{FLOODER}","timestamp":"{t}","leituras":[{{"dispositivo_codigo":"F01","valor":{n}}}]}}"#
                        );
                        client.publish(&telemetry, QoS::AtLeastOnce, false, msg).await
                    }
                };
                if sent.is_err() {
                    return;
                }
                n += 1;
            }
        })
    };
    while !stop.load(Ordering::SeqCst) {
        match tokio::time::timeout(Duration::from_secs(1), events.poll()).await {
            Ok(Ok(Event::Incoming(Incoming::PubAck(_)))) => {
                acked.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => panic!("the flooding gateway was disconnected (back-pressure, not refusal): {e}"),
        }
    }
    publisher.abort();
    // Not `disconnect().await`: the request queue may be full and nothing polls it any more.
    let _ = client.try_disconnect();
}

/// A TCP connection from `ip` that starts a TLS handshake (a record header announcing a
/// `ClientHello`) and stalls.
async fn stalled_handshake(ip: std::net::IpAddr, port: u16) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind((ip, 0).into())?;
    let mut tcp = socket.connect(([127, 0, 0, 1], port).into()).await?;
    tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).await?;
    Ok(tcp)
}

/// Keeps [`IDLE_CONNECTIONS`] stalled handshakes open from [`ADDRESSES`] addresses until `stop`,
/// reopening those the server closes; returns how many it opened.
async fn stallers(port: u16, stop: Arc<AtomicBool>) -> usize {
    let opened = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..IDLE_CONNECTIONS)
        .map(|i| {
            let ip = std::net::IpAddr::from([127, 0, 0, 2 + u8::try_from(i % ADDRESSES).unwrap()]);
            let (stop, opened) = (stop.clone(), opened.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    if let Ok(mut tcp) = stalled_handshake(ip, port).await {
                        opened.fetch_add(1, Ordering::Relaxed);
                        let mut buf = [0u8; 16];
                        // Until the server closes it (or the abuse ends).
                        let _ =
                            tokio::time::timeout(ABUSE, tokio::io::AsyncReadExt::read(&mut tcp, &mut buf))
                                .await;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    opened.load(Ordering::Relaxed)
}

/// `VmRSS` and `VmHWM` of a process, in KiB.
fn memory_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Sums the samples of a Prometheus metric whose line starts with `prefix`.
fn metric(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |a, b| a + b)
}

/// Runs `task` to completion on a new thread with its own runtime.
fn on_own_thread<T: Send + 'static>(
    task: impl std::future::Future<Output = T> + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(task)
    })
}

fn spawn_server(tds: &Tds, http: u16, mqtt: u16) -> Child {
    tds.command()
        .arg("serve")
        .env("TDS_HTTP_ADDR", format!("127.0.0.1:{http}"))
        .env("TDS_MQTT_ADDR", format!("127.0.0.1:{mqtt}"))
        .env("TDS_MQTT_MESSAGES_PER_SECOND", MESSAGES_PER_SECOND.to_string())
        .env("TDS_MQTT_MESSAGE_BURST", MESSAGE_BURST.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

async fn a_good_gateway_is_served_while_the_endpoint_is_abused(db: TestDb) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let _ = rlimit::increase_nofile_limit(8 * 1024);
    let tds = Tds::new(Some(&db.url));
    tds.ok(&["ca", "init", "--algorithm", "ecdsa-p384"]);
    tds.ok(&["tenant", "create", "--name", "Acme"]);
    let gateways = format!("{GOOD},GOOD,Bom\n{FLOODER},FLOOD,Mau\n");
    tds.ok(&["gateway", "import", "--tenant", "Acme", tds.file("g.csv", &gateways).to_str().unwrap()]);
    let devices = format!(
        "{GOOD},G01,Meter,MEDIDOR,energy,counter,kWh,1,100\n{FLOODER},F01,Meter,MEDIDOR,energy,counter,kWh,1,100\n"
    );
    tds.ok(&["device", "import", "--tenant", "Acme", tds.file("d.csv", &devices).to_str().unwrap()]);
    for (mac, dir) in [(GOOD, "good"), (FLOODER, "flood")] {
        tds.ok(&["cert", "issue", "--mac", mac, "--out", "bundles", "--key", "ecdsa-p256"]);
        unzip(&tds.path().join(format!("bundles/{}.zip", mac.replace(':', "-"))), &tds.path().join(dir));
    }
    let (http, mqtt) = (free_port(), free_port());
    let server = spawn_server(&tds, http, mqtt);
    let pid = server.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", mqtt)).is_err() {
        assert!(Instant::now() < deadline, "the MQTT endpoint never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, idle_hwm) = memory_kb(pid);
    eprintln!("abuse: server up, VmHWM {} MiB", idle_hwm / 1024);

    let stop = Arc::new(AtomicBool::new(false));
    let good = tokio::spawn({
        let (stop, bundle) = (stop.clone(), tds.path().join("good"));
        async move { good_gateway(mqtt, &bundle, stop).await }
    });
    // The good gateway is connected before the abuse starts: during it, the handshake slots
    // are the attackers' (a new connection may wait for one).
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The attackers run on threads of their own, so that the good gateway's latencies are the
    // server's, not those of a client runtime they keep busy.
    let flooded = Arc::new(AtomicUsize::new(0));
    let flooder_connected = Arc::new(AtomicBool::new(false));
    let flood = on_own_thread({
        let (stop, bundle, flooded) = (stop.clone(), tds.path().join("flood"), flooded.clone());
        let connected = flooder_connected.clone();
        async move { flooder(mqtt, &bundle, stop, flooded, connected).await }
    });
    // The flooder too is connected before the handshakes stall: it abuses as a gateway with a
    // session, and must not race the stallers for a handshake slot (on a loaded machine it lost).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !flooder_connected.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the flooding gateway never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stall = on_own_thread(stallers(mqtt, stop.clone()));

    let started = Instant::now();
    let mut peak_rss = 0;
    while started.elapsed() < ABUSE {
        tokio::time::sleep(Duration::from_millis(500)).await;
        peak_rss = peak_rss.max(memory_kb(pid).0);
    }
    let (rss, hwm) = memory_kb(pid);
    eprintln!("abuse: {ABUSE:?} of abuse over, VmRSS {} MiB VmHWM {} MiB", rss / 1024, hwm / 1024);
    let metrics =
        reqwest::get(format!("http://127.0.0.1:{http}/metrics")).await.unwrap().text().await.unwrap();
    stop.store(true, Ordering::SeqCst);
    let (acked, mut latencies) = good.await.unwrap();
    eprintln!("abuse: the good gateway is done");
    flood.join().unwrap();
    eprintln!("abuse: the flooding gateway is done");
    let stalled = stall.join().unwrap();
    eprintln!("abuse: the stalled handshakes are done");

    Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    let out = tokio::task::spawn_blocking(move || server.wait_with_output()).await.unwrap().unwrap();
    assert!(out.status.success(), "the server did not stop cleanly: {}", text(&out.stderr));

    latencies.sort();
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    eprintln!(
        "abuse on {}: server memory idle VmHWM {} MiB, during the abuse VmRSS {} MiB (peak sampled {} MiB), VmHWM {} MiB; \
         good gateway {} messages acknowledged, PUBACK p50 {:?} p99 {:?} max {:?}; flooding gateway {} messages acknowledged; \
         {} stalled handshakes opened (each reopened 200 ms after the server closed it); refused: handshakes {} connect_rate {} handshake_timeout {}; throttled: messages {} status {} history {}; \
         dead letters too_many_readings {}, truncated {}",
        db.store.db().backend(),
        idle_hwm / 1024,
        rss / 1024,
        peak_rss / 1024,
        hwm / 1024,
        acked.len(),
        p50,
        p99,
        latencies.last().copied().unwrap_or_default(),
        flooded.load(Ordering::Relaxed),
        stalled,
        metric(&metrics, r#"tds_ingest_refusals_total{reason="handshakes"}"#),
        metric(&metrics, r#"tds_ingest_refusals_total{reason="connect_rate"}"#),
        metric(&metrics, r#"tds_ingest_refusals_total{reason="handshake_timeout"}"#),
        metric(&metrics, r#"tds_ingest_throttled_total{what="messages"}"#),
        metric(&metrics, r#"tds_ingest_throttled_total{what="status"}"#),
        metric(&metrics, r#"tds_ingest_throttled_total{what="history"}"#),
        metric(&metrics, r#"tds_ingest_dead_letters_total{reason="too_many_readings"}"#),
        metric(&metrics, "tds_ingest_dead_letter_truncated_total"),
    );

    assert!(acked.len() >= 100, "the good gateway was served: {} messages", acked.len());
    assert!(p99 < P99_LIMIT, "good gateway PUBACK p99 {p99:?} over {P99_LIMIT:?}");
    assert!(hwm < MEMORY_LIMIT_KB, "server memory peaked at {} MiB", hwm / 1024);
    assert!(metric(&metrics, r#"tds_ingest_refusals_total{reason="handshakes"}"#) > 0.0, "{metrics}");
    assert!(metric(&metrics, r#"tds_ingest_throttled_total{what="messages"}"#) > 0.0, "{metrics}");
    assert!(metric(&metrics, r#"tds_ingest_dead_letters_total{reason="too_many_readings"}"#) > 0.0);

    // Nothing acknowledged to the good gateway is lost.
    let store = Store::open(&db.url, &DbOptions::default()).await.unwrap();
    let tenant = store.tenants().staff_by_name("Acme").await.unwrap();
    let device = store
        .devices()
        .list(tenant.id)
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.code.to_string() == "G01")
        .unwrap();
    let stored: BTreeSet<u64> = store
        .readings()
        .for_device(tenant.id, device.id, reading_time(0), reading_time(1_000_000), 1_000_000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.value as u64)
        .collect();
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
}

per_backend!(a_good_gateway_is_served_while_the_endpoint_is_abused);
