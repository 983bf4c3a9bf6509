//! `/api/v1/dead-letters`: the messages and readings the endpoint refused, with their reasons
//! (newest first), and replaying one after its cause is fixed ([`crate::replay`]).

use super::auth::{ApiAdmin, ApiViewer};
use super::body::{ApiPath, ApiQuery, cursor, limit, position};
use super::error::{ApiError, ApiResult};
use super::responses::{ReadErrors, WriteErrors};
use crate::AppState;
use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tds_domain::RejectedId;
use tds_store::rejected::RejectedSummary;
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterOut {
    pub id: i64,
    /// The sending gateway's MAC, when known.
    pub gateway: Option<String>,
    pub topic: String,
    /// Stable reason code (`unknown_device`, `bad_json`, …).
    pub reason_code: String,
    pub reason: String,
    pub received_at: DateTime<Utc>,
    /// The payload's size as received.
    pub payload_size: i64,
    /// The payload's first 200 bytes, as text.
    pub preview: String,
    /// The refused reading's position in its batch, for a single reading.
    pub reading_index: Option<i64>,
    /// What the last replay did.
    pub replay_outcome: Option<String>,
}

impl From<&RejectedSummary> for DeadLetterOut {
    fn from(r: &RejectedSummary) -> Self {
        Self {
            id: r.id.get(),
            gateway: r.mac.clone(),
            topic: r.topic.clone(),
            reason_code: r.reason_code.clone(),
            reason: r.reason.clone(),
            received_at: r.received_at,
            payload_size: r.payload_size,
            preview: r.preview_text(),
            reading_index: r.reading_index,
            replay_outcome: r.replay_outcome.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterPage {
    pub items: Vec<DeadLetterOut>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterParams {
    /// Only this reason code.
    pub reason_code: Option<String>,
    /// Items per page, 1 to 1000 (100).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayOut {
    /// Readings stored by the replay.
    pub stored: u64,
    /// Readings already stored (nothing written).
    pub duplicates: u64,
    /// What is still refused, and why.
    pub refused: Vec<String>,
    pub summary: String,
}

/// The tenant's dead letters, newest first.
#[utoipa::path(get, path = "/api/v1/dead-letters", operation_id = "list_dead_letters", tag = "dead-letters", params(DeadLetterParams),
    responses((status = 200, description = "A page of dead letters", body = DeadLetterPage), ReadErrors))]
pub async fn list(
    State(state): State<AppState>,
    ApiViewer(ctx): ApiViewer,
    ApiQuery(q): ApiQuery<DeadLetterParams>,
) -> ApiResult<Json<DeadLetterPage>> {
    let limit = limit(q.limit)?;
    let before = match position("dead-letters", q.cursor.as_deref())? {
        None => None,
        Some(p) => Some(RejectedId::new(p.parse().map_err(|_| ApiError::bad_param("cursor", "bad cursor"))?)),
    };
    let reason = q.reason_code.as_deref().filter(|r| !r.is_empty());
    let found = state.store().rejected().page_newest(ctx.tenant_id(), reason, before, limit + 1).await?;
    let more = found.len() as i64 > limit;
    let items: Vec<DeadLetterOut> = found.iter().take(limit as usize).map(DeadLetterOut::from).collect();
    let next_cursor = more.then(|| items.last().map(|d| cursor("dead-letters", &d.id.to_string()))).flatten();
    Ok(Json(DeadLetterPage { items, next_cursor }))
}

/// Replays a dead letter: what now passes the rules is stored; the outcome is kept with it.
#[utoipa::path(post, path = "/api/v1/dead-letters/{id}/replay", operation_id = "replay_dead_letter", tag = "dead-letters",
    params(("id" = i64, Path, description = "The dead letter's id")),
    responses((status = 200, description = "What the replay did", body = ReplayOut), WriteErrors))]
pub async fn replay(
    State(state): State<AppState>,
    ApiAdmin(ctx): ApiAdmin,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<ReplayOut>> {
    let letter = state.store().rejected().get(ctx.tenant_id(), RejectedId::new(id)).await?;
    let outcome = crate::replay::replay(state.store(), ctx.tenant_id(), &letter).await?;
    ctx.audit(
        &state,
        "dead_letter.replayed",
        ("dead_letter", Some(id.to_string())),
        json!({"stored": outcome.stored, "summary": outcome.summary}),
    )
    .await?;
    Ok(Json(ReplayOut {
        stored: outcome.stored,
        duplicates: outcome.duplicates,
        refused: outcome.refused,
        summary: outcome.summary,
    }))
}
