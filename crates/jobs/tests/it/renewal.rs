//! The renewal campaign against both databases: oldest expiry first, the per-tenant and
//! per-platform budgets of a day, offline gateways and paused tenants skipped, state that a
//! restart does not reset, expired offers failed, and one renewal on demand outside the budget.

use chrono::{DateTime, Duration, TimeZone, Utc};
use std::sync::Arc;
use tds_domain::renewal::{RenewalMode, RenewalState};
use tds_domain::{GatewayId, Mac, TenantId};
use tds_jobs::renewal::{Campaign, RunReport, renew_now, run};
use tds_store::Store;
use tds_store::certificates::NewCertificate;
use tds_testkit::{conformance, fixtures};

fn ca() -> (tempfile::TempDir, Arc<tds_pki::CaFiles>) {
    let dir = tempfile::tempdir().unwrap();
    let ca = tds_pki::CaFiles::init(
        dir.path(),
        &tds_pki::CaSubject::default(),
        tds_pki::CaAlgorithm::EcdsaP384,
        None,
        &["localhost".to_owned()],
    )
    .unwrap();
    (dir, Arc::new(ca))
}

fn campaign(ca: &Arc<tds_pki::CaFiles>, platform: i64, tenant: i64) -> Campaign {
    Campaign {
        ca: ca.clone(),
        platform_per_day: platform,
        tenant_per_day: tenant,
        device_cert_days: 3650,
        hour: 2,
    }
}

/// A gateway seen at `seen` with an active (recorded, not real) P-256 certificate expiring at
/// `expires`.
async fn gateway(
    store: &Store,
    t: TenantId,
    n: u8,
    expires: DateTime<Utc>,
    seen: DateTime<Utc>,
) -> GatewayId {
    let mac = format!("aa:bb:cc:00:{:02x}:{n:02x}", t.get());
    let g = fixtures::gateway(store, t, &mac, &format!("GW{n}")).await;
    store.gateways().mark_seen(t, g.id, seen).await.unwrap();
    let new = NewCertificate {
        mac: Mac::parse(&mac).unwrap(),
        serial: format!("{:x}{n:02x}", 0xab00 + t.get()),
        fingerprint_sha256: format!("fp-{mac}"),
        pem: "-".into(),
        key_algorithm: "ECDSA-P256".into(),
        issued_at: expires - Duration::days(3650),
        expires_at: expires,
    };
    store.certificates().record_issued(t, g.id, &new, false, None).await.unwrap();
    g.id
}

async fn renewed(store: &Store, t: TenantId, g: GatewayId) -> Option<RenewalState> {
    store.renewals().for_gateway(t, g, 1).await.unwrap().first().map(|r| r.state)
}

async fn the_campaign_renews_oldest_first_within_both_budgets_and_skips_offline_and_paused(store: Store) {
    let (_dir, ca) = ca();
    // 12:00 UTC is 09:00 in São Paulo: past the campaign hour.
    let now = Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap();
    let a = fixtures::tenant(&store, "Alpha").await;
    let b = fixtures::tenant(&store, "Beta").await;
    let seen = now - Duration::hours(1);
    let a4 = gateway(&store, a.id, 4, now + Duration::days(400), seen).await;
    let a1 = gateway(&store, a.id, 1, now + Duration::days(100), seen).await;
    let a3 = gateway(&store, a.id, 3, now + Duration::days(300), seen).await;
    let a2 = gateway(&store, a.id, 2, now + Duration::days(200), seen).await;
    let far = gateway(&store, a.id, 5, now + Duration::days(3000), seen).await;
    let offline = gateway(&store, a.id, 6, now + Duration::days(50), now - Duration::days(8)).await;
    let b1 = gateway(&store, b.id, 1, now + Duration::days(10), seen).await;
    let b2 = gateway(&store, b.id, 2, now + Duration::days(20), seen).await;
    let b3 = gateway(&store, b.id, 3, now + Duration::days(30), seen).await;

    let report = run(&store, &campaign(&ca, 5, 3), now).await.unwrap();
    assert_eq!(report, RunReport { started: 5, expired: 0 });
    for g in [a1, a2, a3] {
        assert_eq!(renewed(&store, a.id, g).await, Some(RenewalState::Issued), "oldest of Alpha first");
    }
    for g in [a4, far, offline] {
        assert_eq!(renewed(&store, a.id, g).await, None);
    }
    assert_eq!(renewed(&store, b.id, b1).await, Some(RenewalState::Issued));
    assert_eq!(renewed(&store, b.id, b2).await, Some(RenewalState::Issued));
    assert_eq!(renewed(&store, b.id, b3).await, None, "the platform's budget is spent");
    // Server-key mode: the offer holds the certificate and its key, retained until confirmed.
    let mac = store.gateways().get(a.id, a1).await.unwrap().mac;
    let offer =
        store.renewals().staff_pending(mac, &format!("tds_new/gateway/{mac}/cert_update")).await.unwrap();
    assert!(offer.unwrap().payload.contains("new_key"));

    // The same day again, with settings read afresh (a restart, another instance): nothing more.
    let again = run(&store, &campaign(&ca, 5, 3), now + Duration::hours(3)).await.unwrap();
    assert_eq!(again.started, 0);

    // The next day, Beta paused: only Alpha's last due certificate.
    assert!(store.renewals().set_paused(b.id, true, None).await.unwrap());
    let next = run(&store, &campaign(&ca, 5, 3), now + Duration::days(1)).await.unwrap();
    assert_eq!(next.started, 1);
    assert_eq!(renewed(&store, a.id, a4).await, Some(RenewalState::Issued));
    assert_eq!(renewed(&store, b.id, b3).await, None, "paused");
    assert!(store.renewals().set_paused(b.id, false, None).await.unwrap());

    // Offers not answered within 14 days fail (and their certificates are revoked).
    let later = run(&store, &campaign(&ca, 0, 0), now + Duration::days(15)).await.unwrap();
    assert_eq!(later.expired, 5, "the day-one offers");
    assert_eq!(renewed(&store, a.id, a1).await, Some(RenewalState::Failed));
    let log = store.renewals().log(a.id, a1, 10).await.unwrap();
    let steps: Vec<_> = log.iter().rev().map(|e| e.step.as_str()).collect();
    assert_eq!(steps, ["offered", "issued", "failed"]);
}

async fn the_campaign_waits_for_the_campaign_hour_in_the_tenants_zone(store: Store) {
    let (_dir, ca) = ca();
    // 04:00 UTC is 01:00 in São Paulo.
    let now = Utc.with_ymd_and_hms(2026, 6, 1, 4, 0, 0).unwrap();
    let a = fixtures::tenant(&store, "Alpha").await;
    let g = gateway(&store, a.id, 1, now + Duration::days(100), now).await;
    assert_eq!(run(&store, &campaign(&ca, 5, 5), now).await.unwrap().started, 0);
    assert_eq!(run(&store, &campaign(&ca, 5, 5), now + Duration::hours(1)).await.unwrap().started, 1);
    assert_eq!(renewed(&store, a.id, g).await, Some(RenewalState::Issued));
}

async fn renew_now_is_outside_the_budget_and_audited_and_one_at_a_time(store: Store) {
    let (_dir, ca) = ca();
    let now = Utc::now();
    let a = fixtures::tenant(&store, "Alpha").await;
    let g = gateway(&store, a.id, 1, now + Duration::days(3000), now).await;
    let r = renew_now(&store, &campaign(&ca, 0, 0), a.id, g, Some(RenewalMode::Csr), ("cli", None))
        .await
        .unwrap();
    assert_eq!((r.state, r.mode, r.manual), (RenewalState::Offered, RenewalMode::Csr, true));
    let mac = store.gateways().get(a.id, g).await.unwrap().mac;
    let offer =
        store.renewals().staff_pending(mac, &format!("tds_new/gateway/{mac}/cert_update")).await.unwrap();
    assert_eq!(offer.unwrap().payload, r#"{"csr_required":true}"#);
    assert!(
        renew_now(&store, &campaign(&ca, 0, 0), a.id, g, None, ("cli", None)).await.is_err(),
        "one open renewal"
    );
    let audit = store
        .audit()
        .list(a.id, &tds_store::audit::AuditFilter::default(), tds_store::Page::new(1, 10))
        .await
        .unwrap();
    assert!(audit.items.iter().any(|e| e.action == "cert.renew"));
}

conformance!(
    the_campaign_renews_oldest_first_within_both_budgets_and_skips_offline_and_paused,
    the_campaign_waits_for_the_campaign_hour_in_the_tenants_zone,
    renew_now_is_outside_the_budget_and_audited_and_one_at_a_time,
);
