//! Adversarial meter series with their rollups worked out by hand, run through
//! `tds_domain::rollup::rollup`. The series and every expected number (a literal, with the
//! arithmetic in a comment) are in `tests/corpus/meter_series.toml`, which the store's rollup
//! tests read too.
//!
//! Every case is also checked with its readings in reverse arrival order (when no two share an
//! instant) and split at every bucket edge with the right baseline, which must change nothing.

use crate::meter_series::{Case, Expected, Reading, parse};
use crate::{close, close_opt, utc};
use tds_domain::consumption::{Meter, window};
use tds_domain::rollup::{Rollup, rollup};

fn cases() -> Vec<Case> {
    let cases = parse(include_str!("../corpus/meter_series.toml"));
    // Moving the corpus to a data file must not have lost a case.
    assert_eq!(cases.len(), 27, "cases in meter_series.toml");
    cases
}

fn run(case: &Case, baseline: Option<Reading>, readings: &[Reading]) -> Vec<Rollup> {
    let meter = Meter::new(case.kind, case.scale, case.rollover).unwrap();
    rollup(meter, baseline, readings, case.zone, case.bucket)
}

fn matches(got: &Rollup, want: &Expected) -> bool {
    got.start == want.start
        && close_opt(got.consumption, want.consumption)
        && close_opt(got.min, want.min)
        && close_opt(got.avg, want.avg)
        && close_opt(got.max, want.max)
        && (got.count, got.resets, got.rollovers, got.negatives)
            == (want.count, want.resets, want.rollovers, want.negatives)
}

#[test]
fn every_corpus_series_rolls_up_to_its_hand_computed_buckets() {
    for case in &cases() {
        let got = run(case, case.baseline, &case.readings);
        assert_eq!(got.len(), case.expected.len(), "{}: {got:#?}", case.name);
        for (g, want) in got.iter().zip(&case.expected) {
            assert!(matches(g, want), "{}:\n got {g:#?}\nwant {want:#?}", case.name);
        }
    }
}

/// The store keeps a baseline as a reading of its own (see `baseline_stored` in the data file):
/// the hand-computed rows for that are checked here too, against the whole series with no
/// baseline, and the store's tests then hold the store to them.
#[test]
fn with_the_baseline_stored_as_a_reading_the_buckets_are_the_baseline_stored_rows() {
    let cases = cases();
    for case in &cases {
        let want = case.expected_with_baseline_stored();
        let got = run(case, None, &case.arrivals());
        assert_eq!(got.len(), want.len(), "{}: {got:#?}", case.name);
        for (g, w) in got.iter().zip(&want) {
            assert!(matches(g, w), "{}:\n got {g:#?}\nwant {w:#?}", case.name);
        }
    }
    let with_baseline = cases.iter().filter(|c| c.baseline.is_some()).count();
    let with_rows = cases.iter().filter(|c| !c.baseline_stored.is_empty()).count();
    assert_eq!((with_baseline, with_rows), (9, 9), "every case with a baseline says how it is stored");
}

#[test]
fn corpus_results_do_not_depend_on_arrival_order() {
    for case in &cases() {
        let (baseline, readings) = (case.baseline, &case.readings);
        let mut instants: Vec<_> = readings.iter().map(|(t, _)| *t).collect();
        instants.sort();
        instants.dedup();
        if instants.len() < readings.len() {
            continue; // with repeated instants the first given wins, so order matters on purpose
        }
        let reversed: Vec<_> = readings.iter().rev().copied().collect();
        assert_eq!(run(case, baseline, &reversed), run(case, baseline, readings), "{}", case.name);
    }
}

#[test]
fn corpus_split_at_any_bucket_edge_with_the_right_baseline_gives_the_same_buckets() {
    for case in &cases() {
        let (baseline, readings) = (case.baseline, &case.readings);
        let whole = run(case, baseline, readings);
        let stored = window(baseline, readings);
        for edge in whole.iter().map(|r| r.start) {
            let before: Vec<_> = readings.iter().copied().filter(|(t, _)| *t < edge).collect();
            let after: Vec<_> = readings.iter().copied().filter(|(t, _)| *t >= edge).collect();
            let edge_baseline = stored.iter().copied().rfind(|(t, _)| *t < edge).or(baseline);
            let mut split = run(case, baseline, &before);
            split.extend(run(case, edge_baseline, &after));
            assert_eq!(split, whole, "{} split at {edge}", case.name);
        }
    }
}

#[test]
fn recomputing_the_buckets_a_late_batch_touches_matches_a_full_rollup() {
    let cases = cases();
    let case = cases.iter().find(|c| c.series.as_deref() == Some("late_batch")).unwrap();
    let all = &case.readings;
    let whole = run(case, None, all);
    // The late readings are 10:00..13:00; the first stored reading after them is 14:00, whose
    // interval they shortened. So the store recomputes 10:00..15:00 with the 09:00 baseline.
    let (from, to) = (utc("2026-08-20T10:00:00-03:00"), utc("2026-08-20T15:00:00-03:00"));
    let affected: Vec<_> = all.iter().copied().filter(|(t, _)| (from..to).contains(t)).collect();
    let recomputed = run(case, Some((utc("2026-08-20T09:00:00-03:00"), 1010.0)), &affected);
    let expected: Vec<_> = whole.iter().copied().filter(|r| (from..to).contains(&r.start)).collect();
    assert_eq!(recomputed.len(), 5);
    assert_eq!(recomputed, expected);
    assert_eq!(recomputed[4].consumption, Some(10.0), "14:00 no longer closes the whole outage");
}

#[test]
fn tolerance_helper_accepts_rounding_and_nothing_more() {
    assert!(close(0.1 + 0.2, 0.3));
    assert!(!close(0.3, 0.300_001));
    assert!(close_opt(None, None) && !close_opt(Some(0.0), None));
}
