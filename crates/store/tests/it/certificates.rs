use chrono::{Duration, Utc};
use tds_domain::Mac;
use tds_store::certificates::{CertificateFilter, CertificateStatus, NewCertificate, StoredCrl};
use tds_store::{Page, Store, StoreError};
use tds_testkit::{conformance, fixtures};

fn issued(mac: &str, serial: &str, years: i64) -> NewCertificate {
    let now = Utc::now();
    NewCertificate {
        mac: Mac::parse(mac).unwrap(),
        serial: serial.into(),
        fingerprint_sha256: format!("fp-{serial}"),
        pem: "-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n".into(),
        key_algorithm: "RSA-2048".into(),
        issued_at: now,
        expires_at: now + Duration::days(365 * years),
    }
}

async fn a_gateway_has_one_active_certificate_unless_replaced(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let g = fixtures::gateway(&store, t.id, "aa:bb:cc:dd:ee:01", "GW1").await;
    let first = store
        .certificates()
        .record_issued(t.id, g.id, &issued("aa:bb:cc:dd:ee:01", "0a1", 10), false, None)
        .await
        .unwrap();
    assert_eq!(first.status, CertificateStatus::Active);
    let again = store
        .certificates()
        .record_issued(t.id, g.id, &issued("aa:bb:cc:dd:ee:01", "0a2", 10), false, None)
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(m)) if m.contains("already has an active certificate")));
    let second = store
        .certificates()
        .record_issued(t.id, g.id, &issued("aa:bb:cc:dd:ee:01", "0a2", 10), true, None)
        .await
        .unwrap();
    let history = store.certificates().for_gateway(t.id, g.id).await.unwrap();
    let statuses: Vec<_> = history.iter().map(|c| (c.serial.as_str(), c.status)).collect();
    assert_eq!(statuses, vec![("0a2", CertificateStatus::Active), ("0a1", CertificateStatus::Superseded)]);
    assert_eq!(store.certificates().staff_by_serial("0A2").await.unwrap().id, second.id);
    let wrong_mac = store
        .certificates()
        .record_issued(t.id, g.id, &issued("aa:bb:cc:dd:ee:99", "0a3", 10), true, None)
        .await;
    assert!(matches!(wrong_mac, Err(StoreError::Conflict(_))));
}

async fn revocation_keeps_its_reason_and_feeds_the_revoked_list(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let g = fixtures::gateway(&store, t.id, "aa:bb:cc:dd:ee:01", "GW1").await;
    let c = store
        .certificates()
        .record_issued(t.id, g.id, &issued("aa:bb:cc:dd:ee:01", "0b1", 10), false, None)
        .await
        .unwrap();
    let revoked =
        store.certificates().revoke(t.id, c.id, "keyCompromise", Some("stolen gateway")).await.unwrap();
    assert_eq!(revoked.status, CertificateStatus::Revoked);
    assert_eq!(revoked.revocation_reason.as_deref(), Some("keyCompromise"));
    assert_eq!(revoked.revocation_notes.as_deref(), Some("stolen gateway"));
    assert!(matches!(
        store.certificates().revoke(t.id, c.id, "superseded", None).await,
        Err(StoreError::Conflict(_))
    ));
    let list = store.certificates().staff_revoked().await.unwrap();
    assert_eq!(
        list.iter().map(|r| (r.serial.as_str(), r.reason.as_str())).collect::<Vec<_>>(),
        vec![("0b1", "keyCompromise")]
    );
    // After a revocation the gateway may get a new certificate without --replace.
    store
        .certificates()
        .record_issued(t.id, g.id, &issued("aa:bb:cc:dd:ee:01", "0b2", 10), false, None)
        .await
        .unwrap();
}

async fn certificates_are_listed_filtered_and_counted_by_expiry_year(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    for (i, years) in [(1, 1), (2, 10), (3, 10)] {
        let mac = format!("aa:bb:cc:dd:ee:0{i}");
        let g = fixtures::gateway(&store, t.id, &mac, &format!("GW{i}")).await;
        store
            .certificates()
            .record_issued(t.id, g.id, &issued(&mac, &format!("0c{i}"), years), false, None)
            .await
            .unwrap();
    }
    let soon =
        CertificateFilter { expires_before: Some(Utc::now() + Duration::days(730)), ..Default::default() };
    let expiring = store.certificates().list(t.id, &soon, Page::default()).await.unwrap();
    assert_eq!(expiring.items.iter().map(|c| c.serial.as_str()).collect::<Vec<_>>(), vec!["0c1"]);
    let by_mac = CertificateFilter { search: Some("EE:02".into()), ..Default::default() };
    assert_eq!(store.certificates().list(t.id, &by_mac, Page::default()).await.unwrap().total, 1);
    let years = store.certificates().expiry_by_year(Some(t.id)).await.unwrap();
    assert_eq!(years.iter().map(|(_, n)| n).sum::<i64>(), 3);
    assert_eq!(years.len(), 2);
}

async fn another_tenant_cannot_see_or_revoke_certificates(store: Store) {
    let a = fixtures::tenant(&store, "Alpha").await;
    let b = fixtures::tenant(&store, "Beta").await;
    let g = fixtures::gateway(&store, a.id, "aa:bb:cc:dd:ee:01", "GW1").await;
    let c = store
        .certificates()
        .record_issued(a.id, g.id, &issued("aa:bb:cc:dd:ee:01", "0d1", 10), false, None)
        .await
        .unwrap();
    assert!(matches!(store.certificates().get(b.id, c.id).await, Err(StoreError::NotFound)));
    assert!(matches!(
        store.certificates().revoke(b.id, c.id, "keyCompromise", None).await,
        Err(StoreError::NotFound)
    ));
    assert!(store.certificates().for_gateway(b.id, g.id).await.unwrap().is_empty());
    assert_eq!(
        store.certificates().list(b.id, &CertificateFilter::default(), Page::default()).await.unwrap().total,
        0
    );
    let issue_on_foreign = store
        .certificates()
        .record_issued(b.id, g.id, &issued("aa:bb:cc:dd:ee:01", "0d2", 10), true, None)
        .await;
    assert!(matches!(issue_on_foreign, Err(StoreError::NotFound)));
    assert_eq!(store.certificates().get(a.id, c.id).await.unwrap().status, CertificateStatus::Active);
}

async fn only_a_newer_crl_replaces_the_stored_one(store: Store) {
    let now = Utc::now();
    let crl = |n: i64| StoredCrl {
        number: n,
        this_update: now,
        next_update: now + Duration::days(7),
        pem: format!("pem {n}"),
        der: vec![n as u8],
    };
    assert!(store.certificates().crl().await.unwrap().is_none());
    store.certificates().save_crl(&crl(1)).await.unwrap();
    store.certificates().save_crl(&crl(2)).await.unwrap();
    assert!(matches!(store.certificates().save_crl(&crl(2)).await, Err(StoreError::Conflict(_))));
    assert_eq!(store.certificates().crl().await.unwrap().unwrap().pem, "pem 2");
}

async fn factory_certificates_are_linked_when_their_gateway_is_pre_registered(store: Store) {
    let batch = [issued("aa:bb:cc:dd:ee:01", "0e1", 10), issued("aa:bb:cc:dd:ee:02", "0e2", 10)];
    store.certificates().staff_record_factory(&batch).await.unwrap();
    assert!(store.certificates().staff_has_active(Mac::parse("aa:bb:cc:dd:ee:01").unwrap()).await.unwrap());
    let again = store.certificates().staff_record_factory(&[issued("aa:bb:cc:dd:ee:02", "0e3", 10)]).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))));
    let t = fixtures::tenant(&store, "Acme").await;
    assert_eq!(
        store.certificates().list(t.id, &CertificateFilter::default(), Page::default()).await.unwrap().total,
        0
    );
    let g = fixtures::gateway(&store, t.id, "aa:bb:cc:dd:ee:01", "GW1").await;
    let linked = store.certificates().for_gateway(t.id, g.id).await.unwrap();
    assert_eq!(linked.iter().map(|c| c.serial.as_str()).collect::<Vec<_>>(), vec!["0e1"]);
    assert_eq!(linked[0].tenant_id, Some(t.id));
    let unlinked = store.certificates().staff_by_serial("0e2").await.unwrap();
    assert_eq!(unlinked.tenant_id, None);
}

conformance!(
    factory_certificates_are_linked_when_their_gateway_is_pre_registered,
    a_gateway_has_one_active_certificate_unless_replaced,
    revocation_keeps_its_reason_and_feeds_the_revoked_list,
    certificates_are_listed_filtered_and_counted_by_expiry_year,
    another_tenant_cannot_see_or_revoke_certificates,
    only_a_newer_crl_replaces_the_stored_one,
);
