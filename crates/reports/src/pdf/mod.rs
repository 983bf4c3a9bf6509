//! The report as a PDF (SPEC §6), typeset by typst from [`report.typ`](report.typ) with the fonts
//! `typst-assets` embeds (Libertinus Serif: nothing is read from the system or downloaded): the
//! title, tenant, scope, period, zone and bucket, then each section's bar chart (drawn with
//! typst's own shapes; incomplete buckets in another colour) and table (incomplete rows shaded,
//! projections in green), then the notes on completeness, projection and change.
//!
//! Owns: turning a [`Report`] into the template's data (every figure formatted here, in the
//! report's language) and compiling it. Must not: query. The template is fixed; only data.json
//! varies, so no report text is ever read as typst markup.

mod world;

use crate::ReportError;
use crate::lang::Text;
use crate::model::{Cell, ColumnKind, Mark, Report, Row};
use serde_json::{Value, json};

const TEMPLATE: &str = include_str!("report.typ");

/// Bars a chart shows at most: longer series (hours of a month) are added up in groups so that
/// a bar stays wide enough to see; labels are thinned to about a dozen.
const MAX_BARS: usize = 120;

fn mark_name(m: Mark) -> &'static str {
    match m {
        Mark::Whole => "whole",
        Mark::Incomplete => "incomplete",
        Mark::Projection => "projection",
    }
}

fn row_json(row: &Row, report: &Report) -> Value {
    let cells: Vec<String> = row
        .cells
        .iter()
        .map(|c| {
            let s = c.display(report.lang);
            if row.mark == Mark::Incomplete && matches!(c, Cell::Number(_)) { format!("{s} *") } else { s }
        })
        .collect();
    json!({ "cells": cells, "mark": mark_name(row.mark) })
}

/// The data the template lays out.
fn data(report: &Report) -> Value {
    let lang = report.lang;
    let sections: Vec<Value> = report
        .sections
        .iter()
        .map(|s| {
            let chart = s.chart.as_ref().filter(|_| !s.rows.is_empty()).map(|c| {
                let group = s.rows.len().div_ceil(MAX_BARS).max(1);
                let bars: Vec<(String, f64, bool)> = s
                    .rows
                    .chunks(group)
                    .map(|rows| {
                        let label = rows[0]
                            .cells
                            .get(c.label_column)
                            .map(|x| short_label(x, report))
                            .unwrap_or_default();
                        let value: f64 = rows
                            .iter()
                            .filter_map(|r| r.cells.get(c.value_column).and_then(Cell::as_f64))
                            .sum();
                        (label, value, rows.iter().any(|r| r.mark == Mark::Incomplete))
                    })
                    .collect();
                let max = bars.iter().map(|b| b.1).fold(0.0_f64, f64::max);
                json!({
                    "title": c.title,
                    "max": max,
                    "max_label": lang.number(max, 2),
                    "every": bars.len().div_ceil(12).max(1),
                    "has_short": bars.iter().any(|b| b.2),
                    "bars": bars.iter().map(|(label, value, short)| json!({
                        "label": label, "value": value, "mark": if *short { "incomplete" } else { "whole" },
                    })).collect::<Vec<_>>(),
                })
            });
            json!({
                "title": s.title,
                "columns": s.columns.iter().map(|c| json!({
                    "title": c.title,
                    "right": !matches!(c.kind, ColumnKind::Text | ColumnKind::Date | ColumnKind::DateTime),
                })).collect::<Vec<_>>(),
                "rows": s.rows.iter().map(|r| row_json(r, report)).collect::<Vec<_>>(),
                "total": s.total.as_ref().map(|r| row_json(r, report)),
                "chart": chart,
            })
        })
        .collect();
    let period = format!("{} – {}", lang.date(report.from), lang.date(report.to));
    let (code, region) = match lang {
        crate::Lang::PtBr => ("pt", "BR"),
        crate::Lang::En => ("en", "US"),
    };
    json!({
        "title": report.title,
        "tenant": report.tenant,
        "period": period,
        "zone": report.zone,
        "lang": code,
        "region": region,
        "meta": [
            [lang.t(Text::Tenant), report.tenant],
            [lang.t(Text::Scope), report.scope],
            [lang.t(Text::Period), period],
            [lang.t(Text::Zone), report.zone],
            [lang.t(Text::Bucket), report.bucket_label],
            [lang.t(Text::Generated), report.generated_at.format("%Y-%m-%d %H:%M UTC").to_string()],
        ],
        "labels": {
            "notes": lang.t(Text::Notes),
            "incomplete": lang.t(Text::Incomplete),
        },
        "sections": sections,
        "notes": report.notes,
    })
}

/// A bar's label: dates without the year, hours as `dd hh`.
fn short_label(c: &Cell, report: &Report) -> String {
    match (c, report.lang) {
        (Cell::Date(d), crate::Lang::PtBr) => d.format("%d/%m").to_string(),
        (Cell::Date(d), crate::Lang::En) => d.format("%m-%d").to_string(),
        (Cell::DateTime(t), _) => t.format("%d %Hh").to_string(),
        (c, lang) => {
            let s = c.display(lang);
            if s.chars().count() > 14 { s.chars().take(13).chain(['…']).collect() } else { s }
        }
    }
}

/// The PDF's bytes.
pub fn render(report: &Report) -> Result<Vec<u8>, ReportError> {
    let data = serde_json::to_vec(&data(report)).map_err(|e| ReportError::render("PDF", e))?;
    world::compile(TEMPLATE, data, report.generated_at)
}
