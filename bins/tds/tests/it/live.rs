//! The live-event bus across instances: what one `tds serve` publishes reaches the pages of
//! another on the same PostgreSQL (LISTEN/NOTIFY), gathered per window to each device's latest
//! reading and split to fit; on SQLite the bus is local.

use chrono::Utc;
use std::time::Duration;
use tds_domain::{DeviceId, GatewayId, LiveEvent, LiveReading, TenantId};
use tds_store::{DbOptions, Store};
use tds_testkit::{TestDb, per_backend};

/// A reading for each of devices 1..=n, all at `at`.
fn readings(n: usize, at: chrono::DateTime<Utc>) -> LiveEvent {
    LiveEvent::Readings {
        tenant: TenantId::new(1),
        gateway: GatewayId::new(2),
        readings: (1..=n)
            .map(|i| LiveReading { device: DeviceId::new(i as i64), time: at, value: i as f64 })
            .collect(),
    }
}

/// Every reading `rx` delivers within 5 s, until `want` arrived.
async fn collect(rx: &mut tokio::sync::broadcast::Receiver<LiveEvent>, want: usize) -> usize {
    let mut got = 0;
    while got < want {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Ok(LiveEvent::Readings { readings, .. })) => got += readings.len(),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("bus failed: {e}"),
            Err(_) => break,
        }
    }
    got
}

async fn events_of_one_instance_reach_the_pages_of_every_instance(db: TestDb) {
    let a_store = Store::open(&db.url, &DbOptions::default()).await.unwrap();
    let a = tds::live::start(&a_store).await.unwrap();
    let mut a_pages = a.pages.subscribe();
    let b = if a_store.notify().shared() {
        let b_store = Store::open(&db.url, &DbOptions::default()).await.unwrap();
        Some(tds::live::start(&b_store).await.unwrap())
    } else {
        None
    };
    let mut b_pages = b.as_ref().map(|b| b.pages.subscribe());
    // Let the listeners subscribe before anything is sent.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let t0 = Utc::now();
    a.local.send(readings(3, t0)).unwrap();
    a.local.send(readings(500, t0 + chrono::Duration::seconds(1))).unwrap();
    assert_eq!(collect(&mut a_pages, 503).await, 503, "the instance's own pages: every event");
    if let Some(rx) = b_pages.as_mut() {
        // The latest reading of each of the 500 devices, in several notifications.
        assert_eq!(collect(rx, 500).await, 500, "another instance's pages");
        assert!(tokio::time::timeout(Duration::from_millis(500), rx.recv()).await.is_err(), "nothing more");
        // And nothing comes back twice to the sender.
        assert!(tokio::time::timeout(Duration::from_millis(500), a_pages.recv()).await.is_err());
    }
    // An alerts change (the evaluation job's, on the device-side bus) reaches every instance's
    // pages too, the latest count of the window only.
    let count = |critical| tds_domain::AlertCounts { info: 0, warning: 1, critical };
    a.local.send(LiveEvent::Alerts { tenant: TenantId::new(1), active: count(1) }).unwrap();
    a.local.send(LiveEvent::Alerts { tenant: TenantId::new(1), active: count(2) }).unwrap();
    let mut latest = None;
    while let Ok(Ok(e)) = tokio::time::timeout(Duration::from_secs(2), a_pages.recv()).await {
        if let LiveEvent::Alerts { active, .. } = e {
            latest = Some(active.critical);
        }
    }
    assert_eq!(latest, Some(2), "this instance's pages");
    if let Some(rx) = b_pages.as_mut() {
        let mut latest = None;
        while let Ok(Ok(e)) = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await {
            if let LiveEvent::Alerts { active, .. } = e {
                latest = Some(active.critical);
            }
        }
        assert_eq!(latest, Some(2), "another instance's pages");
    }
    a.stop();
    if let Some(b) = b {
        b.stop();
    }
}

per_backend!(events_of_one_instance_reach_the_pages_of_every_instance);
