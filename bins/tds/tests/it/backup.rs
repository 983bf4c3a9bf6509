//! `tds backup` while gateways publish, `tds restore` into a new installation (a new directory,
//! and on PostgreSQL a new database), and `tds db copy`: on both databases.

use crate::durability::{connect, tls};
use crate::pki::unzip;
use crate::support::{Server, Tds, text};
use rumqttc::{Event, Incoming, QoS};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tds_store::transfer::Census;
use tds_store::{Db, DbOptions, Store};
use tds_testkit::{TestDb, per_backend};

const GATEWAYS: [&str; 3] = ["aa:bb:cc:00:02:01", "aa:bb:cc:00:02:02", "aa:bb:cc:00:02:03"];
/// Registered before the backup, certified only after the restore: the restored CA must sign.
const LATE: &str = "aa:bb:cc:00:02:09";

fn message(mac: &str, n: u64) -> String {
    let t = chrono::DateTime::from_timestamp(1_790_000_000 + n as i64, 0).unwrap().to_rfc3339();
    format!(
        r#"{{"gateway_mac":"{mac}","timestamp":"{t}","leituras":[{{"dispositivo_codigo":"D01","valor":{n}.5,"unidade":"m3"}}]}}"#
    )
}

/// Publishes one message at a time, each after the previous one's PUBACK, until `stop`; returns
/// each acknowledged message with the instant its PUBACK arrived.
async fn publish_until(
    port: u16,
    mac: &'static str,
    bundle: std::path::PathBuf,
    stop: Arc<AtomicBool>,
) -> Vec<(u64, Instant)> {
    let tls = Arc::new(tls(&bundle));
    let (client, mut events) = connect(port, mac, &tls).await.expect("connected");
    let topic = format!("tds_new/gateway/{mac}/telemetria");
    let mut acked = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        client.publish(&topic, QoS::AtLeastOnce, false, message(mac, n)).await.unwrap();
        loop {
            match tokio::time::timeout(Duration::from_secs(10), events.poll()).await {
                Ok(Ok(Event::Incoming(Incoming::PubAck(_)))) => break,
                Ok(Ok(_)) => {}
                other => panic!("gateway {mac}: {other:?}"),
            }
        }
        acked.push((n, Instant::now()));
        n += 1;
    }
    let _ = client.disconnect().await;
    acked
}

fn manifest_census(zip: &Path) -> Census {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(zip).unwrap()).unwrap();
    let mut text = String::new();
    archive.by_name("manifest.json").unwrap().read_to_string(&mut text).unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
    serde_json::from_value(manifest["census"].clone()).unwrap()
}

fn bundle(tds: &Tds, mac: &str, into: &str) -> std::path::PathBuf {
    tds.ok(&["cert", "issue", "--mac", mac, "--out", "bundles", "--key", "p256"]);
    let dir = tds.path().join(into);
    unzip(&tds.path().join(format!("bundles/{}.zip", mac.replace(':', "-"))), &dir);
    dir
}

/// One message from `mac` with the bundle in `dir` is acknowledged by the server on `port`.
async fn connects_and_publishes(port: u16, mac: &'static str, dir: std::path::PathBuf) {
    let tls = Arc::new(tls(&dir));
    let (client, mut events) = connect(port, mac, &tls).await.expect("the bundle connects");
    client
        .publish(
            format!("tds_new/gateway/{mac}/telemetria"),
            QoS::AtLeastOnce,
            false,
            message(mac, 1_000_000),
        )
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.poll()).await {
            Ok(Ok(Event::Incoming(Incoming::PubAck(_)))) => break,
            Ok(Ok(_)) => {}
            other => panic!("gateway {mac} after the restore: {other:?}"),
        }
    }
}

async fn a_backup_taken_under_load_restores_every_acknowledged_reading(db: TestDb) {
    let tds = Tds::new(Some(&db.url));
    tds.ok(&["ca", "init", "--algorithm", "ecdsa-p384"]);
    tds.ok(&["tenant", "create", "--name", "Acme"]);
    let gateways: String = GATEWAYS
        .iter()
        .chain([&LATE])
        .enumerate()
        .map(|(i, m)| format!("{m},GW{i},G{i}\n"))
        .collect::<Vec<_>>()
        .concat();
    let devices: String = GATEWAYS
        .iter()
        .chain([&LATE])
        .map(|m| format!("{m},D01,Agua,MEDIDOR,water,counter,m3,1,100\n"))
        .collect::<Vec<_>>()
        .concat();
    tds.ok(&["gateway", "import", "--tenant", "Acme", tds.file("g.csv", &gateways).to_str().unwrap()]);
    tds.ok(&["device", "import", "--tenant", "Acme", tds.file("d.csv", &devices).to_str().unwrap()]);
    let bundles: Vec<_> =
        GATEWAYS.iter().enumerate().map(|(i, m)| bundle(&tds, m, &format!("gw{i}"))).collect();
    let server = Server::start(&tds).await;

    let stop = Arc::new(AtomicBool::new(false));
    let publishers: Vec<_> = GATEWAYS
        .iter()
        .zip(&bundles)
        .map(|(mac, dir)| tokio::spawn(publish_until(server.mqtt, mac, dir.clone(), stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let backup_started = Instant::now();
    let zip = tds.path().join("tds-backup.zip");
    let out = tds.run(&["backup", zip.to_str().unwrap()], "");
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    // Gateways keep publishing a moment after the backup: those readings may or may not be in it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let mut before_backup = Vec::new();
    let mut total_acked = 0;
    for (mac, p) in GATEWAYS.iter().zip(publishers) {
        let acked = p.await.unwrap();
        total_acked += acked.len();
        before_backup
            .extend(acked.into_iter().filter(|(_, at)| *at < backup_started).map(|(n, _)| (*mac, n)));
    }
    server.stop().await;
    assert!(
        before_backup.len() >= 30,
        "only {} messages acknowledged before the backup",
        before_backup.len()
    );
    let census = manifest_census(&zip);
    eprintln!(
        "{} messages acknowledged before the backup, {total_acked} in all; the backup holds {} readings",
        before_backup.len(),
        census.rows("readings").unwrap()
    );

    // Restore into a new installation: a new directory, and a new database of the same kind.
    let new_pg = if db.url.starts_with("postgres") { TestDb::postgres().await } else { None };
    let restored = Tds::new(new_pg.as_ref().map(|d| d.url.as_str()));
    let out = restored.run(&["restore", zip.to_str().unwrap()], "");
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    // Refused the second time: the installation is no longer empty.
    let again = restored.run(&["restore", zip.to_str().unwrap()], "");
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("--force"), "{}", text(&again.stderr));

    let url = new_pg
        .as_ref()
        .map_or_else(|| format!("sqlite://{}/data/tds.db", restored.path().display()), |d| d.url.clone());
    let db2 = Db::connect(&url, &DbOptions::default()).await.unwrap();
    let restored_census = tds_store::transfer::census(&db2).await.unwrap();
    assert_eq!(restored_census, census, "rows per table and the readings' checksum");
    let store = Store::new(db2);
    let tenant = store.tenants().staff_by_name("Acme").await.unwrap();
    for (mac, n) in &before_backup {
        let gw = store.gateways().staff_by_mac(tds_domain::Mac::parse(mac).unwrap()).await.unwrap();
        let device = store.devices().list_for_gateway(tenant.id, gw.id, false).await.unwrap().remove(0);
        let t = chrono::DateTime::from_timestamp(1_790_000_000 + *n as i64, 0).unwrap();
        let got = store
            .readings()
            .for_device(tenant.id, device.id, t, t + chrono::Duration::seconds(1), 1)
            .await
            .unwrap();
        assert_eq!(
            got.first().map(|r| r.value),
            Some(*n as f64 + 0.5),
            "{mac} message {n} was acknowledged before the backup"
        );
    }
    store.db().close().await;

    // The same backup restores into the other kind of database too.
    let other_pg = if new_pg.is_none() { TestDb::postgres().await } else { None };
    let other = Tds::new(other_pg.as_ref().map(|d| d.url.as_str()));
    let out = other.run(&["restore", zip.to_str().unwrap()], "");
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let other_url = other_pg
        .as_ref()
        .map_or_else(|| format!("sqlite://{}/data/tds.db", other.path().display()), |d| d.url.clone());
    let other_db = Db::connect(&other_url, &DbOptions::default()).await.unwrap();
    assert_eq!(
        tds_store::transfer::census(&other_db).await.unwrap(),
        census,
        "restored across database kinds"
    );
    other_db.close().await;

    // The restored installation serves the old bundles, and its CA signs new ones.
    let server = Server::start(&restored).await;
    connects_and_publishes(server.mqtt, GATEWAYS[0], bundles[0].clone()).await;
    let late = bundle(&restored, LATE, "late");
    connects_and_publishes(server.mqtt, LATE, late).await;
    server.stop().await;
}

per_backend!(a_backup_taken_under_load_restores_every_acknowledged_reading);
