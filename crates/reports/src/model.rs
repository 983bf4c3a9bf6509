//! The [`Report`] value every renderer takes: a title, the tenant, the scope, the period and the
//! zone, and sections of typed rows (dates are dates and numbers are numbers until a renderer
//! formats them), each row marked when its bucket is incomplete or its figure a projection.
//!
//! Owns: the shape of a finished report. Must not: query (see [`crate::query`]) or format for a
//! file type (see the renderers).

use crate::lang::Lang;
use crate::period::ReportBucket;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

/// A finished report, ready for any renderer.
#[derive(Debug, Clone)]
pub struct Report {
    pub title: String,
    pub tenant: String,
    /// The scope in words: `gateway aa:bb:…`, `whole tenant`, `devices D01, D02`.
    pub scope: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// The IANA name of the zone the days and buckets are in.
    pub zone: String,
    pub bucket: ReportBucket,
    /// The bucket in words (`dia`, `billing month from day 15`).
    pub bucket_label: String,
    pub lang: Lang,
    pub generated_at: DateTime<Utc>,
    pub sections: Vec<Section>,
    /// Notes for the whole report (completeness, projection, how a change is computed).
    pub notes: Vec<String>,
}

impl Report {
    /// Rows marked incomplete across all sections.
    pub fn incomplete_rows(&self) -> usize {
        self.sections.iter().flat_map(|s| &s.rows).filter(|r| r.mark == Mark::Incomplete).count()
    }
}

/// A table of the report: one sheet of the workbook, one table (and chart) of the PDF.
#[derive(Debug, Clone)]
pub struct Section {
    pub title: String,
    /// A short name (a sheet's name: at most 31 characters, unique in the report).
    pub name: String,
    pub columns: Vec<Column>,
    pub rows: Vec<Row>,
    /// Draw the `value` column against the `label` column as bars.
    pub chart: Option<Chart>,
    /// A total line under the table (the series' total), already in the section's columns.
    pub total: Option<Row>,
    /// Set on the bucket table of one series: whose buckets these are (the CSV's key columns).
    pub series: Option<SeriesInfo>,
}

/// Whose buckets a section holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesInfo {
    pub gateway: Option<String>,
    pub device: Option<String>,
    pub label: String,
    pub medium: String,
    pub unit: String,
}

#[derive(Debug, Clone)]
pub struct Column {
    pub title: String,
    pub kind: ColumnKind,
}

impl Column {
    pub fn new(title: impl Into<String>, kind: ColumnKind) -> Self {
        Self { title: title.into(), kind }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    Text,
    Date,
    DateTime,
    /// A quantity (consumption), shown with two decimals.
    Number,
    /// A whole count (readings).
    Count,
    /// A share, 0..1, shown as a percentage.
    Percent,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Empty,
    Text(String),
    Date(NaiveDate),
    DateTime(NaiveDateTime),
    Number(f64),
    Count(u32),
    Percent(f64),
}

impl Cell {
    pub fn number(v: Option<f64>) -> Self {
        v.map_or(Self::Empty, Self::Number)
    }

    pub fn percent(v: Option<f64>) -> Self {
        v.map_or(Self::Empty, Self::Percent)
    }

    /// The cell as a person reads it, in `lang`.
    pub fn display(&self, lang: Lang) -> String {
        match self {
            Self::Empty => String::new(),
            Self::Text(s) => s.clone(),
            Self::Date(d) => lang.date(*d),
            Self::DateTime(t) => lang.datetime(*t),
            Self::Number(v) => lang.number(*v, 2),
            Self::Count(n) => lang.number(f64::from(*n), 0),
            Self::Percent(p) => lang.percent(*p),
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Number(v) | Self::Percent(v) => Some(*v),
            Self::Count(n) => Some(f64::from(*n)),
            _ => None,
        }
    }
}

/// How a row is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mark {
    #[default]
    Whole,
    /// Fewer readings than expected: never presented as whole (SPEC §6).
    Incomplete,
    /// A projected figure, not a measured one.
    Projection,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub cells: Vec<Cell>,
    pub mark: Mark,
}

/// Bars of one column against another.
#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub label_column: usize,
    pub value_column: usize,
}
