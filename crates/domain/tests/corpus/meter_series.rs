//! The schema of `meter_series.toml` (described at its top) and its parser, shared by the
//! integration tests of tds-domain (`tests/it/meter_corpus.rs`) and of tds-store
//! (`tests/it/rollups.rs`), each of which includes this file with `#[path]` and the data file with
//! `include_str!`.
//!
//! Must not: compute anything. Every expected number stays a literal in the data file; this only
//! turns the text into typed cases, refusing unknown keys (a misspelt `consumtion` would
//! otherwise silently expect no consumption) and a case without readings.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::collections::BTreeMap;
use tds_domain::{Bucket, MeasurementKind, Medium, TimeZone, Unit};

/// An instant (written in RFC 3339 with any offset) and a raw value.
pub type Reading = (DateTime<Utc>, f64);

#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub zone: TimeZone,
    pub kind: MeasurementKind,
    pub medium: Medium,
    pub unit: Unit,
    pub scale: f64,
    pub rollover: Option<f64>,
    /// The last reading before the window.
    pub baseline: Option<Reading>,
    /// The shared series the readings come from, if they are not the case's own.
    pub series: Option<String>,
    /// In arrival order.
    pub readings: Vec<Reading>,
    pub bucket: Bucket,
    /// One per bucket that holds a reading, in time order.
    pub expected: Vec<Expected>,
    /// The rows of the buckets that hold the baseline (and readings given at or before it) when
    /// these are stored readings; see the data file.
    pub baseline_stored: Vec<Expected>,
}

impl Case {
    /// What a store receives: the baseline (a reading like any other there) first, then the
    /// readings in arrival order.
    pub fn arrivals(&self) -> Vec<Reading> {
        self.baseline.iter().chain(&self.readings).copied().collect()
    }

    /// The buckets once [`Case::arrivals`] are all stored readings: `expected` with the
    /// `baseline_stored` rows in place of those of the same start, or added, in time order.
    pub fn expected_with_baseline_stored(&self) -> Vec<Expected> {
        let mut rows: Vec<Expected> = self
            .expected
            .iter()
            .filter(|e| self.baseline_stored.iter().all(|b| b.start != e.start))
            .chain(&self.baseline_stored)
            .cloned()
            .collect();
        rows.sort_by_key(|e| e.start);
        rows
    }
}

/// One bucket's hand-computed values.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    /// The bucket's start, written as its local start with its UTC offset.
    pub start: DateTime<Utc>,
    pub count: u32,
    pub consumption: Option<f64>,
    pub min: Option<f64>,
    pub avg: Option<f64>,
    pub max: Option<f64>,
    #[serde(default)]
    pub resets: u32,
    #[serde(default)]
    pub rollovers: u32,
    #[serde(default)]
    pub negatives: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    series: BTreeMap<String, Series>,
    case: Vec<RawCase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Series {
    readings: Vec<Reading>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: String,
    zone: TimeZone,
    kind: MeasurementKind,
    medium: Medium,
    unit: Unit,
    scale: f64,
    rollover: Option<f64>,
    baseline: Option<Reading>,
    series: Option<String>,
    readings: Option<Vec<Reading>>,
    bucket: String,
    expected: Vec<Expected>,
    #[serde(default)]
    baseline_stored: Vec<Expected>,
}

/// The cases of the data file, in its order. Panics on anything malformed: it is test data.
pub fn parse(text: &str) -> Vec<Case> {
    let file: File = toml::from_str(text).unwrap_or_else(|e| panic!("meter_series.toml: {e}"));
    file.case
        .into_iter()
        .map(|c| {
            let readings = match (&c.series, c.readings) {
                (Some(name), None) => file
                    .series
                    .get(name)
                    .unwrap_or_else(|| panic!("{}: no series named {name}", c.name))
                    .readings
                    .clone(),
                (None, Some(own)) => own,
                _ => panic!("{}: give either `series` or `readings`", c.name),
            };
            assert!(!readings.is_empty(), "{}: no readings", c.name);
            let bucket = Bucket::from_name(&c.bucket)
                .unwrap_or_else(|| panic!("{}: bucket {:?} is not hour, day or month", c.name, c.bucket));
            Case {
                name: c.name,
                zone: c.zone,
                kind: c.kind,
                medium: c.medium,
                unit: c.unit,
                scale: c.scale,
                rollover: c.rollover,
                baseline: c.baseline,
                series: c.series,
                readings,
                bucket,
                expected: c.expected,
                baseline_stored: c.baseline_stored,
            }
        })
        .collect()
}
