//! Telemetry messages, table-driven: what is stored, what becomes a dead letter and why.

use crate::support::{Bench, MAC, TOPIC, batch};
use tds_testkit::{TestDb, per_backend};

/// (name, payload, readings stored as (device, value), dead letters as (reading index, reason
/// code)); a message's refused readings make one dead letter listing them (no reading index).
type Case = (&'static str, String, Vec<(&'static str, f64)>, Vec<(Option<i64>, &'static str)>);

fn cases() -> Vec<Case> {
    let future = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    // The tenant keeps raw readings for the default 730 days.
    let expired = (chrono::Utc::now() - chrono::Duration::days(731)).to_rfc3339();
    vec![
        (
            "a valid batch is stored",
            batch(
                MAC,
                r#"{"dispositivo_codigo":"D01","valor":12.5,"unidade":"kWh"},{"dispositivo_codigo":"D02","valor":7}"#,
            ),
            vec![("D01", 12.5), ("D02", 7.0)],
            vec![],
        ),
        (
            "an unknown device is a dead letter, the rest is stored",
            batch(MAC, r#"{"dispositivo_codigo":"D01","valor":1},{"dispositivo_codigo":"D99","valor":2}"#),
            vec![("D01", 1.0)],
            vec![(None, "unknown_device")],
        ),
        (
            "a non-numeric value is a dead letter",
            batch(MAC, r#"{"dispositivo_codigo":"D01","valor":"abc"}"#),
            vec![],
            vec![(None, "invalid_value")],
        ),
        (
            "a unit that is not the device's is a dead letter",
            batch(MAC, r#"{"dispositivo_codigo":"D01","valor":3,"unidade":"m3"}"#),
            vec![],
            vec![(None, "unit_conflict")],
        ),
        (
            "a reading in the future is a dead letter",
            batch(MAC, &format!(r#"{{"dispositivo_codigo":"D01","valor":3,"timestamp":"{future}"}}"#)),
            vec![],
            vec![(None, "future_timestamp")],
        ),
        (
            "a reading older than the tenant's retention is a dead letter, the rest is stored",
            batch(
                MAC,
                &format!(
                    r#"{{"dispositivo_codigo":"D01","valor":3,"timestamp":"{expired}"}},{{"dispositivo_codigo":"D02","valor":4}}"#
                ),
            ),
            vec![("D02", 4.0)],
            vec![(None, "before_retention")],
        ),
        (
            "another gateway's MAC in the payload refuses the message",
            batch("aa:bb:cc:00:00:02", r#"{"dispositivo_codigo":"D01","valor":1}"#),
            vec![],
            vec![(None, "gateway_mac_mismatch")],
        ),
        ("bad JSON refuses the message", "{not json".to_owned(), vec![], vec![(None, "invalid_json")]),
        (
            "an oversize message is a dead letter",
            batch(
                MAC,
                &format!(r#"{{"dispositivo_codigo":"D01","valor":1,"x":"{}"}}"#, "x".repeat(70 * 1024)),
            ),
            vec![],
            vec![(None, "payload_too_large")],
        ),
    ]
}

async fn every_telemetry_rule_stores_or_dead_letters_with_its_reason(db: TestDb) {
    let bench = Bench::start(db).await;
    let mut device = bench.gateway_client().await;
    let mut expected_readings = 0;
    let mut expected_dead = 0;
    for (i, (name, payload, readings, dead)) in cases().into_iter().enumerate() {
        // Each case at its own instant, so readings of different cases never collide.
        let payload = payload.replace("2026-11-23T10:00:00Z", &format!("2026-11-23T10:{i:02}:00Z"));
        device.publish(TOPIC, payload).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        let stored = bench.readings().await;
        expected_readings += readings.len();
        assert_eq!(stored.len(), expected_readings, "{name}: {stored:?}");
        for (code, value) in &readings {
            assert!(
                stored.iter().any(|(c, v, _)| c == code && v == value),
                "{name}: {code}={value} not in {stored:?}"
            );
        }
        let letters = bench.dead_letters().await;
        expected_dead += dead.len();
        assert_eq!(letters.len(), expected_dead, "{name}: {letters:?}");
        let mut newest: Vec<_> = letters.clone();
        newest.sort_by_key(|l| l.id.get());
        let new: Vec<_> =
            newest.iter().rev().take(dead.len()).map(|l| (l.reading_index, l.reason_code.as_str())).collect();
        for d in &dead {
            assert!(new.contains(d), "{name}: expected {d:?} in {new:?}");
        }
        for l in newest.iter().rev().take(dead.len()) {
            assert_eq!(l.mac.as_deref(), Some(MAC), "{name}");
            assert!(!l.preview.is_empty() && !l.reason.is_empty(), "{name}: raw bytes and a reason are kept");
        }
    }
}

async fn a_resent_message_stores_nothing_twice_and_a_changed_value_is_a_conflict(db: TestDb) {
    let bench = Bench::start(db).await;
    let mut device = bench.gateway_client().await;
    let msg = batch(
        MAC,
        r#"{"dispositivo_codigo":"D01","valor":10,"timestamp":"2026-11-23T09:00:00Z"},{"dispositivo_codigo":"D01","valor":11,"timestamp":"2026-11-23T09:15:00Z"}"#,
    );
    device.publish(TOPIC, msg.clone()).await.unwrap();
    device.publish(TOPIC, msg).await.unwrap();
    let stored = bench.readings().await;
    assert_eq!(stored.len(), 2, "per-reading timestamps, nothing twice: {stored:?}");
    assert_eq!(stored[0].2.to_rfc3339(), "2026-11-23T09:00:00+00:00");
    assert!(bench.dead_letters().await.is_empty(), "an identical resend is not an error");
    let changed = batch(MAC, r#"{"dispositivo_codigo":"D01","valor":99,"timestamp":"2026-11-23T09:00:00Z"}"#);
    device.publish(TOPIC, changed).await.unwrap();
    assert_eq!(bench.readings().await[0].1, 10.0, "the first value stays");
    let letters = bench.dead_letters().await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason_code, "duplicate_conflict");
    assert!(letters[0].reason.contains("99"), "{}", letters[0].reason);
}

/// Messages published back to back are committed together (one group per tenant); each keeps
/// its own duplicates and conflicts, with the reading's index within its own message.
async fn messages_committed_together_keep_their_own_conflicts(db: TestDb) {
    let bench = Bench::start(db).await;
    let mut device = bench.gateway_client().await;
    let messages = [
        r#"{"dispositivo_codigo":"D01","valor":10,"timestamp":"2026-11-23T09:00:00Z"},{"dispositivo_codigo":"D02","valor":20,"timestamp":"2026-11-23T09:00:00Z"}"#,
        r#"{"dispositivo_codigo":"D02","valor":21,"timestamp":"2026-11-23T09:30:00Z"},{"dispositivo_codigo":"D01","valor":99,"timestamp":"2026-11-23T09:00:00Z"}"#,
        r#"{"dispositivo_codigo":"D01","valor":10,"timestamp":"2026-11-23T09:00:00Z"}"#,
    ];
    for m in messages {
        device.client.publish(TOPIC, rumqttc::QoS::AtLeastOnce, false, batch(MAC, m)).await.unwrap();
    }
    let mut acked = 0;
    while acked < messages.len() {
        match tokio::time::timeout(std::time::Duration::from_secs(10), device.events.poll()).await {
            Ok(Ok(rumqttc::Event::Incoming(rumqttc::Incoming::PubAck(_)))) => acked += 1,
            Ok(Ok(_)) => {}
            other => panic!("no PUBACK: {other:?}"),
        }
    }
    let stored: Vec<(String, f64)> = bench.readings().await.into_iter().map(|(d, v, _)| (d, v)).collect();
    let expected = [("D01", 10.0), ("D02", 20.0), ("D02", 21.0)].map(|(d, v)| (d.to_owned(), v));
    assert_eq!(stored, expected);
    let letters = bench.dead_letters().await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].reason_code, "duplicate_conflict");
    let listed: serde_json::Value =
        serde_json::from_slice(&bench.dead_letter(&letters[0]).await.payload).unwrap();
    assert_eq!(listed["refused"][0]["index"], 1, "the index within its own message");
    assert_eq!(listed["leituras"][0]["valor"], 99, "the reading as sent");
    assert!(letters[0].reason.contains("99"), "{}", letters[0].reason);
}

async fn first_accepted_telemetry_activates_a_pre_registered_gateway(db: TestDb) {
    let bench = Bench::start(db).await;
    let before = bench.store.gateways().get(bench.tenant, bench.gateway).await.unwrap();
    assert_eq!(before.status, tds_domain::GatewayStatus::PreRegistered);
    let mut device = bench.gateway_client().await;
    device.publish(TOPIC, batch(MAC, r#"{"dispositivo_codigo":"D01","valor":1}"#)).await.unwrap();
    let after = bench.store.gateways().get(bench.tenant, bench.gateway).await.unwrap();
    assert_eq!(after.status, tds_domain::GatewayStatus::Active);
    assert!(after.online && after.last_seen_at.is_some());
    // The alias topic of the deployed firmware works too.
    device
        .publish(
            "tds_new/devices/aa:bb:cc:00:00:01/telemetry",
            batch(MAC, r#"{"dispositivo_codigo":"D02","valor":5}"#),
        )
        .await
        .unwrap();
    assert_eq!(bench.readings().await.len(), 2);
}

/// After a restart every gateway reconnects at once, and their first messages are committed
/// together: each of them is active and online by the time its PUBACK arrives.
async fn gateways_whose_first_messages_commit_together_are_each_active_before_their_puback(db: TestDb) {
    let bench = Bench::start(db).await;
    let mut clients = Vec::new();
    for i in 2..8 {
        let mac = format!("aa:bb:cc:00:00:{i:02x}");
        let gw = tds_testkit::fixtures::gateway(&bench.store, bench.tenant, &mac, &format!("GW{i}")).await;
        assert_eq!(gw.status, tds_domain::GatewayStatus::PreRegistered);
        tds_testkit::fixtures::meter(&bench.store, bench.tenant, &gw, &format!("M{i}")).await;
        let cert = bench.certificate(&mac).await;
        clients.push((gw.id, mac.clone(), bench.connect(&cert, &mac).await.unwrap()));
    }
    let sent = clients.into_iter().map(|(id, mac, mut device)| {
        tokio::spawn(async move {
            let topic = format!("tds_new/gateway/{mac}/telemetria");
            let code = format!("M{}", &mac[mac.len() - 1..]);
            device
                .publish(&topic, batch(&mac, &format!(r#"{{"dispositivo_codigo":"{code}","valor":1}}"#)))
                .await?;
            Ok::<_, String>((id, device))
        })
    });
    let mut acked = Vec::new();
    for s in sent.collect::<Vec<_>>() {
        acked.push(s.await.unwrap().unwrap());
    }
    for (id, _device) in &acked {
        let g = bench.store.gateways().get(bench.tenant, *id).await.unwrap();
        assert_eq!(g.status, tds_domain::GatewayStatus::Active, "{}", g.code);
        assert!(g.online && g.last_seen_at.is_some(), "{}", g.code);
    }
    assert_eq!(bench.readings().await.len(), 6);
}

async fn a_device_registered_while_the_gateway_is_connected_is_recognised(db: TestDb) {
    let bench = Bench::start(db).await;
    let mut device = bench.gateway_client().await;
    let msg = |t: &str| batch(MAC, &format!(r#"{{"dispositivo_codigo":"D09","valor":5,"timestamp":"{t}"}}"#));
    device.publish(TOPIC, msg("2026-11-23T08:00:00Z")).await.unwrap();
    assert_eq!(bench.dead_letters().await[0].reason_code, "unknown_device");
    let gw = bench.store.gateways().get(bench.tenant, bench.gateway).await.unwrap();
    tds_testkit::fixtures::meter(&bench.store, bench.tenant, &gw, "D09").await;
    // The cache is re-read on an unknown code at most once a second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    device.publish(TOPIC, msg("2026-11-23T08:05:00Z")).await.unwrap();
    assert_eq!(bench.readings().await.len(), 1, "the new device's reading is stored on the same session");
}

/// SPEC §2 Limits: 256 KiB of `"leituras":[0,0,…]` (130,000 readings) used to make a dead letter
/// per reading, each a copy of the whole payload.
async fn a_batch_over_the_readings_limit_is_one_dead_letter_keeping_the_first_64_kib(db: TestDb) {
    let bench = Bench::start_with(db, |c| c.max_message_bytes = 256 * 1024).await;
    let mut device = bench.gateway_client().await;
    let head = batch(MAC, "");
    let zeros = (256 * 1024 - head.len()) / 2;
    let payload = head.replace("[]", &format!("[{}0]", "0,".repeat(zeros - 1)));
    assert!(payload.len() <= 256 * 1024 && zeros > 130_000, "{}", payload.len());
    let started = std::time::Instant::now();
    device.publish(TOPIC, payload.clone()).await.unwrap();
    eprintln!("a batch of {zeros} readings acknowledged in {:?}", started.elapsed());
    let letters = bench.dead_letters().await;
    assert_eq!(letters.len(), 1, "one dead letter, not one per reading");
    assert_eq!(letters[0].reason_code, "too_many_readings");
    assert!(letters[0].reason.contains("1000"), "{}", letters[0].reason);
    let letter = bench.dead_letter(&letters[0]).await;
    assert_eq!(letter.payload.len(), 64 * 1024, "the first 64 KiB are kept");
    assert_eq!(letter.payload_size, payload.len() as i64, "with the size as received");
    assert!(letter.truncated() && payload.as_bytes().starts_with(&letter.payload));
    assert!(bench.readings().await.is_empty());

    // A message over the size limit keeps its first 64 KiB too.
    let big =
        batch(MAC, &format!(r#"{{"dispositivo_codigo":"D01","valor":1,"x":"{}"}}"#, "x".repeat(300 * 1024)));
    device.publish(TOPIC, big.clone()).await.unwrap();
    let letters = bench.dead_letters().await;
    let too_large = letters.iter().find(|l| l.reason_code == "payload_too_large").unwrap();
    assert_eq!(too_large.payload_size, big.len() as i64);
    assert_eq!(bench.dead_letter(too_large).await.payload.len(), 64 * 1024);
}

/// A batch with many bad readings makes one dead letter listing each (index, code, reason and
/// the reading as sent), not one per reading; its good readings are stored.
async fn a_batch_with_many_bad_readings_makes_one_dead_letter_listing_them(db: TestDb) {
    let bench = Bench::start(db).await;
    let mut device = bench.gateway_client().await;
    let mut readings = vec![r#"{"dispositivo_codigo":"D01","valor":1}"#.to_owned()];
    readings.extend((0..300).map(|i| format!(r#"{{"dispositivo_codigo":"X{i}","valor":{i}}}"#)));
    readings.push(r#"{"dispositivo_codigo":"D02","valor":"abc"}"#.to_owned());
    device.publish(TOPIC, batch(MAC, &readings.join(","))).await.unwrap();
    assert_eq!(bench.readings().await.len(), 1, "the good reading is stored");
    let letters = bench.dead_letters().await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].reason_code, "readings_refused", "mixed reasons");
    assert!(
        letters[0].reason.starts_with("301 readings refused: #1 no device with code X0"),
        "{}",
        letters[0].reason
    );
    let letter = bench.dead_letter(&letters[0]).await;
    assert!(!letter.truncated() && letter.payload.len() <= 64 * 1024);
    let listed: serde_json::Value = serde_json::from_slice(&letter.payload).unwrap();
    let refused = listed["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 301);
    assert_eq!(refused[0]["index"], 1);
    assert_eq!(refused[0]["code"], "unknown_device");
    assert_eq!(
        (&refused[300]["index"], &refused[300]["code"]),
        (&serde_json::json!(301), &serde_json::json!("invalid_value"))
    );
    assert!(refused[300]["reason"].as_str().unwrap().contains("abc"), "{}", refused[300]);
    assert_eq!(listed["leituras"][300]["valor"], "abc", "the reading as sent");
    assert_eq!(listed["leituras"][0]["dispositivo_codigo"], "X0");
}

per_backend!(
    a_batch_over_the_readings_limit_is_one_dead_letter_keeping_the_first_64_kib,
    a_batch_with_many_bad_readings_makes_one_dead_letter_listing_them,
    a_device_registered_while_the_gateway_is_connected_is_recognised,
    every_telemetry_rule_stores_or_dead_letters_with_its_reason,
    a_resent_message_stores_nothing_twice_and_a_changed_value_is_a_conflict,
    messages_committed_together_keep_their_own_conflicts,
    first_accepted_telemetry_activates_a_pre_registered_gateway,
    gateways_whose_first_messages_commit_together_are_each_active_before_their_puback,
);
