use chrono::{Duration, Utc};
use tds_domain::Mac;
use tds_store::rejected::NewRejected;
use tds_store::{Page, Store};
use tds_testkit::{conformance, fixtures};

fn dead_letter(tenant: Option<tds_domain::TenantId>, code: &str) -> NewRejected {
    NewRejected {
        tenant_id: tenant,
        gateway_id: None,
        mac: Some(Mac::parse("aa:bb:cc:dd:ee:01").unwrap()),
        topic: "tds_new/gateway/aa:bb:cc:dd:ee:01/telemetria".into(),
        payload: b"{not json\xff".to_vec(),
        payload_size: None,
        reading_index: None,
        reason_code: code.into(),
        reason: format!("reason {code}"),
        received_at: Utc::now(),
    }
}

async fn dead_letters_keep_raw_bytes_and_reason(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let ids = store
        .rejected()
        .record(&[
            dead_letter(Some(t.id), "invalid_json"),
            dead_letter(Some(t.id), "unknown_device"),
            dead_letter(None, "unknown_gateway"),
        ])
        .await
        .unwrap();
    let first = store.rejected().get(t.id, ids[0]).await.unwrap();
    assert_eq!(first.payload, b"{not json\xff");
    assert_eq!(first.reason_code, "invalid_json");

    let mine = store.rejected().list(t.id, None, Page::default()).await.unwrap();
    assert_eq!(mine.total, 2);
    let filtered = store.rejected().list(t.id, Some("unknown_device"), Page::default()).await.unwrap();
    assert_eq!(filtered.items.len(), 1);
    let all = store.rejected().staff_list(None, Page::default()).await.unwrap();
    assert_eq!(all.total, 3, "staff also see dead letters of unknown gateways");
    assert_eq!(store.rejected().count_since(t.id, Utc::now() - Duration::hours(24)).await.unwrap(), 2);

    store.rejected().mark_replayed(t.id, ids[1], "stored 1 reading").await.unwrap();
    let replayed = store.rejected().get(t.id, ids[1]).await.unwrap();
    assert_eq!(replayed.replay_outcome.as_deref(), Some("stored 1 reading"));
    assert!(replayed.replayed_at.is_some());
}

conformance!(dead_letters_keep_raw_bytes_and_reason);
