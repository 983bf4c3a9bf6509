//! Who calls the API, for which tenant, with which role (SPEC §7). A request authenticates with
//! `Authorization: Bearer tds_…` (an API token: its tenant and role) or, for the web application's
//! own scripts, with its session (the session's tenant and the member's role; a write must then
//! carry the `X-CSRF-Token` header and come from this origin, as the pages' forms do).
//!
//! Handlers take [`ApiViewer`], [`ApiEditor`] or [`ApiAdmin`]: the tenant a handler works in
//! always comes from here, never from the URL or the body, and every request is counted against
//! its token's rate limit before any work.

use super::error::ApiError;
use crate::AppState;
use crate::auth::{ClientIp, MaybeUser};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, header};
use chrono::{Duration, Utc};
use serde_json::Value;
use tds_domain::{LicenceState, Role, TenantId};
use tds_store::api_tokens::ApiToken;
use tds_store::audit::NewAuditEntry;
use tds_store::tenants::Tenant;

/// How often a token's "last used" time is written at most (it is shown to the day).
const LAST_USED_EVERY: Duration = Duration::minutes(1);

/// Who acts.
#[derive(Debug, Clone)]
pub enum Actor {
    /// An API token (its hash identifies it again when a long stream re-checks it).
    Token { token: ApiToken, hash: String },
    /// A logged-in member of the tenant.
    Session(Box<crate::auth::CurrentUser>),
}

/// An authenticated API request in one tenant.
#[derive(Debug, Clone)]
pub struct ApiCtx {
    pub tenant: Tenant,
    pub role: Role,
    pub actor: Actor,
    pub ip: String,
}

impl ApiCtx {
    pub fn tenant_id(&self) -> TenantId {
        self.tenant.id
    }

    /// How the audit log names the actor: `token NAME` or the user's email.
    pub fn actor_name(&self) -> String {
        match &self.actor {
            Actor::Token { token, .. } => format!("token {}", token.name),
            Actor::Session(me) => me.user.email.to_string(),
        }
    }

    /// Records a write in the audit log, as the token or the user.
    pub async fn audit(
        &self,
        state: &AppState,
        action: &str,
        object: (&str, Option<String>),
        detail: Value,
    ) -> Result<(), ApiError> {
        let (user_id, via) = match &self.actor {
            Actor::Token { token, .. } => (None, Value::from(token.id.get())),
            Actor::Session(me) => (Some(me.user.id), Value::Null),
        };
        let mut detail = detail;
        if let Value::Object(map) = &mut detail
            && !via.is_null()
        {
            map.insert("api_token_id".to_owned(), via);
        }
        state
            .store()
            .audit()
            .record(&NewAuditEntry {
                tenant_id: Some(self.tenant.id),
                user_id,
                actor: self.actor_name(),
                action: action.to_owned(),
                object_kind: object.0.to_owned(),
                object_id: object.1,
                detail: detail.to_string(),
                ip: Some(self.ip.clone()),
            })
            .await?;
        Ok(())
    }

    /// The user who acts, when it is one (for records that name their creator).
    pub fn user_id(&self) -> Option<tds_domain::UserId> {
        match &self.actor {
            Actor::Token { .. } => None,
            Actor::Session(me) => Some(me.user.id),
        }
    }
}

impl FromRequestParts<AppState> for ApiCtx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(found) = parts.extensions.get::<ApiCtx>() {
            return Ok(found.clone());
        }
        let ip = ClientIp::from_request_parts(parts, state).await.map_or_else(|e| match e {}, |c| c.0);
        let (ctx, key) = match parts.headers.get(header::AUTHORIZATION) {
            Some(value) => by_token(state, value.to_str().unwrap_or_default(), ip).await?,
            None => by_session(parts, state, ip).await?,
        };
        state.api_limiter().check(&key).map_err(|retry_after_s| ApiError::RateLimited { retry_after_s })?;
        parts.extensions.insert(ctx.clone());
        Ok(ctx)
    }
}

async fn by_token(state: &AppState, header: &str, ip: String) -> Result<(ApiCtx, String), ApiError> {
    let secret = header
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|s| s.starts_with(crate::api_token::SCHEME))
        .ok_or(ApiError::Unauthorized("expected `Authorization: Bearer tds_…`"))?;
    if secret.starts_with(crate::api_token::STAFF_SCHEME) {
        return Err(ApiError::Forbidden("a staff token works on /api/v1/staff only"));
    }
    let hash = crate::api_token::hash(secret);
    let now = Utc::now();
    let token = match state.store().api_tokens().authenticate(&hash, now).await {
        Ok(t) => t,
        Err(tds_store::StoreError::NotFound) => {
            return Err(ApiError::Unauthorized("unknown, revoked or expired token"));
        }
        Err(e) => return Err(e.into()),
    };
    let tenant = live_tenant(state, token.tenant_id).await?;
    if token.last_used_at.is_none_or(|t| now - t > LAST_USED_EVERY) {
        state.store().api_tokens().mark_used(token.id, now).await?;
    }
    let key = format!("token:{}", token.id.get());
    Ok((ApiCtx { tenant, role: token.role, actor: Actor::Token { token, hash }, ip }, key))
}

async fn by_session(parts: &mut Parts, state: &AppState, ip: String) -> Result<(ApiCtx, String), ApiError> {
    let Some(me) = MaybeUser::from_request_parts(parts, state).await?.0 else {
        return Err(ApiError::Unauthorized("no token and no session"));
    };
    if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        crate::csrf::check_origin(state, &parts.headers)?;
        let sent = parts.headers.get(crate::csrf::HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
        if !crate::csrf::constant_time_eq(sent.as_bytes(), me.session.csrf_token.as_bytes()) {
            return Err(ApiError::Csrf("X-CSRF-Token missing or wrong"));
        }
    }
    let tenant_id =
        me.session.tenant_id.ok_or(ApiError::Forbidden("choose a tenant in the web application first"))?;
    let role = state
        .store()
        .memberships()
        .role(tenant_id, me.user.id)
        .await?
        .ok_or(ApiError::Forbidden("no longer a member of the session's tenant"))?;
    let tenant = live_tenant(state, tenant_id).await?;
    let key = format!("user:{}", me.user.id.get());
    Ok((ApiCtx { tenant, role, actor: Actor::Session(Box::new(me)), ip }, key))
}

/// The tenant, when it is active and licensed today (its zone's today).
async fn live_tenant(state: &AppState, id: TenantId) -> Result<Tenant, ApiError> {
    let tenant = state.store().tenants().get(id).await?;
    let today = Utc::now().with_timezone(&tenant.timezone.tz()).date_naive();
    if tenant.licence().state_on(today) != LicenceState::Valid {
        return Err(ApiError::Licence);
    }
    Ok(tenant)
}

macro_rules! api_role {
    ($(#[$doc:meta])* $name:ident, $role:expr, $label:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(pub ApiCtx);

        impl FromRequestParts<AppState> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
                let ctx = ApiCtx::from_request_parts(parts, state).await?;
                if ctx.role.allows($role) {
                    Ok(Self(ctx))
                } else {
                    Err(ApiError::Forbidden(concat!("needs the ", $label, " role")))
                }
            }
        }
    };
}

api_role!(
    /// Any token or member of the tenant: reads.
    ApiViewer,
    Role::Viewer,
    "viewer"
);
api_role!(
    /// Creates and changes gateways and devices, imports, replays dead letters.
    ApiEditor,
    Role::Editor,
    "editor"
);
api_role!(
    /// Certificates.
    ApiAdmin,
    Role::Admin,
    "admin"
);
