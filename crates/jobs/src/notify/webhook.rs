//! Webhook delivery: the HTTP client, the signature and the POST.
//!
//! Headers of every POST: `Content-Type: application/json`, `Idempotency-Key` (the outbox row's
//! key, the same on every retry), `X-TDS-Event`, `X-TDS-Timestamp` (this attempt, Unix seconds)
//! and `X-TDS-Signature: sha256=<hex>`, the HMAC-SHA256 of the exact body bytes keyed with the
//! channel's secret, plus the preset's own headers. A 2xx answer is delivered; anything else,
//! or no answer within the timeout, is a failure to retry.
//!
//! The client uses rustls with the aws-lc-rs provider given explicitly (no process-wide
//! provider needed, no second TLS stack) and the system's root certificates. Error texts never
//! carry the URL (a Telegram URL holds the bot token).

use super::NotifyError;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;
use tds_domain::alerts::WebhookRequest;

/// `sha256=` and the hex HMAC-SHA256 of `body` keyed with `secret`: the `X-TDS-Signature`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length; this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else { return String::new() };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The HTTP client of webhooks: HTTP/1.1 over rustls (aws-lc-rs), no redirects (a receiver
/// answers, it does not send us elsewhere with the signed body), `timeout` per request.
pub fn client(timeout: Duration) -> Result<reqwest::Client, NotifyError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    if added == 0 {
        tracing::warn!("no system root certificates found: https webhooks will fail to connect");
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| NotifyError::Http(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("TDS/", env!("CARGO_PKG_VERSION"), " (alert notifier)"))
        .build()
        .map_err(|e| NotifyError::Http(e.without_url().to_string()))
}

/// How an attempt failed: the message shown on the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

/// Posts `request` once.
pub async fn post(
    http: &reqwest::Client,
    request: &WebhookRequest,
    secret: &str,
    idempotency_key: &str,
    event: &str,
    at: DateTime<Utc>,
) -> Result<u16, Failure> {
    let mut builder = http
        .post(&request.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("Idempotency-Key", idempotency_key)
        .header("X-TDS-Event", event)
        .header("X-TDS-Timestamp", at.timestamp().to_string())
        .header("X-TDS-Signature", signature(secret, request.body.as_bytes()));
    for (name, value) in &request.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let response = builder.body(request.body.clone()).send().await.map_err(|e| {
        let e = e.without_url();
        if e.is_timeout() {
            Failure("no answer in time".to_owned())
        } else {
            Failure(format!("cannot reach the webhook: {}", chain(&e)))
        }
    })?;
    let status = response.status();
    if status.is_success() {
        Ok(status.as_u16())
    } else {
        Err(Failure(format!("the webhook answered HTTP {status}")))
    }
}

/// The error and its causes on one line ("error sending request: connection refused").
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_rfc_4231_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
