//! Server-side sessions. The browser holds only a random 256-bit token in an `HttpOnly`,
//! SameSite=Lax cookie (`__Host-` prefixed and `Secure` when TDS is served over https); the
//! database holds its SHA-256, the user, the chosen tenant and the session's CSRF token. A new
//! token is issued at every login (so a token planted before login is worthless), logout deletes
//! the row, and "log out everywhere" deletes all the user's rows.
//!
//! We keep our own table instead of tower-sessions' opaque records because the rows must be
//! found by user (log out everywhere, password change) and carry the tenant as a column.

use crate::AppState;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use tds_domain::UserId;
use tds_store::StoreError;
use tds_store::sessions::{NewSession, Session};

/// Cookie name over plain http (development, tests on loopback).
const PLAIN_NAME: &str = "tds_session";
/// Cookie name over https: the `__Host-` prefix makes browsers refuse it unless it is Secure,
/// host-only and for path `/`, so a sibling subdomain cannot plant or read it.
const SECURE_NAME: &str = "__Host-tds_session";

pub fn cookie_name(state: &AppState) -> &'static str {
    if state.config().secure_cookies { SECURE_NAME } else { PLAIN_NAME }
}

/// A fresh random token, hex encoded.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// What the database keeps instead of the token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The session's token from the request's cookies, if any.
pub fn token_from(state: &AppState, jar: &CookieJar) -> Option<String> {
    jar.get(cookie_name(state)).map(|c| c.value().to_owned()).filter(|t| t.len() == 64)
}

/// Starts a session for `user` and returns the cookie to set.
pub async fn open(
    state: &AppState,
    user: UserId,
    ip: &str,
    user_agent: Option<&str>,
) -> Result<(Session, Cookie<'static>), StoreError> {
    let token = new_token();
    let now = Utc::now();
    let session = state
        .store()
        .sessions()
        .create(&NewSession {
            token_hash: token_hash(&token),
            user_id: user,
            tenant_id: None,
            csrf_token: new_token(),
            ip: Some(ip.to_owned()),
            user_agent: user_agent.map(|ua| ua.chars().take(300).collect()),
            expires_at: expiry(state, now, now),
        })
        .await?;
    Ok((session, session_cookie(state, token)))
}

/// When a session opened at `created` and used at `now` ends: after the idle time, but never
/// later than the absolute lifetime from its start (SPEC §11), however busy it is kept.
pub fn expiry(state: &AppState, created: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
    let idle = chrono::Duration::from_std(state.config().session_idle).unwrap_or(chrono::Duration::hours(12));
    let absolute =
        chrono::Duration::from_std(state.config().session_absolute).unwrap_or(chrono::Duration::days(7));
    (now + idle).min(created + absolute)
}

fn session_cookie(state: &AppState, token: String) -> Cookie<'static> {
    // No Max-Age: the cookie ends with the browser; the server-side expiry ends it anyway.
    Cookie::build((cookie_name(state), token))
        .path("/")
        .http_only(true)
        .secure(state.config().secure_cookies)
        .same_site(SameSite::Lax)
        .build()
}

/// A cookie that deletes the session cookie.
pub fn removal(state: &AppState) -> Cookie<'static> {
    let mut c = session_cookie(state, String::new());
    c.make_removal();
    c
}
