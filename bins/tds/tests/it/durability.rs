//! SPEC §2 delivery guarantee against the real binary: a PUBACK means the readings are committed.
//! Gateways publish numbered `QoS` 1 batches while `tds serve` is killed with SIGKILL and started
//! again; each gateway keeps its unacknowledged messages and resends them on a new connection.
//! Every acknowledged reading must be stored, with the value sent, and nothing twice. Twice: at a
//! steady pace, and during an overload (issue 20), with more messages in flight than the
//! server's queue holds and the per-gateway rate limit lifted, so that the writer is behind and
//! sessions wait on the full queue when the server dies.

use crate::pki::unzip;
use crate::support::{Tds, free_port, text};
use chrono::{DateTime, TimeZone, Utc};
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, Incoming, MqttOptions, Outgoing, QoS, TlsConfiguration,
    Transport,
};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tds_store::{DbOptions, Page, Store};
use tds_testkit::{TestDb, per_backend};

/// How hard the gateways push.
#[derive(Debug, Clone, Copy)]
struct Load {
    gateways: usize,
    /// Unacknowledged messages a gateway keeps in flight.
    window: usize,
    /// Every gateway has at least this many acknowledged messages when the server is killed…
    acked_before_kill: usize,
    /// …and after its resends, sends at least this many new ones to the restarted server.
    new_after_restart: u64,
    /// For `tds serve`.
    env: &'static [(&'static str, &'static str)],
    /// Messages waiting for the writer when the server is killed, at least (the server's
    /// `tds_ingest_queue_depth` as of its last commit).
    min_waiting: f64,
}

const STEADY: Load =
    Load { gateways: 3, window: 8, acked_before_kill: 40, new_after_restart: 20, env: &[], min_waiting: 0.0 };

/// 1,536 messages in flight, as fast as the server acknowledges, against a queue of 256 messages
/// and commits of at most 100 (200 readings): the queue stays full and sessions wait for room.
const OVERLOAD: Load = Load {
    gateways: 16,
    window: 96,
    acked_before_kill: 300,
    new_after_restart: 200,
    env: &[
        ("TDS_MQTT_MESSAGES_PER_SECOND", "1000000"),
        ("TDS_MQTT_MESSAGE_BURST", "1000000"),
        ("TDS_MQTT_QUEUE_CAPACITY", "256"),
        ("TDS_MQTT_COMMIT_MAX_READINGS", "200"),
    ],
    // An eighth of the queue beyond the batch the writer just took: it is behind.
    min_waiting: 32.0,
};

/// Request queue of the test clients that [`connect`] makes for other suites.
const WINDOW: usize = 8;

fn mac(g: usize) -> String {
    format!("aa:bb:cc:00:01:{:02x}", g + 1)
}

/// The instant of reading `k` (0 or 1) of message `n`: every reading of a gateway has its own.
fn reading_time(n: u64, k: u64) -> DateTime<Utc> {
    let base = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().unwrap();
    base + chrono::Duration::seconds((2 * n + k) as i64)
}

/// The value of reading `k` of message `n` of gateway `g`: distinct per gateway and message.
fn reading_value(g: usize, n: u64, k: u64) -> f64 {
    (g as f64) * 1_000_000.0 + (n as f64) * 2.0 + (k as f64) + 0.25
}

fn message(g: usize, n: u64) -> String {
    let mac = mac(g);
    let t0 = reading_time(n, 0).to_rfc3339();
    let t1 = reading_time(n, 1).to_rfc3339();
    let (v0, v1) = (reading_value(g, n, 0), reading_value(g, n, 1));
    format!(
        r#"{{"gateway_mac":"{mac}","timestamp":"{t0}","leituras":[{{"dispositivo_codigo":"G{g}A","valor":{v0},"unidade":"kWh","timestamp":"{t0}"}},{{"dispositivo_codigo":"G{g}B","valor":{v1},"unidade":"kWh","timestamp":"{t1}"}}]}}"#
    )
}

fn spawn_server(tds: &Tds, http: u16, mqtt: u16, env: &[(&str, &str)]) -> Child {
    tds.command()
        .arg("serve")
        .envs(env.iter().copied())
        .env("TDS_HTTP_ADDR", format!("127.0.0.1:{http}"))
        .env("TDS_MQTT_ADDR", format!("127.0.0.1:{mqtt}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

async fn wait_listening(mqtt: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", mqtt)).is_err() {
        assert!(Instant::now() < deadline, "the MQTT endpoint never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) fn tls(dir: &Path) -> rustls::ClientConfig {
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut read("ca.crt").as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let certs = rustls_pemfile::certs(&mut read("client.crt").as_slice()).map(Result::unwrap).collect();
    let key = rustls_pemfile::private_key(&mut read("client.key").as_slice()).unwrap().unwrap();
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .unwrap()
}

/// What one gateway saw.
#[derive(Debug, Default)]
struct Outcome {
    /// Messages the server acknowledged.
    acked: BTreeSet<u64>,
    /// Every message number published at least once (`0..next`).
    next: u64,
    /// Messages published again on a later connection because they had no PUBACK.
    resent: usize,
    connections: usize,
}

/// Connects with a new client (no state carried over from an earlier connection) and waits for
/// the CONNACK; `None` while the server is down.
pub(crate) async fn connect(
    port: u16,
    client_id: &str,
    tls: &Arc<rustls::ClientConfig>,
) -> Option<(AsyncClient, EventLoop)> {
    connect_with_window(port, client_id, tls, WINDOW).await
}

async fn connect_with_window(
    port: u16,
    client_id: &str,
    tls: &Arc<rustls::ClientConfig>,
    window: usize,
) -> Option<(AsyncClient, EventLoop)> {
    let mut opts = MqttOptions::new(client_id, "localhost", port);
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_clean_session(true);
    opts.set_inflight(u16::try_from(window).unwrap());
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls.clone())));
    let (client, mut events) = AsyncClient::new(opts, 2 * window);
    loop {
        match tokio::time::timeout(Duration::from_secs(5), events.poll()).await {
            Ok(Ok(Event::Incoming(Incoming::ConnAck(ack)))) => {
                assert_eq!(ack.code, ConnectReturnCode::Success);
                return Some((client, events));
            }
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => return None,
        }
    }
}

/// Publishes numbered messages with up to `load.window` unacknowledged, until the server has
/// been killed (`killed`), this gateway reconnected, resent everything unacknowledged and had
/// `load.new_after_restart` new messages acknowledged.
async fn gateway(
    load: Load,
    g: usize,
    port: u16,
    bundle: PathBuf,
    killed: Arc<AtomicBool>,
    acked_count: Arc<AtomicUsize>,
) -> Outcome {
    let tls = Arc::new(tls(&bundle));
    let client_id = mac(g);
    let topic = format!("tds_new/gateway/{client_id}/telemetria");
    let mut out = Outcome::default();
    let mut unacked: BTreeSet<u64> = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        assert!(Instant::now() < deadline, "gateway {g} did not finish: {out:?}");
        let after_kill = killed.load(Ordering::SeqCst);
        let Some((client, mut events)) = connect_with_window(port, &client_id, &tls, load.window).await
        else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        out.connections += 1;
        // Unacknowledged messages first, oldest first, then new ones.
        let mut resend: VecDeque<u64> = unacked.iter().copied().collect();
        if out.connections > 1 {
            out.resent += resend.len();
        }
        let first_new = out.next;
        // Published on this connection, waiting for rumqttc to give them a packet id.
        let mut queued: VecDeque<u64> = VecDeque::new();
        let mut by_pkid: HashMap<u16, u64> = HashMap::new();
        loop {
            let done = after_kill && out.next >= first_new + load.new_after_restart && unacked.is_empty();
            if done {
                let _ = client.disconnect().await;
                return out;
            }
            while queued.len() + by_pkid.len() < load.window {
                let n = match resend.pop_front() {
                    Some(n) => n,
                    None if after_kill && out.next >= first_new + load.new_after_restart => break,
                    None => {
                        out.next += 1;
                        out.next - 1
                    }
                };
                unacked.insert(n);
                client.try_publish(&topic, QoS::AtLeastOnce, false, message(g, n)).unwrap();
                queued.push_back(n);
            }
            match tokio::time::timeout(Duration::from_secs(5), events.poll()).await {
                Ok(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => {
                    let n = queued.pop_front().expect("an outgoing publish was queued");
                    by_pkid.insert(pkid, n);
                }
                Ok(Ok(Event::Incoming(Incoming::PubAck(ack)))) => {
                    let n = by_pkid.remove(&ack.pkid).expect("a PUBACK names a packet in flight");
                    unacked.remove(&n);
                    out.acked.insert(n);
                    acked_count.store(out.acked.len(), Ordering::SeqCst);
                }
                Ok(Ok(_)) => {}
                // The server went away (or stopped answering): reconnect and resend.
                Ok(Err(_)) | Err(_) => break,
            }
        }
    }
}

async fn acknowledged_readings_survive_a_killed_server(db: TestDb) {
    survives_a_kill(db, STEADY).await;
}

async fn acknowledged_readings_survive_a_server_killed_during_an_overload(db: TestDb) {
    survives_a_kill(db, OVERLOAD).await;
}

/// The server's queue depth (messages waiting for the writer) as it last reported it.
async fn queue_depth(http: u16) -> Option<f64> {
    let metrics = reqwest::get(format!("http://127.0.0.1:{http}/metrics")).await.ok()?.text().await.ok()?;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("tds_ingest_queue_depth ").and_then(|v| v.trim().parse().ok()))
}

async fn survives_a_kill(db: TestDb, load: Load) {
    let started = Instant::now();
    let tds = Tds::new(Some(&db.url));
    tds.ok(&["ca", "init", "--algorithm", "ecdsa-p384"]);
    tds.ok(&["tenant", "create", "--name", "Acme"]);
    let gateways =
        (0..load.gateways).map(|g| format!("{},GW{g},Bloco {g}\n", mac(g))).collect::<Vec<_>>().concat();
    tds.ok(&["gateway", "import", "--tenant", "Acme", tds.file("g.csv", &gateways).to_str().unwrap()]);
    let devices = (0..load.gateways)
        .map(|g| {
            let m = mac(g);
            format!("{m},G{g}A,Meter A,MEDIDOR,energy,counter,kWh,1,100\n{m},G{g}B,Meter B,MEDIDOR,energy,counter,kWh,2,100\n")
        })
        .collect::<Vec<_>>()
        .concat();
    tds.ok(&["device", "import", "--tenant", "Acme", tds.file("d.csv", &devices).to_str().unwrap()]);
    for g in 0..load.gateways {
        tds.ok(&["cert", "issue", "--mac", &mac(g), "--out", "bundles", "--key", "ecdsa-p256"]);
        let zip = tds.path().join(format!("bundles/{}.zip", mac(g).replace(':', "-")));
        unzip(&zip, &tds.path().join(format!("gw{g}")));
    }

    let (http, mqtt) = (free_port(), free_port());
    let server = spawn_server(&tds, http, mqtt, load.env);
    wait_listening(mqtt).await;

    let killed = Arc::new(AtomicBool::new(false));
    let counts: Vec<Arc<AtomicUsize>> = (0..load.gateways).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let clients: Vec<_> = (0..load.gateways)
        .map(|g| {
            tokio::spawn(gateway(
                load,
                g,
                mqtt,
                tds.path().join(format!("gw{g}")),
                killed.clone(),
                counts[g].clone(),
            ))
        })
        .collect();

    // Kill while every gateway is mid-stream, with messages in flight.
    let deadline = Instant::now() + Duration::from_mins(1);
    while counts.iter().any(|c| c.load(Ordering::SeqCst) < load.acked_before_kill) {
        assert!(Instant::now() < deadline, "the gateways were not acknowledged in time");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The gauge is the depth at the writer's last commit: the most it showed over a moment.
    let mut waiting: Option<f64> = None;
    let sampled_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < sampled_until && waiting.is_none_or(|w| w < load.min_waiting) {
        if let Some(w) = queue_depth(http).await {
            waiting = Some(waiting.map_or(w, |m| m.max(w)));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        waiting.is_some_and(|w| w >= load.min_waiting),
        "{waiting:?} messages waiting for the writer at the kill: not the load meant"
    );
    killed.store(true, Ordering::SeqCst);
    let pid = server.id().to_string();
    assert!(Command::new("kill").args(["-KILL", &pid]).status().unwrap().success());
    let out = tokio::task::spawn_blocking(move || server.wait_with_output()).await.unwrap().unwrap();
    assert!(!out.status.success(), "the server was killed");
    let killed_at: Vec<usize> = counts.iter().map(|c| c.load(Ordering::SeqCst)).collect();

    let server = spawn_server(&tds, http, mqtt, load.env);
    let mut outcomes = Vec::new();
    for c in clients {
        outcomes.push(c.await.unwrap());
    }
    let pid = server.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let out = tokio::task::spawn_blocking(move || server.wait_with_output()).await.unwrap().unwrap();
    assert!(out.status.success(), "the restarted server did not stop cleanly: {}", text(&out.stderr));

    let store = Store::open(&db.url, &DbOptions::default()).await.unwrap();
    let tenant = store.tenants().staff_by_name("Acme").await.unwrap();
    let from = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().unwrap();
    let to = from + chrono::Duration::days(365);
    // (gateway, message) -> stored readings (k, value).
    let mut stored: HashMap<(usize, u64), Vec<(u64, f64)>> = HashMap::new();
    let mut rows = 0usize;
    for device in store.devices().list(tenant.id).await.unwrap() {
        let code = device.code.to_string();
        let g: usize = code[1..code.len() - 1].parse().unwrap();
        let k = u64::from(code.ends_with('B'));
        for r in store.readings().for_device(tenant.id, device.id, from, to, 1_000_000).await.unwrap() {
            let seconds = (r.time - reading_time(0, 0)).num_seconds() as u64;
            assert_eq!(seconds % 2, k, "{code} at {} is not an instant of its own", r.time);
            let n = seconds / 2;
            assert_eq!(
                r.value,
                reading_value(g, n, k),
                "{code} message {n}: stored value differs from the sent one"
            );
            stored.entry((g, n)).or_default().push((k, r.value));
            rows += 1;
        }
    }
    for (&(g, n), readings) in &stored {
        assert!(n < outcomes[g].next, "gateway {g} message {n} was never sent");
        assert_eq!(readings.len(), 2, "gateway {g} message {n} is stored partly or twice: {readings:?}");
    }
    assert_eq!(rows, stored.len() * 2);
    for (g, outcome) in outcomes.iter().enumerate() {
        assert!(outcome.connections >= 2, "gateway {g} reconnected: {outcome:?}");
        for &n in &outcome.acked {
            assert!(
                stored.contains_key(&(g, n)),
                "gateway {g} message {n} was acknowledged but is not stored"
            );
        }
        assert_eq!(outcome.acked.len() as u64, outcome.next, "gateway {g}: every message ends acknowledged");
    }
    let dead = store.rejected().staff_list(None, Page::new(1, 50)).await.unwrap().items;
    assert!(dead.is_empty(), "resends of the same values are not conflicts: {dead:?}");
    let resent: usize = outcomes.iter().map(|o| o.resent).sum();
    eprintln!(
        "durability on {} ({load:?}): acked before the kill {killed_at:?}, {waiting:?} messages waiting for \
         the writer, resent {resent}, stored {} messages, in {:.1} s",
        store.db().backend(),
        stored.len(),
        started.elapsed().as_secs_f64()
    );
}

per_backend!(
    acknowledged_readings_survive_a_killed_server,
    acknowledged_readings_survive_a_server_killed_during_an_overload,
);
