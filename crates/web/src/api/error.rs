//! The API's one error type: every failure answers `{"error": {"code", "message", "field"}}` with
//! a stable `code` per kind of failure and the right status. Internal causes are logged once and
//! never shown; validation messages are the domain's own (in English).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tds_store::StoreError;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `unauthorized`, `forbidden`, `licence_inactive`, `csrf`,
    /// `not_found`, `invalid_query`, `invalid_cursor`, `invalid_body`, `invalid`, `conflict`,
    /// `limit_reached`, `too_large`, `unsupported_media_type`, `import_refused`, `rate_limited`,
    /// `busy`, `internal`.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
    /// The input field (body field or query parameter) the message is about, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No credentials, a malformed, unknown, revoked or expired token, or an ended session.
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    /// Authenticated, but the role does not allow it.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// The tenant is inactive or its licence has expired.
    #[error("licence inactive")]
    Licence,
    /// A session-authenticated write without the CSRF header or from another origin.
    #[error("csrf: {0}")]
    Csrf(&'static str),
    /// Not there, or another tenant's: the same answer, so ids cannot be probed.
    #[error("not found")]
    NotFound,
    /// A bad query parameter, path parameter or cursor (400).
    #[error("{code}: {message}")]
    BadRequest { code: &'static str, message: String, field: Option<String> },
    /// The body is not the JSON (or CSV) the route takes (400).
    #[error("invalid body: {0}")]
    Body(String),
    /// A value the domain refuses (422).
    #[error("invalid {field:?}: {message}")]
    Invalid { message: String, field: Option<String> },
    /// Taken already (a MAC, a code), or not possible in the current state (409).
    #[error("conflict: {message}")]
    Conflict { message: String, field: Option<String> },
    /// A tenant or gateway limit would be exceeded (409).
    #[error("limit: {0}")]
    Limit(String),
    #[error("payload too large (at most {0} bytes)")]
    TooLarge(usize),
    #[error("unsupported media type: {0}")]
    MediaType(&'static str),
    /// Too many requests for this token: retry after that many seconds.
    #[error("rate limited")]
    RateLimited { retry_after_s: u64 },
    /// A bounded resource is saturated: retry in a few seconds.
    #[error("busy")]
    Busy,
    #[error("{0}")]
    Internal(String),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid { message: message.into(), field: Some(field.to_owned()) }
    }

    pub fn bad_param(field: &str, message: impl Into<String>) -> Self {
        Self::BadRequest { code: "invalid_query", message: message.into(), field: Some(field.to_owned()) }
    }

    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::Licence => (StatusCode::FORBIDDEN, "licence_inactive"),
            Self::Csrf(_) => (StatusCode::FORBIDDEN, "csrf"),
            Self::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Self::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            Self::Body(_) => (StatusCode::BAD_REQUEST, "invalid_body"),
            Self::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            Self::Conflict { .. } => (StatusCode::CONFLICT, "conflict"),
            Self::Limit(_) => (StatusCode::CONFLICT, "limit_reached"),
            Self::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            Self::MediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            Self::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    fn message(&self) -> String {
        match self {
            Self::Unauthorized(why) => format!("authentication required: {why}"),
            Self::Forbidden(why) => format!("not allowed: {why}"),
            Self::Licence => "the tenant is inactive or its licence has expired".to_owned(),
            Self::Csrf(why) => format!("refused by the CSRF check ({why}); send X-CSRF-Token or use a token"),
            Self::NotFound => "no such resource in this tenant".to_owned(),
            Self::BadRequest { message, .. }
            | Self::Body(message)
            | Self::Invalid { message, .. }
            | Self::Conflict { message, .. }
            | Self::Limit(message) => message.clone(),
            Self::TooLarge(max) => format!("the body is larger than this route accepts ({max} bytes)"),
            Self::MediaType(expected) => format!("send the body as {expected}"),
            Self::RateLimited { retry_after_s } => {
                format!("too many requests for this token; retry in {retry_after_s} s")
            }
            Self::Busy => "the server is busy; retry in a few seconds".to_owned(),
            Self::Internal(_) => "internal error; it has been logged".to_owned(),
        }
    }

    fn field(&self) -> Option<String> {
        match self {
            Self::BadRequest { field, .. } | Self::Invalid { field, .. } | Self::Conflict { field, .. } => {
                field.clone()
            }
            _ => None,
        }
    }

    /// The JSON body this error answers with (also used by the import report).
    pub fn body(&self) -> ErrorBody {
        let code = self.parts().1;
        ErrorBody {
            error: ErrorDetail { code: code.to_owned(), message: self.message(), field: self.field() },
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::NotFound,
            StoreError::Conflict(message) => {
                let lower = message.to_lowercase();
                let field = if lower.contains("mac") {
                    Some("mac")
                } else if lower.contains("code") {
                    Some("code")
                } else {
                    None
                };
                Self::Conflict { message, field: field.map(str::to_owned) }
            }
            StoreError::Limit(message) => Self::Limit(message),
            StoreError::Import(rows) => Self::Conflict {
                message: rows.into_iter().map(|r| r.message).collect::<Vec<_>>().join("; "),
                field: None,
            },
            StoreError::Invalid(e) => Self::Invalid { message: e.to_string(), field: None },
            other => Self::Internal(format!("store: {other} ({:?})", std::error::Error::source(&other))),
        }
    }
}

impl From<crate::error::WebError> for ApiError {
    fn from(e: crate::error::WebError) -> Self {
        use crate::error::WebError;
        match e {
            WebError::NotFound => Self::NotFound,
            WebError::Forbidden => Self::Forbidden("role"),
            WebError::Login { .. } => Self::Unauthorized("no session"),
            WebError::PickTenant => Self::Forbidden("choose a tenant in the web application first"),
            WebError::Licence => Self::Licence,
            WebError::Csrf(why) => Self::Csrf(why),
            WebError::BadRequest(m) => Self::Body(m),
            WebError::TooManyRequests => Self::RateLimited { retry_after_s: 1 },
            WebError::PayloadTooLarge => Self::TooLarge(0),
            WebError::Busy => Self::Busy,
            WebError::Store(s) => s.into(),
            WebError::Internal(m) => Self::Internal(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, _) = self.parts();
        match &self {
            Self::Internal(cause) => tracing::error!(error = %cause, "internal error in an API request"),
            other => tracing::debug!(error = %other, "API request refused"),
        }
        let mut response = (status, Json(self.body())).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match &self {
            Self::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"tds\""));
            }
            Self::RateLimited { retry_after_s } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_s));
            }
            Self::Busy => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        response
    }
}
