//! `/api/v1/notification-channels` (SPEC §5, §7), admins: the tenant's email lists and webhooks,
//! with their health (last success, last error); create, change, delete, and "send a test". The
//! config is the channel kind's JSON object (see `docs/alerts.md`: `{"addresses": […]}`, or
//! `{"preset": "generic", "url": …}`, `{"preset": "telegram", "chat_id": …}`,
//! `{"preset": "whatsapp", "phone_number_id": …, "to": …}`), validated by the domain with the
//! field named. A webhook's secret is write-only: it is never in an answer.

use super::auth::ApiAdmin;
use super::body::{ApiPath, JsonObject, OptionalJson, decode};
use super::error::{ApiError, ApiResult};
use super::responses::{ReadErrors, WriteErrors};
use crate::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tds_domain::alerts::channel::ChannelConfig;
use tds_domain::{Name, Severity, ValidationError};
use tds_store::notifications::{
    Channel, ChannelFields, ChannelId, ChannelKind, ChannelSecret, NewChannel, SeveritySet,
};
use utoipa::ToSchema;

/// A channel, without its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelOut {
    pub id: i64,
    /// `email` or `webhook`.
    pub kind: String,
    pub name: String,
    #[schema(value_type = Object)]
    pub config: Value,
    /// Severities sent to it (`INFO`, `WARNING`, `CRITICAL`).
    pub severities: Vec<String>,
    pub enabled: bool,
    /// Whether a webhook has a secret (it is never shown).
    pub has_secret: bool,
    /// Its last attempt failed.
    pub failing: bool,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelList {
    pub items: Vec<ChannelOut>,
}

/// A channel to create (`kind`, `name`, `config` and `severities` required; a webhook needs a
/// `secret`), or in a `PATCH` the fields to change (`kind` is fixed).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelIn {
    pub kind: Option<String>,
    pub name: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub config: Option<Value>,
    /// The HMAC-SHA256 key of a generic webhook, or the provider's token (Telegram, WhatsApp).
    pub secret: Option<String>,
    pub severities: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

fn out(c: &Channel) -> ChannelOut {
    ChannelOut {
        id: c.id.get(),
        kind: c.kind.as_str().to_owned(),
        name: c.name.clone(),
        config: c.config.clone(),
        severities: c.severities.severities().iter().map(|s| s.as_str().to_owned()).collect(),
        enabled: c.enabled,
        has_secret: c.secret.is_some(),
        failing: c.is_failing(),
        last_error: c.last_error.clone(),
        last_error_at: c.last_error_at,
        last_success_at: c.last_success_at,
        created_at: c.created_at,
        updated_at: c.updated_at,
    }
}

fn invalid(e: &ValidationError, field: &str) -> ApiError {
    ApiError::invalid(field, e.to_string())
}

fn severities(list: &[String]) -> ApiResult<SeveritySet> {
    let parsed = list
        .iter()
        .map(|s| Severity::parse(s).map_err(|e| invalid(&e, "severities")))
        .collect::<ApiResult<Vec<_>>>()?;
    if parsed.is_empty() {
        return Err(ApiError::invalid("severities", "at least one severity"));
    }
    Ok(SeveritySet::of(&parsed))
}

fn checked_config(kind: ChannelKind, config: &Value) -> ApiResult<()> {
    ChannelConfig::parse(kind.as_str(), config).map(|_| ()).map_err(|e| {
        let field = match &e {
            ValidationError::Required { field }
            | ValidationError::Rule { field, .. }
            | ValidationError::Choice { field, .. }
            | ValidationError::TooLong { field, .. }
            | ValidationError::OutOfRange { field, .. } => format!("config.{field}"),
            _ => "config".to_owned(),
        };
        ApiError::invalid(&field, e.to_string())
    })
}

fn secret(text: &str) -> ApiResult<ChannelSecret> {
    ChannelSecret::new(text.to_owned()).map_err(|e| invalid(&e, "secret"))
}

async fn find(state: &AppState, ctx: &super::auth::ApiCtx, id: i64) -> ApiResult<Channel> {
    Ok(state.store().notification_channels().get(ctx.tenant_id(), ChannelId::new(id)).await?)
}

/// The tenant's channels.
#[utoipa::path(get, path = "/api/v1/notification-channels", operation_id = "list_notification_channels",
    tag = "notification-channels",
    responses((status = 200, description = "The channels", body = ChannelList), ReadErrors))]
pub async fn list(State(state): State<AppState>, ApiAdmin(ctx): ApiAdmin) -> ApiResult<Json<ChannelList>> {
    let items = state.store().notification_channels().list(ctx.tenant_id()).await?.iter().map(out).collect();
    Ok(Json(ChannelList { items }))
}

/// Creates a channel.
#[utoipa::path(post, path = "/api/v1/notification-channels", operation_id = "create_notification_channel",
    tag = "notification-channels", request_body = ChannelIn,
    responses((status = 201, description = "The channel", body = ChannelOut), WriteErrors))]
pub async fn create(
    State(state): State<AppState>,
    ApiAdmin(ctx): ApiAdmin,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<ChannelOut>)> {
    let input: ChannelIn = decode(body)?;
    let required = |f: &str| ApiError::invalid(f, format!("{f} is required"));
    let kind = input.kind.as_deref().ok_or_else(|| required("kind"))?;
    let kind =
        ChannelKind::parse(kind).ok_or_else(|| ApiError::invalid("kind", "kind must be email or webhook"))?;
    let name = Name::parse("name", input.name.as_deref().ok_or_else(|| required("name"))?)
        .map_err(|e| invalid(&e, "name"))?;
    let config = input.config.clone().ok_or_else(|| required("config"))?;
    checked_config(kind, &config)?;
    let severities = severities(input.severities.as_deref().ok_or_else(|| required("severities"))?)?;
    let secret = match (kind, input.secret.as_deref()) {
        (ChannelKind::Webhook, Some(s)) => Some(secret(s)?),
        (ChannelKind::Webhook, None) => return Err(required("secret")),
        (ChannelKind::Email, Some(_)) => {
            return Err(ApiError::invalid("secret", "an email channel has no secret"));
        }
        (ChannelKind::Email, None) => None,
    };
    let new = NewChannel {
        kind,
        name,
        config,
        secret,
        severities,
        enabled: input.enabled.unwrap_or(true),
        created_by: ctx.user_id(),
    };
    let c = state.store().notification_channels().create(ctx.tenant_id(), &new).await?;
    ctx.audit(
        &state,
        "channel.created",
        ("channel", Some(c.id.to_string())),
        json!({"name": c.name, "kind": c.kind.as_str()}),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(out(&c))))
}

/// One channel.
#[utoipa::path(get, path = "/api/v1/notification-channels/{id}", operation_id = "get_notification_channel",
    tag = "notification-channels", params(("id" = i64, Path, description = "The channel's id")),
    responses((status = 200, description = "The channel", body = ChannelOut), ReadErrors))]
pub async fn show(
    State(state): State<AppState>,
    ApiAdmin(ctx): ApiAdmin,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<ChannelOut>> {
    Ok(Json(out(&find(&state, &ctx, id).await?)))
}

/// Changes the fields given.
#[utoipa::path(patch, path = "/api/v1/notification-channels/{id}", operation_id = "update_notification_channel",
    tag = "notification-channels", request_body = ChannelIn, params(("id" = i64, Path, description = "The channel's id")),
    responses((status = 200, description = "The channel", body = ChannelOut), WriteErrors))]
pub async fn update(
    State(state): State<AppState>,
    ApiAdmin(ctx): ApiAdmin,
    ApiPath(id): ApiPath<i64>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<ChannelOut>> {
    let input: ChannelIn = decode(body)?;
    let current = find(&state, &ctx, id).await?;
    if input.kind.as_deref().is_some_and(|k| k != current.kind.as_str()) {
        return Err(ApiError::invalid("kind", "a channel's kind cannot be changed"));
    }
    let store = state.store().notification_channels();
    let name = match &input.name {
        Some(n) => Name::parse("name", n).map_err(|e| invalid(&e, "name"))?,
        None => Name::parse("name", &current.name).map_err(|e| invalid(&e, "name"))?,
    };
    let config = input.config.clone().unwrap_or_else(|| current.config.clone());
    checked_config(current.kind, &config)?;
    let severities = match &input.severities {
        Some(list) => severities(list)?,
        None => current.severities,
    };
    let secret = match (current.kind, input.secret.as_deref()) {
        (ChannelKind::Email, Some(_)) => {
            return Err(ApiError::invalid("secret", "an email channel has no secret"));
        }
        (_, Some(s)) => Some(secret(s)?),
        (_, None) => None,
    };
    store.update(ctx.tenant_id(), current.id, &ChannelFields { name, config, severities }).await?;
    if let Some(secret) = secret {
        store.set_secret(ctx.tenant_id(), current.id, &secret).await?;
    }
    if let Some(enabled) = input.enabled.filter(|e| *e != current.enabled) {
        store.set_enabled(ctx.tenant_id(), current.id, enabled).await?;
    }
    let c = find(&state, &ctx, id).await?;
    ctx.audit(
        &state,
        "channel.updated",
        ("channel", Some(id.to_string())),
        json!({"name": c.name, "secret_changed": input.secret.is_some()}),
    )
    .await?;
    Ok(Json(out(&c)))
}

/// Deletes a channel; deliveries still pending to it are dropped.
#[utoipa::path(delete, path = "/api/v1/notification-channels/{id}", operation_id = "delete_notification_channel",
    tag = "notification-channels", params(("id" = i64, Path, description = "The channel's id")),
    responses((status = 204, description = "Deleted"), WriteErrors))]
pub async fn delete(
    State(state): State<AppState>,
    ApiAdmin(ctx): ApiAdmin,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    let c = find(&state, &ctx, id).await?;
    state.store().notification_channels().delete(ctx.tenant_id(), c.id).await?;
    ctx.audit(&state, "channel.deleted", ("channel", Some(id.to_string())), json!({"name": c.name})).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Queues a test message to the channel; within seconds its `last_success_at` or `last_error`
/// tells how it went.
#[utoipa::path(post, path = "/api/v1/notification-channels/{id}/test", operation_id = "test_notification_channel",
    tag = "notification-channels", params(("id" = i64, Path, description = "The channel's id")),
    responses((status = 202, description = "Queued"), WriteErrors))]
pub async fn test(
    State(state): State<AppState>,
    ApiAdmin(ctx): ApiAdmin,
    ApiPath(id): ApiPath<i64>,
    OptionalJson(body): OptionalJson,
) -> ApiResult<StatusCode> {
    decode::<EmptyBody>(body)?;
    let c = find(&state, &ctx, id).await?;
    let tenant = state.store().tenants().get(ctx.tenant_id()).await?;
    crate::routes::channels::queue_test(&state, &tenant, c.id).await?;
    ctx.audit(&state, "channel.tested", ("channel", Some(id.to_string())), json!({})).await?;
    Ok(StatusCode::ACCEPTED)
}

/// No fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmptyBody {}
