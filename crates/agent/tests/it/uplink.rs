//! The uplink against Debian's Mosquitto over mutual TLS (the TDS endpoint's side of renewal is
//! built elsewhere; Mosquitto is a real broker that checks client certificates against the CA
//! and a CRL): batches arrive, the `online` status is retained, and `cert_update` offers are
//! handled: a good certificate is swapped in and confirmed by connecting, one from another CA is
//! refused before use, one the broker refuses is rolled back, and CSR mode keeps the key here.

use crate::support::{Behaviour, Meters, serve_tcp};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertificateSigningRequestParams,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SerialNumber,
};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS, TlsConfiguration, Transport};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tds_gateway::config::{Config, Function, ValueType, WordOrder};
use tds_gateway::status::Status;
use tokio::sync::mpsc;

const MAC: &str = "02:00:00:00:00:aa";

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let pem = p.self_signed(&key).unwrap().pem();
    Ca { issuer: Issuer::new(p, key), pem }
}

fn leaf_params(cn: &str, serial: u64, server: bool) -> CertificateParams {
    let sans = if server { vec!["localhost".to_owned()] } else { Vec::new() };
    let mut p = CertificateParams::new(sans).unwrap();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::ExplicitNoCa;
    p.serial_number = Some(SerialNumber::from(serial));
    p.extended_key_usages =
        vec![if server { ExtendedKeyUsagePurpose::ServerAuth } else { ExtendedKeyUsagePurpose::ClientAuth }];
    p
}

/// (certificate PEM, key PEM).
fn leaf(ca: &Ca, cn: &str, serial: u64, server: bool) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let cert = leaf_params(cn, serial, server).signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn crl(ca: &Ca, revoked: &[u64]) -> String {
    let now = time::OffsetDateTime::now_utc();
    CertificateRevocationListParams {
        this_update: now - time::Duration::hours(1),
        next_update: now + time::Duration::days(1),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|s| RevokedCertParams {
                serial_number: SerialNumber::from(*s),
                revocation_time: now - time::Duration::minutes(1),
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&ca.issuer)
    .unwrap()
    .pem()
    .unwrap()
}

struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mosquitto() -> PathBuf {
    ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("mosquitto"))
}

async fn start_broker(dir: &Path, port: u16) -> Broker {
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "user root\npersistence false\nlistener {port} 127.0.0.1\ncafile {d}/ca.crt\ncertfile {d}/server.crt\n\
             keyfile {d}/server.key\ncrlfile {d}/crl.pem\nrequire_certificate true\nuse_identity_as_username true\n\
             allow_anonymous false\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let child = Command::new(mosquitto())
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("Debian's mosquitto is installed (scripts/test.sh installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "Mosquitto never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Broker(child)
}

/// A test client ("TDS" here): sees telemetry, status and CSRs, publishes offers.
async fn watcher(
    port: u16,
    tls: rustls::ClientConfig,
) -> (AsyncClient, mpsc::UnboundedReceiver<(String, Vec<u8>)>) {
    let mut opts = MqttOptions::new("watcher", "localhost", port);
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(tls))));
    let (client, mut events) = AsyncClient::new(opts, 16);
    client.subscribe("tds_new/gateway/#", QoS::AtLeastOnce).await.unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Incoming::Publish(p))) => {
                    let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    (client, rx)
}

/// Waits for a message on a topic ending with `leaf`.
async fn next_on(rx: &mut mpsc::UnboundedReceiver<(String, Vec<u8>)>, leaf: &str) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (topic, payload) = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("nothing on */{leaf} in time"))
            .unwrap();
        if topic.ends_with(leaf) {
            return payload;
        }
    }
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn offer(cert: &str, key: Option<&str>) -> String {
    match key {
        Some(k) => {
            serde_json::json!({ "new_cert": cert, "new_key": k, "expires_at": "2036-01-01T00:00:00Z" })
        }
        None => serde_json::json!({ "new_cert": cert, "expires_at": "2036-01-01T00:00:00Z" }),
    }
    .to_string()
}

fn serial_of(path: &Path) -> String {
    tds_gateway::cert::info(&std::fs::read_to_string(path).unwrap()).unwrap().serial
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_reports_over_mtls_and_swaps_confirms_refuses_and_rolls_back_certificates() {
    tds_testkit_free_provider();
    let dir = tempfile::tempdir().unwrap();
    let broker_dir = dir.path().join("broker");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&broker_dir).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    let platform = ca("TDS test CA");
    let stranger = ca("Someone else's CA");
    let (server_cert, server_key) = leaf(&platform, "localhost", 1, true);
    let revoked_serial = 666;
    for (name, body) in [
        ("ca.crt", platform.pem.clone()),
        ("server.crt", server_cert),
        ("server.key", server_key),
        ("crl.pem", crl(&platform, &[revoked_serial])),
    ] {
        std::fs::write(broker_dir.join(name), body).unwrap();
    }
    let (gw_cert, gw_key) = leaf(&platform, MAC, 10, false);
    std::fs::write(data.join("ca.crt"), &platform.pem).unwrap();
    std::fs::write(data.join("client.crt"), &gw_cert).unwrap();
    std::fs::write(data.join("client.key"), &gw_key).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _broker = start_broker(&broker_dir, port).await;

    let mut regs = Behaviour::default();
    regs.set(Function::Holding, 1, 0, 42.5, ValueType::F32, WordOrder::Big);
    let modbus = serve_tcp(Meters(Arc::new(Mutex::new(regs)))).await;

    let (w_cert, w_key) = leaf(&platform, "watcher", 11, false);
    let (watch_client, mut seen) =
        watcher(port, tds_gateway::sim::client_tls(&platform.pem, &w_cert, &w_key).unwrap()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let config = Config::parse(
        &format!(
            r#"mac = "{MAC}"
poll_seconds = 1
data_dir = "{data}"
[mqtt]
host = "localhost"
port = {port}
ca_file = "ca.crt"
cert_file = "client.crt"
key_file = "client.key"
cert_swap_timeout_seconds = 4
[[bus]]
name = "lan"
kind = "tcp"
host = "127.0.0.1"
port = {mport}
[[meter]]
code = "D01"
bus = "lan"
slave = 1
register = 0
type = "f32"
unit = "kWh"
"#,
            data = data.display(),
            mport = modbus.port()
        ),
        Path::new("agent.toml"),
    )
    .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(tds_gateway::agent::run(config, stop_rx));

    // Reporting: `online` with the certificate in use, then batches with the meter's value.
    let first = online(&next_on(&mut seen, "/status").await);
    assert_eq!(first.cert_serial, Some(serial_of(&data.join("client.crt"))));
    assert_eq!(first.refused_serial, None);
    let batch: serde_json::Value = serde_json::from_slice(&next_on(&mut seen, "/telemetria").await).unwrap();
    assert_eq!(batch["gateway_mac"], MAC);
    assert_eq!(batch["leituras"][0]["valor"], 42.5);
    assert_eq!(batch["leituras"][0]["dispositivo_codigo"], "D01");

    let update = format!("tds_new/gateway/{MAC}/cert_update");
    let cert_file = data.join("client.crt");
    let status = || Status::load(&data).unwrap_or_default();

    // 1. A good certificate: swapped in, confirmed by connecting, the old one kept aside.
    let (good_cert, good_key) = leaf(&platform, MAC, 20, false);
    watch_client.publish(&update, QoS::AtLeastOnce, true, offer(&good_cert, Some(&good_key))).await.unwrap();
    wait_until("the good certificate is in use", || serial_of(&cert_file) == serial_of_pem(&good_cert)).await;
    assert_eq!(std::fs::read_to_string(data.join("client.key")).unwrap(), good_key);
    assert!(data.join("client.crt.old").exists());
    wait_until("confirmed in the status", || {
        status().last_cert_update.is_some_and(|u| u.contains("confirmed")) && status().connected
    })
    .await;
    let report = online(&next_on(&mut seen, "/status").await);
    assert_eq!(report.cert_serial, Some(serial_of_pem(&good_cert)), "reconnected with the new certificate");
    next_on(&mut seen, "/telemetria").await;
    // The server clears the offer once it sees the new certificate.
    watch_client.publish(&update, QoS::AtLeastOnce, true, Vec::<u8>::new()).await.unwrap();

    // 2. A certificate from another CA: refused before use; the agent keeps reporting.
    let (alien_cert, alien_key) = leaf(&stranger, MAC, 30, false);
    watch_client
        .publish(&update, QoS::AtLeastOnce, true, offer(&alien_cert, Some(&alien_key)))
        .await
        .unwrap();
    wait_until("the foreign certificate is refused", || {
        status().last_cert_update.is_some_and(|u| u.contains("refused"))
    })
    .await;
    assert_eq!(serial_of(&cert_file), serial_of_pem(&good_cert));
    // A certificate for another gateway: refused too.
    let (other_cert, other_key) = leaf(&platform, "02:00:00:00:00:bb", 31, false);
    assert!(
        tds_gateway::cert::validate(&other_cert, &other_key, &platform.pem, mac(), chrono::Utc::now())
            .is_err()
    );
    next_on(&mut seen, "/telemetria").await;

    // 3. A certificate the broker refuses (revoked in its CRL): tried, then rolled back.
    let (revoked_cert, revoked_key) = leaf(&platform, MAC, revoked_serial, false);
    watch_client
        .publish(&update, QoS::AtLeastOnce, true, offer(&revoked_cert, Some(&revoked_key)))
        .await
        .unwrap();
    wait_until("the refused certificate is rolled back", || {
        status().last_cert_update.is_some_and(|u| u.contains("rolled back"))
    })
    .await;
    assert_eq!(serial_of(&cert_file), serial_of_pem(&good_cert), "back on the previous certificate");
    assert!(data.join("client.crt.rejected").exists());
    wait_until("connected again", || status().connected).await;
    // The status says which certificate is back in use and which was refused (what TDS
    // behind a broker learns the rollback from). Statuses of the failed attempts never came.
    let report = loop {
        let r = online(&next_on(&mut seen, "/status").await);
        if r.refused_serial.is_some() {
            break r;
        }
    };
    assert_eq!(report.cert_serial, Some(serial_of_pem(&good_cert)));
    assert_eq!(report.refused_serial, Some(serial_of_pem(&revoked_cert)));
    next_on(&mut seen, "/telemetria").await;
    watch_client.publish(&update, QoS::AtLeastOnce, true, Vec::<u8>::new()).await.unwrap();

    // 4. CSR mode: the gateway makes the key and sends a CSR; the signed certificate is used
    // with that key, which never left the gateway.
    watch_client.publish(&update, QoS::AtLeastOnce, true, r#"{"csr_required":true}"#).await.unwrap();
    let csr: serde_json::Value = serde_json::from_slice(&next_on(&mut seen, "/cert_csr").await).unwrap();
    let csr = CertificateSigningRequestParams::from_pem(csr["csr_pem"].as_str().unwrap()).unwrap();
    let signed = csr.signed_by(&platform.issuer).unwrap().pem();
    watch_client.publish(&update, QoS::AtLeastOnce, true, offer(&signed, None)).await.unwrap();
    wait_until("the CSR certificate is in use", || serial_of(&cert_file) == serial_of_pem(&signed)).await;
    wait_until("connected with it", || status().connected).await;
    let key_now = std::fs::read_to_string(data.join("client.key")).unwrap();
    assert_ne!(key_now, good_key);
    assert!(tds_gateway::cert::validate(&signed, &key_now, &platform.pem, mac(), chrono::Utc::now()).is_ok());
    next_on(&mut seen, "/telemetria").await;

    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), agent).await.unwrap().unwrap().unwrap();
    assert_eq!(next_on(&mut seen, "/status").await, b"offline", "a clean stop says offline");
}

fn mac() -> tds_domain::Mac {
    tds_domain::Mac::parse(MAC).unwrap()
}

/// An `online` status report.
fn online(payload: &[u8]) -> tds_domain::renewal::StatusReport {
    let report = tds_domain::renewal::StatusReport::parse(payload);
    assert!(report.online(), "{}", String::from_utf8_lossy(payload));
    report
}

fn serial_of_pem(pem: &str) -> String {
    tds_gateway::cert::info(pem).unwrap().serial
}

fn tds_testkit_free_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
