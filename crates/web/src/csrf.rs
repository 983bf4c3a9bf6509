//! CSRF protection for every state-changing request (SPEC §11), in two independent checks:
//!
//! 1. **Origin**: the `Origin` header (or, when a browser omits it, the `Referer`) must name this
//!    server (the request's `Host`) or the configured public URL. A request with neither is
//!    refused: every browser we support sends one of them on a form POST.
//! 2. **Token**: the form's `_csrf` field (or an `X-CSRF-Token` header from htmx) must equal the
//!    session's token; before login (login, invitation, password reset forms) it must equal the
//!    `tds_csrf` cookie that the form page set (double submit).
//!
//! Bodies are buffered to read the field, then handed on unchanged; never more than the limit
//! for the kind of request (SPEC §11: checked before buffering, from `Content-Length` when it is
//! given): [`MAX_ANONYMOUS_BODY`] without a session (the login, invitation and reset forms are a
//! few hundred bytes), `max_upload_bytes` for a multipart upload, `max_form_bytes` for any other
//! form. A request that sends its token in the header is not buffered here at all; the routes'
//! own limits (and the router's default) bound what they read.

use crate::AppState;
use crate::auth::MaybeUser;
use crate::error::WebError;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};

/// Form field and header carrying the token.
pub const FIELD: &str = "_csrf";
pub const HEADER: &str = "x-csrf-token";
/// Cookie for the double-submit token of anonymous forms.
pub const ANON_COOKIE: &str = "tds_csrf";
/// Largest body read from a request without a session.
pub const MAX_ANONYMOUS_BODY: usize = 16 * 1024;

pub async fn protect(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(request).await;
    }
    match check(&state, request).await {
        Ok(request) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

async fn check(state: &AppState, request: Request) -> Result<Request, WebError> {
    check_origin(state, request.headers())?;
    let (mut parts, body) = request.into_parts();
    let user = MaybeUser::from_request_parts(&mut parts, state).await?.0;
    let expected = match &user {
        Some(u) => u.session.csrf_token.clone(),
        None => CookieJar::from_headers(&parts.headers)
            .get(ANON_COOKIE)
            .map(|c| c.value().to_owned())
            .filter(|v| v.len() >= 32)
            .ok_or(WebError::Csrf("no session and no CSRF cookie"))?,
    };
    let limit = body_limit(state, user.is_some(), &parts.headers);
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(WebError::PayloadTooLarge);
    }
    if let Some(sent) = parts.headers.get(HEADER).and_then(|v| v.to_str().ok()) {
        return if constant_time_eq(sent.as_bytes(), expected.as_bytes()) {
            Ok(Request::from_parts(parts, body))
        } else {
            Err(WebError::Csrf("token does not match"))
        };
    }
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| WebError::PayloadTooLarge)?;
    match token_in_body(&parts.headers, &bytes).await {
        Some(t) if constant_time_eq(t.as_bytes(), expected.as_bytes()) => {
            Ok(Request::from_parts(parts, Body::from(bytes)))
        }
        Some(_) => Err(WebError::Csrf("token does not match")),
        None => Err(WebError::Csrf("token missing")),
    }
}

/// The most this check reads of a body (see the module's documentation).
fn body_limit(state: &AppState, has_session: bool, headers: &HeaderMap) -> usize {
    let multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("multipart/form-data"));
    if !has_session {
        MAX_ANONYMOUS_BODY
    } else if multipart {
        state.config().max_upload_bytes
    } else {
        state.config().max_form_bytes
    }
}

pub(crate) fn check_origin(state: &AppState, headers: &HeaderMap) -> Result<(), WebError> {
    let claimed = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok())
        .ok_or(WebError::Csrf("neither Origin nor Referer"))?;
    let claimed = url::Url::parse(claimed).map_err(|_| WebError::Csrf("unparsable Origin"))?;
    let claimed_host = host_port(&claimed);
    let own_host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).map(str::to_ascii_lowercase);
    if own_host.as_deref() == Some(claimed_host.as_str())
        || claimed.origin() == state.config().public_url.origin()
    {
        Ok(())
    } else {
        Err(WebError::Csrf("cross-origin request"))
    }
}

fn host_port(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    }
}

async fn token_in_body(headers: &HeaderMap, bytes: &Bytes) -> Option<String> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if content_type.starts_with("application/x-www-form-urlencoded") {
        url::form_urlencoded::parse(bytes).find(|(k, _)| k == FIELD).map(|(_, v)| v.into_owned())
    } else if content_type.starts_with("multipart/form-data") {
        // multer directly, not axum's `Multipart` extractor: the extractor applies the router's
        // default body limit (2 MB) to a body this check already bounded by `max_upload_bytes`,
        // so a legitimate upload between the two would be refused as a forgery.
        let boundary = multer::parse_boundary(content_type).ok()?;
        let body = bytes.clone();
        let stream = futures_util::stream::once(async move { Ok::<Bytes, std::convert::Infallible>(body) });
        let mut multipart = multer::Multipart::new(stream, boundary);
        while let Ok(Some(field)) = multipart.next_field().await {
            if field.name() == Some(FIELD) {
                return field.text().await.ok();
            }
        }
        None
    } else {
        None
    }
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The double-submit token for an anonymous form page: the existing cookie's, or a new one
/// with the cookie to set.
pub fn anonymous_token(jar: &CookieJar, secure: bool) -> (String, Option<Cookie<'static>>) {
    if let Some(existing) = jar.get(ANON_COOKIE).filter(|c| c.value().len() >= 32) {
        return (existing.value().to_owned(), None);
    }
    let token = crate::session::new_token();
    let cookie = Cookie::build((ANON_COOKIE, token.clone()))
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Strict)
        .build();
    (token, Some(cookie))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_tokens_compare_equal_and_others_do_not() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
