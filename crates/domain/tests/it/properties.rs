//! Properties of consumption and rollups over generated series, in zones and at dates where the
//! local calendar is irregular (daylight-saving changes, month ends, a half-hour offset).

use crate::utc;
use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use std::collections::BTreeMap;
use tds_domain::consumption::{Meter, consumption, window};
use tds_domain::rollup::{resume, rollup};
use tds_domain::{Bucket, MeasurementKind, TimeZone};

const ZONES: &[&str] = &["America/Sao_Paulo", "America/New_York", "Asia/Kolkata", "UTC"];

/// Series start a day or two before a daylight-saving change or a month end.
const STARTS: &[&str] = &[
    "2018-11-03T00:00:00Z",
    "2019-02-15T00:00:00Z",
    "2026-03-07T00:00:00Z",
    "2026-10-31T00:00:00Z",
    "2026-01-30T00:00:00Z",
];

/// Up to 40 days of minutes after the start.
const SPAN_MINUTES: i64 = 40 * 24 * 60;

#[derive(Debug, Clone)]
struct Series {
    zone: TimeZone,
    bucket: Bucket,
    meter: Meter,
    baseline: Option<(DateTime<Utc>, f64)>,
    /// One per instant, in time order.
    readings: Vec<(DateTime<Utc>, f64)>,
}

fn at(start: &str, minutes: i64) -> DateTime<Utc> {
    utc(start) + TimeDelta::minutes(minutes)
}

fn meter() -> impl Strategy<Value = Meter> {
    (
        prop::sample::select(
            &[MeasurementKind::Counter, MeasurementKind::Interval, MeasurementKind::Gauge][..],
        ),
        prop::sample::select(&[1.0, 0.001, 0.01, 0.5, 2.5][..]),
        prop::option::of(prop::sample::select(&[1000.0, 10_000.0, 100_000.0][..])),
    )
        .prop_map(|(kind, scale, rollover)| Meter::new(kind, scale, rollover).unwrap())
}

/// Any values: rises, falls, negatives, wraps.
fn series(meter: impl Strategy<Value = Meter>) -> impl Strategy<Value = Series> {
    (
        0..ZONES.len(),
        prop::sample::select(Bucket::ALL),
        meter,
        0..STARTS.len(),
        prop::option::of(-100.0..100_000.0_f64),
        prop::collection::btree_map(0..SPAN_MINUTES, -100.0..100_000.0_f64, 0..60),
    )
        .prop_map(|(z, bucket, meter, s, baseline, readings): (_, _, _, _, _, BTreeMap<i64, f64>)| {
            Series {
                zone: TimeZone::parse(ZONES[z]).unwrap(),
                bucket,
                meter,
                baseline: baseline.map(|v| (at(STARTS[s], -1), v)),
                readings: readings.into_iter().map(|(m, v)| (at(STARTS[s], m), v)).collect(),
            }
        })
}

/// A counter that only goes up (no reset, no wrap).
fn monotone_counter() -> impl Strategy<Value = Series> {
    (
        0..ZONES.len(),
        prop::sample::select(Bucket::ALL),
        prop::sample::select(&[1.0, 0.001, 0.5][..]),
        0..STARTS.len(),
        any::<bool>(),
        0.0..1_000_000.0_f64,
        prop::collection::btree_map(0..SPAN_MINUTES, 0.0..50.0_f64, 1..60),
    )
        .prop_map(
            |(z, bucket, scale, s, with_baseline, first, steps): (_, _, _, _, _, _, BTreeMap<i64, f64>)| {
                let mut value = first;
                let mut readings = Vec::new();
                for (m, step) in steps {
                    value += step;
                    readings.push((at(STARTS[s], m), value));
                }
                Series {
                    zone: TimeZone::parse(ZONES[z]).unwrap(),
                    bucket,
                    meter: Meter::new(MeasurementKind::Counter, scale, None).unwrap(),
                    baseline: with_baseline.then(|| (at(STARTS[s], -1), first)),
                    readings,
                }
            },
        )
}

proptest! {
    #[test]
    fn consumption_is_never_negative(s in series(meter())) {
        for e in consumption(s.meter, s.baseline, &s.readings).unwrap_or_default() {
            prop_assert!(e.amount >= 0.0 && e.amount.is_sign_positive(), "{e:?}");
        }
        for r in rollup(s.meter, s.baseline, &s.readings, s.zone, s.bucket) {
            if let Some(c) = r.consumption {
                prop_assert!(c >= 0.0 && c.is_sign_positive(), "{r:?}");
            }
        }
    }

    #[test]
    fn monotone_counter_total_over_any_buckets_is_last_minus_first(s in monotone_counter()) {
        let rollups = rollup(s.meter, s.baseline, &s.readings, s.zone, s.bucket);
        let total: f64 = rollups.iter().filter_map(|r| r.consumption).sum();
        let first = s.baseline.or(s.readings.first().copied()).unwrap().1;
        let last = s.readings.last().unwrap().1;
        let want = (last - first) * s.meter.scale();
        // Each delta is rounded on its own; allow for the magnitude of the register values.
        prop_assert!((total - want).abs() <= 1e-9 * last.max(1.0) * s.readings.len() as f64, "{total} vs {want}");
        prop_assert!(rollups.iter().all(|r| r.resets == 0 && r.rollovers == 0));
        prop_assert_eq!(rollups.iter().map(|r| r.count).sum::<u32>() as usize, s.readings.len());
    }

    #[test]
    fn arrival_order_does_not_change_the_result(
        (s, shuffled) in series(meter()).prop_flat_map(|s| {
            let readings = s.readings.clone();
            (Just(s), Just(readings).prop_shuffle())
        })
    ) {
        prop_assert_eq!(
            rollup(s.meter, s.baseline, &shuffled, s.zone, s.bucket),
            rollup(s.meter, s.baseline, &s.readings, s.zone, s.bucket)
        );
        prop_assert_eq!(consumption(s.meter, s.baseline, &shuffled), consumption(s.meter, s.baseline, &s.readings));
    }

    #[test]
    fn splitting_at_bucket_edges_with_the_right_baseline_gives_the_same_buckets(
        s in series(meter()),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 1..4),
    ) {
        let whole = rollup(s.meter, s.baseline, &s.readings, s.zone, s.bucket);
        prop_assume!(!whole.is_empty());
        let mut edges: Vec<_> = cuts.iter().map(|i| whole[i.index(whole.len())].start).collect();
        edges.sort();
        edges.dedup();
        let stored = window(s.baseline, &s.readings);
        let mut split = Vec::new();
        let mut from = None;
        for to in edges.iter().copied().map(Some).chain([None]) {
            let part: Vec<_> = s
                .readings
                .iter()
                .copied()
                .filter(|(t, _)| from.is_none_or(|f| *t >= f) && to.is_none_or(|e| *t < e))
                .collect();
            let baseline = from.and_then(|f| stored.iter().copied().rfind(|(t, _)| *t < f)).or(s.baseline);
            split.extend(rollup(s.meter, baseline, &part, s.zone, s.bucket));
            from = to;
        }
        prop_assert_eq!(split, whole);
    }

    /// What the store does for a device reporting in order: each refresh goes on from the last
    /// bucket as stored, with only the new readings, and must land on exactly the buckets a
    /// recomputation from all the readings gives (sums accumulated in the same order).
    #[test]
    fn resuming_from_the_last_bucket_with_only_new_readings_gives_the_same_buckets(
        s in series(meter()),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 1..5),
    ) {
        let whole = rollup(s.meter, s.baseline, &s.readings, s.zone, s.bucket);
        let stored = window(s.baseline, &s.readings);
        prop_assume!(!stored.is_empty());
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(stored.len())).collect();
        at.sort_unstable();
        at.dedup();
        let mut rows: Vec<tds_domain::rollup::Rollup> = Vec::new();
        let mut from = 0;
        for to in at.into_iter().chain([stored.len()]) {
            let part = &stored[from..to];
            from = to;
            match rows.last().copied() {
                None => rows = rollup(s.meter, s.baseline, part, s.zone, s.bucket),
                Some(open) => {
                    let mut more = resume(s.meter, open.last, Some(&open), part, s.zone, s.bucket).into_iter();
                    let first = more.next();
                    match first {
                        Some(r) if r.start == open.start => *rows.last_mut().unwrap() = r,
                        Some(r) => rows.push(r),
                        None => {}
                    }
                    rows.extend(more);
                }
            }
        }
        prop_assert_eq!(rows, whole);
    }

    #[test]
    fn every_reading_is_counted_once_in_the_bucket_containing_it(s in series(meter())) {
        let rollups = rollup(s.meter, s.baseline, &s.readings, s.zone, s.bucket);
        let stored = window(s.baseline, &s.readings);
        prop_assert_eq!(rollups.iter().map(|r| r.count as usize).sum::<usize>(), stored.len());
        for pair in rollups.windows(2) {
            prop_assert!(pair[0].start < pair[1].start);
        }
        for (t, _) in stored {
            let start = tds_domain::buckets::bucket_start(s.zone, s.bucket, t);
            prop_assert!(rollups.iter().any(|r| r.start == start), "no bucket for {t}");
        }
        let is_gauge = s.meter.kind() == MeasurementKind::Gauge;
        prop_assert!(rollups.iter().all(|r| r.consumption.is_none() == is_gauge && r.avg.is_some() == is_gauge));
    }
}
