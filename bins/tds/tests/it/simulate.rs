//! `tds simulate` against `tds serve`, both the real binary: the virtual gateways are provisioned
//! (and reused on a second run), connect over mutual TLS, and what they saw acknowledged is what
//! the database holds; with heavy faults every bad message is a dead letter and late batches
//! land at their own instants.

use crate::support::{Server, Tds, text};
use tds_store::certificates::CertificateFilter;
use tds_store::{DbOptions, Page, Store};
use tds_testkit::{TestDb, per_backend};

/// The number before `label` in `line` ("… 12 acknowledged …" → 12).
fn figure(line: &str, label: &str) -> u64 {
    let at = line.find(label).unwrap_or_else(|| panic!("no {label:?} in {line:?}"));
    line[..at].split_whitespace().last().unwrap().trim_start_matches('(').parse().unwrap()
}

fn simulate(tds: &Tds, server: &Server, extra: &[&str]) -> String {
    let port = server.mqtt.to_string();
    let mut args = vec!["simulate", "--mqtt-port", &port, "--interval", "1", "--report-every", "1"];
    args.extend_from_slice(extra);
    let out = tds.run(&args, "");
    assert!(out.status.success(), "tds simulate failed:\n{}\n{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

async fn stored(db: &TestDb) -> (i64, Vec<tds_store::rejected::RejectedSummary>, Store) {
    let store = Store::open(&db.url, &DbOptions::default()).await.unwrap();
    let tenant = store.tenants().staff_by_name("Simulação").await.unwrap();
    let since = chrono::Utc::now() - chrono::Duration::hours(1);
    let readings = store.readings().count_since(tenant.id, since).await.unwrap();
    let dead = store.rejected().staff_list(None, Page::new(1, 500)).await.unwrap().items;
    (readings, dead, store)
}

async fn every_reading_the_simulated_gateways_saw_acknowledged_is_stored_and_a_second_run_reuses_the_fleet(
    db: TestDb,
) {
    let tds = Tds::new(Some(&db.url));
    tds.ok(&["ca", "init", "--algorithm", "ecdsa-p384"]);
    let server = Server::start(&tds).await;
    let first = simulate(
        &tds,
        &server,
        &["--gateways", "3", "--devices", "4", "--duration", "4", "--faults", "none"],
    );
    let summary = first.lines().last().unwrap();
    let acked = figure(summary, "acknowledged");
    let readings = figure(summary, "readings)");
    assert!(acked >= 6, "three gateways for 4 s at one batch a second: {summary}");
    // Status messages (online, offline) are acknowledged too but carry no readings.
    assert!(readings >= 4 * 6, "{summary}");
    assert!(first.contains("3 gateways x 4 devices"), "{first}");

    let (count, dead, store) = stored(&db).await;
    assert_eq!(count, readings as i64, "stored readings = readings in acknowledged batches\n{first}");
    assert!(dead.is_empty(), "well-behaved gateways leave no dead letters: {dead:?}");
    let certificates =
        store.certificates().staff_list(&CertificateFilter::default(), Page::new(1, 100)).await.unwrap();
    assert_eq!(certificates.total, 3);

    // Again: the same gateways, devices and certificates; the registers go on from where they were.
    let second = simulate(
        &tds,
        &server,
        &["--gateways", "3", "--devices", "4", "--duration", "2", "--faults", "none"],
    );
    let readings_2 = figure(second.lines().last().unwrap(), "readings)");
    let (count_2, dead_2, store) = stored(&db).await;
    assert_eq!(count_2, (readings + readings_2) as i64, "{second}\n{dead_2:?}");
    assert!(dead_2.is_empty(), "a continued register is no conflict or reset: {dead_2:?}");
    let certificates =
        store.certificates().staff_list(&CertificateFilter::default(), Page::new(1, 100)).await.unwrap();
    assert_eq!(certificates.total, 3, "the certificates of the first run are reused");
    let tenant = store.tenants().staff_by_name("Simulação").await.unwrap();
    assert_eq!(store.devices().list(tenant.id).await.unwrap().len(), 12);
    server.stop().await;
}

async fn with_heavy_faults_every_bad_message_is_a_dead_letter_and_late_batches_keep_their_instants(
    db: TestDb,
) {
    let tds = Tds::new(Some(&db.url));
    tds.ok(&["ca", "init", "--algorithm", "ecdsa-p384"]);
    let server = Server::start(&tds).await;
    let out = simulate(
        &tds,
        &server,
        &["--gateways", "4", "--devices", "3", "--duration", "8", "--faults", "heavy", "--seed", "3"],
    );
    let summary = out.lines().last().unwrap();
    let bad = figure(summary, "bad messages");
    let late = figure(summary, "late batches");
    let readings = figure(summary, "readings)");
    assert!(bad > 0 && late > 0, "heavy faults over 32 batches give both: {summary}");

    let (count, dead, store) = stored(&db).await;
    assert_eq!(count, readings as i64, "{out}");
    assert_eq!(dead.len() as u64, bad, "one dead letter per bad message: {dead:?}");
    for d in &dead {
        assert!(
            ["unknown_device", "invalid_value", "invalid_json"].contains(&d.reason_code.as_str()),
            "unexpected reason {} ({})",
            d.reason_code,
            d.reason
        );
    }
    // A late batch's readings carry instants before the batch's own: the gateway's clock, not the
    // arrival time, is what is stored.
    let tenant = store.tenants().staff_by_name("Simulação").await.unwrap();
    let device = store.devices().list(tenant.id).await.unwrap().remove(0);
    let rows = store
        .readings()
        .for_device(
            tenant.id,
            device.id,
            chrono::Utc::now() - chrono::Duration::hours(1),
            chrono::Utc::now(),
            1000,
        )
        .await
        .unwrap();
    let times: Vec<_> = rows.iter().map(|r| r.time).collect();
    let mut sorted = times.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), times.len(), "one reading per instant");
    assert!(rows.windows(2).all(|w| w[0].time < w[1].time));
    server.stop().await;
}

/// The simulated gateways take renewals as gateways in the field do (tds-gateway's shared
/// `cert_update` handling): one in server-key mode, one by CSR; both are confirmed by TDS, and
/// the next run connects with the renewed certificates instead of issuing new ones.
async fn simulated_gateways_take_their_renewals_and_keep_the_new_certificates(db: TestDb) {
    let tds = Tds::new(Some(&db.url));
    tds.ok(&["ca", "init", "--algorithm", "ecdsa-p384"]);
    let server = Server::start(&tds).await;
    let fleet = ["--gateways", "2", "--devices", "1", "--faults", "none"];
    simulate(&tds, &server, &[&fleet[..], &["--duration", "2"]].concat());
    let store = Store::open(&db.url, &DbOptions::default()).await.unwrap();
    let before = store
        .certificates()
        .staff_list(&CertificateFilter::default(), Page::new(1, 100))
        .await
        .unwrap()
        .items;
    assert_eq!(before.len(), 2);
    let tenant = store.tenants().staff_by_name("Simulação").await.unwrap();
    let server_key =
        store.gateways().staff_by_mac(tds_domain::Mac::parse(&before[0].mac).unwrap()).await.unwrap();
    store
        .renewals()
        .set_mode(tenant.id, server_key.id, Some(tds_domain::renewal::RenewalMode::ServerKey))
        .await
        .unwrap();
    tds.ok(&["cert", "renew", "--mac", &before[0].mac]);
    tds.ok(&["cert", "renew", "--mac", &before[1].mac, "--csr"]);

    let out = simulate(&tds, &server, &[&fleet[..], &["--duration", "5"]].concat());
    let summary = out.lines().last().unwrap();
    assert_eq!(figure(summary, "renewals"), 2, "{out}");
    assert_eq!(figure(summary, "rollbacks"), 0, "{out}");
    let after = store
        .certificates()
        .staff_list(&CertificateFilter::default(), Page::new(1, 100))
        .await
        .unwrap()
        .items;
    assert_eq!(after.len(), 4, "two renewed certificates: {after:?}");
    for old in &before {
        let now = after.iter().find(|c| c.id == old.id).unwrap();
        assert_ne!(now.status, tds_store::certificates::CertificateStatus::Active, "{now:?}");
    }
    let mut modes = Vec::new();
    for gateway in store
        .gateways()
        .list(tenant.id, &tds_store::gateways::GatewayFilter::default(), Page::new(1, 10))
        .await
        .unwrap()
        .items
    {
        let renewal = &store.renewals().for_gateway(tenant.id, gateway.id, 1).await.unwrap()[0];
        assert_eq!(renewal.state, tds_domain::renewal::RenewalState::Confirmed, "{renewal:?}");
        modes.push(renewal.mode);
    }
    modes.sort_by_key(|m| m.as_str());
    assert_eq!(modes, [tds_domain::renewal::RenewalMode::Csr, tds_domain::renewal::RenewalMode::ServerKey]);

    // A third run presents the renewed certificates: nothing new is issued.
    simulate(&tds, &server, &[&fleet[..], &["--duration", "2"]].concat());
    let again =
        store.certificates().staff_list(&CertificateFilter::default(), Page::new(1, 100)).await.unwrap();
    assert_eq!(again.total, 4, "the renewed certificates were kept and used");
    server.stop().await;
}

per_backend!(
    every_reading_the_simulated_gateways_saw_acknowledged_is_stored_and_a_second_run_reuses_the_fleet,
    with_heavy_faults_every_bad_message_is_a_dead_letter_and_late_batches_keep_their_instants,
    simulated_gateways_take_their_renewals_and_keep_the_new_certificates,
);
