//! CSV import of gateways (or a factory manifest) and devices from the browser, with the
//! row-by-row report; all rows are written or none (see [`crate::import`]).

use crate::AppState;
use crate::auth::Editor;
use crate::error::{WebError, WebResult};
use crate::import::{ImportError, ImportOutcome, RowProblem};
use crate::page::PageCtx;
use crate::routes::table::Routes;
use crate::routes::{audit, render, render_status};
use askama::Template;
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::json;

pub fn routes() -> Routes {
    Routes::new().route("/import", get(page)).route(
        "/import/{kind}",
        post(upload).layer(DefaultBodyLimit::max(crate::import::MAX_BYTES + 64 * 1024)),
    )
}

/// A report line as shown.
#[derive(Debug)]
pub struct Line {
    pub line: u64,
    pub ok: bool,
    pub text: String,
}

#[derive(Template)]
#[template(path = "import.html")]
struct ImportTemplate {
    ctx: PageCtx,
    lines: Vec<Line>,
    created: usize,
    refused: usize,
    error: Option<String>,
}

async fn page(Editor(_): Editor, ctx: PageCtx) -> WebResult<Response> {
    let ctx = ctx.section("devices", "import.title");
    render(&ImportTemplate { ctx, lines: Vec::new(), created: 0, refused: 0, error: None }, None)
}

async fn upload(
    State(state): State<AppState>,
    Editor(t): Editor,
    axum::extract::Path(kind): axum::extract::Path<String>,
    ctx: PageCtx,
    mut multipart: Multipart,
) -> WebResult<Response> {
    let ctx = ctx.section("devices", "import.title");
    let lang = ctx.lang;
    let mut bytes = None;
    while let Some(field) = multipart.next_field().await.map_err(|e| WebError::BadRequest(e.to_string()))? {
        if field.name() == Some("file") {
            bytes = Some(field.bytes().await.map_err(|e| WebError::BadRequest(e.to_string()))?);
        }
    }
    let bytes = bytes.unwrap_or_default();
    let outcome = match kind.as_str() {
        "gateways" => crate::import::gateways(state.store(), t.tenant_id(), &bytes, Some(t.me.user.id)).await,
        "devices" => crate::import::devices(state.store(), t.tenant_id(), &bytes, Some(t.me.user.id)).await,
        _ => return Err(WebError::NotFound),
    };
    let (outcome, error): (ImportOutcome, Option<String>) = match outcome {
        Ok(o) => (o, None),
        Err(ImportError::Store(e)) => return Err(e.into()),
        Err(ImportError::Empty) => {
            (ImportOutcome { rows: Vec::new(), created: 0 }, Some(lang.t("import.empty")))
        }
        Err(ImportError::Csv(e)) => (
            ImportOutcome { rows: Vec::new(), created: 0 },
            Some(lang.tf("import.not_csv", &[("detail", &e)])),
        ),
    };
    let lines = outcome
        .rows
        .iter()
        .map(|r| match &r.outcome {
            Ok(what) => Line { line: r.line, ok: true, text: what.clone() },
            Err(RowProblem::Invalid(e)) => Line { line: r.line, ok: false, text: lang.validation(e) },
            Err(other) => Line { line: r.line, ok: false, text: other.to_string() },
        })
        .collect();
    if outcome.created > 0 {
        audit(
            &state,
            &t.me,
            Some(&t),
            &format!("{}.import", kind.trim_end_matches('s')),
            (kind.trim_end_matches('s'), None),
            json!({"rows": outcome.created}),
        )
        .await?;
    }
    let status = if outcome.created > 0 { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let refused = outcome.refused();
    render_status(status, &ImportTemplate { ctx, lines, created: outcome.created, refused, error })
}
