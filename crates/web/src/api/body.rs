//! Reading requests: JSON bodies (bounded, an object, with unknown fields refused by name), query
//! strings, and the keyset cursors of lists. Every refusal is an [`ApiError`] naming the field.

use super::error::ApiError;
use crate::AppState;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Largest JSON body a route reads.
pub const MAX_JSON_BYTES: usize = 64 * 1024;

/// A JSON object body, as its fields (the routes overlay them on a form; see [`overlay`]).
#[derive(Debug)]
pub struct JsonObject(pub Map<String, Value>);

impl FromRequest<AppState> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, "application/json", MAX_JSON_BYTES).await?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(Self(map)),
            Ok(_) => Err(ApiError::Body("the body must be a JSON object".into())),
            Err(e) => Err(ApiError::Body(format!("not JSON: {e}"))),
        }
    }
}

/// An optional JSON object body: an empty body is an empty object (for actions whose options
/// all have defaults).
#[derive(Debug)]
pub struct OptionalJson(pub Map<String, Value>);

impl FromRequest<AppState> for OptionalJson {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let empty = req.headers().get(header::CONTENT_LENGTH).is_none_or(|v| v == "0")
            && !req.headers().contains_key(header::TRANSFER_ENCODING);
        if empty {
            return Ok(Self(Map::new()));
        }
        JsonObject::from_request(req, state).await.map(|j| Self(j.0))
    }
}

/// Reads a body of `content_type` up to `limit` bytes (refused from `Content-Length` before
/// reading when it says more).
pub async fn read_body(req: Request, content_type: &'static str, limit: usize) -> Result<Vec<u8>, ApiError> {
    let sent = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let essence = sent.split(';').next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case(content_type) {
        return Err(ApiError::MediaType(content_type));
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::TooLarge(limit));
    }
    let bytes = axum::body::to_bytes(req.into_body(), limit).await.map_err(|_| ApiError::TooLarge(limit))?;
    Ok(bytes.to_vec())
}

/// Decodes a JSON object into `T`, whose fields are all the ones accepted: an unknown field is
/// refused by its name, a value of the wrong type by the field's.
pub fn decode<T: DeserializeOwned>(map: Map<String, Value>) -> Result<T, ApiError> {
    serde_json::from_value(Value::Object(map)).map_err(|e| {
        let text = e.to_string();
        let field =
            text.strip_prefix("unknown field `").and_then(|rest| rest.split('`').next()).map(str::to_owned);
        ApiError::Invalid { message: text, field }
    })
}

/// Sets the text fields of a form (a struct of strings) from a JSON object: strings as they are,
/// numbers as written, `null` as empty (cleared). A field the form does not have, or a value
/// that is neither, is refused by name. `fixed` fields are refused too (they cannot change).
pub fn overlay<F>(
    form: &F,
    patch: Map<String, Value>,
    renames: &[(&str, &str)],
    fixed: &[&str],
) -> Result<F, ApiError>
where
    F: serde::Serialize + DeserializeOwned,
{
    let Ok(Value::Object(mut fields)) = serde_json::to_value(form) else {
        return Err(ApiError::Internal("form is not an object".into()));
    };
    for (name, value) in patch {
        if fixed.contains(&name.as_str()) {
            return Err(ApiError::invalid(&name, format!("{name} cannot be changed")));
        }
        let key = renames.iter().find(|(api, _)| *api == name).map_or(name.as_str(), |(_, form)| *form);
        if !fields.contains_key(key) {
            return Err(ApiError::invalid(&name, format!("unknown field {name}")));
        }
        let text = match value {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Null => String::new(),
            Value::Bool(_) | Value::Array(_) | Value::Object(_) => {
                return Err(ApiError::invalid(&name, format!("{name} must be a string or a number")));
            }
        };
        fields.insert(key.to_owned(), Value::String(text));
    }
    serde_json::from_value(Value::Object(fields)).map_err(|e| ApiError::Internal(format!("form: {e}")))
}

/// Turns a form's field errors into the API's: the first field and its message.
pub fn form_errors(errors: &crate::forms::FieldErrors, renames: &[(&str, &str)]) -> ApiError {
    if let Some((field, message)) = errors.first() {
        let api = renames.iter().find(|(_, form)| *form == field).map_or(field, |(api, _)| *api);
        return ApiError::invalid(api, message);
    }
    ApiError::Invalid { message: errors.form.join("; "), field: None }
}

/// Path parameters decoded into `T`, refused with a 400 naming the problem (a number too large
/// for an id, say) instead of axum's plain-text answer.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Self(p.0))
            .map_err(|e| ApiError::BadRequest { code: "invalid_path", message: e.body_text(), field: None })
    }
}

/// A query string decoded into `T`, refused with a 400 naming the parameter.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded_from(query).map(Self)
    }
}

fn serde_urlencoded_from<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    axum::extract::Query::<T>::try_from_uri(&format!("/?{query}").parse().map_err(|_| {
        ApiError::BadRequest { code: "invalid_query", message: "malformed query string".into(), field: None }
    })?)
    .map(|q| q.0)
    .map_err(|e| ApiError::BadRequest { code: "invalid_query", message: e.body_text(), field: None })
}

/// Page size of a list: `limit`, 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent.
pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

pub fn limit(asked: Option<u32>) -> Result<i64, ApiError> {
    match asked {
        None => Ok(i64::from(DEFAULT_LIMIT)),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(i64::from(n)),
        Some(_) => Err(ApiError::bad_param("limit", format!("limit must be between 1 and {MAX_LIMIT}"))),
    }
}

/// Opaque cursors: the position after the last item of a page, in hex, marked with the list it
/// belongs to so that one list's cursor is refused by another.
pub fn cursor(list: &str, position: &str) -> String {
    hex::encode(format!("{list}:{position}"))
}

/// The position a cursor of `list` holds.
pub fn position(list: &str, cursor: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(cursor) = cursor.filter(|c| !c.is_empty()) else { return Ok(None) };
    let bad = || ApiError::BadRequest {
        code: "invalid_cursor",
        message: "the cursor is not one this list gave".into(),
        field: Some("cursor".into()),
    };
    let bytes = hex::decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    text.strip_prefix(list).and_then(|r| r.strip_prefix(':')).map(|p| Some(p.to_owned())).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_belong_to_their_list() {
        let c = cursor("gateways", "02:00:00:00:00:01");
        assert_eq!(position("gateways", Some(&c)).unwrap().as_deref(), Some("02:00:00:00:00:01"));
        assert!(position("devices", Some(&c)).is_err());
        assert!(position("gateways", Some("zz")).is_err());
        assert_eq!(position("gateways", None).unwrap(), None);
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(limit(None).unwrap(), 100);
        assert_eq!(limit(Some(1000)).unwrap(), 1000);
        assert!(limit(Some(0)).is_err() && limit(Some(1001)).is_err());
    }
}
