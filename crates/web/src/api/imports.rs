//! `POST /api/v1/imports/gateways|devices`: a CSV body (the formats of the import page, SPEC §1),
//! imported all or none, answered with the row-by-row report: 200 when every row was created,
//! 422 with each refused row's line and reason when any was refused (then nothing was written).

use super::auth::{ApiCtx, ApiEditor};
use super::body::read_body;
use super::error::{ApiError, ApiResult, ErrorDetail};
use super::responses::ImportErrors;
use crate::AppState;
use crate::import::{ImportError, ImportOutcome, Importer};
use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use tds_domain::import_rows::ReadError;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportReport {
    /// Rows written: all of them, or none.
    pub created: usize,
    /// Rows refused (then `created` is 0).
    pub refused: usize,
    pub rows: Vec<RowOut>,
    /// Present when the import was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<super::error::ErrorDetail>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RowOut {
    /// The row's line in the file (0: the whole file).
    pub line: u64,
    pub ok: bool,
    /// What the row creates, or why it is refused.
    pub message: String,
}

/// Imports gateways from CSV (`mac,code,name[,model,serial_number,device_id]`, or a factory
/// manifest).
#[utoipa::path(post, path = "/api/v1/imports/gateways", operation_id = "import_gateways", tag = "imports",
    request_body(content = String, content_type = "text/csv"),
    responses((status = 200, description = "Every row was imported", body = ImportReport),
        (status = 422, description = "Refused rows (nothing was imported), or a file that is not CSV", body = ImportReport),
        ImportErrors))]
pub async fn gateways(
    State(state): State<AppState>,
    ApiEditor(ctx): ApiEditor,
    req: Request,
) -> ApiResult<Response> {
    run(&state, &ctx, req, "gateways").await
}

/// Imports devices from CSV (`gateway_mac,code,name,type,medium,kind,unit,…`).
#[utoipa::path(post, path = "/api/v1/imports/devices", operation_id = "import_devices", tag = "imports",
    request_body(content = String, content_type = "text/csv"),
    responses((status = 200, description = "Every row was imported", body = ImportReport),
        (status = 422, description = "Refused rows (nothing was imported), or a file that is not CSV", body = ImportReport),
        ImportErrors))]
pub async fn devices(
    State(state): State<AppState>,
    ApiEditor(ctx): ApiEditor,
    req: Request,
) -> ApiResult<Response> {
    run(&state, &ctx, req, "devices").await
}

async fn run(state: &AppState, ctx: &ApiCtx, req: Request, kind: &str) -> ApiResult<Response> {
    let limits = state.config().import_limits;
    let bytes = read_body(req, "text/csv", limits.max_bytes()).await?;
    let store = state.store();
    let outcome = match kind {
        "gateways" => {
            crate::import::gateways(store, ctx.tenant_id(), &bytes, ctx.user_id(), limits, Importer::Tenant)
                .await
        }
        _ => crate::import::devices(store, ctx.tenant_id(), &bytes, ctx.user_id(), limits).await,
    };
    let outcome: ImportOutcome = match outcome {
        Ok(o) => o,
        Err(ImportError::Store(e)) => return Err(e.into()),
        Err(ImportError::File(ReadError::TooLarge { max })) => return Err(ApiError::TooLarge(max)),
        Err(ImportError::File(e)) => return Ok(refusal(0, Vec::new(), e.to_string())),
    };
    let refused = outcome.refused();
    let rows: Vec<RowOut> = outcome
        .rows
        .iter()
        .map(|r| match &r.outcome {
            Ok(what) => RowOut { line: r.line, ok: true, message: what.clone() },
            Err(why) => RowOut { line: r.line, ok: false, message: why.to_string() },
        })
        .collect();
    ctx.audit(
        state,
        &format!("import.{kind}"),
        (kind.trim_end_matches('s'), None),
        json!({"created": outcome.created, "refused": refused, "rows": rows.len()}),
    )
    .await?;
    if refused == 0 && outcome.created > 0 {
        return Ok(
            Json(ImportReport { created: outcome.created, refused, rows, error: None }).into_response()
        );
    }
    let message = format!("{refused} of {} rows refused; nothing was imported", rows.len());
    Ok(refusal(refused, rows, message))
}

/// The 422 answer: the report, with the error that says why nothing was imported.
fn refusal(refused: usize, rows: Vec<RowOut>, message: String) -> Response {
    let error = ErrorDetail { code: "import_refused".into(), message, field: None };
    (StatusCode::UNPROCESSABLE_ENTITY, Json(ImportReport { created: 0, refused, rows, error: Some(error) }))
        .into_response()
}
