//! Evaluating the rules on values that arrive with readings and messages: daily and monthly
//! consumption, a gauge's band and the dead-letter rate.
//!
//! Owns: turning each kind's observed inputs into a [`Decision`] with the state machine of
//! [`super::decision`]. The caller fetches the inputs (rollups, samples, dead-letter times) and
//! applies the decision to the store. Must not: read a clock or the store. Where a hold time needs
//! to know how long a value has been past the threshold, that is worked out from the samples or
//! event times passed in, never from state kept elsewhere, so the same inputs always decide the
//! same.

use super::decision::{AlertState, Bound, Damping, Decision, Detail, Facts, Side, Zone, decide, unknown};
use super::params::{ConsumptionLimit, DeadLetterRate, GaugeBand};
use chrono::{DateTime, TimeDelta, Utc};

/// A daily or monthly consumption rule, given the device's consumption in the tenant's current
/// day or month so far (from its rollup). When the day or month turns, the caller passes the new
/// period's consumption, which starts again near 0 and so clears the alert.
pub fn consumption(
    limit: &ConsumptionLimit,
    damping: Damping,
    state: AlertState,
    consumption: f64,
) -> Decision {
    let bound = Bound::Upper(limit.threshold());
    // No hold time for consumption (see `Rule::new`): the zone is all that counts.
    decide(state, bound.zone(consumption, damping.band()), TimeDelta::zero(), None, || Facts {
        value: consumption,
        threshold: limit.threshold(),
        detail: Detail::Consumption,
    })
}

/// A gauge band rule, given the gauge's samples (time, value) in any order. With a hold time,
/// pass samples reaching back at least the hold time before the latest one: the run of samples
/// on the latest one's side of the band is measured from its first sample to the latest, so a
/// shorter history only delays the decision. Time is measured between samples, not to the
/// present: a gauge that stops reporting keeps its alert as it is (a no-data rule reports the
/// silence). No samples: nothing changes.
pub fn gauge_band(
    band: &GaugeBand,
    damping: Damping,
    state: AlertState,
    samples: &[(DateTime<Utc>, f64)],
) -> Decision {
    let mut sorted = samples.to_vec();
    sorted.sort_by_key(|(at, _)| *at);
    let Some(&(latest_at, latest)) = sorted.last() else {
        return unknown(state);
    };
    let h = damping.band();
    let (zone, crossed) = band_zone(band, latest, h);
    // The first sample of the unbroken run of samples in the latest one's zone.
    let since = sorted
        .iter()
        .rev()
        .take_while(|(_, v)| band_zone(band, *v, h).0 == zone)
        .last()
        .map_or(latest_at, |(at, _)| *at);
    decide(state, zone, latest_at - since, damping.hold, || {
        // A raise means the latest value is beyond a bound, so `crossed` names it.
        let (side, threshold) = crossed.map_or((Side::Above, latest), |(side, b)| (side, b.threshold()));
        Facts { value: latest, threshold, detail: Detail::Gauge { side, since } }
    })
}

/// The zone of a gauge value against both bounds: past either is beyond (and says which), inside
/// both hysteresis margins is within, anything else is the band in between.
fn band_zone(band: &GaugeBand, value: f64, h: f64) -> (Zone, Option<(Side, Bound)>) {
    let bounds = [
        band.max().map(|t| (Side::Above, Bound::Upper(t))),
        band.min().map(|t| (Side::Below, Bound::Lower(t))),
    ];
    let mut zone = Zone::Within;
    for (side, bound) in bounds.into_iter().flatten() {
        match bound.zone(value, h) {
            Zone::Beyond => return (Zone::Beyond, Some((side, bound))),
            Zone::Band => zone = Zone::Band,
            Zone::Within => {}
        }
    }
    (zone, None)
}

/// A dead-letter rate rule, given the dead letters as (time, count) (one entry per dead letter,
/// or per minute with its count) and the evaluation time `now`. The rate at an instant `t` is the
/// count in `(t - 1 h, t]`. With a hold time the rate must have been in the raising (or clearing)
/// zone at every instant of the last hold time: pass every entry of `(now - hold - 1 h, now]`.
/// Entries after `now` are ignored.
pub fn dead_letter_rate(
    rule: &DeadLetterRate,
    damping: Damping,
    state: AlertState,
    events: &[(DateTime<Utc>, u32)],
    now: DateTime<Utc>,
) -> Decision {
    let hour = TimeDelta::hours(1);
    let mut sorted: Vec<(DateTime<Utc>, u64)> =
        events.iter().filter(|(at, _)| *at <= now).map(|&(at, n)| (at, u64::from(n))).collect();
    sorted.sort_by_key(|(at, _)| *at);
    // Running totals, so that the count in any window is two binary searches.
    let mut totals = Vec::with_capacity(sorted.len());
    let mut total = 0_u64;
    for (_, n) in &sorted {
        total += n;
        totals.push(total);
    }
    let up_to = |t: DateTime<Utc>| {
        let i = sorted.partition_point(|(at, _)| *at <= t);
        i.checked_sub(1).map_or(0, |i| totals[i])
    };
    let rate_at = |t: DateTime<Utc>| up_to(t) - up_to(t - hour);

    let bound = Bound::Upper(rule.per_hour() as f64);
    let zone_at = |t: DateTime<Utc>| bound.zone(rate_at(t) as f64, damping.band());
    let rate = rate_at(now);
    let zone = zone_at(now);
    // The rate only changes when a dead letter arrives or leaves the window an hour later, so the
    // zone has lasted over the last hold time if it is the same at its start and at each change in it.
    let lasted = damping.hold.map_or(TimeDelta::zero(), |hold| {
        let from = now - hold.as_delta();
        let changes = sorted.iter().flat_map(|(at, _)| [*at, *at + hour]).filter(|t| *t > from && *t <= now);
        let steady = std::iter::once(from).chain(changes).all(|t| zone_at(t) == zone);
        if steady { hold.as_delta() } else { TimeDelta::zero() }
    });
    decide(state, zone, lasted, damping.hold, || Facts {
        value: rate as f64,
        threshold: bound.threshold(),
        detail: Detail::DeadLetters,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::rule::{HoldTime, Hysteresis};
    use AlertState::{Active, Inactive};

    fn damping(h: Option<f64>, hold: Option<i64>) -> Damping {
        Damping {
            hysteresis: h.map(|h| Hysteresis::new(h).unwrap()),
            hold: hold.map(|s| HoldTime::new(s).unwrap()),
        }
    }

    /// 2026-02-10 10:00 UTC plus `minutes`.
    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-02-10T10:00:00Z").unwrap().with_timezone(&Utc)
            + TimeDelta::minutes(minutes)
    }

    fn raised(d: Decision) -> Facts {
        match d {
            Decision::Raise(f) => f,
            other => panic!("expected a raise, got {other:?}"),
        }
    }

    #[test]
    fn consumption_raises_at_the_threshold_and_clears_below_threshold_minus_hysteresis() {
        let limit = ConsumptionLimit::new(100.0).unwrap();
        let raise =
            |v: f64| Decision::Raise(Facts { value: v, threshold: 100.0, detail: Detail::Consumption });
        // (hysteresis, state, consumption, decision)
        let cases = [
            (Some(10.0), Inactive, 99.99, Decision::Nothing),
            (Some(10.0), Inactive, 100.0, raise(100.0)),
            (Some(10.0), Inactive, 250.0, raise(250.0)),
            (Some(10.0), Active, 100.0, Decision::Hold),
            (Some(10.0), Active, 250.0, Decision::Hold),
            (Some(10.0), Active, 95.0, Decision::Hold),
            (Some(10.0), Active, 90.0, Decision::Hold),
            (Some(10.0), Active, 89.99, Decision::Clear),
            (Some(10.0), Active, 0.0, Decision::Clear),
            (Some(10.0), Inactive, 95.0, Decision::Nothing),
            (None, Active, 99.99, Decision::Clear),
            (None, Active, 100.0, Decision::Hold),
            (None, Inactive, 100.0, raise(100.0)),
        ];
        for (h, state, value, expected) in cases {
            assert_eq!(
                consumption(&limit, damping(h, None), state, value),
                expected,
                "h={h:?} {state:?} {value}"
            );
        }
    }

    #[test]
    fn repeated_evaluation_of_an_open_alert_never_raises_twice() {
        let limit = ConsumptionLimit::new(5.0).unwrap();
        for _ in 0..3 {
            assert_eq!(consumption(&limit, Damping::default(), Active, 8.0), Decision::Hold);
        }
    }

    #[test]
    fn gauge_band_raises_on_either_side_and_clears_inside_the_hysteresis_margins() {
        let band = GaugeBand::new(Some(2.0), Some(6.0)).unwrap();
        let d = damping(Some(0.5), None);
        // (state, latest value, decision or the side and threshold of a raise)
        let cases = [
            (Inactive, 6.0, Some((Side::Above, 6.0))),
            (Inactive, 1.2, Some((Side::Below, 2.0))),
            (Inactive, 2.0, Some((Side::Below, 2.0))),
            (Inactive, 5.99, None),
            (Inactive, 2.01, None),
        ];
        for (state, v, expected) in cases {
            let got = gauge_band(&band, d, state, &[(at(0), v)]);
            match expected {
                Some((side, threshold)) => {
                    let f = raised(got);
                    assert_eq!(
                        (f.value, f.threshold, f.detail),
                        (v, threshold, Detail::Gauge { side, since: at(0) })
                    );
                }
                None => assert_eq!(got, Decision::Nothing, "{v}"),
            }
        }
        // (latest value of an open alert, decision): the margins are 2.5 and 5.5, themselves kept.
        for (v, expected) in [
            (7.0, Decision::Hold),
            (5.5, Decision::Hold),
            (5.49, Decision::Clear),
            (2.5, Decision::Hold),
            (2.51, Decision::Clear),
            (1.0, Decision::Hold),
        ] {
            assert_eq!(gauge_band(&band, d, Active, &[(at(0), v)]), expected, "{v}");
        }
    }

    #[test]
    fn gauge_band_waits_for_the_hold_time_measured_between_samples() {
        let band = GaugeBand::new(None, Some(80.0)).unwrap();
        let d = damping(Some(5.0), Some(15 * 60));
        let series = |values: &[(i64, f64)]| values.iter().map(|&(m, v)| (at(m), v)).collect::<Vec<_>>();
        // (state, samples as (minute, value), decision)
        let cases = [
            // Out of band for 10 then 15 minutes: the run starts at its first sample.
            (Inactive, series(&[(0, 70.0), (5, 85.0), (10, 86.0), (15, 90.0)]), Decision::Nothing),
            (
                Inactive,
                series(&[(0, 70.0), (5, 85.0), (10, 86.0), (20, 90.0)]),
                Decision::Raise(Facts {
                    value: 90.0,
                    threshold: 80.0,
                    detail: Detail::Gauge { side: Side::Above, since: at(5) },
                }),
            ),
            // A dip into the hysteresis band breaks the run: 15 minutes in all, 5 since the dip.
            (Inactive, series(&[(0, 85.0), (5, 78.0), (10, 85.0), (15, 85.0)]), Decision::Nothing),
            // Samples in any order.
            (Inactive, series(&[(20, 81.0), (5, 80.0), (10, 99.0)]), raised_at(81.0, 5)),
            // Clearing waits for 15 minutes below 75 too; 75 itself is not below.
            (Active, series(&[(0, 90.0), (5, 74.0), (10, 70.0), (15, 60.0)]), Decision::Hold),
            (Active, series(&[(0, 90.0), (5, 74.0), (10, 70.0), (20, 60.0)]), Decision::Clear),
            (Active, series(&[(0, 74.0), (5, 75.0), (10, 70.0), (20, 60.0)]), Decision::Hold),
            (Active, series(&[(0, 74.0), (5, 75.0), (10, 70.0), (25, 60.0), (26, 61.0)]), Decision::Clear),
            (Active, vec![], Decision::Hold),
            (Inactive, vec![], Decision::Nothing),
        ];
        for (state, samples, expected) in cases {
            assert_eq!(gauge_band(&band, d, state, &samples), expected, "{state:?} {samples:?}");
        }
    }

    fn raised_at(value: f64, since_minute: i64) -> Decision {
        Decision::Raise(Facts {
            value,
            threshold: 80.0,
            detail: Detail::Gauge { side: Side::Above, since: at(since_minute) },
        })
    }

    #[test]
    fn dead_letter_rate_counts_the_hour_before_now() {
        let rule = DeadLetterRate::new(10).unwrap();
        let now = at(60);
        let raise =
            |n: f64| Decision::Raise(Facts { value: n, threshold: 10.0, detail: Detail::DeadLetters });
        // (state, hysteresis, events as (minute, count), decision)
        let cases = [
            (Inactive, None, vec![(30, 9)], Decision::Nothing),
            (Inactive, None, vec![(30, 9), (60, 1)], raise(10.0)),
            // An hour ago exactly is out of the window; after now is not counted yet.
            (Inactive, None, vec![(0, 5), (1, 5), (61, 5)], Decision::Nothing),
            (Inactive, None, vec![(1, 4), (59, 4), (60, 4)], raise(12.0)),
            (Active, Some(3.0), vec![(30, 7)], Decision::Hold),
            (Active, Some(3.0), vec![(30, 6)], Decision::Clear),
            (Active, None, vec![(30, 9)], Decision::Clear),
            (Active, None, vec![(30, 60)], Decision::Hold),
        ];
        for (state, h, events, expected) in cases {
            let events: Vec<_> = events.into_iter().map(|(m, n)| (at(m), n)).collect();
            assert_eq!(
                dead_letter_rate(&rule, damping(h, None), state, &events, now),
                expected,
                "{events:?}"
            );
        }
    }

    #[test]
    fn dead_letter_rate_with_a_hold_time_needs_the_rate_steady_for_all_of_it() {
        let rule = DeadLetterRate::new(10).unwrap();
        let d = damping(None, Some(30 * 60));
        let burst = |minute: i64| (at(minute), 10);
        // Now is minute 120; the hold covers minutes 90..=120, whose rates use minutes 30 onwards.
        let now = at(120);
        // (state, events, decision)
        let cases = [
            // Ten at minute 95: the rate reached 10 only 25 minutes ago.
            (Inactive, vec![burst(95)], Decision::Nothing),
            // Ten at minute 85: 10 throughout minutes 90..=120.
            (
                Inactive,
                vec![burst(85)],
                Decision::Raise(Facts { value: 10.0, threshold: 10.0, detail: Detail::DeadLetters }),
            ),
            // Ten at 40 (leaves at 100) and ten at 105: a gap of 5 minutes at 9 or less breaks it.
            (Inactive, vec![burst(40), burst(105)], Decision::Nothing),
            // Ten at 40 and ten at 100: the one leaves as the other arrives, never below 10.
            (
                Inactive,
                vec![burst(40), burst(100)],
                Decision::Raise(Facts { value: 10.0, threshold: 10.0, detail: Detail::DeadLetters }),
            ),
            // Clearing: the last burst at 80 left the window at 140 > now: still 10, hold.
            (Active, vec![burst(80)], Decision::Hold),
            // The last burst at 50 left at 110: below for 10 minutes only.
            (Active, vec![burst(50)], Decision::Hold),
            // The last burst at 20 left at 80: below since, 40 minutes.
            (Active, vec![burst(20)], Decision::Clear),
            (Active, vec![], Decision::Clear),
        ];
        for (state, events, expected) in cases {
            assert_eq!(dead_letter_rate(&rule, d, state, &events, now), expected, "{state:?} {events:?}");
        }
    }
}
