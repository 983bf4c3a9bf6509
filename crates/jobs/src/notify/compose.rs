//! Builds the [`Notice`] of an alert from the store: the alert, its target's names (device,
//! gateway), who acknowledged it, the tenant and the link.
//!
//! Must not: write anything. A target that is gone (a device archived and purged) is named by
//! its kind only rather than failing the notification.

use chrono::{DateTime, Utc};
use tds_domain::alerts::Target;
use tds_domain::alerts::notice::{
    NoticeAlert, NoticeDevice, NoticeGateway, NoticeLinks, NoticeRule, NoticeTarget, NoticeTenant, SCHEMA,
    alert_link,
};
use tds_domain::alerts::{Notice, NoticeEvent};
use tds_domain::{Severity, TenantId};
use tds_store::alerts::Alert;
use tds_store::{Store, StoreError};

/// The tenant as a notice names it, with its zone (times are shown in it).
pub async fn tenant(store: &Store, id: TenantId) -> Result<(NoticeTenant, chrono_tz::Tz), StoreError> {
    let t = store.tenants().get(id).await?;
    let zone = t.timezone.tz();
    Ok((
        NoticeTenant { id: id.get(), name: t.name.to_string(), timezone: t.timezone.name().to_owned() },
        zone,
    ))
}

fn found<T>(result: Result<T, StoreError>) -> Result<Option<T>, StoreError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

async fn target(store: &Store, tenant: TenantId, target: Target) -> Result<NoticeTarget, StoreError> {
    let mut out =
        NoticeTarget { kind: target.kind_name().to_owned(), gateway: None, device: None, medium: None };
    let gateway_of =
        |g: tds_store::gateways::Gateway| NoticeGateway { mac: g.mac.to_string(), name: g.name.to_string() };
    match target {
        Target::Device(id) => {
            if let Some(d) = found(store.devices().get(tenant, id).await)? {
                out.medium = Some(d.medium.as_str().to_owned());
                out.gateway = found(store.gateways().get(tenant, d.gateway_id).await)?.map(gateway_of);
                out.device = Some(NoticeDevice { code: d.code.to_string(), name: d.name.to_string() });
            }
        }
        Target::Gateway(id) => out.gateway = found(store.gateways().get(tenant, id).await)?.map(gateway_of),
        Target::Medium(m) => out.medium = Some(m.as_str().to_owned()),
        Target::Tenant => {}
    }
    Ok(out)
}

/// What one notice is about, besides the alert as stored now.
#[derive(Debug, Clone, Copy)]
pub struct About {
    pub event: NoticeEvent,
    /// When the raise, clear or acknowledgement happened (a reminder: when it became due).
    pub occurred_at: DateTime<Utc>,
    /// The severity and value as the history entry recorded them.
    pub severity: Severity,
    pub value: Option<f64>,
}

/// The notice of `alert` for `about`, made at `now`.
pub async fn notice(
    store: &Store,
    public_url: &str,
    alert: &Alert,
    about: About,
    now: DateTime<Utc>,
) -> Result<Notice, StoreError> {
    let (tenant, _) = tenant(store, alert.tenant_id).await?;
    let acknowledged_by = match alert.acknowledged_by {
        Some(user) => found(store.users().get(user).await)?.map(|u| u.display_name.to_string()),
        None => None,
    };
    Ok(Notice {
        schema: SCHEMA.to_owned(),
        event: about.event,
        sent_at: now,
        occurred_at: about.occurred_at,
        alert: NoticeAlert {
            id: alert.id.get(),
            severity: about.severity,
            status: alert.status().as_str().to_owned(),
            message: alert.message.clone(),
            value: about.value.or(alert.value),
            raised_at: alert.raised_at,
            acknowledged_at: alert.acknowledged_at,
            acknowledged_by,
            comment: alert.ack_comment.clone(),
            cleared_at: alert.cleared_at,
        },
        rule: NoticeRule {
            id: alert.rule_id.map(tds_domain::AlertRuleId::get),
            name: alert.rule_name.clone(),
            kind: alert.rule_kind.clone(),
        },
        target: target(store, alert.tenant_id, alert.target).await?,
        tenant,
        links: NoticeLinks { alert: alert_link(public_url, alert.id.get()) },
    })
}
