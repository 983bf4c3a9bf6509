//! The error responses routes share, for the OpenAPI document: every route lists the failures it
//! can answer with, each with the [`ErrorBody`] schema.

use super::error::ErrorBody;
use utoipa::IntoResponses;

/// What a read can fail with.
#[derive(Debug, IntoResponses)]
pub enum ReadErrors {
    /// A query parameter or cursor is not valid (`invalid_query`, `invalid_cursor`).
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No token, or an unknown, revoked or expired one (`unauthorized`).
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The role does not allow it, or the tenant's licence is inactive (`forbidden`,
    /// `licence_inactive`).
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// Not in this tenant (`not_found`).
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// Over the token's request rate (`rate_limited`); see `Retry-After`.
    #[response(status = 429)]
    TooMany(ErrorBody),
}

/// What a write can fail with.
#[derive(Debug, IntoResponses)]
pub enum WriteErrors {
    /// The body is not JSON or not an object (`invalid_body`), or a parameter is wrong.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No token, or an unknown, revoked or expired one (`unauthorized`).
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The role does not allow it (`forbidden`, `licence_inactive`, `csrf`).
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// Not in this tenant (`not_found`).
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// Already taken or not possible now (`conflict`), or a limit is reached (`limit_reached`).
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// The body is larger than the route takes (`too_large`).
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// The body is not of the media type the route takes (`unsupported_media_type`).
    #[response(status = 415)]
    MediaType(ErrorBody),
    /// A value is refused; `field` names it (`invalid`).
    #[response(status = 422)]
    Invalid(ErrorBody),
    /// Over the token's request rate (`rate_limited`); see `Retry-After`.
    #[response(status = 429)]
    TooMany(ErrorBody),
}

/// What an import can fail with besides its 422 report.
#[derive(Debug, IntoResponses)]
pub enum ImportErrors {
    /// No token, or an unknown, revoked or expired one (`unauthorized`).
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The role does not allow it (`forbidden`, `licence_inactive`, `csrf`).
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// The file is larger than an import may be (`too_large`).
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// The body is not `text/csv` (`unsupported_media_type`).
    #[response(status = 415)]
    MediaType(ErrorBody),
    /// Over the token's request rate (`rate_limited`); see `Retry-After`.
    #[response(status = 429)]
    TooMany(ErrorBody),
}
