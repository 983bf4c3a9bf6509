//! Integration tests of `tds-domain` through its public API: the adversarial meter corpus with
//! hand-computed rollups (data in `tests/corpus/meter_series.toml`), and properties of
//! consumption and rollups over generated series.

// Helpers and proptest strategies outside #[test] fns, which clippy's allow-*-in-tests settings
// do not see as tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod meter_corpus;
/// The schema of the corpus's data file, shared with the store's rollup tests.
#[path = "../corpus/meter_series.rs"]
#[allow(
    dead_code,
    reason = "each suite reads the fields it checks: this one has no use for a device's medium or unit"
)]
mod meter_series;
mod properties;

use chrono::{DateTime, Utc};

/// An RFC 3339 instant (any offset) as UTC.
pub fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}")).with_timezone(&Utc)
}

/// Sums are plain f64 (see `tds_domain::consumption`): equal within a relative 1e-9.
pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

pub fn close_opt(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => close(a, b),
        (None, None) => true,
        _ => false,
    }
}
