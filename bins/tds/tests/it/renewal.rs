//! Certificate renewal end to end with the real `tds serve`: an Eclipse Paho gateway in Python
//! (`tests/mqtt/paho_gateway.py`) takes a renewal started with `tds cert renew` before a server
//! restart, in server-key and in CSR mode; its old certificate is then refused; and the
//! certificates retired by a renewal, a replacement and a transfer are in the CRL served at
//! `/pki/crl.pem`, as `openssl crl -text` reads it.

use crate::pki::unzip;
use crate::support::{Server, Tds, text};
use std::path::{Path, PathBuf};
use std::process::Command;
use tds_domain::Mac;
use tds_domain::renewal::RenewalState;
use tds_store::certificates::CertificateStatus;
use tds_testkit::{TestDb, per_backend};

const GW1: &str = "aa:bb:cc:00:00:01";
const GW2: &str = "aa:bb:cc:00:00:02";
const GW3: &str = "aa:bb:cc:00:00:03";

/// The Python with paho-mqtt: the virtualenv of `tests/api/requirements.txt` that scripts/test.sh
/// and scripts/api-check.sh create (`TDS_PY_VENV`, default `~/.cache/tds/venv`).
fn python() -> PathBuf {
    let venv = std::env::var_os("TDS_PY_VENV").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/tds/venv"),
        PathBuf::from,
    );
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "no {} with paho-mqtt: run scripts/test.sh, or python3 -m venv {} && {}/bin/pip install -r tests/api/requirements.txt",
        python.display(),
        venv.display(),
        venv.display()
    );
    python
}

/// Runs the Paho gateway in `dir` against the endpoint on `port`; its JSON report.
async fn paho_gateway(dir: &Path, mac: &str, port: u16) -> (bool, serde_json::Value) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/mqtt/paho_gateway.py");
    let mut cmd = Command::new(python());
    cmd.arg(script).args(["--port", &port.to_string(), "--mac", mac, "--dir"]).arg(dir);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    let report = serde_json::from_str(text(&out.stdout).trim())
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", text(&out.stdout), text(&out.stderr)));
    (out.status.success(), report)
}

/// Whether `mosquitto_pub` gets a message through with the pair `cert`/`key` of `dir`.
fn publishes(dir: &Path, port: u16, mac: &str, cert: &str, key: &str) -> bool {
    Command::new("mosquitto_pub")
        .current_dir(dir)
        .args([
            "-h",
            "localhost",
            "-p",
            &port.to_string(),
            "--cafile",
            "ca.crt",
            "--cert",
            cert,
            "--key",
            key,
        ])
        .args(["-q", "1", "-i", mac, "-t", &format!("tds_new/gateway/{mac}/status"), "-m", "online"])
        .output()
        .expect("Debian's mosquitto-clients are installed (scripts/test.sh installs them)")
        .status
        .success()
}

fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl is installed");
    assert!(out.status.success(), "openssl {args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

/// A serial as `openssl crl -text` prints it: upper case, no leading zeros.
fn crl_serial(serial: &str) -> String {
    serial.trim_start_matches('0').to_uppercase()
}

/// Logs in to the web as `email` and transfers the gateway `mac` to the tenant `to`, as staff do.
async fn transfer_on_the_staff_page(http: u16, email: &str, password: &str, mac: &str, to: i64) {
    let client = reqwest::Client::builder().cookie_store(true).build().unwrap();
    let base = format!("http://127.0.0.1:{http}");
    let csrf_of = |page: &str| {
        page.split("name=\"_csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned()
    };
    let login = client.get(format!("{base}/login")).send().await.unwrap().text().await.unwrap();
    let form = [("_csrf", csrf_of(&login)), ("email", email.into()), ("password", password.into())];
    let done = client.post(format!("{base}/login")).header("origin", &base).form(&form).send().await.unwrap();
    assert!(done.status().is_success(), "{}", done.status());
    let page = client.get(format!("{base}/staff/gateways/{mac}/transfer")).send().await.unwrap();
    let page = page.text().await.unwrap();
    let form = [("_csrf", csrf_of(&page)), ("tenant_id", to.to_string())];
    let moved = client
        .post(format!("{base}/staff/gateways/{mac}/transfer"))
        .header("origin", &base)
        .form(&form)
        .send()
        .await
        .unwrap();
    let landed = moved.url().path().to_owned();
    assert_eq!(landed, "/staff/gateways", "{}", moved.text().await.unwrap());
}

async fn a_paho_gateway_takes_its_renewal_across_a_restart_and_retired_certificates_are_in_the_crl(
    db: TestDb,
) {
    let tds = Tds::new(Some(&db.url));
    let dir = tds.path().to_owned();
    tds.ok(&["ca", "init", "--algorithm", "ecdsa-p384"]);
    tds.ok(&["tenant", "create", "--name", "Acme"]);
    tds.ok(&["tenant", "create", "--name", "Beta"]);
    let password = "correct horse battery staple 42";
    let made = tds.run(
        &["user", "create", "--email", "ops@tds.example", "--tenant", "Acme", "--role", "admin", "--staff"],
        &format!("{password}\n"),
    );
    assert!(made.status.success(), "{}", text(&made.stderr));
    let gws = tds.file("g.csv", &format!("{GW1},GW1,Bloco A\n{GW2},GW2,Bloco B\n{GW3},GW3,Bloco C\n"));
    tds.ok(&["gateway", "import", "--tenant", "Acme", gws.to_str().unwrap()]);
    for (mac, key) in [(GW1, "rsa2048"), (GW2, "ecdsa-p256"), (GW3, "ecdsa-p256")] {
        tds.ok(&["cert", "issue", "--mac", mac, "--out", "bundles", "--key", key]);
        let name = mac.replace(':', "-");
        unzip(&dir.join(format!("bundles/{name}.zip")), &dir.join(&name));
    }
    let (d1, d2) = (dir.join(GW1.replace(':', "-")), dir.join(GW2.replace(':', "-")));
    let store = &db.store;
    let acme = store.tenants().staff_by_name("Acme").await.unwrap();
    let g1 = store.gateways().staff_by_mac(Mac::parse(GW1).unwrap()).await.unwrap();
    let g2 = store.gateways().staff_by_mac(Mac::parse(GW2).unwrap()).await.unwrap();
    let first = |certs: Vec<tds_store::certificates::Certificate>| certs.into_iter().next().unwrap();
    let old1 = first(store.certificates().for_gateway(acme.id, g1.id).await.unwrap());
    let old2 = first(store.certificates().for_gateway(acme.id, g2.id).await.unwrap());

    // Renewals started by hand (server key for GW1, CSR for GW2), then the server restarts:
    // the offers wait in the database.
    let server = Server::start(&tds).await;
    assert!(tds.ok(&["cert", "renew", "--mac", GW1]).contains("started"));
    assert!(tds.ok(&["cert", "renew", "--mac", GW2, "--csr"]).contains("started"));
    server.stop().await;
    let server = Server::start(&tds).await;

    let (ok, report) = paho_gateway(&d1, GW1, server.mqtt).await;
    assert!(ok, "{report}");
    assert_eq!(
        (report["retained"].clone(), report["swapped"].clone()),
        (true.into(), true.into()),
        "{report}"
    );
    let (ok, report) = paho_gateway(&d2, GW2, server.mqtt).await;
    assert!(ok && report["csr_sent"] == true, "{report}");

    for (g, old) in [(&g1, &old1), (&g2, &old2)] {
        let r = store.renewals().for_gateway(acme.id, g.id, 1).await.unwrap().remove(0);
        assert_eq!(r.state, RenewalState::Confirmed, "{}", g.mac);
        let certs = store.certificates().for_gateway(acme.id, g.id).await.unwrap();
        let was = certs.iter().find(|c| c.id == old.id).unwrap();
        assert_eq!(
            (was.status, was.revocation_reason.as_deref()),
            (CertificateStatus::Superseded, Some("superseded"))
        );
        let now = certs.iter().find(|c| Some(c.id) == r.new_certificate_id).unwrap();
        assert_eq!(now.status, CertificateStatus::Active);
        assert!(now.first_used_at.is_some(), "confirmed by connecting with it");
        let topic = format!("tds_new/gateway/{}/cert_update", g.mac);
        assert!(store.renewals().staff_pending(g.mac, &topic).await.unwrap().is_none(), "offer cleared");
    }
    // CSR mode: the certificate is for the key the gateway made; the server never held it.
    let spki_cert = openssl(&d2, &["x509", "-in", "client.crt", "-noout", "-pubkey"]);
    let spki_key = openssl(&d2, &["pkey", "-in", "client.key", "-pubout"]);
    assert_eq!(spki_cert, spki_key);
    // GW1's server-key renewal kept its RSA key type.
    assert!(openssl(&d1, &["x509", "-in", "client.crt", "-noout", "-text"]).contains("rsaEncryption"));

    // The superseded certificates reach the CRL served at /pki/crl.pem within seconds.
    let crl_url = format!("http://127.0.0.1:{}/pki/crl.pem", server.http);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        std::fs::write(dir.join("crl.pem"), reqwest::get(&crl_url).await.unwrap().text().await.unwrap())
            .unwrap();
        let listed = openssl(&dir, &["crl", "-in", "crl.pem", "-noout", "-text"]);
        if [&old1, &old2]
            .iter()
            .all(|c| listed.contains(&format!("Serial Number: {}", crl_serial(&c.serial))))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the renewed certificates' predecessors are not in\n{listed}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }

    // The campaign's figures and its pause, from the command line.
    let status = tds.ok(&["cert", "campaign", "--tenant", "Acme", "status"]);
    assert!(status.contains("running") && status.contains("confirmed 2"), "{status}");
    assert!(tds.ok(&["cert", "campaign", "--tenant", "Acme", "pause"]).contains("paused"));
    assert!(store.renewals().is_paused(acme.id).await.unwrap());
    assert!(tds.ok(&["cert", "campaign", "--tenant", "Acme", "status"]).contains("paused"));
    assert!(tds.ok(&["cert", "campaign", "--tenant", "Acme", "resume"]).contains("running"));
    assert!(!store.renewals().is_paused(acme.id).await.unwrap());

    // The retired certificates are refused, the new ones connect.
    assert!(!publishes(&d1, server.mqtt, GW1, "old.crt", "old.key"), "GW1's old certificate");
    assert!(!publishes(&d2, server.mqtt, GW2, "old.crt", "old.key"), "GW2's old certificate");
    assert!(publishes(&d1, server.mqtt, GW1, "client.crt", "client.key"));
    assert!(publishes(&d2, server.mqtt, GW2, "client.crt", "client.key"));

    // A replacement (GW3) and a transfer (GW2, to Beta) retire two more.
    let g3 = store.gateways().staff_by_mac(Mac::parse(GW3).unwrap()).await.unwrap();
    let old3 = first(store.certificates().for_gateway(acme.id, g3.id).await.unwrap());
    tds.ok(&["cert", "issue", "--mac", GW3, "--out", "replaced", "--key", "ecdsa-p256", "--replace"]);
    let current2 = store
        .certificates()
        .for_gateway(acme.id, g2.id)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.status == CertificateStatus::Active)
        .unwrap();
    let beta = store.tenants().staff_by_name("Beta").await.unwrap();
    transfer_on_the_staff_page(server.http, "ops@tds.example", password, GW2, beta.id.get()).await;
    assert!(!publishes(&d2, server.mqtt, GW2, "client.crt", "client.key"), "it left with the gateway");

    std::fs::write(dir.join("crl.pem"), reqwest::get(&crl_url).await.unwrap().text().await.unwrap()).unwrap();
    let listed = openssl(&dir, &["crl", "-in", "crl.pem", "-noout", "-text"]);
    let entry = |serial: &str| {
        let at = listed
            .find(&format!("Serial Number: {}", crl_serial(serial)))
            .unwrap_or_else(|| panic!("{serial} not in\n{listed}"));
        listed[at..].lines().take(5).collect::<Vec<_>>().join("\n")
    };
    for old in [&old1, &old2, &old3] {
        assert!(entry(&old.serial).contains("Superseded"), "{}", entry(&old.serial));
    }
    assert!(entry(&current2.serial).contains("Affiliation Changed"), "{}", entry(&current2.serial));
    let verified = Command::new("openssl")
        .args(["crl", "-in", "crl.pem", "-noout", "-CAfile", "data/pki/ca.crt"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(text(&verified.stderr).contains("verify OK") || text(&verified.stdout).contains("verify OK"));

    server.stop().await;
}

per_backend!(a_paho_gateway_takes_its_renewal_across_a_restart_and_retired_certificates_are_in_the_crl);
