//! Scale-out mode end to end (SPEC §2): Debian's Mosquitto set up by `tds broker-config` takes
//! the gateways (mutual TLS, `use_identity_as_username`, the ACL), two `tds serve` in broker mode
//! on one database share its shared subscription, and gateways publish with `mosquitto_pub`.

use crate::pki::unzip;
use crate::support::{Tds, free_port, text};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tds_store::{DbOptions, Page, Store};
use tds_testkit::{TestDb, per_backend};

const GATEWAYS: [&str; 4] =
    ["aa:bb:cc:00:00:01", "aa:bb:cc:00:00:02", "aa:bb:cc:00:00:03", "aa:bb:cc:00:00:04"];

/// Mosquitto with every log type on, its log collected in `log`.
pub(crate) struct Broker {
    pub(crate) child: Child,
    log: Arc<Mutex<String>>,
}

impl Broker {
    pub(crate) async fn start(conf: &Path, port: u16) -> Self {
        let mut child = Command::new("mosquitto")
            .arg("-v")
            .arg("-c")
            .arg(conf)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("Debian's mosquitto is installed (scripts/test.sh installs it)");
        let log = Arc::new(Mutex::new(String::new()));
        let (stderr, sink) = (child.stderr.take().unwrap(), log.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "Mosquitto never listened:\n{}", log.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child, log }
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the consumer `client_id` has its subscriptions acknowledged.
    pub(crate) async fn wait_for_subscriptions(&self, client_id: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let suback = format!("Sending SUBACK to {client_id}");
        while self.log().matches(&suback).count() < tds_ingest::broker::SUBSCRIPTIONS.len() {
            assert!(Instant::now() < deadline, "{client_id} never subscribed:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn stop(&mut self) {
        self.child.kill().ok();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `tds serve` in broker mode, its log in `{dir}/{name}.log`.
pub(crate) struct Instance {
    child: Child,
    http: u16,
    mqtt: u16,
    name: &'static str,
}

impl Instance {
    pub(crate) async fn start(
        tds: &Tds,
        name: &'static str,
        broker_port: u16,
        extra: &[(&str, &str)],
    ) -> Self {
        let (http, mqtt) = (free_port(), free_port());
        let log = std::fs::File::create(tds.path().join(format!("{name}.log"))).unwrap();
        let mut cmd = tds.command();
        cmd.arg("serve")
            .env("TDS_LOG_LEVEL", "info,sqlx=warn")
            .env("TDS_HTTP_ADDR", format!("127.0.0.1:{http}"))
            .env("TDS_MQTT_ADDR", format!("127.0.0.1:{mqtt}"))
            .env("TDS_MQTT_MODE", "broker")
            .env("TDS_BROKER_URL", format!("mqtts://127.0.0.1:{broker_port}"))
            .env("TDS_BROKER_CLIENT_ID", name)
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let instance = Self { child, http, mqtt, name };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = reqwest::get(format!("http://127.0.0.1:{http}/readyz")).await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(Instant::now() < deadline, "{name} never became ready:\n{}", instance.log(tds));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        instance
    }

    pub(crate) fn log(&self, tds: &Tds) -> String {
        std::fs::read_to_string(tds.path().join(format!("{}.log", self.name))).unwrap_or_default()
    }

    /// `tds_ingest_messages_total{kind="telemetry"}` from the instance's /metrics.
    async fn telemetry_messages(&self) -> u64 {
        let body = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.http))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        body.lines()
            .find_map(|l| l.strip_prefix(r#"tds_ingest_messages_total{kind="telemetry"} "#))
            .map_or(0, |n| n.trim().parse().unwrap())
    }

    pub(crate) async fn stop(mut self) {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        let status = tokio::task::spawn_blocking(move || self.child.wait()).await.unwrap().unwrap();
        assert!(status.success(), "{status}");
    }
}

/// Publishes each of `lines` as one `QoS` 1 message on `topic` over one connection, as gateway
/// `gw` (its bundle unzipped in `gwN/`); `Ok` when Mosquitto acknowledged them all.
fn publish(dir: &Path, port: u16, gw: usize, topic: &str, lines: &[String]) -> Result<(), String> {
    let mut child = Command::new("mosquitto_pub")
        .current_dir(dir)
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--cafile", "data/pki/ca.crt"])
        .arg("--cert")
        .arg(format!("gw{gw}/client.crt"))
        .arg("--key")
        .arg(format!("gw{gw}/client.key"))
        .args(["-q", "1", "-i", GATEWAYS[gw - 1], "-t", topic])
        // One message: -m (a refused connection ends mosquitto_pub; with -l it would retry).
        .args(if let [one] = lines { vec!["-m", one.as_str()] } else { vec!["-l"] })
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("Debian's mosquitto-clients are installed (scripts/test.sh installs them)");
    let mut stdin = child.stdin.take().unwrap();
    if lines.len() > 1 {
        for line in lines {
            writeln!(stdin, "{line}").unwrap();
        }
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    if out.status.success() { Ok(()) } else { Err(format!("{}{}", text(&out.stdout), text(&out.stderr))) }
}

fn telemetry_topic(gw: usize) -> String {
    format!("tds_new/gateway/{}/telemetria", GATEWAYS[gw - 1])
}

/// Message `i` of gateway `gw`: one reading of D01 at minute `i`, valued `gw * 1000 + i`.
fn message(gw: usize, i: u32) -> String {
    let (h, m) = (i / 60, i % 60);
    format!(
        r#"{{"gateway_mac":"{}","timestamp":"2026-11-23T{h:02}:{m:02}:00Z","leituras":[{{"dispositivo_codigo":"D01","valor":{}}}]}}"#,
        GATEWAYS[gw - 1],
        gw as u32 * 1000 + i
    )
}

async fn readings_by_gateway(store: &Store) -> Vec<Vec<f64>> {
    let tenant = store.tenants().staff_by_name("Acme").await.unwrap();
    let from = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().to_utc();
    let to = chrono::DateTime::parse_from_rfc3339("2027-01-01T00:00:00Z").unwrap().to_utc();
    let mut out = Vec::new();
    for mac in GATEWAYS {
        let gateway = store.gateways().staff_by_mac(tds_domain::Mac::parse(mac).unwrap()).await.unwrap();
        let mut values = Vec::new();
        for d in store.devices().list_for_gateway(tenant.id, gateway.id, false).await.unwrap() {
            for r in store.readings().for_device(tenant.id, d.id, from, to, 10_000).await.unwrap() {
                values.push(r.value);
            }
        }
        values.sort_by(f64::total_cmp);
        out.push(values);
    }
    out
}

async fn wait_for_readings(store: &Store, total: usize, logs: impl Fn() -> String) -> Vec<Vec<f64>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let readings = readings_by_gateway(store).await;
        let n: usize = readings.iter().map(Vec::len).sum();
        if n >= total || Instant::now() > deadline {
            assert_eq!(n, total, "{readings:?}\n{}", logs());
            return readings;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn two_instances_behind_mosquitto_share_the_load_and_store_every_reading_once(db: TestDb) {
    let tds = Tds::new(Some(&db.url));
    let dir = tds.path().to_owned();
    tds.ok(&["ca", "init", "--algorithm", "ecdsa-p384"]);
    tds.ok(&["tenant", "create", "--name", "Acme"]);
    let gws: Vec<String> =
        GATEWAYS.iter().enumerate().map(|(i, m)| format!("{m},GW{},Bloco {i}\n", i + 1)).collect();
    let devs: Vec<String> =
        GATEWAYS.iter().map(|m| format!("{m},D01,Agua,MEDIDOR,water,counter,m3,1,100\n")).collect();
    let (gws, devs) = (gws.concat(), devs.concat());
    tds.ok(&["gateway", "import", "--tenant", "Acme", tds.file("g.csv", &gws).to_str().unwrap()]);
    tds.ok(&["device", "import", "--tenant", "Acme", tds.file("d.csv", &devs).to_str().unwrap()]);
    for (i, mac) in GATEWAYS.iter().enumerate() {
        tds.ok(&["cert", "issue", "--mac", mac, "--out", "bundles", "--key", "ecdsa-p256"]);
        let zip = dir.join(format!("bundles/{}.zip", mac.replace(':', "-")));
        unzip(&zip, &dir.join(format!("gw{}", i + 1)));
    }
    let store = Store::open(&db.url, &DbOptions::default()).await.unwrap();
    let tenant = store.tenants().staff_by_name("Acme").await.unwrap();
    let gw4 = store.gateways().staff_by_mac(tds_domain::Mac::parse(GATEWAYS[3]).unwrap()).await.unwrap();
    store.gateways().decommission(tenant.id, gw4.id).await.unwrap();

    let port = free_port();
    tds.ok(&["broker-config", "--out", "broker", "--bind", "127.0.0.1", "--port", &port.to_string()]);
    // Mosquitto drops root privileges to its own user, which must be able to read the key.
    let _ = Command::new("chown").args(["mosquitto"]).arg(dir.join("broker/server.key")).status();
    let conf = dir.join("broker/mosquitto.conf");
    let mut broker = Broker::start(&conf, port).await;

    // One after the other: the first issues the consumer certificate, the second finds it.
    let crl_file = dir.join("broker/crl.pem");
    let a =
        Instance::start(&tds, "tds-a", port, &[("TDS_BROKER_CRL_FILE", crl_file.to_str().unwrap())]).await;
    let b = Instance::start(&tds, "tds-b", port, &[]).await;
    let logs = || format!("== tds-a\n{}\n== tds-b\n{}", a.log(&tds), b.log(&tds));
    assert!(dir.join("data/pki/consumer.crt").is_file());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", a.mqtt)).is_err(),
        "no device endpoint in broker mode"
    );
    broker.wait_for_subscriptions("tds-a").await;
    broker.wait_for_subscriptions("tds-b").await;

    // Three gateways, 20 messages each, one connection each.
    let per_gateway = 20;
    for gw in 1..=3 {
        let lines: Vec<String> = (0..per_gateway).map(|i| message(gw, i)).collect();
        publish(&dir, port, gw, &telemetry_topic(gw), &lines).unwrap();
    }
    // Gateway 1 on gateway 2's topic: Mosquitto's ACL drops it (the client is not told).
    publish(&dir, port, 1, &telemetry_topic(2), &[message(2, 59)]).unwrap();
    // A batch naming another gateway, bad JSON, and a decommissioned gateway: dead letters.
    let mismatch = message(2, 58);
    publish(&dir, port, 1, &telemetry_topic(1), &[mismatch, "not json".to_owned()]).unwrap();
    publish(&dir, port, 4, &telemetry_topic(4), &[message(4, 0)]).unwrap();

    let readings = wait_for_readings(&store, 3 * per_gateway as usize, logs).await;
    for gw in 1..=3 {
        let expected: Vec<f64> = (0..per_gateway).map(|i| f64::from(gw as u32 * 1000 + i)).collect();
        assert_eq!(readings[gw - 1], expected, "gateway {gw}: every reading once, nothing forged");
    }
    assert!(readings[3].is_empty(), "nothing from the decommissioned gateway");
    let deadline = Instant::now() + Duration::from_secs(10);
    let letters = loop {
        let letters = store.rejected().staff_list(None, Page::new(1, 100)).await.unwrap().items;
        if letters.len() >= 3 || Instant::now() > deadline {
            break letters;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut reasons: Vec<&str> = letters.iter().map(|l| l.reason_code.as_str()).collect();
    reasons.sort_unstable();
    assert_eq!(reasons, ["gateway_decommissioned", "gateway_mac_mismatch", "invalid_json"], "{}", logs());
    assert!(letters.iter().all(|l| l.topic != telemetry_topic(2)), "the forged message never reached TDS");

    // Both instances took part; together they saw every telemetry message (the forged one never
    // came). More is a redelivery: on SQLite the two processes contend for the one writer lock,
    // a refused commit is not acknowledged, and the broker delivers those messages again.
    let (na, nb) = (a.telemetry_messages().await, b.telemetry_messages().await);
    eprintln!("telemetry messages: tds-a {na}, tds-b {nb}");
    assert!(na > 0 && nb > 0, "both consumers share the load: {na} + {nb}");
    assert!(na + nb >= 3 * u64::from(per_gateway) + 2, "{na} + {nb}");

    // Status messages set the gateway offline.
    let gw2 = store.gateways().staff_by_mac(tds_domain::Mac::parse(GATEWAYS[1]).unwrap()).await.unwrap();
    assert!(gw2.online && gw2.status == tds_domain::GatewayStatus::Active);
    publish(&dir, port, 2, &format!("tds_new/gateway/{}/status", GATEWAYS[1]), &["offline".to_owned()])
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.gateways().staff_by_mac(gw2.mac).await.unwrap().online {
        assert!(Instant::now() < deadline, "status offline was not applied:\n{}", logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The broker goes away and comes back: both instances reconnect and subscribe again, and
    // what is published then is stored too (the alias topic this time).
    broker.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let broker = Broker::start(&conf, port).await;
    broker.wait_for_subscriptions("tds-a").await;
    broker.wait_for_subscriptions("tds-b").await;
    for gw in 1..=3 {
        let lines: Vec<String> = (per_gateway..per_gateway + 10).map(|i| message(gw, i)).collect();
        publish(&dir, port, gw, &format!("tds_new/devices/{}/telemetry", GATEWAYS[gw - 1]), &lines).unwrap();
    }
    wait_for_readings(&store, 3 * (per_gateway as usize + 10), logs).await;

    // A revocation reaches the broker's CRL file (tds-a keeps it); after SIGHUP, Mosquitto
    // refuses the revoked gateway.
    let before = std::fs::read_to_string(&crl_file).unwrap();
    tds.ok(&["cert", "revoke", "--mac", GATEWAYS[2], "--reason", "key_compromise"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&crl_file).unwrap() == before {
        assert!(Instant::now() < deadline, "the CRL file was not rewritten:\n{}", logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Command::new("kill").args(["-HUP", &broker.child.id().to_string()]).status().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(publish(&dir, port, 3, &telemetry_topic(3), &[message(3, 100)]).is_err(), "revoked: refused");
    assert!(publish(&dir, port, 1, &telemetry_topic(1), &[message(1, 100)]).is_ok(), "others still welcome");
    wait_for_readings(&store, 3 * (per_gateway as usize + 10) + 1, logs).await;

    a.stop().await;
    b.stop().await;
    drop(broker);
}

per_backend!(two_instances_behind_mosquitto_share_the_load_and_store_every_reading_once);
