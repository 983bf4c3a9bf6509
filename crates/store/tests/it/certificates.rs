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

/// What a factory batch records, and the state of one certificate: (tenant, gateway).
async fn link_of(
    store: &Store,
    serial: &str,
) -> (Option<tds_domain::TenantId>, Option<tds_domain::GatewayId>) {
    let c = store.certificates().staff_by_serial(serial).await.unwrap();
    (c.tenant_id, c.gateway_id)
}

fn mac(s: &str) -> Mac {
    Mac::parse(s).unwrap()
}

async fn staff_registering_a_batched_mac_links_its_factory_certificates(store: Store) {
    let batch = [issued("aa:bb:cc:dd:ee:01", "0e1", 10), issued("aa:bb:cc:dd:ee:02", "0e2", 10)];
    store.certificates().staff_record_factory(&batch).await.unwrap();
    assert!(store.certificates().staff_has_active(mac("aa:bb:cc:dd:ee:01")).await.unwrap());
    let again = store.certificates().staff_record_factory(&[issued("aa:bb:cc:dd:ee:02", "0e3", 10)]).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))));
    let t = fixtures::tenant(&store, "Acme").await;
    assert_eq!(
        store.certificates().list(t.id, &CertificateFilter::default(), Page::default()).await.unwrap().total,
        0
    );
    let rows = [(mac("aa:bb:cc:dd:ee:01"), fixtures::gateway_fields("GW1"))];
    let g = store.gateways().staff_import(t.id, &rows, None).await.unwrap().remove(0);
    let linked = store.certificates().for_gateway(t.id, g.id).await.unwrap();
    assert_eq!(linked.iter().map(|c| c.serial.as_str()).collect::<Vec<_>>(), vec!["0e1"]);
    assert_eq!(linked[0].tenant_id, Some(t.id));
    assert_eq!(link_of(&store, "0e2").await, (None, None));
}

/// SPEC §3: a factory certificate is the batch's until its manifest (or staff) says whose it is.
/// A tenant's editor who registers a MAC that the factory batched, whether for another tenant or
/// not, must not get its certificate (nor, through it, the gateway's telemetry).
async fn a_tenant_registering_a_batched_mac_gets_no_factory_certificate(store: Store) {
    store
        .certificates()
        .staff_record_factory(&[
            issued("aa:bb:cc:00:00:01", "0a01", 10),
            issued("aa:bb:cc:00:00:02", "0a02", 10),
        ])
        .await
        .unwrap();
    let b = fixtures::tenant(&store, "Beta").await;

    // The gateway form.
    let g = fixtures::gateway(&store, b.id, "aa:bb:cc:00:00:01", "STOLEN").await;
    assert!(store.certificates().for_gateway(b.id, g.id).await.unwrap().is_empty());
    assert_eq!(link_of(&store, "0a01").await, (None, None), "the certificate stays unlinked");

    // A plain CSV import.
    let rows = [(mac("aa:bb:cc:00:00:02"), fixtures::gateway_fields("STOLEN2"))];
    let g2 = store.gateways().import(b.id, &rows, None).await.unwrap().remove(0);
    assert!(store.certificates().for_gateway(b.id, g2.id).await.unwrap().is_empty());
    assert_eq!(link_of(&store, "0a02").await, (None, None));
    assert_eq!(
        store.certificates().list(b.id, &CertificateFilter::default(), Page::default()).await.unwrap().total,
        0,
        "tenant B sees none of the batch's certificates"
    );
}

async fn a_manifest_links_only_the_unlinked_certificate_it_names_for_that_mac(store: Store) {
    store
        .certificates()
        .staff_record_factory(&[
            issued("aa:bb:cc:00:00:01", "0a01", 10),
            issued("aa:bb:cc:00:00:02", "0a02", 10),
            issued("aa:bb:cc:00:00:03", "0b03", 10),
        ])
        .await
        .unwrap();
    let a = fixtures::tenant(&store, "Acme").await;
    let b = fixtures::tenant(&store, "Beta").await;
    let row = |m: &str, code: &str, serial: &str| (mac(m), fixtures::gateway_fields(code), serial.to_owned());

    // Tenant B holds the manifest line of its own MAC 03 only. It cannot pair A's MAC with its
    // serial, nor A's serial with its MAC, nor guess a serial, nor name one twice.
    let forged = [
        row("aa:bb:cc:00:00:01", "X1", "0b03"),
        row("aa:bb:cc:00:00:03", "X3", "0a01"),
        row("aa:bb:cc:00:00:02", "X2", "ffff"),
        row("aa:bb:cc:00:00:04", "X4", "0a02"),
    ];
    let Err(StoreError::Import(errors)) = store.gateways().import_manifest(b.id, &forged, None).await else {
        panic!("a forged manifest must be refused")
    };
    assert_eq!(errors.iter().map(|e| e.row).collect::<Vec<_>>(), vec![1, 2, 3, 4], "{errors:?}");
    assert!(errors.iter().all(|e| e.message.contains("not issued for")), "{errors:?}");
    let twice = [row("aa:bb:cc:00:00:03", "X3", "0b03"), row("aa:bb:cc:00:00:05", "X5", "0B03")];
    let Err(StoreError::Import(errors)) = store.gateways().import_manifest(b.id, &twice, None).await else {
        panic!("a serial named twice must be refused")
    };
    assert!(errors.iter().any(|e| e.row == 2 && e.message.contains("appears twice")), "{errors:?}");
    for serial in ["0a01", "0a02", "0b03"] {
        assert_eq!(link_of(&store, serial).await, (None, None), "{serial}: nothing linked by a refusal");
    }

    // Its own line works, and links that certificate only.
    let own = store
        .gateways()
        .import_manifest(b.id, &[row("aa:bb:cc:00:00:03", "B3", "0B03")], None)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(link_of(&store, "0b03").await, (Some(b.id), Some(own.id)));

    // A's manifest: both lines, in order; a linked certificate cannot be named again.
    let created = store
        .gateways()
        .import_manifest(
            a.id,
            &[row("aa:bb:cc:00:00:01", "A1", "0a01"), row("aa:bb:cc:00:00:02", "A2", "0a02")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(created.iter().map(|g| g.code.as_str()).collect::<Vec<_>>(), vec!["A1", "A2"]);
    assert_eq!(link_of(&store, "0a01").await, (Some(a.id), Some(created[0].id)));
    assert_eq!(link_of(&store, "0a02").await, (Some(a.id), Some(created[1].id)));
    let Err(StoreError::Import(errors)) =
        store.gateways().import_manifest(b.id, &[row("aa:bb:cc:00:00:09", "B9", "0a01")], None).await
    else {
        panic!("a linked certificate cannot be named again")
    };
    assert!(errors[0].message.contains("0a01"), "{errors:?}");
    assert_eq!(link_of(&store, "0a01").await, (Some(a.id), Some(created[0].id)));
}

/// Whoever registers a batched MAC first without its manifest keeps the certificate from being
/// linked at all: the manifest's owner is refused (MAC taken) and staff sort it out.
async fn a_batched_mac_taken_by_another_tenant_leaves_the_certificate_unlinked(store: Store) {
    store.certificates().staff_record_factory(&[issued("aa:bb:cc:00:00:01", "0a01", 10)]).await.unwrap();
    let a = fixtures::tenant(&store, "Acme").await;
    let b = fixtures::tenant(&store, "Beta").await;
    fixtures::gateway(&store, b.id, "aa:bb:cc:00:00:01", "SQUAT").await;
    let manifest = [(mac("aa:bb:cc:00:00:01"), fixtures::gateway_fields("A1"), "0a01".to_owned())];
    let Err(StoreError::Import(errors)) = store.gateways().import_manifest(a.id, &manifest, None).await
    else {
        panic!("the MAC is taken")
    };
    assert!(errors.iter().any(|e| e.message.contains("already registered")), "{errors:?}");
    assert_eq!(link_of(&store, "0a01").await, (None, None));
}

conformance!(
    staff_registering_a_batched_mac_links_its_factory_certificates,
    a_tenant_registering_a_batched_mac_gets_no_factory_certificate,
    a_manifest_links_only_the_unlinked_certificate_it_names_for_that_mac,
    a_batched_mac_taken_by_another_tenant_leaves_the_certificate_unlinked,
    a_gateway_has_one_active_certificate_unless_replaced,
    revocation_keeps_its_reason_and_feeds_the_revoked_list,
    certificates_are_listed_filtered_and_counted_by_expiry_year,
    another_tenant_cannot_see_or_revoke_certificates,
    only_a_newer_crl_replaces_the_stored_one,
);
