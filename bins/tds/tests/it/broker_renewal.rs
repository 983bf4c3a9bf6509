//! Certificate renewal in scale-out mode (SPEC §2, §3) against Debian's Mosquitto set up by
//! `tds broker-config`: TDS publishes each offer retained on the broker, simulated gateways
//! (tds-gateway's shared renewal code, the real `tds simulate`) find it when they subscribe, swap
//! (one with the key TDS made, one by CSR through the broker), and report their new certificate
//! in their status, which confirms the renewal; the offers are then cleared on the broker, and
//! once the broker has reloaded the CRL TDS keeps, the retired certificates are refused.

use crate::broker::{Broker, Instance};
use crate::support::{Tds, text};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tds_domain::renewal::RenewalState;
use tds_store::certificates::{CertificateFilter, CertificateStatus};
use tds_store::{DbOptions, Page, Store};
use tds_testkit::{TestDb, per_backend};

/// What a client holding `cert`/`key` finds retained on `topic` (empty when nothing is).
fn retained(dir: &Path, port: u16, mac: &str, cert: &Path, key: &Path, topic: &str) -> String {
    let out = Command::new("mosquitto_sub")
        .current_dir(dir)
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--cafile", "data/pki/ca.crt"])
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .args([
            "-q",
            "1",
            "-i",
            &format!("{mac}-watch"),
            "-t",
            topic,
            "--retained-only",
            "-C",
            "1",
            "-W",
            "3",
        ])
        .output()
        .expect("Debian's mosquitto-clients are installed (scripts/test.sh installs them)");
    text(&out.stdout)
}

/// Whether Mosquitto takes a `QoS` 1 message from a client holding `cert`/`key`.
fn accepted(dir: &Path, port: u16, mac: &str, cert: &Path, key: &Path) -> bool {
    Command::new("mosquitto_pub")
        .current_dir(dir)
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--cafile", "data/pki/ca.crt"])
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .args(["-q", "1", "-i", mac, "-t", &format!("tds_new/gateway/{mac}/status"), "-m", "online"])
        .output()
        .unwrap()
        .status
        .success()
}

fn files(sim: &Path, mac: &str, suffix: &str) -> (PathBuf, PathBuf) {
    let stem = mac.replace(':', "-");
    (sim.join(format!("{stem}.crt{suffix}")), sim.join(format!("{stem}.key{suffix}")))
}

async fn renewals_confirmed_behind_mosquitto_and_retired_certificates_refused_after_the_crl_reload(
    db: TestDb,
) {
    let tds = Tds::new(Some(&db.url));
    let dir = tds.path().to_owned();
    tds.ok(&["ca", "init", "--algorithm", "ecdsa-p384"]);
    let port = crate::support::free_port();
    tds.ok(&["broker-config", "--out", "broker", "--bind", "127.0.0.1", "--port", &port.to_string()]);
    let _ = Command::new("chown").args(["mosquitto"]).arg(dir.join("broker/server.key")).status();
    let broker = Broker::start(&dir.join("broker/mosquitto.conf"), port).await;
    let crl_file = dir.join("broker/crl.pem");
    let instance =
        Instance::start(&tds, "tds-a", port, &[("TDS_BROKER_CRL_FILE", crl_file.to_str().unwrap())]).await;
    let logs = || format!("== tds\n{}\n== mosquitto\n{}", instance.log(&tds), broker.log());
    broker.wait_for_subscriptions("tds-a").await;
    let simulate = |seconds: &str| {
        let out = tds.run(
            &[
                "simulate",
                "--mqtt-port",
                &port.to_string(),
                "--interval",
                "1",
                "--gateways",
                "2",
                "--devices",
                "1",
                "--faults",
                "none",
                "--duration",
                seconds,
            ],
            "",
        );
        assert!(out.status.success(), "tds simulate failed:\n{}\n{}", text(&out.stdout), text(&out.stderr));
        text(&out.stdout)
    };

    // The fleet reports through the broker.
    let first = simulate("2");
    assert!(first.contains("acknowledged"), "{first}");
    let store = Store::open(&db.url, &DbOptions::default()).await.unwrap();
    let before = store
        .certificates()
        .staff_list(&CertificateFilter::default(), Page::new(1, 100))
        .await
        .unwrap()
        .items;
    assert_eq!(before.len(), 2);
    let (a, b) = (before[0].mac.clone(), before[1].mac.clone());
    let sim = dir.join("data/simulator");

    // Renewals started while the gateways are away: the offers wait retained on the broker.
    // One gateway set to take its key from TDS, the other by CSR (the simulated model's mode).
    let tenant = store.tenants().staff_by_name("Simulação").await.unwrap();
    let gateway_a = store.gateways().staff_by_mac(tds_domain::Mac::parse(&a).unwrap()).await.unwrap();
    store
        .renewals()
        .set_mode(tenant.id, gateway_a.id, Some(tds_domain::renewal::RenewalMode::ServerKey))
        .await
        .unwrap();
    tds.ok(&["cert", "renew", "--mac", &a]);
    tds.ok(&["cert", "renew", "--mac", &b, "--csr"]);
    let (a_cert, a_key) = files(&sim, &a, "");
    let topic_a = format!("tds_new/gateway/{a}/cert_update");
    let deadline = Instant::now() + Duration::from_secs(15);
    let offer = loop {
        let offer = retained(&dir, port, &a, &a_cert, &a_key, &topic_a);
        if !offer.is_empty() || Instant::now() > deadline {
            break offer;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        offer.contains("new_cert") && offer.contains("new_key"),
        "the offer is retained: {offer}\n{}",
        logs()
    );

    // The gateways come back, find their offers, swap and say so in their status.
    let second = simulate("6");
    let summary = second.lines().last().unwrap();
    assert!(summary.contains("2 renewals, 0 rollbacks"), "{second}\n{}", logs());
    let deadline = Instant::now() + Duration::from_secs(15);
    for mac in [&a, &b] {
        let gateway = store.gateways().staff_by_mac(tds_domain::Mac::parse(mac).unwrap()).await.unwrap();
        loop {
            let state = store.renewals().for_gateway(tenant.id, gateway.id, 1).await.unwrap()[0].state;
            if state == RenewalState::Confirmed {
                break;
            }
            assert!(Instant::now() < deadline, "{mac}: renewal {state:?}\n{}", logs());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let after = store
        .certificates()
        .staff_list(&CertificateFilter::default(), Page::new(1, 100))
        .await
        .unwrap()
        .items;
    for old in &before {
        let now = after.iter().find(|c| c.id == old.id).unwrap();
        assert_eq!(now.status, CertificateStatus::Superseded, "{now:?}");
    }
    let new_b = after.iter().find(|c| c.mac == b && c.status == CertificateStatus::Active).unwrap();
    assert!(!new_b.pem.contains("PRIVATE KEY"));

    // Cleared on the broker once confirmed.
    let (new_cert, new_key) = files(&sim, &a, "");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !retained(&dir, port, &a, &new_cert, &new_key, &topic_a).is_empty() {
        assert!(Instant::now() < deadline, "the offer stays retained on the broker\n{}", logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The retired certificates are in the CRL file TDS keeps; once Mosquitto reloads it, they
    // are refused and the new ones are not.
    let crl = dir.join("crl.txt");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out =
            Command::new("openssl").args(["crl", "-noout", "-text", "-in"]).arg(&crl_file).output().unwrap();
        let listed = text(&out.stdout).to_ascii_uppercase();
        std::fs::write(&crl, &listed).unwrap();
        if before.iter().all(|c| listed.contains(&c.serial.to_ascii_uppercase())) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the retired certificates are not in the CRL file:\n{listed}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Command::new("kill").args(["-HUP", &broker.child.id().to_string()]).status().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for mac in [&a, &b] {
        let (old_cert, old_key) = files(&sim, mac, ".old");
        assert!(!accepted(&dir, port, mac, &old_cert, &old_key), "{mac}: the retired certificate is refused");
        let (cert, key) = files(&sim, mac, "");
        assert!(accepted(&dir, port, mac, &cert, &key), "{mac}: the renewed one is taken");
    }
    instance.stop().await;
    drop(broker);
}

per_backend!(renewals_confirmed_behind_mosquitto_and_retired_certificates_refused_after_the_crl_reload);
