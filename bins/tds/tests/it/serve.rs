//! `tds serve` as an operator starts it.

use crate::support::{Tds, free_port, text};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tds_testkit::{TestDb, per_backend};

/// Polls `url` until it answers, for at most 30 s.
async fn wait_for(url: &str) -> reqwest::Response {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.get(url).send().await {
            Ok(resp) => return resp,
            Err(e) if Instant::now() > deadline => panic!("{url} never answered: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Starts `tds serve`, checks /healthz and /readyz, then stops it with SIGTERM and expects a
/// clean exit.
async fn serve_answers_health_checks_and_stops_on_sigterm(tds: &Tds) {
    let port = free_port();
    let child = tds
        .command()
        .arg("serve")
        .env("TDS_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("TDS_MQTT_ADDR", format!("127.0.0.1:{}", free_port()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let health = wait_for(&format!("http://127.0.0.1:{port}/healthz")).await;
    assert_eq!(health.status(), 200);
    let ready = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    // The CA and a first CRL exist from the first start; the CRL is served without login.
    let crl = reqwest::get(format!("http://127.0.0.1:{port}/pki/crl.pem")).await.unwrap();
    assert_eq!(crl.status(), 200);
    assert!(crl.text().await.unwrap().starts_with("-----BEGIN X509 CRL-----"));
    let der = reqwest::get(format!("http://127.0.0.1:{port}/pki/crl.der")).await.unwrap();
    assert_eq!(der.headers()["content-type"], "application/pkix-crl");

    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await.unwrap().unwrap();
    assert!(out.status.success(), "serve did not exit cleanly: {}", text(&out.stderr));
}

#[tokio::test]
async fn serve_with_no_configuration_uses_sqlite_under_data() {
    let tds = Tds::new(None);
    serve_answers_health_checks_and_stops_on_sigterm(&tds).await;
    assert!(tds.path().join("data/tds.db").is_file(), "the embedded database is created under ./data");
    assert!(tds.path().join("data/pki/ca.crt").is_file(), "the CA is created on first start");
}

async fn serve_runs_on_the_configured_database(db: TestDb) {
    // The test database is already migrated; `serve` must accept that and answer.
    let tds = Tds::new(Some(&db.url));
    serve_answers_health_checks_and_stops_on_sigterm(&tds).await;
    assert!(!tds.path().join("data/tds.db").exists(), "no SQLite file when a database is configured");
}

per_backend!(serve_runs_on_the_configured_database);

#[tokio::test]
async fn a_wrong_database_url_says_what_to_fix() {
    let tds = Tds::new(Some("mysql://root:hunter2@localhost/tds"));
    let out = tds.run(&["serve"], "");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("database_url") && err.contains("postgres://"), "{err}");
    assert!(!err.contains("hunter2"), "passwords never appear in messages: {err}");

    let tds = Tds::new(Some("postgres://tds:hunter2@127.0.0.1:1/tds"));
    let out = tds.run(&["migrate"], "");
    let err = text(&out.stderr);
    assert!(!out.status.success() && err.contains("cannot connect") && !err.contains("hunter2"), "{err}");
}

#[tokio::test]
async fn a_bad_configuration_value_names_the_key() {
    let tds = Tds::new(None);
    let file = tds.file("tds.toml", "http_addr = \"127.0.0.1:8080\"\ndb_max_conections = 3\n");
    let out = tds.run(&["--config", file.to_str().unwrap(), "config", "check"], "");
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("db_max_conections"), "{}", text(&out.stderr));

    let out = tds.command().args(["config", "check"]).env("TDS_HTTP_ADDR", "localhost").output().unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("http_addr"), "{}", text(&out.stderr));

    let example = tds.ok(&["config", "example"]);
    let file = tds.file("example.toml", &example);
    let checked = tds.ok(&["--config", file.to_str().unwrap(), "config", "check"]);
    assert!(checked.contains("configuration is valid"), "{checked}");
}
