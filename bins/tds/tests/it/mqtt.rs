//! `tds serve` as gateways meet it: the MQTT device endpoint of the real binary, with a bundle
//! from `tds cert issue` and Debian's `mosquitto_pub` as the gateway.

use crate::pki::unzip;
use crate::support::{Server, Tds, text};
use std::process::Command;
use tds_store::{DbOptions, Store};
use tds_testkit::{TestDb, per_backend};

async fn a_gateway_publishes_with_mosquitto_pub_and_its_readings_are_stored(db: TestDb) {
    let tds = Tds::new(Some(&db.url));
    tds.ok(&["ca", "init", "--algorithm", "ecdsa-p384"]);
    tds.ok(&["tenant", "create", "--name", "Acme"]);
    let gws = tds.file("g.csv", "aa:bb:cc:00:00:01,GW1,Bloco A\n");
    tds.ok(&["gateway", "import", "--tenant", "Acme", gws.to_str().unwrap()]);
    let devs = tds.file("d.csv", "aa:bb:cc:00:00:01,D01,Agua,MEDIDOR,water,counter,m3,1,100\n");
    tds.ok(&["device", "import", "--tenant", "Acme", devs.to_str().unwrap()]);
    tds.ok(&["cert", "issue", "--mac", "aa:bb:cc:00:00:01", "--out", "bundles", "--key", "ecdsa-p256"]);
    unzip(&tds.path().join("bundles/aa-bb-cc-00-00-01.zip"), &tds.path().join("gw1"));

    let server = Server::start(&tds).await;
    let (http, mqtt) = (server.http, server.mqtt);
    let publish = |client_id: &str, topic: &str, message: &str| {
        Command::new("mosquitto_pub")
            .current_dir(tds.path())
            .args(["-h", "localhost", "-p", &mqtt.to_string(), "--cafile", "gw1/ca.crt"])
            .args(["--cert", "gw1/client.crt", "--key", "gw1/client.key", "-q", "1", "-i", client_id])
            .args(["-t", topic, "-m", message])
            .output()
            .expect("Debian's mosquitto-clients are installed (scripts/test.sh installs them)")
    };
    let topic = "tds_new/gateway/aa:bb:cc:00:00:01/telemetria";
    let message = r#"{"gateway_mac":"aa:bb:cc:00:00:01","timestamp":"2026-11-23T10:00:00Z","leituras":[{"dispositivo_codigo":"D01","valor":1234.5,"unidade":"m3"}]}"#;
    let out = publish("aa:bb:cc:00:00:01", topic, message);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The same message again (a gateway resending): stored once.
    assert!(publish("aa:bb:cc:00:00:01", topic, message).status.success());
    // A client id that is not the certificate's MAC is refused.
    let refused = publish("someone-else", topic, message);
    assert!(!refused.status.success());

    let store = Store::open(&db.url, &DbOptions::default()).await.unwrap();
    let tenant = store.tenants().staff_by_name("Acme").await.unwrap();
    let device = store.devices().list(tenant.id).await.unwrap().pop().unwrap();
    let since = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().to_utc();
    let readings =
        store.readings().for_device(tenant.id, device.id, since, chrono::Utc::now(), 100).await.unwrap();
    assert_eq!(readings.len(), 1, "{readings:?}");
    assert_eq!(readings[0].value, 1234.5);
    let gateway =
        store.gateways().by_code(tenant.id, &tds_domain::GatewayCode::parse("GW1").unwrap()).await.unwrap();
    assert_eq!(gateway.status, tds_domain::GatewayStatus::Active, "first telemetry activates the gateway");

    let metrics =
        reqwest::get(format!("http://127.0.0.1:{http}/metrics")).await.unwrap().text().await.unwrap();
    for name in [
        "tds_ingest_messages_total",
        "tds_ingest_readings_total",
        "tds_ingest_refusals_total",
        "tds_ingest_commit_seconds_bucket",
        "tds_ingest_accept_seconds_bucket",
        "tds_ingest_queue_wait_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics:\n{metrics}");
    }
    assert!(metrics.contains(r#"tds_ingest_readings_total{outcome="stored"} 1"#), "{metrics}");

    server.stop().await;
}

per_backend!(a_gateway_publishes_with_mosquitto_pub_and_its_readings_are_stored);
