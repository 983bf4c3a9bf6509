//! What an operator gets without configuring anything, tried as an attacker would: files that
//! only TDS's user can read, a first administrator whose login cannot be guessed, and Prometheus
//! metrics that the public side of the web listener does not serve.

use crate::support::{Tds, free_port, text};
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Polls `url` until it answers, for at most 30 s.
async fn wait_for(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(url).await.is_err() {
        assert!(Instant::now() < deadline, "{url} never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

/// `tds serve` on `port` (and a free MQTT port) with `env` added, its output piped.
fn serve(tds: &Tds, port: u16, env: &[(&str, String)]) -> std::process::Child {
    let mut cmd = tds.command();
    cmd.arg("serve")
        .env("TDS_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("TDS_MQTT_ADDR", format!("127.0.0.1:{}", free_port()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

fn stop(child: std::process::Child) -> std::process::Output {
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn a_first_start_creates_files_for_its_owner_only_and_an_administrator_nobody_can_guess() {
    let tds = Tds::new(None);
    let port = free_port();
    let (out_file, err_file) = (tds.path().join("stdout.txt"), tds.path().join("stderr.txt"));
    let child = tds
        .command()
        .arg("serve")
        .env("TDS_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("TDS_MQTT_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("TDS_LOG_LEVEL", "info")
        .stdout(std::fs::File::create(&out_file).unwrap())
        .stderr(std::fs::File::create(&err_file).unwrap())
        .spawn()
        .unwrap();
    wait_for(&format!("http://127.0.0.1:{port}/healthz")).await;
    let data = tds.path().join("data");
    for file in ["tds.db", "tds.db-wal", "pki/ca.key", "pki/ca.crt", "pki/server.key"] {
        let path = data.join(file);
        if path.exists() {
            assert_eq!(mode(&path) & 0o077, 0, "{file} is readable by others: {:o}", mode(&path));
        } else {
            assert!(file.ends_with("-wal"), "{file} missing");
        }
    }
    assert_eq!(mode(&data) & 0o077, 0, "the data folder: {:o}", mode(&data));

    let printed = std::fs::read_to_string(&out_file).unwrap();
    let email = printed
        .lines()
        .find_map(|l| l.trim().strip_prefix("email:"))
        .unwrap_or_else(|| panic!("no credentials printed: {printed}"))
        .trim()
        .to_owned();
    assert_ne!(email, "admin@tds.localhost", "the login is not a fixed, known one");
    let local = email.split('@').next().unwrap();
    assert!(
        local.len() == "admin-".len() + 6 && local.starts_with("admin-"),
        "admin- and six random digits: {email}"
    );

    // Without SMTP, a reset link goes to the outbox (owner only), never to the log.
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let page = client.get(format!("{base}/password/forgot")).send().await.unwrap();
    let cookie = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .find(|c| c.starts_with("tds_csrf="))
        .unwrap();
    let body = page.text().await.unwrap();
    let at = body.find("name=\"_csrf\" value=\"").unwrap() + "name=\"_csrf\" value=\"".len();
    let token = &body[at..at + body[at..].find('"').unwrap()];
    let sent = client
        .post(format!("{base}/password/forgot"))
        .header("cookie", &cookie)
        .header("origin", &base)
        .form(&[("email", email.as_str()), ("_csrf", token)])
        .send()
        .await
        .unwrap();
    assert!(sent.status().is_success(), "{}", sent.status());
    let outbox = data.join("outbox");
    let deadline = Instant::now() + Duration::from_secs(10);
    let file = loop {
        if let Some(f) = std::fs::read_dir(&outbox).ok().and_then(|mut d| d.next()) {
            break f.unwrap().path();
        }
        assert!(Instant::now() < deadline, "no message in the outbox");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(mode(&file), 0o600, "{}", file.display());
    assert_eq!(mode(&outbox) & 0o077, 0);
    let message = std::fs::read_to_string(&file).unwrap().replace("=\r\n", "").replace("=3D", "=");
    assert!(message.contains("/password/reset/"), "the link is in the message: {message}");
    let out = stop(child);
    assert!(out.status.success());
    let logged = std::fs::read_to_string(&out_file).unwrap() + &std::fs::read_to_string(&err_file).unwrap();
    assert!(logged.contains("outbox"), "the log says where the message went: {logged}");
    assert!(!logged.contains("/password/reset/"), "no reset link in the log: {logged}");
}

#[tokio::test]
async fn metrics_are_served_only_to_local_requests_or_on_their_own_listener() {
    let tds = Tds::new(None);
    let port = free_port();
    let child = serve(&tds, port, &[]);
    let base = format!("http://127.0.0.1:{port}");
    wait_for(&format!("{base}/healthz")).await;
    let client = reqwest::Client::new();
    let local = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(local.status(), 200, "a local scrape works");
    for header in ["x-forwarded-for", "forwarded", "x-real-ip"] {
        let relayed =
            client.get(format!("{base}/metrics")).header(header, "203.0.113.7").send().await.unwrap();
        assert_eq!(relayed.status(), 404, "a request relayed by a proxy ({header}) is not served");
    }
    stop(child);

    let metrics_port = free_port();
    let child = serve(&tds, port, &[("TDS_METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))]);
    wait_for(&format!("{base}/healthz")).await;
    wait_for(&format!("http://127.0.0.1:{metrics_port}/healthz")).await;
    let on_own = client.get(format!("http://127.0.0.1:{metrics_port}/metrics")).send().await.unwrap();
    assert_eq!(on_own.status(), 200);
    let body = on_own.text().await.unwrap();
    assert!(body.contains("tds_web_connections"), "the web listener's limits are counted: {body}");
    let on_web = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(on_web.status(), 404, "with a metrics listener, the web listener has no /metrics");
    let out = stop(child);
    assert!(out.status.success(), "{}", text(&out.stderr));
}
