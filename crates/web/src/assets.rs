//! Static assets (Bootstrap, Bootstrap Icons, Chart.js, htmx and our own CSS/JS), baked into the
//! binary at build time by `build.rs` + rust-embed: TDS never loads anything from a CDN.

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_embed::Embed;

#[derive(Embed)]
#[folder = "$OUT_DIR/assets"]
struct Assets;

/// `GET /assets/{*path}`. Served with an `ETag` (the file's SHA-256) so browsers revalidate
/// cheaply after an upgrade instead of holding stale files.
pub async fn serve(Path(path): Path<String>, headers: HeaderMap) -> Response {
    let Some(file) = Assets::get(&path) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16]));
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let mime = file.metadata.mimetype().to_owned();
    let mut response = file.data.into_owned().into_response();
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&mime) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600, must-revalidate"));
    response
}

/// `GET /favicon.ico`, which browsers ask for on pages without an icon link (a JSON response,
/// say): the same icon as the pages'.
pub async fn favicon(headers: HeaderMap) -> Response {
    serve(Path("vendor/favicon.svg".to_owned()), headers).await
}

/// Whether an asset exists (used by tests and the health check).
pub fn exists(path: &str) -> bool {
    Assets::get(path).is_some()
}
