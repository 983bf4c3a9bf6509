//! The certificate renewal campaign (SPEC §3): in each tenant, once its clock is past the
//! campaign hour (02:00 by default) on a day, the active certificates expiring within 730 days
//! are renewed oldest expiry first, at most the tenant's daily budget and within the platform's,
//! skipping paused tenants and gateways not seen for 7 days (they stay in the backlog). Server-key
//! gateways get a new key and certificate at once; CSR gateways are asked for a CSR (the endpoint
//! signs it when it comes). Offers nobody answered within 14 days fail and are retried on a later
//! day. The job runs every few minutes: the budgets count the renewals already started today, so
//! a second run (or a restart, or another instance) never offers more than the day allows.
//!
//! Also [`renew_now`]: one renewal outside the budget (`tds cert renew`, the gateway page).
//!
//! Must not: publish anything itself (the messages are kept in the store and delivered by the
//! device endpoint or the broker publisher).

use crate::runner::Next;
use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use std::sync::Arc;
use tds_domain::renewal::{
    CertUpdate, OFFER_EXPIRY_DAYS, OFFLINE_SKIP_DAYS, RENEWAL_WINDOW_DAYS, RenewalMode,
};
use tds_domain::{GatewayId, Mac, TenantId, UserId};
use tds_pki::{CaFiles, DeviceKeyKind};
use tds_store::Store;
use tds_store::audit::NewAuditEntry;
use tds_store::certificates::NewCertificate;
use tds_store::renewals::Renewal;

pub const PERIOD: std::time::Duration = std::time::Duration::from_mins(10);

/// The campaign's settings (from the server configuration).
#[derive(Debug, Clone)]
pub struct Campaign {
    pub ca: Arc<CaFiles>,
    /// Renewals started by the campaign per day on the whole platform…
    pub platform_per_day: i64,
    /// …and per tenant.
    pub tenant_per_day: i64,
    /// Validity of a renewed certificate, in days.
    pub device_cert_days: u32,
    /// The tenant's local hour from which the day's renewals start.
    pub hour: u32,
}

/// What one run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunReport {
    pub started: usize,
    pub expired: usize,
}

/// The job: one run at `Utc::now()`.
pub async fn job(store: Store, campaign: Campaign) -> anyhow::Result<Next> {
    let report = run(&store, &campaign, Utc::now()).await?;
    if report.started > 0 || report.expired > 0 {
        tracing::info!(started = report.started, expired = report.expired, "certificate renewal campaign");
    }
    Ok(Next::Period)
}

/// One run of the campaign as of `now` (tests pass their own clock).
pub async fn run(store: &Store, campaign: &Campaign, now: DateTime<Utc>) -> anyhow::Result<RunReport> {
    let mut report = RunReport::default();
    for stale in store.renewals().staff_stale(now - Duration::days(OFFER_EXPIRY_DAYS)).await? {
        store.renewals().fail(&stale, "offer expired: the gateway did not answer").await?;
        report.expired += 1;
    }
    let utc_midnight = now.date_naive().and_time(NaiveTime::MIN).and_utc();
    let mut platform_left =
        campaign.platform_per_day - store.renewals().started_since(None, utc_midnight).await?;
    for tenant in store.tenants().staff_list().await? {
        if platform_left <= 0 {
            break;
        }
        if store.renewals().is_paused(tenant.id).await? {
            continue;
        }
        let zone = tenant.timezone.tz();
        let local = now.with_timezone(&zone);
        if local.time() < NaiveTime::from_hms_opt(campaign.hour, 0, 0).unwrap_or(NaiveTime::MIN) {
            continue;
        }
        let Some(day_start) =
            zone.from_local_datetime(&local.date_naive().and_time(NaiveTime::MIN)).earliest()
        else {
            continue;
        };
        let day_start = day_start.with_timezone(&Utc);
        let used = store.renewals().started_since(Some(tenant.id), day_start).await?;
        let budget = (campaign.tenant_per_day - used).min(platform_left);
        if budget <= 0 {
            continue;
        }
        let due = store
            .renewals()
            .candidates(
                tenant.id,
                now + Duration::days(RENEWAL_WINDOW_DAYS),
                now - Duration::days(OFFLINE_SKIP_DAYS),
                day_start,
                budget,
            )
            .await?;
        for c in due {
            let mac = Mac::parse(&c.mac)?;
            let kind = DeviceKeyKind::of_recorded(&c.key_algorithm);
            let target = (TenantId::new(c.tenant_id), GatewayId::new(c.gateway_id), mac);
            match offer(store, campaign, target, c.mode(), kind, (false, None), now).await {
                Ok(_) => {
                    report.started += 1;
                    platform_left -= 1;
                }
                Err(e) => {
                    tracing::warn!(gateway.mac = %mac, error = format!("{e:#}"), "cannot start a renewal");
                }
            }
        }
    }
    Ok(report)
}

/// Starts one renewal of the gateway now, outside the daily budget (`tds cert renew`, the "renew
/// now" button): in `mode` (or the gateway's own), recorded in the audit log as `actor`.
pub async fn renew_now(
    store: &Store,
    campaign: &Campaign,
    tenant: TenantId,
    gateway: GatewayId,
    mode: Option<RenewalMode>,
    actor: (&str, Option<UserId>),
) -> anyhow::Result<Renewal> {
    let g = store.gateways().get(tenant, gateway).await?;
    let mode = match mode {
        Some(m) => m,
        None => store.renewals().mode(tenant, gateway).await?,
    };
    let current = store
        .certificates()
        .for_gateway(tenant, gateway)
        .await?
        .into_iter()
        .find(|c| c.status == tds_store::certificates::CertificateStatus::Active);
    let kind = current.map_or(DeviceKeyKind::Rsa2048, |c| DeviceKeyKind::of_recorded(&c.key_algorithm));
    let renewal =
        offer(store, campaign, (tenant, gateway, g.mac), mode, kind, (true, actor.1), Utc::now()).await?;
    store
        .audit()
        .record(&NewAuditEntry {
            tenant_id: Some(tenant),
            user_id: actor.1,
            actor: actor.0.to_owned(),
            action: "cert.renew".into(),
            object_kind: "gateway".into(),
            object_id: Some(g.mac.to_string()),
            detail: serde_json::json!({"renewal": renewal.id.get(), "mode": mode.as_str()}).to_string(),
            ip: None,
        })
        .await?;
    Ok(renewal)
}

/// Starts the renewal of `(tenant, gateway, mac)`: by the campaign or by hand (`manual`, `by`).
async fn offer(
    store: &Store,
    campaign: &Campaign,
    (tenant, gateway, mac): (TenantId, GatewayId, Mac),
    mode: RenewalMode,
    kind: DeviceKeyKind,
    (manual, by): (bool, Option<UserId>),
    now: DateTime<Utc>,
) -> anyhow::Result<Renewal> {
    match mode {
        RenewalMode::Csr => {
            Ok(store.renewals().start_at(tenant, gateway, mode, manual, None, by, now).await?)
        }
        RenewalMode::ServerKey => {
            let (ca, days) = (campaign.ca.clone(), campaign.device_cert_days);
            // Key generation (RSA especially) off the async threads.
            let issued = tokio::task::spawn_blocking(move || ca.ca.issue_device(mac, kind, days)).await??;
            let payload = CertUpdate::Certificate {
                new_cert: issued.cert_pem.clone(),
                new_key: issued.key_pem.clone(),
                expires_at: issued.not_after,
            }
            .to_json();
            let record = NewCertificate {
                mac,
                serial: issued.serial_hex.clone(),
                fingerprint_sha256: issued.fingerprint_sha256.clone(),
                pem: issued.cert_pem.clone(),
                key_algorithm: issued.key_algorithm.clone(),
                issued_at: issued.not_before,
                expires_at: issued.not_after,
            };
            Ok(store
                .renewals()
                .start_at(tenant, gateway, mode, manual, Some((&record, &payload)), by, now)
                .await?)
        }
    }
}
