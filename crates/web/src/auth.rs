//! Who is asking, for which tenant, with which role. Handlers state what they need by the
//! extractor they take:
//!
//! - [`CurrentUser`]: logged in (else redirected to the login page);
//! - [`TenantCtx`]: logged in, with a chosen tenant the user is still a member of, whose licence
//!   is valid (else the tenant picker or the licence page); the role is read from the database
//!   on every request, so a demotion takes effect at once;
//! - [`Viewer`], [`Editor`], [`Admin`]: a [`TenantCtx`] whose role is at least that (else 403);
//! - [`Staff`]: a logged-in user with the staff flag (else 404, so the console is not advertised).
//!
//! The tenant id a handler uses always comes from here, never from the URL or the form.

use crate::error::WebError;
use crate::i18n::{LANG_COOKIE, Lang};
use crate::{AppState, session};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum_extra::extract::CookieJar;
use chrono::Utc;
use chrono_tz::Tz;
use std::net::SocketAddr;
use tds_domain::{LicenceState, Role, TenantId};
use tds_store::sessions::Session;
use tds_store::tenants::Tenant;
use tds_store::users::User;

/// The client's address as TDS logs it and throttles logins by: the TCP peer, or, when the peer
/// is a trusted reverse proxy, the client it forwards for ([`crate::proxy::client_addr`]).
#[derive(Debug, Clone)]
pub struct ClientIp(pub String);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Self(client_ip(parts, state)))
    }
}

fn client_ip(parts: &Parts, state: &AppState) -> String {
    let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() else {
        return "unknown".to_owned();
    };
    let forwarded = parts.headers.get_all("x-forwarded-for").into_iter().filter_map(|v| v.to_str().ok());
    crate::proxy::client_addr(peer.ip(), forwarded, &state.config().trusted_proxies).to_string()
}

/// The language for a request: the user's setting, else the language cookie, else
/// `Accept-Language`, else Brazilian Portuguese.
pub fn request_lang(headers: &HeaderMap, user: Option<&User>) -> Lang {
    user.and_then(|u| Lang::parse(&u.language))
        .or_else(|| CookieJar::from_headers(headers).get(LANG_COOKIE).and_then(|c| Lang::parse(c.value())))
        .or_else(|| Lang::from_accept_language(headers))
        .unwrap_or_default()
}

#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub user: User,
    pub session: Session,
    pub lang: Lang,
    pub ip: String,
}

impl CurrentUser {
    pub fn csrf(&self) -> &str {
        &self.session.csrf_token
    }
}

/// The session, if the request carries a valid one (for pages that work both ways).
#[derive(Debug, Clone)]
pub struct MaybeUser(pub Option<CurrentUser>);

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(found) = parts.extensions.get::<CurrentUser>() {
            return Ok(Self(Some(found.clone())));
        }
        let jar = CookieJar::from_headers(&parts.headers);
        let Some(token) = session::token_from(state, &jar) else { return Ok(Self(None)) };
        let hash = session::token_hash(&token);
        let now = Utc::now();
        let sessions = state.store().sessions();
        let session = match sessions.get(&hash, now).await {
            Ok(s) => s,
            Err(tds_store::StoreError::NotFound) => return Ok(Self(None)),
            Err(e) => return Err(e.into()),
        };
        let user = match state.store().users().get(session.user_id).await {
            Ok(u) if u.active => u,
            Ok(_) | Err(tds_store::StoreError::NotFound) => return Ok(Self(None)),
            Err(e) => return Err(e.into()),
        };
        // Sliding expiry, written at most once a minute per session to spare the database.
        if now - session.last_seen_at > chrono::Duration::minutes(1) {
            sessions.touch(&hash, now, session::expiry(state, session.created_at, now)).await?;
        }
        let current = CurrentUser {
            lang: request_lang(&parts.headers, Some(&user)),
            user,
            session,
            ip: client_ip(parts, state),
        };
        parts.extensions.insert(current.clone());
        Ok(Self(Some(current)))
    }
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match MaybeUser::from_request_parts(parts, state).await?.0 {
            Some(user) => Ok(user),
            None => Err(WebError::Login { next: login_return_path(parts) }),
        }
    }
}

/// Where to come back after logging in: the page asked for, when it was a page (GET).
fn login_return_path(parts: &Parts) -> String {
    let is_page = parts.method == axum::http::Method::GET
        && !parts.headers.contains_key("hx-request")
        && parts
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|a| a.contains("html") || a == "*/*");
    if is_page {
        parts.uri.path_and_query().map_or_else(|| "/".to_owned(), ToString::to_string)
    } else {
        "/".to_owned()
    }
}

/// A logged-in user acting in one tenant.
#[derive(Debug, Clone)]
pub struct TenantCtx {
    pub me: CurrentUser,
    pub tenant: Tenant,
    pub role: Role,
}

impl TenantCtx {
    pub fn tenant_id(&self) -> TenantId {
        self.tenant.id
    }

    pub fn zone(&self) -> Tz {
        self.tenant.timezone.tz()
    }

    pub fn lang(&self) -> Lang {
        self.me.lang
    }

    pub fn can(&self, required: Role) -> bool {
        self.role.allows(required)
    }
}

impl FromRequestParts<AppState> for TenantCtx {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(found) = parts.extensions.get::<TenantCtx>() {
            return Ok(found.clone());
        }
        let me = CurrentUser::from_request_parts(parts, state).await?;
        let Some(tenant_id) = me.session.tenant_id else { return Err(WebError::PickTenant) };
        let Some(role) = state.store().memberships().role(tenant_id, me.user.id).await? else {
            // Removed from the tenant since choosing it.
            state.store().sessions().set_tenant(&me.session.token_hash, None).await?;
            return Err(WebError::PickTenant);
        };
        let tenant = state.store().tenants().get(tenant_id).await?;
        let today = Utc::now().with_timezone(&tenant.timezone.tz()).date_naive();
        if tenant.licence().state_on(today) != LicenceState::Valid {
            return Err(WebError::Licence);
        }
        let ctx = Self { me, tenant, role };
        parts.extensions.insert(ctx.clone());
        Ok(ctx)
    }
}

macro_rules! role_extractor {
    ($(#[$doc:meta])* $name:ident, $role:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(pub TenantCtx);

        impl FromRequestParts<AppState> for $name {
            type Rejection = WebError;

            async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
                let ctx = TenantCtx::from_request_parts(parts, state).await?;
                if ctx.can($role) { Ok(Self(ctx)) } else { Err(WebError::Forbidden) }
            }
        }
    };
}

role_extractor!(
    /// Any member: reads everything of the tenant.
    Viewer,
    Role::Viewer
);
role_extractor!(
    /// Creates and edits gateways and devices.
    Editor,
    Role::Editor
);
role_extractor!(
    /// Manages users, settings and the tenant's certificates.
    Admin,
    Role::Admin
);

/// Platform staff.
#[derive(Debug, Clone)]
pub struct Staff(pub CurrentUser);

impl FromRequestParts<AppState> for Staff {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let me = CurrentUser::from_request_parts(parts, state).await?;
        if me.user.is_staff { Ok(Self(me)) } else { Err(WebError::NotFound) }
    }
}
