//! Meter semantics (SPEC §1, measurement kind): turning one device's readings into consumption.
//!
//! Owns: a device's metering settings ([`Meter`]: kind, scale factor, rollover value) and the
//! consumption of each interval between two successive readings ([`ConsumptionEvent`]), with
//! counter rollovers, resets and negative interval values named so that the UI can show them.
//! Must not: do I/O, or decide buckets (see [`crate::buckets`] and [`crate::rollup`]).
//!
//! Rules:
//! - Readings may come in any order and with several at one instant: they are put in time order
//!   and, at one instant, the first given wins (as the store's primary key does). Non-finite
//!   values are not readings (the telemetry parser refuses them) and are skipped.
//! - The scale factor multiplies every raw value. Counter comparisons and the rollover are in raw
//!   register units, since it is the register that wraps; the amounts are scaled.
//! - **Attribution**: the consumption of an interval belongs to the reading that *closes* it
//!   (`at`), and so to the bucket containing that instant. A reading at 10:00 that closes
//!   09:00–10:00 counts in the 10:00 hour. This needs nothing but the two readings and holds the
//!   same way for counters and interval devices; splitting an interval across buckets pro rata
//!   would invent a consumption profile the meter never measured.
//! - Counter: the consumption of the interval closed by a reading is `cur - prev` when
//!   `cur >= prev`. A decrease is a rollover when a rollover value `R` is configured and
//!   `0 <= cur < prev <= R` and the wrapped delta `(R - prev) + cur` is less than `R / 2`: a
//!   register that ran through more than half its range between two readings is far less likely
//!   than a meter that was replaced or reset. Any other decrease is a reset: its interval counts
//!   0 (consumption is never invented) and the decreased reading is the new baseline.
//! - The first reading has no predecessor and closes no interval: pass the last reading before a
//!   window as its *baseline* so that the interval across the window's edge is counted.
//! - Interval device: each reading's scaled value is the consumption since the previous reading.
//!   A negative value cannot be consumption: it counts as 0 and is flagged
//!   ([`ConsumptionKind::Negative`]) rather than refused, since the reading itself is stored.
//! - Gauge: no consumption at all (`None`); rollups give min/avg/max instead.
//! - Amounts are plain `f64`: `(cur - prev) * scale` per interval, summed by the caller in time
//!   order. Sums of the same intervals grouped differently (an hour at a time vs a day at a
//!   time) may differ in the last bits; compare with a tolerance.

use crate::{MeasurementKind, ValidationError};
use chrono::{DateTime, Utc};

/// A stored reading as consumption math sees it: its instant and its raw (unscaled) value.
pub type RawReading = (DateTime<Utc>, f64);

/// The metering settings of a device, checked together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Meter {
    kind: MeasurementKind,
    scale: f64,
    rollover: Option<f64>,
}

impl Meter {
    /// `scale` must be finite and not zero, and more than zero for counters and interval devices
    /// (a negative factor would turn all their consumption negative). `rollover` is the raw
    /// register value at which a counter wraps to zero, e.g. 100 000 for a five-digit register
    /// showing 00000–99999; it must be finite and more than zero, and is ignored (dropped) for
    /// the other kinds.
    pub fn new(kind: MeasurementKind, scale: f64, rollover: Option<f64>) -> Result<Self, ValidationError> {
        let invalid =
            |field, value: f64, reason| ValidationError::Meter { field, value: value.to_string(), reason };
        if !scale.is_finite() || scale == 0.0 {
            return Err(invalid("scale factor", scale, "must be a finite number other than 0"));
        }
        if scale < 0.0 && kind != MeasurementKind::Gauge {
            return Err(invalid(
                "scale factor",
                scale,
                "must be more than 0 for a counter or an interval device",
            ));
        }
        let rollover = match (kind, rollover) {
            (MeasurementKind::Counter, Some(r)) if !r.is_finite() || r <= 0.0 => {
                return Err(invalid(
                    "rollover value",
                    r,
                    "must be more than 0: the value at which the register wraps to 0",
                ));
            }
            (MeasurementKind::Counter, r) => r,
            _ => None,
        };
        Ok(Self { kind, scale, rollover })
    }

    pub const fn kind(self) -> MeasurementKind {
        self.kind
    }

    pub const fn scale(self) -> f64 {
        self.scale
    }

    /// The counter's wrap value in raw units; always `None` for the other kinds.
    pub const fn rollover(self) -> Option<f64> {
        self.rollover
    }
}

/// What happened in the interval a reading closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsumptionKind {
    /// Counter went up (or stayed), or an interval device reported a value of 0 or more.
    Normal,
    /// Counter wrapped past its rollover value; the amount includes the wrap.
    Rollover,
    /// Counter went down without a plausible rollover (reset or meter replacement): amount 0,
    /// and the reading is the new baseline.
    Reset,
    /// Interval device reported a negative value: amount 0.
    Negative,
}

impl ConsumptionKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            ConsumptionKind::Normal => "normal",
            ConsumptionKind::Rollover => "rollover",
            ConsumptionKind::Reset => "reset",
            ConsumptionKind::Negative => "negative",
        }
    }
}

/// The consumption of one interval between readings, attributed to the reading that closes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConsumptionEvent {
    /// The previous reading's instant; `None` only for an interval device's first reading with no
    /// baseline (its value is still consumption, but since when is unknown).
    pub from: Option<DateTime<Utc>>,
    /// The instant of the reading that closes the interval: it decides the bucket.
    pub at: DateTime<Utc>,
    /// Scaled, never negative.
    pub amount: f64,
    pub kind: ConsumptionKind,
}

/// The readings of a window as the math uses them: in time order, one per instant (the first
/// given wins), non-finite values skipped, and only those after the baseline's instant, since
/// the baseline stands for everything up to it.
pub fn window(baseline: Option<RawReading>, readings: &[RawReading]) -> Vec<RawReading> {
    let after = baseline.filter(|(_, v)| v.is_finite()).map(|(t, _)| t);
    let mut out: Vec<RawReading> =
        readings.iter().copied().filter(|(t, v)| v.is_finite() && after.is_none_or(|b| *t > b)).collect();
    // Stable, so that of several readings at one instant the first given stays first.
    out.sort_by_key(|(t, _)| *t);
    out.dedup_by_key(|(t, _)| *t);
    out
}

/// The consumption events of a device's readings, in time order, one per reading that closes an
/// interval: for a counter every reading that has a predecessor (the baseline or an earlier
/// reading), for an interval device every reading. `None` for a gauge, which has no consumption.
pub fn consumption(
    meter: Meter,
    baseline: Option<RawReading>,
    readings: &[RawReading],
) -> Option<Vec<ConsumptionEvent>> {
    if meter.kind == MeasurementKind::Gauge {
        return None;
    }
    Some(events_of(meter, baseline, &window(baseline, readings)).into_iter().flatten().collect())
}

/// One entry per reading of an already prepared [`window`]: the event it closes, if any.
pub(crate) fn events_of(
    meter: Meter,
    baseline: Option<RawReading>,
    window: &[RawReading],
) -> Vec<Option<ConsumptionEvent>> {
    let mut prev = baseline.filter(|(_, v)| v.is_finite());
    window
        .iter()
        .map(|&(at, cur)| {
            let from = prev.map(|(t, _)| t);
            let step = match meter.kind {
                MeasurementKind::Gauge => None,
                MeasurementKind::Interval => Some(interval_step(meter.scale, cur)),
                MeasurementKind::Counter => prev.map(|(_, p)| counter_step(meter, p, cur)),
            };
            prev = Some((at, cur));
            step.map(|(amount, kind)| ConsumptionEvent { from, at, amount, kind })
        })
        .collect()
}

fn interval_step(scale: f64, raw: f64) -> (f64, ConsumptionKind) {
    if raw < 0.0 {
        (0.0, ConsumptionKind::Negative)
    } else if raw == 0.0 {
        // Also catches -0.0, which must not show as "-0".
        (0.0, ConsumptionKind::Normal)
    } else {
        (raw * scale, ConsumptionKind::Normal)
    }
}

fn counter_step(meter: Meter, prev: f64, cur: f64) -> (f64, ConsumptionKind) {
    if cur >= prev {
        return ((cur - prev) * meter.scale, ConsumptionKind::Normal);
    }
    match meter.rollover {
        Some(r) if 0.0 <= cur && prev <= r && (r - prev) + cur < r / 2.0 => {
            (((r - prev) + cur) * meter.scale, ConsumptionKind::Rollover)
        }
        _ => (0.0, ConsumptionKind::Reset),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600, 0).unwrap() + TimeDelta::minutes(minutes)
    }

    fn counter(rollover: Option<f64>) -> Meter {
        Meter::new(MeasurementKind::Counter, 1.0, rollover).unwrap()
    }

    fn kinds_and_amounts(events: &[ConsumptionEvent]) -> Vec<(ConsumptionKind, f64)> {
        events.iter().map(|e| (e.kind, e.amount)).collect()
    }

    #[test]
    fn meter_settings_are_checked() {
        let err = Meter::new(MeasurementKind::Counter, -1.0, None).unwrap_err().to_string();
        assert!(err.contains("scale factor") && err.contains("more than 0"), "{err}");
        assert!(Meter::new(MeasurementKind::Interval, 0.0, None).is_err());
        assert!(Meter::new(MeasurementKind::Counter, f64::NAN, None).is_err());
        let err = Meter::new(MeasurementKind::Counter, 1.0, Some(0.0)).unwrap_err().to_string();
        assert!(err.contains("rollover value"), "{err}");
        // A gauge may flip a sign, and has no use for a rollover.
        let gauge = Meter::new(MeasurementKind::Gauge, -0.5, Some(0.0)).unwrap();
        assert_eq!((gauge.scale(), gauge.rollover()), (-0.5, None));
        assert_eq!(counter(Some(100_000.0)).rollover(), Some(100_000.0));
    }

    #[test]
    fn counter_events_name_their_interval_and_kind() {
        let readings = [(at(0), 10.0), (at(10), 15.0), (at(20), 15.0), (at(30), 2.0), (at(40), 6.0)];
        let events = consumption(counter(None), None, &readings).unwrap();
        assert_eq!(
            events,
            [
                ConsumptionEvent {
                    from: Some(at(0)),
                    at: at(10),
                    amount: 5.0,
                    kind: ConsumptionKind::Normal
                },
                ConsumptionEvent {
                    from: Some(at(10)),
                    at: at(20),
                    amount: 0.0,
                    kind: ConsumptionKind::Normal
                },
                ConsumptionEvent {
                    from: Some(at(20)),
                    at: at(30),
                    amount: 0.0,
                    kind: ConsumptionKind::Reset
                },
                ConsumptionEvent {
                    from: Some(at(30)),
                    at: at(40),
                    amount: 4.0,
                    kind: ConsumptionKind::Normal
                },
            ]
        );
    }

    #[test]
    fn baseline_closes_the_first_interval_of_a_window() {
        let events = consumption(counter(None), Some((at(0), 7.0)), &[(at(10), 9.5)]).unwrap();
        assert_eq!(
            events,
            [ConsumptionEvent { from: Some(at(0)), at: at(10), amount: 2.5, kind: ConsumptionKind::Normal }]
        );
        assert_eq!(consumption(counter(None), None, &[(at(10), 9.5)]).unwrap(), []);
    }

    #[test]
    fn readings_at_or_before_the_baseline_are_not_in_the_window() {
        let readings = [(at(5), 1.0), (at(10), 1000.0), (at(20), 12.0)];
        assert_eq!(window(Some((at(10), 10.0)), &readings), [(at(20), 12.0)]);
        let events = consumption(counter(None), Some((at(10), 10.0)), &readings).unwrap();
        assert_eq!(kinds_and_amounts(&events), [(ConsumptionKind::Normal, 2.0)]);
    }

    #[test]
    fn window_sorts_keeps_the_first_reading_of_an_instant_and_skips_non_finite_values() {
        let readings = [
            (at(20), 3.0),
            (at(10), 1.0),
            (at(20), 99.0),
            (at(30), f64::NAN),
            (at(0), f64::INFINITY),
            (at(10), 1.0),
        ];
        assert_eq!(window(None, &readings), [(at(10), 1.0), (at(20), 3.0)]);
    }

    #[test]
    fn rollover_counts_the_wrap_when_it_is_plausible() {
        let m = counter(Some(100_000.0));
        let events = consumption(m, None, &[(at(0), 99_999.0), (at(10), 12.0)]).unwrap();
        assert_eq!(kinds_and_amounts(&events), [(ConsumptionKind::Rollover, 13.0)]);
        // Wrapped delta of exactly half the range is no longer plausible.
        let events = consumption(m, None, &[(at(0), 50_000.0), (at(10), 0.0)]).unwrap();
        assert_eq!(kinds_and_amounts(&events), [(ConsumptionKind::Reset, 0.0)]);
        let events = consumption(m, None, &[(at(0), 50_001.0), (at(10), 0.0)]).unwrap();
        assert_eq!(kinds_and_amounts(&events), [(ConsumptionKind::Rollover, 49_999.0)]);
        // A previous value above the register's range cannot have wrapped at it.
        let events = consumption(m, None, &[(at(0), 100_001.0), (at(10), 5.0)]).unwrap();
        assert_eq!(kinds_and_amounts(&events), [(ConsumptionKind::Reset, 0.0)]);
        // Nor can a register wrap to a negative value.
        let events = consumption(m, None, &[(at(0), 99_990.0), (at(10), -1.0)]).unwrap();
        assert_eq!(kinds_and_amounts(&events), [(ConsumptionKind::Reset, 0.0)]);
        // Exactly at the wrap value (the register never shows it, but a scaled export might).
        let events = consumption(m, None, &[(at(0), 100_000.0), (at(10), 3.0)]).unwrap();
        assert_eq!(kinds_and_amounts(&events), [(ConsumptionKind::Rollover, 3.0)]);
    }

    #[test]
    fn scale_applies_to_counter_deltas_and_rollovers() {
        let m = Meter::new(MeasurementKind::Counter, 0.5, Some(1000.0)).unwrap();
        let events = consumption(m, None, &[(at(0), 990.0), (at(10), 996.0), (at(20), 4.0)]).unwrap();
        assert_eq!(
            kinds_and_amounts(&events),
            [(ConsumptionKind::Normal, 3.0), (ConsumptionKind::Rollover, 4.0)]
        );
    }

    #[test]
    fn interval_values_are_consumption_and_negative_ones_count_zero() {
        let m = Meter::new(MeasurementKind::Interval, 2.0, Some(5.0)).unwrap();
        assert_eq!(m.rollover(), None);
        let readings = [(at(10), 1.5), (at(0), 0.25), (at(20), -3.0), (at(30), -0.0)];
        let events = consumption(m, None, &readings).unwrap();
        assert_eq!(
            events,
            [
                ConsumptionEvent { from: None, at: at(0), amount: 0.5, kind: ConsumptionKind::Normal },
                ConsumptionEvent {
                    from: Some(at(0)),
                    at: at(10),
                    amount: 3.0,
                    kind: ConsumptionKind::Normal
                },
                ConsumptionEvent {
                    from: Some(at(10)),
                    at: at(20),
                    amount: 0.0,
                    kind: ConsumptionKind::Negative
                },
                ConsumptionEvent {
                    from: Some(at(20)),
                    at: at(30),
                    amount: 0.0,
                    kind: ConsumptionKind::Normal
                },
            ]
        );
        assert!(events[3].amount.is_sign_positive());
    }

    #[test]
    fn gauges_have_no_consumption() {
        let m = Meter::new(MeasurementKind::Gauge, 1.0, None).unwrap();
        assert_eq!(consumption(m, Some((at(0), 1.0)), &[(at(10), 5.0)]), None);
    }

    #[test]
    fn consumption_kinds_have_stable_names() {
        let names: Vec<_> = [
            ConsumptionKind::Normal,
            ConsumptionKind::Rollover,
            ConsumptionKind::Reset,
            ConsumptionKind::Negative,
        ]
        .iter()
        .map(|k| k.as_str())
        .collect();
        assert_eq!(names, ["normal", "rollover", "reset", "negative"]);
    }
}
