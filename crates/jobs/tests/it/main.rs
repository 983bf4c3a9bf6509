//! The background jobs against both databases.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod alerts;
mod notify;
mod renewal;
mod reports;
mod runner;

use chrono::{Duration, TimeZone, Utc};
use tds_domain::Bucket;
use tds_store::Store;
use tds_store::readings::NewReading;
use tds_testkit::{conformance, fixtures};

/// Two readings of a counter: one past the default two-year retention, one recent.
async fn retention_deletes_old_raw_readings_and_keeps_their_rollups(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let g = fixtures::gateway(&store, t.id, "aa:bb:cc:dd:ee:01", "GW1").await;
    let d = fixtures::meter(&store, t.id, &g, "D01").await;
    let now = Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap();
    let old = now - Duration::days(800);
    let rows: Vec<NewReading> =
        [(old, 10.0), (old + Duration::minutes(30), 12.5), (now - Duration::hours(1), 20.0)]
            .into_iter()
            .map(|(time, value)| NewReading { device_id: d.id, time, value, unit: "kWh".into() })
            .collect();
    store.readings().insert(t.id, &rows).await.unwrap();
    assert!(tds_jobs::rollups::drain(&store).await.unwrap() > 0);
    let before =
        store.rollups().for_device(t.id, d.id, Bucket::Hour, old - Duration::days(1), now).await.unwrap();

    let deleted = tds_jobs::retention::purge(&store, now).await.unwrap();
    assert_eq!(deleted, 2, "the two readings older than 730 days");
    let left = store.readings().for_device(t.id, d.id, old - Duration::days(1), now, 10).await.unwrap();
    assert_eq!(left.iter().map(|r| r.value).collect::<Vec<_>>(), vec![20.0]);
    let after =
        store.rollups().for_device(t.id, d.id, Bucket::Hour, old - Duration::days(1), now).await.unwrap();
    assert_eq!(after, before, "rollups outlive the raw readings");
    assert_eq!(after.first().and_then(|r| r.consumption), Some(2.5));
    assert_eq!(tds_jobs::retention::purge(&store, now).await.unwrap(), 0, "idempotent");
}

async fn retention_deletes_dead_letters_past_their_horizon(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let now = Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap();
    let letter = |days: i64| tds_store::rejected::NewRejected {
        tenant_id: Some(t.id),
        gateway_id: None,
        mac: None,
        topic: "tds_new/gateway/aa:bb:cc:dd:ee:01/telemetria".into(),
        payload: b"{bad".to_vec(),
        payload_size: None,
        reading_index: None,
        reason_code: "invalid_json".into(),
        reason: "bad".into(),
        received_at: now - Duration::days(days),
    };
    store.rejected().record(&[letter(200), letter(91), letter(89), letter(1)]).await.unwrap();
    let horizon = tds_jobs::retention::DEFAULT_DEAD_LETTER_RETENTION;
    assert_eq!(tds_jobs::retention::purge_dead_letters(&store, now, horizon).await.unwrap(), 2);
    let left = store.rejected().list(t.id, None, tds_store::Page::default()).await.unwrap();
    assert_eq!(left.total, 2, "the two younger than 90 days stay");
    assert_eq!(tds_jobs::retention::purge_dead_letters(&store, now, horizon).await.unwrap(), 0, "idempotent");
}

/// The audit log, connection history and expired tokens each go after their own horizon, and
/// not before.
async fn retention_purges_audit_history_and_expired_tokens_past_their_horizons(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let g = fixtures::gateway(&store, t.id, "aa:bb:cc:dd:ee:01", "GW1").await;
    let now = Utc::now();
    store
        .audit()
        .record(&tds_store::audit::NewAuditEntry {
            tenant_id: Some(t.id),
            user_id: None,
            actor: "cli".into(),
            action: "gateway.create".into(),
            object_kind: "gateway".into(),
            object_id: None,
            detail: "{}".into(),
            ip: None,
        })
        .await
        .unwrap();
    store.gateway_events().record(t.id, g.id, "connected", "test", now).await.unwrap();
    let email = tds_domain::Email::parse("new@example.com").unwrap();
    store
        .user_tokens()
        .create_invite(t.id, &email, tds_domain::Role::Viewer, "hash", now + Duration::days(7), None)
        .await
        .unwrap();
    let horizons = tds_jobs::retention::Horizons::default();
    let purge = |at| tds_jobs::retention::purge_all(&store, at, horizons);
    assert_eq!(
        purge(now + Duration::days(36)).await.unwrap(),
        tds_jobs::retention::Purged::default(),
        "nothing is past a horizon yet"
    );
    let later = purge(now + Duration::days(38)).await.unwrap();
    assert_eq!(later.expired_tokens, 1, "an invitation goes 30 days after its expiry");
    assert_eq!((later.audit_log, later.connection_history), (0, 0));
    let later = purge(now + Duration::days(366)).await.unwrap();
    assert_eq!((later.audit_log, later.connection_history), (0, 1), "connection history after 365 days");
    let later = purge(now + Duration::days(731)).await.unwrap();
    assert_eq!(later.audit_log, 1, "the audit log after 730 days");
}

conformance!(
    retention_deletes_old_raw_readings_and_keeps_their_rollups,
    retention_deletes_dead_letters_past_their_horizon,
    retention_purges_audit_history_and_expired_tokens_past_their_horizons
);
