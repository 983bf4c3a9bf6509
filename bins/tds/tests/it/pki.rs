//! Certificates end to end: the CLI issues bundles and revokes, and a real Mosquitto started from
//! `tds broker-config` lets a valid gateway publish on its own telemetry topic only and refuses a
//! revoked certificate.

use crate::support::{Tds, free_port, text};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use tds_testkit::{TestDb, per_backend};

pub fn unzip(bundle: &Path, into: &Path) {
    std::fs::create_dir_all(into).unwrap();
    let status = Command::new("unzip").args(["-oq"]).arg(bundle).arg("-d").arg(into).status();
    if status.is_ok_and(|s| s.success()) {
        return;
    }
    // No unzip command: read the archive with Python's zipfile, present wherever the tests run.
    let ok = Command::new("python3")
        .args(["-c", "import sys,zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])"])
        .arg(bundle)
        .arg(into)
        .status()
        .unwrap();
    assert!(ok.success());
}

fn openssl(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new("openssl").args(args).current_dir(dir).output().expect("openssl is installed")
}

/// Runs a command and returns (exit success, stdout+stderr).
fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    (out.status.success(), format!("{}{}", text(&out.stdout), text(&out.stderr)))
}

fn setup(db: &TestDb) -> Tds {
    let tds = Tds::new(Some(&db.url));
    tds.ok(&["ca", "init", "--algorithm", "ecdsa-p384"]);
    tds.ok(&["tenant", "create", "--name", "Acme"]);
    let gws = tds.file("g.csv", "aa:bb:cc:00:00:01,GW1,Bloco A\naa:bb:cc:00:00:02,GW2,Bloco B\n");
    tds.ok(&["gateway", "import", "--tenant", "Acme", gws.to_str().unwrap()]);
    tds
}

async fn issued_bundles_verify_and_a_revoked_certificate_fails_the_crl_check(db: TestDb) {
    let tds = setup(&db);
    let out = tds.ok(&["cert", "issue", "--mac", "AA-BB-CC-00-00-01", "--out", "bundles"]);
    assert!(out.contains("RSA-2048"), "{out}");
    tds.ok(&["cert", "issue", "--mac", "aa:bb:cc:00:00:02", "--out", "bundles", "--key", "ecdsa-p256"]);
    let again = tds.run(&["cert", "issue", "--mac", "aa:bb:cc:00:00:02", "--out", "other"], "");
    assert!(!again.status.success() && text(&again.stderr).contains("--replace"), "{}", text(&again.stderr));
    let unknown = tds.run(&["cert", "issue", "--mac", "aa:bb:cc:00:00:09", "--out", "other"], "");
    assert!(text(&unknown.stderr).contains("pre-register it first"), "{}", text(&unknown.stderr));

    let dir = tds.path();
    unzip(&dir.join("bundles/aa-bb-cc-00-00-01.zip"), &dir.join("gw1"));
    unzip(&dir.join("bundles/aa-bb-cc-00-00-02.zip"), &dir.join("gw2"));
    for gw in ["gw1", "gw2"] {
        let v = openssl(&["verify", "-CAfile", "data/pki/ca.crt", &format!("{gw}/client.crt")], dir);
        assert!(v.status.success(), "openssl verify {gw}: {}", text(&v.stderr));
        let readme = std::fs::read_to_string(dir.join(gw).join("README.txt")).unwrap();
        assert!(readme.contains("ns_certs") && readme.contains("client_key"), "{readme}");
    }

    let out = tds.ok(&["cert", "revoke", "--mac", "aa:bb:cc:00:00:02", "--reason", "key_compromise"]);
    assert!(out.contains("CRL #"), "{out}");
    let list = tds.ok(&["cert", "list", "--status", "revoked"]);
    assert!(list.contains("aa:bb:cc:00:00:02") && !list.contains("aa:bb:cc:00:00:01"), "{list}");

    // The CRL as the server stores and serves it.
    let crl = db.store.certificates().crl().await.unwrap().expect("a CRL was issued");
    std::fs::write(dir.join("crl.pem"), &crl.pem).unwrap();
    let parsed = openssl(&["crl", "-in", "crl.pem", "-noout", "-text"], dir);
    assert!(parsed.status.success(), "{}", text(&parsed.stderr));
    assert!(text(&parsed.stdout).contains("Key Compromise"), "{}", text(&parsed.stdout));
    let check = |gw: &str| {
        openssl(
            &[
                "verify",
                "-crl_check",
                "-CRLfile",
                "crl.pem",
                "-CAfile",
                "data/pki/ca.crt",
                &format!("{gw}/client.crt"),
            ],
            dir,
        )
    };
    assert!(check("gw1").status.success(), "a valid certificate passes the CRL check");
    let revoked = check("gw2");
    assert!(!revoked.status.success(), "openssl must reject the revoked certificate");
    assert!(text(&revoked.stdout).contains("revoked") || text(&revoked.stderr).contains("revoked"));
}

async fn mosquitto_from_broker_config_confines_gateways_and_refuses_revoked_ones(db: TestDb) {
    let tds = setup(&db);
    let dir = tds.path().to_owned();
    tds.ok(&["cert", "issue", "--mac", "aa:bb:cc:00:00:01", "--out", "bundles", "--key", "ecdsa-p256"]);
    tds.ok(&["cert", "issue", "--mac", "aa:bb:cc:00:00:02", "--out", "bundles", "--key", "ecdsa-p256"]);
    tds.ok(&["cert", "revoke", "--mac", "aa:bb:cc:00:00:02", "--reason", "key_compromise"]);
    unzip(&dir.join("bundles/aa-bb-cc-00-00-01.zip"), &dir.join("gw1"));
    unzip(&dir.join("bundles/aa-bb-cc-00-00-02.zip"), &dir.join("gw2"));
    // TDS's own consumer identity (CN tds-ingest), signed by the platform CA.
    assert!(
        openssl(
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                "/CN=tds-ingest",
                "-keyout",
                "ingest.key",
                "-out",
                "ingest.csr"
            ],
            &dir
        )
        .status
        .success()
    );
    assert!(
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                "ingest.csr",
                "-CA",
                "data/pki/ca.crt",
                "-CAkey",
                "data/pki/ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-out",
                "ingest.crt"
            ],
            &dir
        )
        .status
        .success()
    );

    let port = free_port();
    tds.ok(&["broker-config", "--out", "broker", "--bind", "127.0.0.1", "--port", &port.to_string()]);
    // Mosquitto drops root privileges to its own user, which must be able to read the key.
    let _ = Command::new("chown").args(["mosquitto"]).arg(dir.join("broker/server.key")).status();
    let mut broker = Command::new("mosquitto")
        .arg("-c")
        .arg(dir.join("broker/mosquitto.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("Debian's mosquitto is installed (scripts/test.sh installs it)");
    let p = port.to_string();
    let mqtt = |program: &str| {
        let mut c = Command::new(program);
        c.current_dir(&dir).args(["-h", "127.0.0.1", "-p", &p, "--cafile", "data/pki/ca.crt"]);
        c
    };
    // Wait for the listener.
    for _ in 0..50 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sub = mqtt("mosquitto_sub")
        .args([
            "--cert",
            "ingest.crt",
            "--key",
            "ingest.key",
            "-t",
            "tds_new/gateway/+/telemetria",
            "-v",
            "-W",
            "4",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let gw1 = ["--cert", "gw1/client.crt", "--key", "gw1/client.key", "-q", "1"];
    let (own, log) = run(mqtt("mosquitto_pub").args(gw1).args([
        "-t",
        "tds_new/gateway/aa:bb:cc:00:00:01/telemetria",
        "-m",
        "own-topic",
    ]));
    assert!(own, "a valid gateway publishes on its own topic: {log}");
    run(mqtt("mosquitto_pub").args(gw1).args([
        "-t",
        "tds_new/gateway/aa:bb:cc:00:00:09/telemetria",
        "-m",
        "someone-elses-topic",
    ]));
    let (revoked, log) = run(mqtt("mosquitto_pub")
        .args(["--cert", "gw2/client.crt", "--key", "gw2/client.key", "-q", "1"])
        .args(["-t", "tds_new/gateway/aa:bb:cc:00:00:02/telemetria", "-m", "from-revoked"]));
    assert!(!revoked, "a revoked certificate cannot connect: {log}");

    let received = tokio::task::spawn_blocking(move || sub.wait_with_output()).await.unwrap().unwrap();
    let received = text(&received.stdout);
    broker.kill().ok();
    let _ = broker.wait();
    assert!(received.contains("tds_new/gateway/aa:bb:cc:00:00:01/telemetria own-topic"), "{received}");
    assert!(
        !received.contains("someone-elses-topic"),
        "the ACL must drop publishes to other gateways' topics: {received}"
    );
    assert!(!received.contains("from-revoked"), "{received}");
}

async fn a_factory_batch_is_pre_registered_from_its_manifest(db: TestDb) {
    let tds = Tds::new(Some(&db.url));
    tds.ok(&["ca", "init", "--algorithm", "ecdsa-p384"]);
    tds.ok(&["tenant", "create", "--name", "Acme"]);
    let bad = tds.file(
        "bad.csv",
        "mac,serial_number,model,device_id\naa:bb:cc:00:00:01,SN-1,DCU-8210,d1\nzz,SN-2,DCU-8210,d2\n",
    );
    let out =
        tds.run(&["cert", "batch", bad.to_str().unwrap(), "--out", "factory", "--key", "ecdsa-p256"], "");
    assert!(!out.status.success() && text(&out.stdout).contains("line 3"), "{}", text(&out.stdout));
    assert!(!tds.path().join("factory").exists(), "nothing is written when a row is bad");

    let csv = tds.file(
        "batch.csv",
        "mac,serial_number,model,device_id\naa:bb:cc:00:00:01,SN-1,DCU-8210,d1\naa:bb:cc:00:00:02,SN-2,DCU-8210,d2\n",
    );
    let out = tds.ok(&["cert", "batch", csv.to_str().unwrap(), "--out", "factory", "--key", "ecdsa-p256"]);
    assert!(out.contains("issued 2 certificates"), "{out}");
    let manifest = std::fs::read_to_string(tds.path().join("factory/manifest.csv")).unwrap();
    assert!(
        manifest.starts_with("mac,serial_number,cert_serial,expires_at\naa:bb:cc:00:00:01,SN-1,"),
        "{manifest}"
    );
    assert!(tds.path().join("factory/aa-bb-cc-00-00-02.zip").is_file());

    // A tampered manifest row (certificate of another MAC) refuses the whole import.
    let lines: Vec<&str> = manifest.lines().collect();
    let serial_of_2 = lines[2].split(',').nth(2).unwrap();
    let tampered = tds.file(
        "tampered.csv",
        &format!("{}\n{}\naa:bb:cc:00:00:03,SN-3,{serial_of_2},2036-01-01T00:00:00Z\n", lines[0], lines[1]),
    );
    let out = tds.run(&["gateway", "import", "--tenant", "Acme", tampered.to_str().unwrap()], "");
    assert!(
        !out.status.success() && text(&out.stdout).contains("not issued for aa:bb:cc:00:00:03"),
        "{}",
        text(&out.stdout)
    );

    let out = tds.ok(&["gateway", "import", "--tenant", "Acme", "factory/manifest.csv"]);
    assert!(out.contains("imported 2 gateways"), "{out}");
    let acme = db.store.tenants().staff_by_name("Acme").await.unwrap();
    let gw = db
        .store
        .gateways()
        .by_mac(acme.id, tds_domain::Mac::parse("aa:bb:cc:00:00:02").unwrap())
        .await
        .unwrap();
    assert_eq!((gw.code.as_str(), gw.serial_number.as_deref()), ("SN-2", Some("SN-2")));
    let certs = db.store.certificates().for_gateway(acme.id, gw.id).await.unwrap();
    assert_eq!(certs.len(), 1, "the factory certificate now belongs to the gateway");
}

async fn a_gateway_csr_is_signed_only_for_its_own_mac(db: TestDb) {
    let tds = setup(&db);
    let dir = tds.path().to_owned();
    let req = |cn: &str, name: &str| {
        let out = openssl(
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                &format!("/CN={cn}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ],
            &dir,
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    req("AA:BB:CC:00:00:01", "good");
    req("aa:bb:cc:00:00:02", "wrong");
    let out = tds.ok(&["cert", "sign-csr", "--mac", "aa:bb:cc:00:00:01", "good.csr", "--out", "good.crt"]);
    assert!(out.contains("signed certificate"), "{out}");
    let verify = openssl(&["verify", "-CAfile", "data/pki/ca.crt", "good.crt"], &dir);
    assert!(verify.status.success(), "{}", text(&verify.stderr));
    let shown = text(&openssl(&["x509", "-in", "good.crt", "-noout", "-text"], &dir).stdout);
    assert!(
        shown.contains("CA:FALSE") && !shown.contains("CA:TRUE"),
        "a CSR cannot make itself a CA: {shown}"
    );
    let refused = tds.run(&["cert", "sign-csr", "--mac", "aa:bb:cc:00:00:01", "wrong.csr", "--replace"], "");
    assert!(!refused.status.success(), "a CSR for another MAC is refused");
    assert!(text(&refused.stderr).contains("aa:bb:cc:00:00:02"), "{}", text(&refused.stderr));
}

per_backend!(
    a_gateway_csr_is_signed_only_for_its_own_mac,
    issued_bundles_verify_and_a_revoked_certificate_fails_the_crl_check,
    mosquitto_from_broker_config_confines_gateways_and_refuses_revoked_ones,
    a_factory_batch_is_pre_registered_from_its_manifest,
);
