//! The renewal store on both databases: another tenant can neither see nor start nor change a
//! tenant's renewals, its log, its gateways' modes or its pause; the campaign's figures count
//! the open renewals by state and the outcomes per tenant and for the platform; and the
//! certificates list finds the never-used ones.

use chrono::{Duration, Utc};
use tds_domain::renewal::{RenewalMode, RenewalState};
use tds_domain::{GatewayId, Mac, TenantId};
use tds_store::certificates::{CertificateFilter, CertificateStatus, NewCertificate};
use tds_store::renewals::Admission;
use tds_store::{Page, Store, StoreError};
use tds_testkit::{conformance, fixtures};

fn cert(mac: &str, serial: &str, days: i64) -> NewCertificate {
    let now = Utc::now();
    NewCertificate {
        mac: Mac::parse(mac).unwrap(),
        serial: serial.into(),
        fingerprint_sha256: format!("fp-{serial}"),
        pem: "-".into(),
        key_algorithm: "ECDSA-P256".into(),
        issued_at: now - Duration::days(1),
        expires_at: now + Duration::days(days),
    }
}

/// A gateway of `tenant` with an active certificate `serial` expiring in `days`.
async fn gateway(store: &Store, tenant: TenantId, mac: &str, serial: &str, days: i64) -> GatewayId {
    let g = fixtures::gateway(store, tenant, mac, &format!("GW-{serial}")).await;
    store.certificates().record_issued(tenant, g.id, &cert(mac, serial, days), false, None).await.unwrap();
    g.id
}

async fn another_tenant_cannot_see_start_or_change_renewals(store: Store) {
    let a = fixtures::tenant(&store, "Alpha").await;
    let b = fixtures::tenant(&store, "Beta").await;
    let ga = gateway(&store, a.id, "aa:00:00:00:00:01", "a1", 100).await;
    let r = store.renewals().start(a.id, ga, RenewalMode::Csr, true, None, None).await.unwrap();
    assert_eq!(r.state, RenewalState::Offered);

    assert!(matches!(store.renewals().get(b.id, r.id).await, Err(StoreError::NotFound)));
    assert!(store.renewals().for_gateway(b.id, ga, 10).await.unwrap().is_empty());
    assert!(store.renewals().log(b.id, ga, 10).await.unwrap().is_empty());
    assert!(matches!(
        store.renewals().start(b.id, ga, RenewalMode::ServerKey, true, None, None).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.renewals().set_mode(b.id, ga, Some(RenewalMode::ServerKey)).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(store.renewals().mode(b.id, ga).await, Err(StoreError::NotFound)));
    assert!(store.renewals().set_paused(b.id, true, None).await.unwrap());
    assert!(!store.renewals().is_paused(a.id).await.unwrap(), "B's pause is B's");

    // A's own view is whole: the renewal, its log, its mode.
    assert_eq!(store.renewals().get(a.id, r.id).await.unwrap().id, r.id);
    assert_eq!(store.renewals().log(a.id, ga, 10).await.unwrap().len(), 1);
    assert_eq!(store.renewals().mode(a.id, ga).await.unwrap(), RenewalMode::ServerKey, "by its model");
    let b_figures = store
        .renewals()
        .progress(
            Some(b.id),
            Utc::now() + Duration::days(730),
            Utc::now() - Duration::days(1),
            Utc::now() - Duration::days(30),
        )
        .await
        .unwrap();
    assert_eq!((b_figures.backlog, b_figures.in_flight), (0, 0));
}

async fn the_figures_count_open_renewals_by_state_and_outcomes_per_tenant(store: Store) {
    let a = fixtures::tenant(&store, "Alpha").await;
    let b = fixtures::tenant(&store, "Beta").await;
    let now = Utc::now();
    let a1 = gateway(&store, a.id, "aa:00:00:00:00:01", "a1", 100).await;
    let a2 = gateway(&store, a.id, "aa:00:00:00:00:02", "a2", 200).await;
    let a3 = gateway(&store, a.id, "aa:00:00:00:00:03", "a3", 300).await;
    let a4 = gateway(&store, a.id, "aa:00:00:00:00:04", "a4", 400).await;
    gateway(&store, a.id, "aa:00:00:00:00:05", "a5", 3000).await; // outside the window
    let b1 = gateway(&store, b.id, "bb:00:00:00:00:01", "b1", 100).await;

    // a1: CSR asked; a2: a successor offered; a3: confirmed; b1: failed.
    store.renewals().start(a.id, a1, RenewalMode::Csr, false, None, None).await.unwrap();
    let offer = |serial: &str, mac: &str| (cert(mac, serial, 3650), r#"{"new_cert":"-"}"#.to_owned());
    let (c2, p2) = offer("a2-new", "aa:00:00:00:00:02");
    store.renewals().start(a.id, a2, RenewalMode::ServerKey, false, Some((&c2, &p2)), None).await.unwrap();
    let (c3, p3) = offer("a3-new", "aa:00:00:00:00:03");
    let r3 =
        store.renewals().start(a.id, a3, RenewalMode::ServerKey, true, Some((&c3, &p3)), None).await.unwrap();
    let mac3 = Mac::parse("aa:00:00:00:00:03").unwrap();
    assert_eq!(store.renewals().staff_admit(a3, mac3, "a3-new").await.unwrap(), Admission::Confirmed(r3.id));
    let rb = store.renewals().start(b.id, b1, RenewalMode::Csr, false, None, None).await.unwrap();
    store.renewals().fail(&rb, "bad CSR").await.unwrap();

    let window = now + Duration::days(730);
    let figures = |t| {
        let store = store.clone();
        async move {
            store
                .renewals()
                .progress(t, window, now - Duration::days(1), now - Duration::days(30))
                .await
                .unwrap()
        }
    };
    let pa = figures(Some(a.id)).await;
    assert_eq!((pa.offered, pa.csr_received, pa.issued, pa.in_flight), (1, 0, 1, 2), "{pa:?}");
    assert_eq!((pa.confirmed, pa.failed, pa.rolled_back), (1, 0, 0), "{pa:?}");
    // a4 waits; a3's new certificate is active but expires in ten years; a1, a2 are in flight.
    assert_eq!(pa.backlog, 1, "{pa:?}");
    assert_eq!(pa.started_today, 3);
    let pb = figures(Some(b.id)).await;
    assert_eq!((pb.in_flight, pb.failed, pb.backlog), (0, 1, 1), "the failed one is due again: {pb:?}");
    let all = figures(None).await;
    assert_eq!((all.in_flight, all.confirmed, all.failed, all.backlog, all.started_today), (2, 1, 1, 2, 4));
    let _ = a4;

    // Never used: all but a3's successor, which connected.
    let never = CertificateFilter { never_used: true, ..CertificateFilter::default() };
    let list = store.certificates().list(a.id, &never, Page::default()).await.unwrap();
    assert!(list.items.iter().all(|c| c.serial != "a3-new"), "{:?}", list.items);
    assert_eq!(list.total, 6, "a1..a5, a2's successor (a3's old one is superseded but never used either)");
    let active_never = CertificateFilter {
        never_used: true,
        status: Some(CertificateStatus::Active),
        ..CertificateFilter::default()
    };
    assert_eq!(store.certificates().list(a.id, &active_never, Page::default()).await.unwrap().total, 5);
    let by_id = store.certificates().page_by_id(a.id, &never, None, 100).await.unwrap();
    assert_eq!(by_id.len(), 6);
    let states: Vec<_> = store
        .certificates()
        .for_gateway(a.id, a3)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.serial, c.renewal_state))
        .collect();
    assert!(states.contains(&("a3-new".into(), Some("confirmed".into()))), "{states:?}");
    assert!(states.contains(&("a3".into(), Some("superseded".into()))), "{states:?}");
}

conformance!(
    another_tenant_cannot_see_start_or_change_renewals,
    the_figures_count_open_renewals_by_state_and_outcomes_per_tenant,
);
