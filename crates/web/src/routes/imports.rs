//! CSV import of gateways (or a factory manifest) and devices from the browser, with the
//! row-by-row report; all rows are written or none (see [`crate::import`]). The file is read from
//! the request in pieces and refused as soon as it passes the configured size, before the rest
//! is buffered.

use crate::AppState;
use crate::auth::Editor;
use crate::error::{WebError, WebResult};
use crate::import::{ImportError, ImportOutcome, Importer, RowProblem};
use crate::page::PageCtx;
use crate::routes::table::Routes;
use crate::routes::{audit, render, render_status};
use askama::Template;
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::json;
use tds_domain::import_rows::{CEILING_BYTES, ReadError};

pub fn routes() -> Routes {
    // The configured bound is checked while reading; this is the hard stop above any
    // configuration (the form's other fields and the multipart framing fit in 64 KiB).
    Routes::new()
        .route("/import", get(page))
        .route("/import/{kind}", post(upload).layer(DefaultBodyLimit::max(CEILING_BYTES + 64 * 1024)))
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
    let limits = state.config().import_limits;
    let mut bytes: Option<Vec<u8>> = None;
    let mut too_large = false;
    while let Some(mut field) =
        multipart.next_field().await.map_err(|e| WebError::BadRequest(e.to_string()))?
    {
        if field.name() != Some("file") {
            continue;
        }
        let mut file = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(|e| WebError::BadRequest(e.to_string()))? {
            if file.len() + chunk.len() > limits.max_bytes() {
                too_large = true;
                break;
            }
            file.extend_from_slice(&chunk);
        }
        bytes = Some(file);
        break;
    }
    let importer = if t.me.user.is_staff { Importer::Staff } else { Importer::Tenant };
    let outcome = if too_large {
        Err(ImportError::File(ReadError::TooLarge { max: limits.max_bytes() }))
    } else {
        let bytes = bytes.unwrap_or_default();
        match kind.as_str() {
            "gateways" => {
                crate::import::gateways(
                    state.store(),
                    t.tenant_id(),
                    &bytes,
                    Some(t.me.user.id),
                    limits,
                    importer,
                )
                .await
            }
            "devices" => {
                crate::import::devices(state.store(), t.tenant_id(), &bytes, Some(t.me.user.id), limits).await
            }
            _ => return Err(WebError::NotFound),
        }
    };
    let refusal = |key: &str, args: &[(&str, &str)]| {
        (ImportOutcome { rows: Vec::new(), created: 0 }, Some(lang.tf(key, args)))
    };
    let (outcome, error): (ImportOutcome, Option<String>) = match outcome {
        Ok(o) => (o, None),
        Err(ImportError::Store(e)) => return Err(e.into()),
        Err(ImportError::File(ReadError::Empty)) => refusal("import.empty", &[]),
        Err(ImportError::File(ReadError::Csv(e))) => refusal("import.not_csv", &[("detail", &e)]),
        Err(ImportError::File(ReadError::TooLarge { max })) => {
            refusal("import.too_large", &[("max", &size(max))])
        }
        Err(ImportError::File(ReadError::TooManyRows { max })) => {
            refusal("import.too_many_rows", &[("max", &max.to_string())])
        }
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

/// A byte count as people read it: `2 MiB`, `512 KiB`, `100 bytes`.
fn size(bytes: usize) -> String {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= KIB {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} bytes")
    }
}
