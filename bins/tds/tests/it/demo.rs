//! `tds demo` as a newcomer starts it: within its first minute its own history and its live
//! gateways have raised alerts through the real jobs (a night-flow leak from the history's
//! nights, and the daily threshold or the comfort band, whichever the hour of the day makes
//! true), visible on the Alertas page of its administrator.

use crate::support::{Tds, free_port};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tds_store::alerts::AlertStatus;
use tds_store::{DbOptions, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_alerts_from_its_own_history_within_its_first_minute() {
    let tds = Tds::new(None);
    let (http, mqtt) = (free_port(), free_port());
    let started = Instant::now();
    let mut child = tds
        .command()
        .args(["demo", "--gateways", "2", "--devices", "6", "--interval", "5", "--history-days", "3"])
        .env("TDS_HTTP_ADDR", format!("127.0.0.1:{http}"))
        .env("TDS_MQTT_ADDR", format!("127.0.0.1:{mqtt}"))
        .env("RUST_LOG", "info,tds_jobs=debug")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(tds.path().join("demo.log")).unwrap())
        .spawn()
        .unwrap();
    // The banner names the administrator's password.
    let stdout = child.stdout.take().unwrap();
    let password = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        loop {
            let line = lines.next().expect("the demo printed its banner").unwrap();
            if let Some(rest) = line.trim().strip_prefix("admin:") {
                let (_, pw) = rest.split_once("password:").unwrap();
                // Keep reading (and discarding) the rest, as a terminal would.
                std::thread::spawn(move || lines.for_each(drop));
                return pw.trim().to_owned();
            }
        }
    })
    .await
    .unwrap();

    let url = format!("sqlite://{}", tds.path().join("data/tds.db").display());
    let store = Store::open(&url, &DbOptions::default()).await.unwrap();
    let tenant = store
        .tenants()
        .staff_list()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.name.to_string() == "Demo")
        .unwrap();
    let kinds = loop {
        let open = store.alerts().list(tenant.id, Some(AlertStatus::Active), None, 100).await.unwrap();
        let kinds: Vec<String> = open.iter().map(|a| a.rule_kind.clone()).collect();
        let seen = |k: &str| kinds.iter().any(|x| x == k);
        if seen("night_flow") && (seen("daily_consumption") || seen("gauge_band")) {
            break kinds;
        }
        if started.elapsed() > Duration::from_mins(1) {
            let log = std::fs::read_to_string(tds.path().join("demo.log")).unwrap_or_default();
            panic!("no demo alerts within a minute: {kinds:?}; the demo's log:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!("demo alerts after {:.1} s: {kinds:?}", started.elapsed().as_secs_f64());

    // The administrator sees them on the page, the badge counting them.
    let client = reqwest::Client::builder().cookie_store(true).build().unwrap();
    let base = format!("http://127.0.0.1:{http}");
    let login = client.get(format!("{base}/login")).send().await.unwrap().text().await.unwrap();
    let csrf = login.split("name=\"_csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let done = client
        .post(format!("{base}/login"))
        .header("origin", &base)
        .form(&[
            ("_csrf", csrf.as_str()),
            ("email", "admin@demo.tds.localhost"),
            ("password", password.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert!(done.status().is_success(), "{}", done.status());
    let page = client.get(format!("{base}/alerts")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Vazamento noturno"), "{page}");
    assert!(!page.contains("id=\"no-alerts\""));

    store.db().close().await;
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "the demo stops cleanly on SIGTERM");
}
