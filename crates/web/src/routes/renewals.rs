//! Certificate renewal in the pages (SPEC §3): the campaign's figures on the certificates page
//! (a tenant's, or every tenant's for staff), pausing and resuming a tenant's campaign (its
//! admins, or staff for any tenant), the "renew now" button of a gateway page and the gateway's
//! renewal log there.
//!
//! Must not: pick certificates or count budgets (the campaign job does); a renewal started here
//! goes through [`crate::certs::Pki::renew`] like the API's.

use crate::AppState;
use crate::auth::{Admin, Staff};
use crate::certs::CertError;
use crate::error::{WebError, WebResult};
use crate::page::PageCtx;
use crate::routes::table::Routes;
use crate::routes::{audit, render_status};
use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::json;
use tds_domain::renewal::{RENEWAL_WINDOW_DAYS, RenewalMode};
use tds_domain::{GatewayId, TenantId};
use tds_store::audit::NewAuditEntry;
use tds_store::renewals::{LogEntry, Progress, Renewal};
use tds_store::{Store, StoreError};

/// Outcomes (confirmed, failed, rolled back) are counted over this many days.
pub const OUTCOME_DAYS: i64 = 30;
/// Steps of a gateway's renewal log shown on its page.
const LOG_LINES: i64 = 20;

pub fn routes() -> Routes {
    Routes::new()
        .route("/gateways/{id}/certificate/renew", post(renew))
        .route("/certificates/campaign", post(tenant_campaign))
        .route("/staff/tenants/{id}/renewal-campaign", post(staff_campaign))
}

/// What the certificates page shows of a campaign.
#[derive(Debug, Clone)]
pub struct CampaignView {
    pub progress: Progress,
    pub paused: bool,
}

/// One tenant's line in the staff view.
#[derive(Debug, Clone)]
pub struct TenantCampaign {
    pub tenant_id: TenantId,
    pub name: String,
    pub view: CampaignView,
}

/// The campaign's figures as of `now`: the backlog inside the renewal window, what started in
/// the last 24 hours, the open renewals by state and the outcomes of the last 30 days.
pub async fn progress(
    store: &Store,
    tenant: Option<TenantId>,
    now: DateTime<Utc>,
) -> Result<Progress, StoreError> {
    store
        .renewals()
        .progress(
            tenant,
            now + Duration::days(RENEWAL_WINDOW_DAYS),
            now - Duration::days(1),
            now - Duration::days(OUTCOME_DAYS),
        )
        .await
}

pub async fn tenant_view(
    store: &Store,
    tenant: TenantId,
    now: DateTime<Utc>,
) -> Result<CampaignView, StoreError> {
    Ok(CampaignView {
        progress: progress(store, Some(tenant), now).await?,
        paused: store.renewals().is_paused(tenant).await?,
    })
}

/// Every tenant's campaign (staff): the tenants with something to renew, in flight or paused
/// first in the list's order (by name).
pub async fn staff_views(store: &Store, now: DateTime<Utc>) -> Result<Vec<TenantCampaign>, StoreError> {
    let mut out = Vec::new();
    for t in store.tenants().staff_list().await? {
        let view = tenant_view(store, t.id, now).await?;
        let p = &view.progress;
        if view.paused || p.backlog + p.in_flight + p.confirmed + p.failed + p.rolled_back > 0 {
            out.push(TenantCampaign { tenant_id: t.id, name: t.name.to_string(), view });
        }
    }
    Ok(out)
}

/// The gateway page's renewal section: the open renewal, the log, the gateway's mode.
#[derive(Debug, Clone)]
pub struct GatewayRenewals {
    pub open: Option<Renewal>,
    pub log: Vec<LogEntry>,
    pub mode: RenewalMode,
}

pub async fn for_gateway(
    store: &Store,
    tenant: TenantId,
    gateway: GatewayId,
) -> Result<GatewayRenewals, StoreError> {
    let open =
        store.renewals().for_gateway(tenant, gateway, 1).await?.into_iter().find(|r| !r.state.is_final());
    Ok(GatewayRenewals {
        open,
        log: store.renewals().log(tenant, gateway, LOG_LINES).await?,
        mode: store.renewals().mode(tenant, gateway).await?,
    })
}

#[derive(Debug, Deserialize)]
struct RenewForm {
    /// `server_key`, `csr`, or empty for the gateway's own mode.
    #[serde(default)]
    mode: String,
}

#[derive(Template)]
#[template(path = "certificates/refused.html")]
struct RefusedTemplate {
    ctx: PageCtx,
    gateway_id: i64,
    message: String,
}

/// "Renew now": one renewal of the gateway outside the daily budget.
async fn renew(
    State(state): State<AppState>,
    Admin(t): Admin,
    Path(id): Path<i64>,
    ctx: PageCtx,
    Form(form): Form<RenewForm>,
) -> WebResult<Response> {
    let g = state.store().gateways().get(t.tenant_id(), GatewayId::new(id)).await?;
    let mode = match form.mode.trim() {
        "" => None,
        m => Some(
            RenewalMode::parse(m)
                .ok_or_else(|| WebError::BadRequest("mode must be server_key or csr".into()))?,
        ),
    };
    let renewal = match state.pki().renew(state.store(), &g, mode, Some(t.me.user.id)).await {
        Ok(r) => r,
        Err(e @ (CertError::Decommissioned(_) | CertError::Store(StoreError::Conflict(_)))) => {
            // The store's conflict says why in English; the page says it in the visitor's language.
            let open = for_gateway(state.store(), t.tenant_id(), g.id).await?.open;
            let message = match (&e, open) {
                (CertError::Decommissioned(_), _) => ctx.lang.t("certs.decommissioned"),
                (_, Some(r)) => {
                    ctx.lang.tf("renewal.in_progress", &[("state", &ctx.label("renewal_state", r.state))])
                }
                (_, None) => ctx.lang.t("renewal.no_certificate"),
            };
            let ctx = ctx.section("devices", "certs.title");
            return render_status(StatusCode::CONFLICT, &RefusedTemplate { ctx, gateway_id: id, message });
        }
        Err(CertError::Store(s)) => return Err(s.into()),
        Err(e) => return Err(WebError::Internal(e.to_string())),
    };
    audit(
        &state,
        &t.me,
        Some(&t),
        "cert.renew",
        ("gateway", Some(g.mac.to_string())),
        json!({"renewal": renewal.id.get(), "mode": renewal.mode.as_str()}),
    )
    .await?;
    Ok(Redirect::to(&format!("/gateways/{id}?done=renewal_started")).into_response())
}

#[derive(Debug, Deserialize)]
struct CampaignForm {
    #[serde(default)]
    action: String,
}

fn pause_of(form: &CampaignForm) -> WebResult<bool> {
    match form.action.as_str() {
        "pause" => Ok(true),
        "resume" => Ok(false),
        _ => Err(WebError::BadRequest("action must be pause or resume".into())),
    }
}

const fn audit_action(pause: bool) -> &'static str {
    if pause { "cert.campaign_paused" } else { "cert.campaign_resumed" }
}

const fn notice(pause: bool) -> &'static str {
    if pause { "campaign_paused" } else { "campaign_resumed" }
}

/// A tenant's admin pauses or resumes the tenant's campaign.
async fn tenant_campaign(
    State(state): State<AppState>,
    Admin(t): Admin,
    Form(form): Form<CampaignForm>,
) -> WebResult<Response> {
    let pause = pause_of(&form)?;
    if state.store().renewals().set_paused(t.tenant_id(), pause, Some(t.me.user.id)).await? {
        audit(
            &state,
            &t.me,
            Some(&t),
            audit_action(pause),
            ("tenant", Some(t.tenant_id().to_string())),
            json!({}),
        )
        .await?;
    }
    Ok(Redirect::to(&format!("/certificates?done={}", notice(pause))).into_response())
}

/// Staff pause or resume any tenant's campaign.
async fn staff_campaign(
    State(state): State<AppState>,
    Staff(me): Staff,
    Path(id): Path<i64>,
    Form(form): Form<CampaignForm>,
) -> WebResult<Response> {
    let tenant = state.store().tenants().get(TenantId::new(id)).await?;
    let pause = pause_of(&form)?;
    if state.store().renewals().set_paused(tenant.id, pause, Some(me.user.id)).await? {
        // Recorded in the tenant's audit log too: its admins see who paused their campaign.
        state
            .store()
            .audit()
            .record(&NewAuditEntry {
                tenant_id: Some(tenant.id),
                user_id: Some(me.user.id),
                actor: me.user.email.to_string(),
                action: audit_action(pause).to_owned(),
                object_kind: "tenant".into(),
                object_id: Some(tenant.id.to_string()),
                detail: json!({"by": "staff"}).to_string(),
                ip: Some(me.ip.clone()),
            })
            .await?;
    }
    Ok(Redirect::to(&format!("/staff/certificates?done={}", notice(pause))).into_response())
}
