//! The gateway agent end to end: a Modbus TCP server in the test, the agent (tds-gateway's
//! `agent::run`, in a child process so that it can be killed with SIGKILL) polling it every
//! second, and the real `tds serve` with a real certificate bundle from `tds cert issue`.
//! The server is stopped and restarted, the agent is killed in the middle of flushing a backlog
//! and restarted; in the end every reading the meters gave is stored once, with the value the
//! meter gave and the instant the agent read it, and nothing became a dead letter.

use crate::pki::unzip;
use crate::support::{Tds, free_port, text};
use chrono::{DateTime, SubsecRound, Utc};
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tds_store::{DbOptions, Page, Store};
use tds_testkit::{TestDb, per_backend};
use tokio_modbus::prelude::{ExceptionCode, Request, Response, SlaveRequest};

const MAC: &str = "aa:bb:cc:00:17:01";
/// Batches of the backlog put in the queue before the agent is killed mid-flush.
const BACKLOG: u64 = 300;

/// A value a meter gave: slave, value, instant.
type Served = (u8, f64, DateTime<Utc>);

/// Two counting meters (slaves 1 and 2); every value served is recorded with its instant.
#[derive(Clone, Default)]
struct Meters {
    served: Arc<Mutex<Vec<Served>>>,
    next: Arc<Mutex<u32>>,
    /// While set, the meters do not answer (no new readings while the agent is being killed).
    quiet: Arc<AtomicBool>,
}

type Answer = Pin<Box<dyn Future<Output = Result<Option<Response>, ExceptionCode>> + Send>>;

impl tokio_modbus::server::Service for Meters {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Answer;

    fn call(&self, req: Self::Request) -> Self::Future {
        if self.quiet.load(Ordering::SeqCst) {
            return Box::pin(async { Ok(None) });
        }
        let Request::ReadHoldingRegisters(0, 2) = req.request else {
            return Box::pin(async { Err(ExceptionCode::IllegalDataAddress) });
        };
        let mut next = self.next.lock().unwrap();
        *next += 1;
        // u32 with scale 0.25 in the configuration: values with a fraction, exactly representable.
        let raw = 1_000 * u32::from(req.slave) + *next;
        self.served.lock().unwrap().push((req.slave, f64::from(raw) * 0.25, Utc::now()));
        Box::pin(
            async move { Ok(Some(Response::ReadHoldingRegisters(vec![(raw >> 16) as u16, raw as u16]))) },
        )
    }
}

async fn serve_modbus(meters: Meters) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let server = tokio_modbus::server::tcp::Server::new(listener);
        let on_connected = move |stream, _| {
            let m = meters.clone();
            async move { Ok(Some((m, stream))) }
        };
        let _ = server.serve(&on_connected, |_| {}).await;
    });
    port
}

/// The agent in a child process: this test binary running [`agent_process`].
fn spawn_agent(config: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["agent::agent_process", "--exact", "--ignored", "--nocapture"])
        .env("TDS_AGENT_TEST_CONFIG", config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Run in a child process by the scenario: the agent until it is killed.
#[test]
#[ignore = "helper: the agent process of the end-to-end test"]
fn agent_process() {
    let Ok(path) = std::env::var("TDS_AGENT_TEST_CONFIG") else { return };
    let config = tds_gateway::config::Config::load(Path::new(&path)).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    rt.block_on(tds_gateway::agent::run(config, stop_rx)).unwrap();
}

fn spawn_server(tds: &Tds, http: u16, mqtt: u16) -> Child {
    tds.command()
        .arg("serve")
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

async fn stop(child: Child, signal: &str) {
    Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
    let _ = tokio::task::spawn_blocking(move || child.wait_with_output()).await.unwrap().unwrap();
}

fn queued(data: &Path) -> usize {
    std::fs::read_dir(data.join("queue")).map_or(0, |d| {
        d.filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".json"))).count()
    })
}

async fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn acknowledged(data: &Path) -> u64 {
    tds_gateway::status::Status::load(data).map_or(0, |s| s.batches_acknowledged)
}

/// A tenant with the gateway and its two meters, its bundle unpacked in the agent's directory,
/// and the agent's configuration polling `modbus` every second and reporting to `mqtt`.
fn provision(tds: &Tds, modbus: u16, mqtt: u16) -> (PathBuf, PathBuf) {
    tds.ok(&["ca", "init", "--algorithm", "ecdsa-p384"]);
    tds.ok(&["tenant", "create", "--name", "Acme"]);
    tds.ok(&[
        "gateway",
        "import",
        "--tenant",
        "Acme",
        tds.file("g.csv", &format!("{MAC},GW1,Casa de máquinas\n")).to_str().unwrap(),
    ]);
    let devices = format!(
        "{MAC},E1,Meter 1,MEDIDOR,energy,counter,kWh,1,1\n{MAC},E2,Meter 2,MEDIDOR,energy,counter,kWh,2,1\n"
    );
    tds.ok(&["device", "import", "--tenant", "Acme", tds.file("d.csv", &devices).to_str().unwrap()]);
    tds.ok(&["cert", "issue", "--mac", MAC, "--out", "bundles", "--key", "ecdsa-p256"]);
    let data: PathBuf = tds.path().join("agent");
    unzip(&tds.path().join(format!("bundles/{}.zip", MAC.replace(':', "-"))), &data);
    let config = tds.file(
        "agent.toml",
        &format!(
            r#"mac = "{MAC}"
poll_seconds = 1
data_dir = "{data}"
[mqtt]
host = "localhost"
port = {mqtt}
ca_file = "ca.crt"
cert_file = "client.crt"
key_file = "client.key"
window = 4
[[bus]]
name = "lan"
kind = "tcp"
host = "127.0.0.1"
port = {modbus}
timeout_ms = 300
retries = 0
[[meter]]
code = "E1"
bus = "lan"
slave = 1
register = 0
type = "u32"
scale = 0.25
unit = "kWh"
[[meter]]
code = "e2"
bus = "lan"
slave = 2
register = 0
type = "u32"
scale = 0.25
unit = "kWh"
"#,
            data = data.display()
        ),
    );
    (data, config)
}

async fn agent_readings_survive_outages_and_a_killed_agent(db: TestDb) {
    let started = Instant::now();
    let tds = Tds::new(Some(&db.url));
    let meters = Meters::default();
    let modbus = serve_modbus(meters.clone()).await;
    let (http, mqtt) = (free_port(), free_port());
    let (data, config) = provision(&tds, modbus, mqtt);

    // Reporting.
    let mut server = spawn_server(&tds, http, mqtt);
    wait_listening(mqtt).await;
    let mut agent = spawn_agent(&config);
    wait_for("first batches acknowledged", 30, || acknowledged(&data) >= 3).await;

    // The server away for a while: batches pile up on disk, then go once it is back.
    stop(server, "-TERM").await;
    wait_for("a backlog while the server is down", 30, || queued(&data) >= 4).await;
    server = spawn_server(&tds, http, mqtt);
    wait_listening(mqtt).await;
    wait_for("the backlog flushed", 60, || queued(&data) == 0 && acknowledged(&data) >= 7).await;

    // The agent killed in the middle of flushing a backlog of BACKLOG batches (put on disk while
    // it is stopped, as after a long outage), the meters quiet so that no reading is in flight
    // in the agent's memory when it dies.
    meters.quiet.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop(agent, "-KILL").await;
    // Yesterday's readings, every 10 s, as after a long outage.
    let backlog_start = Utc::now().trunc_subsecs(0) - chrono::Duration::days(1);
    let mut backlog: HashMap<(String, DateTime<Utc>), f64> = HashMap::new();
    {
        let mut q = tds_gateway::queue::DiskQueue::open(&data.join("queue"), 1 << 30).unwrap();
        let mac = tds_domain::Mac::parse(MAC).unwrap();
        for n in 0..BACKLOG {
            let at = backlog_start + chrono::Duration::seconds(10 * n as i64);
            let readings: Vec<_> = ["E1", "e2"]
                .iter()
                .enumerate()
                .map(|(i, code)| {
                    let value = n as f64 * 0.5 + i as f64 * 100_000.0;
                    backlog.insert((code.to_uppercase(), at), value);
                    tds_gateway::batch::Reading {
                        code: (*code).to_owned(),
                        value,
                        unit: Some("kWh".into()),
                        at,
                    }
                })
                .collect();
            q.push(&tds_gateway::batch::encode(mac, at, &readings)).unwrap();
        }
    }
    agent = spawn_agent(&config);
    wait_for("the flush under way", 60, || queued(&data) < (BACKLOG as usize) * 2 / 3).await;
    let left_at_kill = queued(&data);
    stop(agent, "-KILL").await;
    assert!(left_at_kill > 0, "killed in the middle of the flush");
    agent = spawn_agent(&config);
    meters.quiet.store(false, Ordering::SeqCst);
    let acked = acknowledged(&data);
    wait_for("everything flushed after the restart", 120, || {
        queued(&data) == 0 && acknowledged(&data) > acked + 2
    })
    .await;
    meters.quiet.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    wait_for("the last batches flushed", 30, || queued(&data) == 0).await;
    stop(agent, "-TERM").await;
    let pid = server.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let out = tokio::task::spawn_blocking(move || server.wait_with_output()).await.unwrap().unwrap();
    assert!(out.status.success(), "tds serve did not stop cleanly: {}", text(&out.stderr));

    // Every reading once, as the meter gave it, at the instant it was read.
    let store = Store::open(&db.url, &DbOptions::default()).await.unwrap();
    let tenant = store.tenants().staff_by_name("Acme").await.unwrap();
    let (from, to) = (backlog_start - chrono::Duration::days(1), Utc::now() + chrono::Duration::days(1));
    let mut stored: HashMap<String, Vec<(DateTime<Utc>, f64)>> = HashMap::new();
    for device in store.devices().list(tenant.id).await.unwrap() {
        let rows = store.readings().for_device(tenant.id, device.id, from, to, 1_000_000).await.unwrap();
        stored
            .insert(device.code.to_string().to_uppercase(), rows.iter().map(|r| (r.time, r.value)).collect());
    }
    let given = meters.served.lock().unwrap().clone();
    for (code, slave) in [("E1", 1u8), ("E2", 2u8)] {
        let rows = &stored[code];
        let live: Vec<_> =
            rows.iter().filter(|(t, _)| !backlog.contains_key(&(code.to_owned(), *t))).collect();
        let from_meter: Vec<_> = given.iter().filter(|(s, _, _)| *s == slave).collect();
        assert_eq!(live.len(), from_meter.len(), "{code}: every value the meter gave is stored, once");
        for ((t, v), (_, sv, served_at)) in live.iter().zip(&from_meter) {
            assert_eq!(v, sv, "{code}: the stored value is the one read, in order");
            let lag = (*t - *served_at).num_milliseconds();
            assert!(
                (-5..500).contains(&lag),
                "{code}: stored at {t}, read at {served_at}: the original instant"
            );
        }
        let old = rows.len() - live.len();
        assert_eq!(old as u64, BACKLOG, "{code}: the whole backlog, once");
        for (t, v) in rows.iter().filter(|(t, _)| backlog.contains_key(&(code.to_owned(), *t))) {
            assert_eq!(backlog[&(code.to_owned(), *t)], *v);
        }
    }
    let dead = store.rejected().staff_list(None, Page::new(1, 50)).await.unwrap().items;
    assert!(dead.is_empty(), "resent batches are not conflicts: {dead:?}");
    eprintln!(
        "agent e2e on {}: {} live readings, backlog {BACKLOG} x 2, {left_at_kill} batches left at the SIGKILL, {:.1} s",
        store.db().backend(),
        given.len(),
        started.elapsed().as_secs_f64()
    );
}

fn status(data: &Path) -> tds_gateway::status::Status {
    tds_gateway::status::Status::load(data).unwrap_or_default()
}

async fn renewals(store: &Store) -> Vec<tds_store::renewals::Renewal> {
    let tenant = store.tenants().staff_by_name("Acme").await.unwrap();
    let gateway = store.gateways().by_mac(tenant.id, tds_domain::Mac::parse(MAC).unwrap()).await.unwrap();
    store.renewals().for_gateway(tenant.id, gateway.id, 10).await.unwrap()
}

/// A certificate for the gateway signed by the platform's CA but never recorded by TDS (a
/// certificate TDS will refuse at the handshake), with its key, made by `openssl`.
fn unrecorded_certificate(tds: &Tds) -> (String, String) {
    let dir = tds.path();
    let run = |args: &[&str]| {
        let out = Command::new("openssl").current_dir(dir).args(args).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", text(&out.stderr));
    };
    run(&["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "forged.ec"]);
    run(&["pkcs8", "-topk8", "-nocrypt", "-in", "forged.ec", "-out", "forged.key"]);
    run(&["req", "-new", "-key", "forged.key", "-subj", &format!("/CN={MAC}"), "-out", "forged.csr"]);
    // Extensions as TDS's own device certificates have them (and so a v3 certificate).
    std::fs::write(
        dir.join("forged.ext"),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "forged.csr",
        "-CA",
        "data/pki/ca.crt",
        "-CAkey",
        "data/pki/ca.key",
        "-CAcreateserial",
        "-days",
        "30",
        "-extfile",
        "forged.ext",
        "-out",
        "forged.crt",
    ]);
    (
        std::fs::read_to_string(dir.join("forged.crt")).unwrap(),
        std::fs::read_to_string(dir.join("forged.key")).unwrap(),
    )
}

/// The agent takes two renewals from TDS over MQTT (server key, then CSR: the new key made on
/// the gateway), each confirmed by TDS when the agent connects with it; then an offer of a
/// certificate TDS does not accept: the agent tries it, is refused at the handshake, goes back
/// to its certificate and keeps reporting, and TDS marks the renewal rolled back.
async fn the_agent_swaps_to_renewed_certificates_and_rolls_back_from_a_refused_one(db: TestDb) {
    let tds = Tds::new(Some(&db.url));
    let meters = Meters::default();
    let modbus = serve_modbus(meters.clone()).await;
    let (http, mqtt) = (free_port(), free_port());
    let (data, config) = provision(&tds, modbus, mqtt);
    let store = Store::open(&db.url, &DbOptions::default()).await.unwrap();
    let server = spawn_server(&tds, http, mqtt);
    wait_listening(mqtt).await;
    let agent = spawn_agent(&config);
    wait_for("first batches acknowledged", 30, || acknowledged(&data) >= 2).await;
    let original_serial = status(&data).cert_serial.unwrap();
    let read = |name: &str| std::fs::read_to_string(data.join(name)).unwrap();
    let original_key = read("client.key");

    // Server-key mode.
    tds.ok(&["cert", "renew", "--mac", MAC]);
    wait_for("the server-key renewal confirmed", 60, || {
        status(&data).cert_serial.as_ref().is_some_and(|s| *s != original_serial)
            && status(&data).last_cert_update.is_some_and(|u| u.contains("confirmed"))
    })
    .await;
    let mut confirmed = false;
    for _ in 0..100 {
        confirmed = renewals(&store).await[0].state == tds_domain::renewal::RenewalState::Confirmed;
        if confirmed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(confirmed, "TDS confirmed the renewal: {:?}", renewals(&store).await);
    let first = read("client.crt");
    assert_ne!(read("client.key"), original_key, "server-key mode: the key came with the offer");
    assert!(data.join("client.crt.old").exists(), "the old certificate kept beside");

    // CSR mode: the key is made on the gateway and never sent.
    let key_before = read("client.key");
    tds.ok(&["cert", "renew", "--mac", MAC, "--csr"]);
    wait_for("the CSR renewal confirmed", 60, || read("client.crt") != first).await;
    let mut states = Vec::new();
    for _ in 0..100 {
        states = renewals(&store).await;
        if states[0].state == tds_domain::renewal::RenewalState::Confirmed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(states[0].mode, tds_domain::renewal::RenewalMode::Csr);
    assert_eq!(states[0].state, tds_domain::renewal::RenewalState::Confirmed, "{states:?}");
    let second = read("client.crt");
    assert_ne!(read("client.key"), key_before, "a new key, made here");
    let stored_key: Option<String> = {
        let tenant = store.tenants().staff_by_name("Acme").await.unwrap();
        store
            .certificates()
            .list(tenant.id, &tds_store::certificates::CertificateFilter::default(), Page::new(1, 50))
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|c| c.pem.trim() == second.trim())
            .map(|c| c.pem)
    };
    assert!(
        stored_key.is_some_and(|pem| !pem.contains("PRIVATE KEY")),
        "TDS holds the certificate, not the key"
    );

    // An offer TDS itself will refuse: a certificate of the right CA, name and dates, whose
    // serial TDS never recorded (the renewal records another).
    let (forged, forged_key) = unrecorded_certificate(&tds);
    let tenant = store.tenants().staff_by_name("Acme").await.unwrap();
    let gateway = store.gateways().by_mac(tenant.id, tds_domain::Mac::parse(MAC).unwrap()).await.unwrap();
    let now = Utc::now();
    let recorded = tds_store::certificates::NewCertificate {
        mac: gateway.mac,
        serial: "7e57000000000000000000000000000000000001".into(),
        fingerprint_sha256: "00".repeat(32),
        pem: forged.clone(),
        key_algorithm: "ECDSA P-256".into(),
        issued_at: now,
        expires_at: now + chrono::Duration::days(30),
    };
    let payload = tds_domain::renewal::CertUpdate::Certificate {
        new_cert: forged.clone(),
        new_key: Some(forged_key),
        expires_at: recorded.expires_at,
    }
    .to_json();
    store
        .renewals()
        .start(
            tenant.id,
            gateway.id,
            tds_domain::renewal::RenewalMode::ServerKey,
            true,
            Some((&recorded, &payload)),
            None,
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_mins(1);
    while !status(&data).last_cert_update.is_some_and(|u| u.contains("rolled back")) {
        assert!(Instant::now() < deadline, "the agent did not roll back: {:?}", status(&data));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let acked = acknowledged(&data);
    wait_for("reporting on the old certificate", 30, || acknowledged(&data) >= acked + 3).await;
    assert_eq!(read("client.crt"), second, "the certificate in use is the one before the refused offer");
    assert!(data.join("client.crt.rejected").exists(), "the refused certificate set aside");
    let mut state = None;
    for _ in 0..100 {
        state = Some(renewals(&store).await[0].state);
        if state == Some(tds_domain::renewal::RenewalState::RolledBack) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        state,
        Some(tds_domain::renewal::RenewalState::RolledBack),
        "TDS saw the gateway come back on its old certificate"
    );

    stop(agent, "-TERM").await;
    stop(server, "-TERM").await;
}

per_backend!(
    agent_readings_survive_outages_and_a_killed_agent,
    the_agent_swaps_to_renewed_certificates_and_rolls_back_from_a_refused_one
);
