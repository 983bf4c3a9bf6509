//! The REST API (SPEC §7) end to end: the real router on a real port, a real database, tokens
//! made the way `tds token create` makes them, and a plain HTTP client.

mod access;
mod alert_rules;
mod channels;
mod events;
mod openapi;
mod renewals;
mod resources;
mod staff;

use crate::support::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tds_domain::{Name, Role, TenantId};
use tds_store::api_tokens::NewApiToken;

/// A token's secret, created like `tds token create` does.
pub async fn token(app: &TestApp, tenant: TenantId, name: &str, role: Role) -> String {
    token_expiring(app, tenant, name, role, None).await
}

pub async fn token_expiring(
    app: &TestApp,
    tenant: TenantId,
    name: &str,
    role: Role,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
) -> String {
    let secret = tds_web::api_token::generate();
    app.store
        .api_tokens()
        .create(
            tenant,
            &NewApiToken {
                name: Name::parse("name", name).unwrap(),
                role,
                token_hash: secret.hash.clone(),
                prefix: secret.prefix.clone(),
                expires_at,
                created_by: None,
            },
        )
        .await
        .unwrap();
    secret.secret
}

/// An API client acting with one token.
pub struct Api {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

/// A response: status, headers and the body (JSON when it is JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// The error code of an error answer.
    pub fn code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or_default().to_owned()
    }
}

impl Api {
    pub fn new(app: &TestApp, token: &str) -> Self {
        Self { base: app.base.clone(), token: token.to_owned(), http: reqwest::Client::new() }
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        Answer { status: resp.status(), headers: resp.headers().clone(), text: resp.text().await.unwrap() }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Answer {
        self.call(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.call(Method::DELETE, path, None).await
    }

    /// A body of another media type (CSV imports).
    pub async fn post_raw(&self, path: &str, content_type: &str, body: &str) -> Answer {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", content_type)
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        Answer { status: resp.status(), headers: resp.headers().clone(), text: resp.text().await.unwrap() }
    }
}
