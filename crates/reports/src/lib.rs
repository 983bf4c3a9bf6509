//! TDS reports (SPEC §6): consumption reports over the rollups and raw readings exports, and the
//! files they are delivered as.
//!
//! - [`query`]: consumption of a scope per hour, day, ISO week or (billing) month of the tenant's
//!   zone, with each bucket's readings received and expected;
//! - [`report`]: a whole [`Report`] from a [`ReportRequest`]: the buckets of each series, a
//!   summary (a device comparison when several devices are asked for), period-over-period
//!   comparisons and the month-end projection;
//! - renderers that all take a [`Report`]: [`pdf`] (typst, fonts embedded), [`xlsx`]
//!   (`rust_xlsxwriter`) and [`csv_out`] (RFC 4180 with the SPEC's options);
//! - [`export`]: raw readings streamed as CSV or XLSX in constant memory;
//! - [`definition`]: a saved report's spec (relative periods such as "the previous month") and the
//!   file formats; [`schedule`]: when a scheduled report runs.
//!
//! No HTTP here: the web and the CLI call these and deliver the bytes. Typst's long build stays
//! inside this crate.

pub mod csv_out;
pub mod definition;
pub mod export;
pub mod lang;
pub mod model;
pub mod pdf;
pub mod period;
pub mod query;
pub mod report;
pub mod rollup_table;
pub mod schedule;
pub mod xlsx;

pub use lang::Lang;
pub use model::{Cell, Column, ColumnKind, Mark, Report, Row, Section};
pub use period::{Compare, DayRange, ReportBucket};
pub use query::{ConsumptionQuery, Scope};
pub use report::{ReportRequest, build};

use tds_store::StoreError;

/// What can go wrong making a report or an export.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The request itself is wrong (a range too long, a gauge asked for consumption); the text
    /// says what.
    #[error("{0}")]
    Invalid(String),
    /// A gateway or device named in the request is not the tenant's.
    #[error("not found: {0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A renderer failed (a bug in our template or an I/O error writing the file).
    #[error("could not render the {format} file: {detail}")]
    Render { format: &'static str, detail: String },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl ReportError {
    /// A store's "not found" as a named one; other store errors unchanged.
    pub(crate) fn not_found(e: StoreError, what: String) -> Self {
        match e {
            StoreError::NotFound => Self::NotFound(what),
            e => Self::Store(e),
        }
    }

    pub(crate) fn render(format: &'static str, detail: impl std::fmt::Display) -> Self {
        Self::Render { format, detail: detail.to_string() }
    }
}
