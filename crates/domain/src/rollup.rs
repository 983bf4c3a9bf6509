//! Rollups (SPEC §1): one device's readings aggregated per hour, day or month of the tenant's
//! time zone.
//!
//! Owns: the values of a rollup row, computed from readings with the meter rules of
//! [`crate::consumption`] and the buckets of [`crate::buckets`]. Must not: do I/O. The store
//! decides which buckets to recompute, fetches their readings and the baseline, and keeps the
//! rows (see the contract on [`rollup`]).

use crate::buckets::{Bucket, bucket_start, next_bucket_start};
use crate::consumption::{self, ConsumptionEvent, ConsumptionKind, Meter, RawReading};
use crate::{MeasurementKind, TimeZone};
use chrono::{DateTime, Utc};

/// One bucket of one device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rollup {
    /// The UTC instant at which the bucket starts ([`bucket_start`]).
    pub start: DateTime<Utc>,
    /// Counters and interval devices: the sum of the consumption of the intervals closed by the
    /// bucket's readings (0 when none closes one, e.g. a counter's very first reading). `None`
    /// for gauges, which are never summed.
    pub consumption: Option<f64>,
    /// The smallest and largest scaled reading value in the bucket, for every kind: a gauge's
    /// range, a counter's register at its lowest and highest, an interval device's smallest and
    /// largest report (a negative one included, though it counts 0).
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Gauges only: the mean of the scaled values (an average register value means nothing).
    pub avg: Option<f64>,
    /// Gauges only: the sum of the scaled values as accumulated, in time order (`avg` is it
    /// divided by `count`): what [`resume`] adds later readings to, bit for bit.
    pub sum: Option<f64>,
    /// Readings in the bucket (after dropping repeated instants), for completeness.
    pub count: u32,
    /// Counter decreases taken as a reset or meter replacement ([`ConsumptionKind::Reset`]).
    pub resets: u32,
    /// Counter wraps at the rollover value ([`ConsumptionKind::Rollover`]).
    pub rollovers: u32,
    /// Negative interval values counted as 0 ([`ConsumptionKind::Negative`]).
    pub negatives: u32,
    /// The bucket's last reading, raw (unscaled): where [`resume`] goes on from.
    pub last: RawReading,
}

/// The rollups of `readings` per `bucket` of `tz`, in time order, one for each bucket that holds
/// at least one reading (a bucket without readings is absent: count 0, no consumption).
///
/// Readings may be in any order; see [`consumption::window`] for repeated instants and for
/// readings at or before the baseline, which are ignored.
///
/// Contract for recomputing, which is what the store does when new or late readings arrive: to
/// recompute a contiguous range of whole buckets `[first, end)`, pass every stored reading with
/// `first <= time < end` and, as `baseline`, the last stored reading before `first` (`None` when
/// there is none). Each returned rollup is then exactly, bit for bit, the one that a call over
/// the device's whole history would return for that bucket: a bucket's values depend only on
/// its own readings and on the one reading before its first. Because consumption belongs to the
/// reading that closes an interval, a late reading also changes the bucket of the next reading
/// after it (that reading now closes a shorter interval): the range to recompute runs from the
/// bucket of the earliest new reading through the bucket of the first stored reading after the
/// latest new one.
///
/// Sums and the average are plain `f64`, accumulated in time order.
pub fn rollup(
    meter: Meter,
    baseline: Option<RawReading>,
    readings: &[RawReading],
    tz: TimeZone,
    bucket: Bucket,
) -> Vec<Rollup> {
    roll(meter, baseline, None, readings, tz, bucket)
}

/// The rollups of readings that all come after `last`, the latest reading already rolled up,
/// going on from `open`, the rollup of `last`'s bucket as it stands (`None` when it is not
/// kept): the first returned rollup is `open` with the new readings of its bucket added, when
/// any fall in it; the others are new buckets.
///
/// This is how a device that reports in order is kept current without reading its bucket's
/// earlier readings again. Because values are accumulated in time order, the result is bit for
/// bit what [`rollup`] over the whole bucket gives (`open` must then be exactly that
/// function's output for the bucket's readings up to `last`, as stored). Readings at or before
/// `last` are ignored, as [`rollup`] ignores those at or before its baseline.
pub fn resume(
    meter: Meter,
    last: RawReading,
    open: Option<&Rollup>,
    readings: &[RawReading],
    tz: TimeZone,
    bucket: Bucket,
) -> Vec<Rollup> {
    roll(meter, Some(last), open, readings, tz, bucket)
}

fn roll(
    meter: Meter,
    baseline: Option<RawReading>,
    mut open_row: Option<&Rollup>,
    readings: &[RawReading],
    tz: TimeZone,
    bucket: Bucket,
) -> Vec<Rollup> {
    let window = consumption::window(baseline, readings);
    let events = consumption::events_of(meter, baseline, &window);
    let mut out = Vec::new();
    let mut open: Option<(DateTime<Utc>, Accumulator)> = None;
    for (&(at, raw), event) in window.iter().zip(&events) {
        if open.as_ref().is_none_or(|(end, _)| at >= *end) {
            out.extend(open.take().map(|(_, done)| done.finish(meter)));
            let start = bucket_start(tz, bucket, at);
            // Only the first bucket opened can be the one `open_row` holds.
            let acc = match open_row.take() {
                Some(row) if row.start == start => Accumulator::resume(row),
                _ => Accumulator::new(start),
            };
            open = Some((next_bucket_start(tz, bucket, at), acc));
        }
        if let Some((_, acc)) = &mut open {
            acc.add((at, raw), raw * meter.scale(), event.as_ref());
        }
    }
    out.extend(open.map(|(_, acc)| acc.finish(meter)));
    out
}

#[derive(Debug)]
struct Accumulator {
    start: DateTime<Utc>,
    count: u32,
    min: f64,
    max: f64,
    sum: f64,
    consumption: f64,
    resets: u32,
    rollovers: u32,
    negatives: u32,
    last: Option<RawReading>,
}

impl Accumulator {
    fn new(start: DateTime<Utc>) -> Self {
        Self {
            start,
            count: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            sum: 0.0,
            consumption: 0.0,
            resets: 0,
            rollovers: 0,
            negatives: 0,
            last: None,
        }
    }

    /// Goes on from a finished bucket: the same sums, so that adding more gives what adding
    /// them all from the start would.
    fn resume(row: &Rollup) -> Self {
        Self {
            start: row.start,
            count: row.count,
            min: row.min.unwrap_or(f64::INFINITY),
            max: row.max.unwrap_or(f64::NEG_INFINITY),
            sum: row.sum.unwrap_or(0.0),
            consumption: row.consumption.unwrap_or(0.0),
            resets: row.resets,
            rollovers: row.rollovers,
            negatives: row.negatives,
            last: Some(row.last),
        }
    }

    fn add(&mut self, reading: RawReading, value: f64, event: Option<&ConsumptionEvent>) {
        self.last = Some(reading);
        self.count = self.count.saturating_add(1);
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.sum += value;
        if let Some(e) = event {
            self.consumption += e.amount;
            let tally = match e.kind {
                ConsumptionKind::Normal => None,
                ConsumptionKind::Rollover => Some(&mut self.rollovers),
                ConsumptionKind::Reset => Some(&mut self.resets),
                ConsumptionKind::Negative => Some(&mut self.negatives),
            };
            if let Some(n) = tally {
                *n = n.saturating_add(1);
            }
        }
    }

    fn finish(self, meter: Meter) -> Rollup {
        let gauge = meter.kind() == MeasurementKind::Gauge;
        let some = self.count > 0;
        Rollup {
            start: self.start,
            consumption: (!gauge).then_some(self.consumption),
            min: some.then_some(self.min),
            max: some.then_some(self.max),
            avg: (gauge && some).then(|| self.sum / f64::from(self.count)),
            sum: gauge.then_some(self.sum),
            count: self.count,
            resets: self.resets,
            rollovers: self.rollovers,
            negatives: self.negatives,
            // Every finished bucket has had a reading added (buckets open on one).
            last: self.last.unwrap_or((self.start, f64::NAN)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn at(minutes: i64) -> DateTime<Utc> {
        // 2026-01-01T00:00:00Z
        DateTime::from_timestamp(1_767_225_600, 0).unwrap() + TimeDelta::minutes(minutes)
    }

    fn utc_zone() -> TimeZone {
        TimeZone::parse("UTC").unwrap()
    }

    #[test]
    fn counter_rollups_sum_the_intervals_their_readings_close() {
        let m = Meter::new(MeasurementKind::Counter, 1.0, None).unwrap();
        let readings = [(at(50), 10.0), (at(70), 14.0), (at(110), 20.0), (at(130), 3.0)];
        let got = rollup(m, Some((at(0), 8.0)), &readings, utc_zone(), Bucket::Hour);
        assert_eq!(
            got,
            [
                Rollup {
                    start: at(0),
                    consumption: Some(2.0),
                    min: Some(10.0),
                    max: Some(10.0),
                    avg: None,
                    sum: None,
                    count: 1,
                    resets: 0,
                    rollovers: 0,
                    negatives: 0,
                    last: (at(50), 10.0)
                },
                Rollup {
                    start: at(60),
                    consumption: Some(10.0),
                    min: Some(14.0),
                    max: Some(20.0),
                    avg: None,
                    sum: None,
                    count: 2,
                    resets: 0,
                    rollovers: 0,
                    negatives: 0,
                    last: (at(110), 20.0)
                },
                Rollup {
                    start: at(120),
                    consumption: Some(0.0),
                    min: Some(3.0),
                    max: Some(3.0),
                    avg: None,
                    sum: None,
                    count: 1,
                    resets: 1,
                    rollovers: 0,
                    negatives: 0,
                    last: (at(130), 3.0)
                },
            ]
        );
    }

    #[test]
    fn gauge_rollups_have_min_avg_max_and_no_consumption() {
        let m = Meter::new(MeasurementKind::Gauge, 0.5, None).unwrap();
        let got = rollup(m, None, &[(at(10), 40.0), (at(20), 44.0), (at(30), 36.0)], utc_zone(), Bucket::Day);
        assert_eq!(got.len(), 1);
        let r = got[0];
        assert_eq!(
            (r.consumption, r.min, r.avg, r.max, r.count),
            (None, Some(18.0), Some(20.0), Some(22.0), 3)
        );
    }

    #[test]
    fn no_readings_no_rollups() {
        let m = Meter::new(MeasurementKind::Counter, 1.0, None).unwrap();
        assert_eq!(rollup(m, Some((at(0), 1.0)), &[], utc_zone(), Bucket::Hour), []);
    }
}
