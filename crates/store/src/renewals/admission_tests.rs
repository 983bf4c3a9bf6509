//! The allow-list check on the device endpoint's connect path ([`super::RenewalStore::staff_admit`]):
//! a gateway's current certificate, used before, is admitted without SQLite's one write
//! connection, which the ingest commits hold most of the time under load.

#![allow(clippy::unwrap_used, clippy::panic)]

use super::Admission;
use crate::Db;
use crate::certificates::NewCertificate;
use crate::gateways::GatewayFields;
use crate::tenants::NewTenant;
use chrono::{Duration, Utc};
use std::time::Duration as StdDuration;
use tds_domain::{GatewayCode, Mac, Name};

/// The issue: every connection ran the check in a write transaction, so a thousand gateways
/// reconnecting after a restart each waited for an ingest commit. The first use of a
/// certificate still writes (its `first_used_at`); later ones answer with the writer held by
/// someone else. (The timeout only stops a failing run from waiting for the pool's minute.)
#[tokio::test]
async fn a_used_current_certificate_is_admitted_without_the_writer_connection() {
    let (_dir, store) = crate::sqlite_for_test().await;
    let tenant =
        store.tenants().staff_create(&NewTenant::named(Name::parse("name", "Acme").unwrap())).await.unwrap();
    let mac = Mac::parse("aa:00:00:00:00:01").unwrap();
    let fields = GatewayFields::new(GatewayCode::parse("GW1").unwrap(), Name::parse("name", "G").unwrap());
    let gateway = store.gateways().create(tenant.id, mac, &fields, None).await.unwrap();
    let now = Utc::now();
    let cert = NewCertificate {
        mac,
        serial: "0a1b".into(),
        fingerprint_sha256: "fp".into(),
        pem: "-".into(),
        key_algorithm: "ECDSA-P256".into(),
        issued_at: now - Duration::days(1),
        expires_at: now + Duration::days(365),
    };
    store.certificates().record_issued(tenant.id, gateway.id, &cert, false, None).await.unwrap();
    let renewals = store.renewals();
    let admit = || renewals.staff_admit(gateway.id, mac, "0A1B");
    assert_eq!(admit().await.unwrap(), Admission::Current, "first use: written");
    let Db::Sqlite(db) = store.db() else { panic!("SQLite") };
    let writer = db.write.acquire().await.unwrap();
    let again = tokio::time::timeout(StdDuration::from_secs(20), admit())
        .await
        .expect("a used current certificate must not wait for the writer connection");
    assert_eq!(again.unwrap(), Admission::Current);
    // Another gateway's serial, or an unknown one, is still refused (through the transaction).
    drop(writer);
    let other = Mac::parse("aa:00:00:00:00:02").unwrap();
    assert!(matches!(renewals.staff_admit(gateway.id, other, "0a1b").await.unwrap(), Admission::Refused(_)));
    assert!(matches!(renewals.staff_admit(gateway.id, mac, "ffff").await.unwrap(), Admission::Refused(_)));
}
