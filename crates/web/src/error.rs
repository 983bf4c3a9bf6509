//! One error type for every handler. Expected refusals (not found, forbidden, not logged in,
//! CSRF) become pages or redirects; anything else is logged once with its cause and shown as a
//! generic error page, never with internal detail.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use tds_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// Not there, or not the caller's: both answer 404 so ids cannot be probed across tenants.
    #[error("not found")]
    NotFound,
    /// Logged in but the role does not allow it.
    #[error("forbidden")]
    Forbidden,
    /// Not logged in: go to the login page and come back to `next` afterwards.
    #[error("login required")]
    Login { next: String },
    /// Logged in without an active tenant: pick one.
    #[error("no tenant chosen")]
    PickTenant,
    /// The active tenant is inactive or its licence has expired.
    #[error("licence")]
    Licence,
    /// CSRF token or origin check failed.
    #[error("csrf: {0}")]
    Csrf(&'static str),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("too many requests")]
    TooManyRequests,
    /// The request body is larger than the route (or the kind of request) accepts.
    #[error("payload too large")]
    PayloadTooLarge,
    /// A bounded resource (password checks) is saturated: try again in a few seconds.
    #[error("busy")]
    Busy,
    #[error(transparent)]
    Store(StoreError),
    #[error("{0}")]
    Internal(String),
}

/// Marks an error response so the page middleware renders it in the visitor's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorPage {
    NotFound,
    Forbidden,
    Csrf,
    BadRequest,
    TooManyRequests,
    TooLarge,
    Busy,
    Internal,
}

impl From<crate::password::HashError> for WebError {
    fn from(e: crate::password::HashError) -> Self {
        match e {
            crate::password::HashError::Busy => Self::Busy,
            crate::password::HashError::Failed(why) => Self::Internal(why),
        }
    }
}

impl From<StoreError> for WebError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::NotFound,
            other => Self::Store(other),
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, page) = match self {
            Self::Login { next } => {
                let target = format!(
                    "/login?next={}",
                    url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
                );
                return Redirect::to(&target).into_response();
            }
            Self::PickTenant => return Redirect::to("/tenants").into_response(),
            Self::Licence => return Redirect::to("/licence").into_response(),
            Self::NotFound => (StatusCode::NOT_FOUND, ErrorPage::NotFound),
            Self::Forbidden => (StatusCode::FORBIDDEN, ErrorPage::Forbidden),
            Self::Csrf(why) => {
                tracing::warn!(reason = why, "request refused by the CSRF check");
                (StatusCode::FORBIDDEN, ErrorPage::Csrf)
            }
            Self::BadRequest(why) => {
                tracing::debug!(reason = %why, "bad request");
                (StatusCode::BAD_REQUEST, ErrorPage::BadRequest)
            }
            Self::TooManyRequests => (StatusCode::TOO_MANY_REQUESTS, ErrorPage::TooManyRequests),
            Self::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, ErrorPage::TooLarge),
            Self::Busy => {
                let mut response = (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, "5"), (header::CACHE_CONTROL, "no-store")],
                )
                    .into_response();
                response.extensions_mut().insert(ErrorPage::Busy);
                return response;
            }
            Self::Store(e) => {
                tracing::error!(error = %e, source = ?std::error::Error::source(&e), "store error in a web request");
                (StatusCode::INTERNAL_SERVER_ERROR, ErrorPage::Internal)
            }
            Self::Internal(e) => {
                tracing::error!(error = %e, "internal error in a web request");
                (StatusCode::INTERNAL_SERVER_ERROR, ErrorPage::Internal)
            }
        };
        let mut response = (status, [(header::CACHE_CONTROL, "no-store")]).into_response();
        response.extensions_mut().insert(page);
        response
    }
}

pub type WebResult<T> = Result<T, WebError>;

/// `.internal()` on any displayable error: for failures that are bugs or outages, not user input.
pub trait OrInternal<T> {
    fn internal(self) -> WebResult<T>;
}

impl<T, E: std::fmt::Display> OrInternal<T> for Result<T, E> {
    fn internal(self) -> WebResult<T> {
        self.map_err(|e| WebError::Internal(e.to_string()))
    }
}
