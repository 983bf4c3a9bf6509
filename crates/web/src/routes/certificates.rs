//! Certificates of the tenant's gateways (admins) and of the whole fleet (staff): status
//! (active, expiring within 2 years, expired, revoked, superseded), the expiry horizon by year,
//! search, certificates never used, revocation reasons, per-gateway history, the renewal
//! campaign's figures ([`crate::routes::renewals`]), and the actions: issue and download a
//! bundle (the private key is in it and nowhere else), sign an uploaded CSR, revoke with an
//! RFC 5280 reason.

use crate::AppState;
use crate::auth::{Admin, Staff};
use crate::certs::CertError;
use crate::error::{WebError, WebResult};
use crate::forms::optional;
use crate::page::PageCtx;
use crate::routes::renewals::{self, CampaignView, TenantCampaign};
use crate::routes::table::Routes;
use crate::routes::{audit, page_numbers, render, render_status};
use askama::Template;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Form, Multipart, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::json;
use tds_domain::{CertificateId, GatewayId, Mac};
use tds_pki::{DeviceKeyKind, RevocationReason};
use tds_store::Page;
use tds_store::certificates::{Certificate, CertificateFilter, CertificateStatus};

/// Certificates expiring within this are flagged "expiring" (SPEC §3: renew well ahead).
pub const EXPIRING_YEARS: i64 = 2;
const PAGE_SIZE: u32 = 50;

pub fn routes() -> Routes {
    Routes::new()
        .route("/certificates", get(list))
        .route("/certificates/{id}", get(show))
        .route("/certificates/{id}/revoke", post(revoke))
        .route("/gateways/{id}/certificate", post(issue))
        .route("/gateways/{id}/certificate/csr", post(sign_csr))
        .route("/staff/certificates", get(staff_list))
}

/// The status people see: the stored one, with time applied.
pub fn shown_status(c: &Certificate, now: DateTime<Utc>) -> &'static str {
    match c.status {
        CertificateStatus::Active if c.expires_at <= now => "expired",
        CertificateStatus::Active if c.expires_at <= now + Duration::days(365 * EXPIRING_YEARS) => "expiring",
        s => s.as_str(),
    }
}

/// Bootstrap's badge colour for a shown status.
pub fn badge_class(status: &str) -> &'static str {
    match status {
        "active" => "text-bg-success",
        "expiring" => "text-bg-warning",
        "expired" => "text-bg-danger",
        "revoked" => "text-bg-dark",
        _ => "text-bg-secondary",
    }
}

#[derive(Debug, Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    q: String,
    page: Option<u32>,
}

fn filter_for(q: &ListQuery, now: DateTime<Utc>) -> CertificateFilter {
    let mut f = CertificateFilter { search: optional(&q.q), ..CertificateFilter::default() };
    match q.status.as_str() {
        "active" => f.status = Some(CertificateStatus::Active),
        "expiring" => {
            f.status = Some(CertificateStatus::Active);
            f.expires_before = Some(now + Duration::days(365 * EXPIRING_YEARS));
        }
        "expired" => {
            f.status = Some(CertificateStatus::Active);
            f.expires_before = Some(now);
        }
        "revoked" => f.status = Some(CertificateStatus::Revoked),
        "superseded" => f.status = Some(CertificateStatus::Superseded),
        "never_used" => {
            f.status = Some(CertificateStatus::Active);
            f.never_used = true;
        }
        _ => {}
    }
    f
}

#[derive(Debug)]
pub struct Row {
    pub c: Certificate,
    pub status: &'static str,
}

#[derive(Template)]
#[template(path = "certificates/list.html")]
struct ListTemplate {
    ctx: PageCtx,
    rows: Vec<Row>,
    total: i64,
    horizon: Vec<(i32, i64)>,
    /// The horizon for the chart: `[[year, count], …]`.
    horizon_json: String,
    never_used: i64,
    revoked: i64,
    campaign: Option<CampaignView>,
    tenants: Vec<TenantCampaign>,
    status: String,
    q: String,
    page: u32,
    pages: u32,
    page_links: Vec<u32>,
    base: &'static str,
    staff: bool,
}

async fn list_page(
    state: &AppState,
    ctx: PageCtx,
    tenant: Option<tds_domain::TenantId>,
    q: ListQuery,
    base: &'static str,
) -> WebResult<Response> {
    let now = Utc::now();
    let filter = filter_for(&q, now);
    let page = Page::new(q.page.unwrap_or(1), PAGE_SIZE);
    let certs = state.store().certificates();
    let found = match tenant {
        Some(t) => certs.list(t, &filter, page).await?,
        None => certs.staff_list(&filter, page).await?,
    };
    let horizon = certs.expiry_by_year(tenant).await?;
    let horizon_json = serde_json::to_string(&horizon).map_err(|e| WebError::Internal(e.to_string()))?;
    let count = |f: CertificateFilter| async move {
        let one = Page::new(1, 1);
        match tenant {
            Some(t) => certs.list(t, &f, one).await.map(|p| p.total),
            None => certs.staff_list(&f, one).await.map(|p| p.total),
        }
    };
    let never_used = count(CertificateFilter {
        status: Some(CertificateStatus::Active),
        never_used: true,
        ..CertificateFilter::default()
    })
    .await?;
    let revoked =
        count(CertificateFilter { status: Some(CertificateStatus::Revoked), ..CertificateFilter::default() })
            .await?;
    let (campaign, tenants) = match tenant {
        Some(t) => (Some(renewals::tenant_view(state.store(), t, now).await?), Vec::new()),
        None => (
            Some(CampaignView {
                progress: renewals::progress(state.store(), None, now).await?,
                paused: false,
            }),
            renewals::staff_views(state.store(), now).await?,
        ),
    };
    let (pages, page_links) = page_numbers(page.number, found.total, PAGE_SIZE);
    let rows = found.items.into_iter().map(|c| Row { status: shown_status(&c, now), c }).collect();
    let staff = tenant.is_none();
    render(
        &ListTemplate {
            ctx,
            rows,
            total: found.total,
            horizon,
            horizon_json,
            never_used,
            revoked,
            campaign,
            tenants,
            status: q.status,
            q: q.q,
            page: page.number,
            pages,
            page_links,
            base,
            staff,
        },
        None,
    )
}

async fn list(
    State(state): State<AppState>,
    Admin(t): Admin,
    Query(q): Query<ListQuery>,
    ctx: PageCtx,
) -> WebResult<Response> {
    let ctx = ctx.section("certificates", "certs.title");
    list_page(&state, ctx, Some(t.tenant_id()), q, "/certificates").await
}

async fn staff_list(
    State(state): State<AppState>,
    Staff(_): Staff,
    Query(q): Query<ListQuery>,
    ctx: PageCtx,
) -> WebResult<Response> {
    let ctx = ctx.section("staff_certificates", "staff.certificates");
    list_page(&state, ctx, None, q, "/staff/certificates").await
}

#[derive(Template)]
#[template(path = "certificates/show.html")]
struct ShowTemplate {
    ctx: PageCtx,
    c: Certificate,
    status: &'static str,
    history: Vec<Row>,
    reasons: Vec<(&'static str, &'static str)>,
}

async fn show(
    State(state): State<AppState>,
    Admin(t): Admin,
    Path(id): Path<i64>,
    ctx: PageCtx,
) -> WebResult<Response> {
    let c = state.store().certificates().get(t.tenant_id(), CertificateId::new(id)).await?;
    let now = Utc::now();
    let history = match c.gateway_id {
        Some(g) => state.store().certificates().for_gateway(t.tenant_id(), g).await?,
        None => Vec::new(),
    };
    let history = history.into_iter().map(|c| Row { status: shown_status(&c, now), c }).collect();
    let ctx = ctx.section("certificates", "certs.title").titled(c.serial.clone());
    let reasons = RevocationReason::FOR_DEVICES.iter().map(|r| (r.as_str(), r.rfc_name())).collect();
    render(&ShowTemplate { ctx, status: shown_status(&c, now), c, history, reasons }, None)
}

#[derive(Debug, Deserialize)]
struct RevokeForm {
    // Defaulted so that the certificate is looked up (404 for another tenant's) before the
    // reason is judged.
    #[serde(default)]
    reason: String,
    #[serde(default)]
    notes: String,
}

async fn revoke(
    State(state): State<AppState>,
    Admin(t): Admin,
    Path(id): Path<i64>,
    Form(form): Form<RevokeForm>,
) -> WebResult<Response> {
    let id = CertificateId::new(id);
    state.store().certificates().get(t.tenant_id(), id).await?;
    let reason =
        RevocationReason::parse_for_device(&form.reason).map_err(|e| WebError::BadRequest(e.to_string()))?;
    let notes = optional(&form.notes).map(|n| n.chars().take(1000).collect::<String>());
    let (revoked, crl) = state
        .pki()
        .revoke(state.store(), t.tenant_id(), id, reason, notes.as_deref())
        .await
        .map_err(cert_error)?;
    audit(
        &state,
        &t.me,
        Some(&t),
        "cert.revoke",
        ("certificate", Some(revoked.serial.clone())),
        json!({"mac": revoked.mac, "reason": reason.as_str(), "notes": notes, "crl_number": crl.number}),
    )
    .await?;
    Ok(Redirect::to(&format!("/certificates/{id}?done=revoked")).into_response())
}

fn cert_error(e: CertError) -> WebError {
    match e {
        CertError::Store(s) => s.into(),
        CertError::Pki(p) => WebError::BadRequest(p.to_string()),
        other => WebError::BadRequest(other.to_string()),
    }
}

#[derive(Template)]
#[template(path = "certificates/refused.html")]
struct RefusedTemplate {
    ctx: PageCtx,
    gateway_id: i64,
    message: String,
}

fn refused(ctx: PageCtx, gateway_id: i64, e: &CertError) -> WebResult<Response> {
    let lang = ctx.lang;
    let message = match e {
        CertError::HasActive(_) => lang.t("certs.has_active"),
        CertError::Decommissioned(_) => lang.t("certs.decommissioned"),
        CertError::Pki(p) => lang.tf("certs.csr_refused", &[("detail", &p.to_string())]),
        _ => lang.t("error.internal"),
    };
    let ctx = ctx.section("devices", "certs.title");
    render_status(StatusCode::UNPROCESSABLE_ENTITY, &RefusedTemplate { ctx, gateway_id, message })
}

#[derive(Debug, Deserialize)]
struct IssueForm {
    #[serde(default)]
    key: String,
    #[serde(default)]
    replace: Option<String>,
}

/// Issues a certificate and answers with the bundle as a download.
async fn issue(
    State(state): State<AppState>,
    Admin(t): Admin,
    Path(id): Path<i64>,
    ctx: PageCtx,
    Form(form): Form<IssueForm>,
) -> WebResult<Response> {
    let g = state.store().gateways().get(t.tenant_id(), GatewayId::new(id)).await?;
    let kind: DeviceKeyKind = if form.key.is_empty() {
        DeviceKeyKind::default()
    } else {
        form.key.parse().map_err(|_| WebError::BadRequest("unknown key type".into()))?
    };
    let bundle = match state.pki().issue(state.store(), &g, kind, form.replace.is_some()).await {
        Ok(b) => b,
        Err(e @ (CertError::HasActive(_) | CertError::Decommissioned(_))) => return refused(ctx, id, &e),
        Err(e) => return Err(cert_error(e)),
    };
    audit(
        &state,
        &t.me,
        Some(&t),
        "cert.issue",
        ("certificate", Some(bundle.certificate.serial_hex.clone())),
        json!({"mac": g.mac.to_string(), "key": kind.as_str(), "replace": form.replace.is_some()}),
    )
    .await?;
    Ok(download(&bundle.file_name, "application/zip", bundle.zip))
}

fn download(name: &str, content_type: &'static str, body: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        body,
    )
        .into_response()
}

/// Signs a CSR uploaded as a file (or pasted) and answers with the certificate as a download.
async fn sign_csr(
    State(state): State<AppState>,
    Admin(t): Admin,
    Path(id): Path<i64>,
    ctx: PageCtx,
    multipart: Result<Multipart, MultipartRejection>,
) -> WebResult<Response> {
    // The gateway first: another tenant's id is 404 whatever the body.
    let g = state.store().gateways().get(t.tenant_id(), GatewayId::new(id)).await?;
    let mut multipart = multipart.map_err(|e| WebError::BadRequest(e.to_string()))?;
    let mut csr = String::new();
    let mut replace = false;
    while let Some(field) = multipart.next_field().await.map_err(|e| WebError::BadRequest(e.to_string()))? {
        match field.name() {
            Some("csr_file" | "csr") => {
                let text = field.text().await.map_err(|e| WebError::BadRequest(e.to_string()))?;
                if !text.trim().is_empty() {
                    csr = text;
                }
            }
            Some("replace") => replace = true,
            _ => {}
        }
    }
    let issued = match state.pki().sign_csr(state.store(), &g, &csr, replace).await {
        Ok(i) => i,
        Err(e @ (CertError::HasActive(_) | CertError::Decommissioned(_) | CertError::Pki(_))) => {
            return refused(ctx, id, &e);
        }
        Err(e) => return Err(cert_error(e)),
    };
    audit(
        &state,
        &t.me,
        Some(&t),
        "cert.sign_csr",
        ("certificate", Some(issued.serial_hex.clone())),
        json!({"mac": g.mac.to_string(), "replace": replace}),
    )
    .await?;
    let name = format!("{}.crt", g.mac.to_string().replace(':', "-"));
    Ok(download(&name, "application/x-pem-file", issued.cert_pem.into_bytes()))
}

/// Kept for callers that only have a MAC.
pub fn mac_of(c: &Certificate) -> Option<Mac> {
    Mac::parse(&c.mac).ok()
}
