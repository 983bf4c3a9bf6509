//! Certificates through the API: the tenant's list, and for one gateway: issue (the ZIP bundle
//! with its private key, shown once), sign a CSR, revoke, renew over the air. Admins only, like the pages; the same
//! operations as the pages ([`crate::certs::Pki`]), audited as the token.

use super::auth::{ApiAdmin, ApiViewer};
use super::body::{ApiPath, ApiQuery, JsonObject, OptionalJson, cursor, decode, limit, position};
use super::error::{ApiError, ApiResult};
use super::gateways::find as find_gateway;
use super::responses::{ReadErrors, WriteErrors};
use crate::AppState;
use crate::certs::CertError;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tds_domain::CertificateId;
use tds_domain::renewal::RenewalMode;
use tds_pki::{DeviceKeyKind, RevocationReason};
use tds_store::StoreError;
use tds_store::certificates::{Certificate, CertificateFilter, CertificateStatus};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Serialize, ToSchema)]
pub struct CertificateOut {
    pub id: i64,
    /// The gateway's MAC (the certificate's CN).
    pub gateway: String,
    /// Hexadecimal, lower case.
    pub serial: String,
    pub fingerprint_sha256: String,
    pub key_algorithm: String,
    /// `active`, `superseded`, `revoked` or `expired`.
    pub status: String,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revocation_reason: Option<String>,
    /// When the gateway first connected with it (`null`: never used).
    pub first_used_at: Option<DateTime<Utc>>,
    /// Where it stands in an over-the-air renewal: `issued` (the successor offered to the
    /// gateway), `confirmed` (the gateway connected with it), `superseded` (the one a renewal
    /// replaced), `rolled_back` or `failed` (a successor revoked); `null` if never renewed.
    pub renewal_state: Option<String>,
}

impl From<&Certificate> for CertificateOut {
    fn from(c: &Certificate) -> Self {
        Self {
            id: c.id.get(),
            gateway: c.mac.clone(),
            serial: c.serial.clone(),
            fingerprint_sha256: c.fingerprint_sha256.clone(),
            key_algorithm: c.key_algorithm.clone(),
            status: c.status.as_str().to_owned(),
            issued_at: c.issued_at,
            expires_at: c.expires_at,
            revoked_at: c.revoked_at,
            revocation_reason: c.revocation_reason.clone(),
            first_used_at: c.first_used_at,
            renewal_state: c.renewal_state.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CertificatePage {
    pub items: Vec<CertificateOut>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CertificateParams {
    /// `active`, `superseded`, `revoked` or `expired`.
    pub status: Option<String>,
    /// Only those expiring before this instant (RFC 3339).
    pub expires_before: Option<DateTime<Utc>>,
    /// Only those no gateway ever connected with.
    pub never_used: Option<bool>,
    /// Items per page, 1 to 1000 (100).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Options of an issue.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueIn {
    /// `rsa2048` (default) or `ecdsa-p256`.
    #[serde(default)]
    pub key: Option<String>,
    /// Supersede the gateway's active certificate (otherwise having one is a conflict).
    #[serde(default)]
    pub replace: bool,
}

/// A CSR to sign: PEM, CN = the gateway's MAC.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CsrIn {
    pub csr: String,
    #[serde(default)]
    pub replace: bool,
}

/// The signed certificate.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignedOut {
    pub serial: String,
    pub expires_at: DateTime<Utc>,
    /// The certificate, PEM.
    pub certificate_pem: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeIn {
    /// RFC 5280 reason: `unspecified`, `key_compromise`, `affiliation_changed`, `superseded`,
    /// `cessation_of_operation`.
    pub reason: String,
    pub notes: Option<String>,
}

/// The tenant's certificates, oldest first.
#[utoipa::path(get, path = "/api/v1/certificates", operation_id = "list_certificates", tag = "certificates", params(CertificateParams),
    responses((status = 200, description = "A page of certificates", body = CertificatePage), ReadErrors))]
pub async fn list(
    State(state): State<AppState>,
    ApiViewer(ctx): ApiViewer,
    ApiQuery(q): ApiQuery<CertificateParams>,
) -> ApiResult<Json<CertificatePage>> {
    let limit = limit(q.limit)?;
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => {
            Some(CertificateStatus::ALL.iter().copied().find(|c| c.as_str() == s).ok_or_else(|| {
                ApiError::bad_param("status", "status must be active, superseded, revoked or expired")
            })?)
        }
    };
    let after = match position("certificates", q.cursor.as_deref())? {
        None => None,
        Some(p) => {
            Some(CertificateId::new(p.parse().map_err(|_| ApiError::bad_param("cursor", "bad cursor"))?))
        }
    };
    let filter = CertificateFilter {
        status,
        search: None,
        expires_before: q.expires_before,
        never_used: q.never_used.unwrap_or(false),
    };
    let found = state.store().certificates().page_by_id(ctx.tenant_id(), &filter, after, limit + 1).await?;
    let more = found.len() as i64 > limit;
    let items: Vec<CertificateOut> = found.iter().take(limit as usize).map(CertificateOut::from).collect();
    let next_cursor = more.then(|| items.last().map(|c| cursor("certificates", &c.id.to_string()))).flatten();
    Ok(Json(CertificatePage { items, next_cursor }))
}

fn cert_error(e: CertError) -> ApiError {
    match e {
        CertError::Store(s) => s.into(),
        CertError::HasActive(_) | CertError::Decommissioned(_) => {
            ApiError::Conflict { message: e.to_string(), field: None }
        }
        CertError::Pki(p) => ApiError::invalid("csr", p.to_string()),
        CertError::Task(t) => ApiError::Internal(t),
    }
}

/// Issues a key and certificate for the gateway: the answer is the ZIP bundle (CA, certificate,
/// private key, README), which TDS does not keep.
#[utoipa::path(post, path = "/api/v1/gateways/{mac}/certificate", operation_id = "issue_certificate", tag = "certificates",
    request_body(content = Option<IssueIn>, description = "Options; may be empty"),
    params(("mac" = String, Path, description = "The gateway's MAC", pattern = "^[0-9a-fA-F]{2}([:-]?[0-9a-fA-F]{2}){5}$")),
    responses((status = 201, content_type = "application/zip", body = Vec<u8>,
        description = "The bundle `{mac}.zip`"), WriteErrors))]
pub async fn issue(
    State(state): State<AppState>,
    ApiAdmin(ctx): ApiAdmin,
    ApiPath(mac): ApiPath<String>,
    OptionalJson(body): OptionalJson,
) -> ApiResult<Response> {
    let g = find_gateway(&state, &ctx, &mac).await?;
    let options: IssueIn = decode(body)?;
    let kind: DeviceKeyKind = match options.key.as_deref() {
        None | Some("") => DeviceKeyKind::default(),
        Some(k) => k.parse().map_err(|_| ApiError::invalid("key", "key must be rsa2048 or ecdsa-p256"))?,
    };
    let bundle = state.pki().issue(state.store(), &g, kind, options.replace).await.map_err(cert_error)?;
    ctx.audit(
        &state,
        "cert.issue",
        ("certificate", Some(bundle.certificate.serial_hex.clone())),
        json!({"mac": g.mac.to_string(), "key": kind.as_str(), "replace": options.replace}),
    )
    .await?;
    let mut response = (StatusCode::CREATED, bundle.zip).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/zip"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", bundle.file_name)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// Signs a CSR made on the gateway (its key never leaves it).
#[utoipa::path(post, path = "/api/v1/gateways/{mac}/certificate/csr", operation_id = "sign_csr", tag = "certificates",
    request_body = CsrIn, params(("mac" = String, Path, description = "The gateway's MAC", pattern = "^[0-9a-fA-F]{2}([:-]?[0-9a-fA-F]{2}){5}$")),
    responses((status = 201, description = "The signed certificate", body = SignedOut), WriteErrors))]
pub async fn sign_csr(
    State(state): State<AppState>,
    ApiAdmin(ctx): ApiAdmin,
    ApiPath(mac): ApiPath<String>,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<SignedOut>)> {
    let g = find_gateway(&state, &ctx, &mac).await?;
    let input: CsrIn = decode(body)?;
    let issued =
        state.pki().sign_csr(state.store(), &g, &input.csr, input.replace).await.map_err(cert_error)?;
    ctx.audit(
        &state,
        "cert.sign_csr",
        ("certificate", Some(issued.serial_hex.clone())),
        json!({"mac": g.mac.to_string(), "replace": input.replace}),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(SignedOut {
            serial: issued.serial_hex,
            expires_at: issued.not_after,
            certificate_pem: issued.cert_pem,
        }),
    ))
}

/// Revokes the gateway's active certificate and re-issues the CRL at once.
#[utoipa::path(post, path = "/api/v1/gateways/{mac}/certificate/revoke", operation_id = "revoke_certificate", tag = "certificates",
    request_body = RevokeIn, params(("mac" = String, Path, description = "The gateway's MAC", pattern = "^[0-9a-fA-F]{2}([:-]?[0-9a-fA-F]{2}){5}$")),
    responses((status = 200, description = "The revoked certificate", body = CertificateOut), WriteErrors))]
pub async fn revoke(
    State(state): State<AppState>,
    ApiAdmin(ctx): ApiAdmin,
    ApiPath(mac): ApiPath<String>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<CertificateOut>> {
    let g = find_gateway(&state, &ctx, &mac).await?;
    let input: RevokeIn = decode(body)?;
    let reason = RevocationReason::parse_for_device(&input.reason)
        .map_err(|e| ApiError::invalid("reason", e.to_string()))?;
    let notes =
        input.notes.map(|n| n.trim().chars().take(1000).collect::<String>()).filter(|n| !n.is_empty());
    let active = state
        .store()
        .certificates()
        .for_gateway(ctx.tenant_id(), g.id)
        .await?
        .into_iter()
        .find(|c| c.status == CertificateStatus::Active)
        .ok_or_else(|| ApiError::Conflict {
            message: "the gateway has no active certificate".into(),
            field: None,
        })?;
    let (revoked, crl) = state
        .pki()
        .revoke(state.store(), ctx.tenant_id(), active.id, reason, notes.as_deref())
        .await
        .map_err(cert_error)?;
    ctx.audit(
        &state,
        "cert.revoke",
        ("certificate", Some(revoked.serial.clone())),
        json!({"mac": revoked.mac, "reason": reason.as_str(), "notes": notes, "crl_number": crl.number}),
    )
    .await?;
    Ok(Json(CertificateOut::from(&revoked)))
}

/// Options of a renewal.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewIn {
    /// `true`: CSR mode (the gateway makes its key and sends a CSR on `cert_csr`); `false`:
    /// server-key mode; absent: the gateway's own mode.
    #[serde(default)]
    pub csr: Option<bool>,
}

/// A renewal started.
#[derive(Debug, Serialize, ToSchema)]
pub struct RenewalOut {
    pub id: i64,
    /// The gateway's MAC.
    pub gateway: String,
    /// `server_key` or `csr`.
    pub mode: String,
    /// `offered` (waiting for the gateway's CSR) or `issued` (the new certificate offered).
    pub state: String,
    pub started_at: DateTime<Utc>,
    /// The new certificate's serial once issued (server-key mode at once).
    pub new_certificate_serial: Option<String>,
}

/// Starts a renewal of the gateway's certificate now, outside the campaign's daily budget: the
/// offer waits retained on the gateway's `cert_update` topic until it connects with the new
/// certificate. 409 when a renewal is already in progress or there is no active certificate.
#[utoipa::path(post, path = "/api/v1/gateways/{mac}/certificate/renew", operation_id = "renew_certificate", tag = "certificates",
    request_body(content = Option<RenewIn>, description = "Options; may be empty"),
    params(("mac" = String, Path, description = "The gateway's MAC", pattern = "^[0-9a-fA-F]{2}([:-]?[0-9a-fA-F]{2}){5}$")),
    responses((status = 202, description = "The renewal, started", body = RenewalOut), WriteErrors))]
pub async fn renew(
    State(state): State<AppState>,
    ApiAdmin(ctx): ApiAdmin,
    ApiPath(mac): ApiPath<String>,
    OptionalJson(body): OptionalJson,
) -> ApiResult<(StatusCode, Json<RenewalOut>)> {
    let g = find_gateway(&state, &ctx, &mac).await?;
    let options: RenewIn = decode(body)?;
    let mode = options.csr.map(|csr| if csr { RenewalMode::Csr } else { RenewalMode::ServerKey });
    let renewal = match state.pki().renew(state.store(), &g, mode, ctx.user_id()).await {
        Ok(r) => r,
        Err(CertError::Store(StoreError::Conflict(message))) => {
            return Err(ApiError::Conflict { message, field: None });
        }
        Err(e) => return Err(cert_error(e)),
    };
    let new_certificate_serial = match renewal.new_certificate_id {
        Some(id) => Some(state.store().certificates().get(ctx.tenant_id(), id).await?.serial),
        None => None,
    };
    ctx.audit(
        &state,
        "cert.renew",
        ("gateway", Some(g.mac.to_string())),
        json!({"renewal": renewal.id.get(), "mode": renewal.mode.as_str()}),
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(RenewalOut {
            id: renewal.id.get(),
            gateway: g.mac.to_string(),
            mode: renewal.mode.as_str().to_owned(),
            state: renewal.state.as_str().to_owned(),
            started_at: renewal.started_at,
            new_certificate_serial,
        }),
    ))
}
