//! Evaluating the water rules beyond plain thresholds (SPEC §5): night flow and continuous flow,
//! the two signs of a leak in a device's hourly consumption.
//!
//! Owns: which hours make a night in the tenant's zone, counting consecutive nights and hours,
//! and the decision for each rule. Input is the device's hourly rollups as (hour start, consumption)
//! in the tenant's zone, each start being a [`Bucket::Hour`] start of [`crate::buckets`], so a
//! night is always the local clock hours 02:00 to 05:00 whatever the UTC offset that night (the
//! hours before and after a daylight-saving change differ in UTC). Must not: read a clock or the
//! store.
//!
//! An hour missing from the input (no rollup: the device sent nothing) is neither flow nor its
//! absence. It cannot count towards a run, so it never raises, and it cannot prove a leak over,
//! so it never clears either: a silent device is the no-data rule's business.

use super::decision::{AlertState, Bound, Damping, Decision, Detail, Facts, Zone, decide};
use super::params::{ContinuousFlow, NightFlow};
use crate::TimeZone;
use crate::buckets::{Bucket, bucket_start, bucket_starts, next_bucket_start};
use chrono::{DateTime, NaiveDate, TimeDelta, Timelike as _, Utc};
use std::collections::BTreeMap;

/// The night is the local clock hours starting at 02:00, 03:00 and 04:00.
const NIGHT_HOURS: std::ops::Range<u32> = 2..5;

/// A night flow rule at `now`, given the device's hourly consumption for at least the rule's
/// number of nights before `now`. Only nights whose 05:00 has passed count. The rule raises when
/// each of the last N nights had every night hour present and at or above the level; an open
/// alert clears when the latest night had an hour below the level minus the hysteresis.
pub fn night_flow(
    rule: &NightFlow,
    damping: Damping,
    state: AlertState,
    tz: TimeZone,
    hours: &[(DateTime<Utc>, f64)],
    now: DateTime<Utc>,
) -> Decision {
    let values = by_hour(hours);
    let bound = Bound::Upper(rule.level());
    let needed = rule.nights() as usize;
    // Latest first: (date, zone, lowest hour present).
    let nights: Vec<(NaiveDate, Zone, Option<f64>)> = finished_nights(tz, now)
        .take(needed)
        .map(|(date, night)| {
            let present: Vec<f64> = night.iter().filter_map(|h| values.get(h).copied()).collect();
            let lowest = present.iter().copied().reduce(f64::min);
            let zone = match lowest.map(|v| bound.zone(v, damping.band())) {
                // A missing hour might have been lower: the night is not proven above the level.
                Some(Zone::Beyond) if present.len() < night.len() => Zone::Band,
                Some(zone) => zone,
                None => Zone::Band,
            };
            (date, zone, lowest)
        })
        .collect();
    let run = nights.iter().take_while(|(_, zone, _)| *zone == Zone::Beyond).count();
    let zone = match nights.first() {
        _ if run >= needed => Zone::Beyond,
        Some((_, Zone::Within, _)) => Zone::Within,
        _ => Zone::Band,
    };
    decide(state, zone, TimeDelta::zero(), None, || Facts {
        value: nights.iter().filter_map(|(_, _, lowest)| *lowest).fold(f64::INFINITY, f64::min),
        threshold: rule.level(),
        detail: Detail::NightFlow {
            nights: run as u32,
            last_night: nights.first().map_or(NaiveDate::MIN, |(date, _, _)| *date),
        },
    })
}

/// A continuous flow rule at `now`, given the device's hourly consumption for at least the rule's
/// number of hours before `now`. The run is the unbroken sequence of hours with consumption above
/// 0 ending with the latest complete hour, or with the current hour once it has consumption (it
/// cannot lose it; while it has none it may still get some, so it neither counts nor breaks).
/// Raises when the run reaches the rule's hours; an open alert clears when an hour without
/// consumption ends the run short of them.
pub fn continuous_flow(
    rule: &ContinuousFlow,
    state: AlertState,
    tz: TimeZone,
    hours: &[(DateTime<Utc>, f64)],
    now: DateTime<Utc>,
) -> Decision {
    let values = by_hour(hours);
    let current = bucket_start(tz, Bucket::Hour, now);
    let mut hour = if values.get(&current).is_some_and(|v| *v > 0.0) {
        Some(current)
    } else {
        previous_hour(tz, current)
    };
    let (mut run, mut since, mut stopped_by_zero) = (0_u32, current, false);
    while let Some(h) = hour {
        match values.get(&h) {
            Some(v) if *v > 0.0 => (run, since) = (run + 1, h),
            Some(_) => {
                stopped_by_zero = true;
                break;
            }
            None => break,
        }
        hour = previous_hour(tz, h);
    }
    let zone = if run >= rule.hours() {
        Zone::Beyond
    } else if stopped_by_zero {
        Zone::Within
    } else {
        Zone::Band
    };
    decide(state, zone, TimeDelta::zero(), None, || Facts {
        value: f64::from(run),
        threshold: f64::from(rule.hours()),
        detail: Detail::ContinuousFlow { since },
    })
}

/// The series as a lookup by hour start; values that are not numbers count as missing.
fn by_hour(hours: &[(DateTime<Utc>, f64)]) -> BTreeMap<DateTime<Utc>, f64> {
    hours.iter().filter(|(_, v)| v.is_finite()).copied().collect()
}

fn previous_hour(tz: TimeZone, hour: DateTime<Utc>) -> Option<DateTime<Utc>> {
    hour.checked_sub_signed(TimeDelta::seconds(1)).map(|t| bucket_start(tz, Bucket::Hour, t))
}

/// The hour buckets of the night of the local day that starts at `day_start`: those that start
/// at a local time from 02:00 to before 05:00. Usually three; two or four when a daylight-saving
/// change falls in the night (not in São Paulo, which changed at midnight).
fn night_hours(tz: TimeZone, day_start: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let day_end = next_bucket_start(tz, Bucket::Day, day_start);
    bucket_starts(tz, Bucket::Hour, day_start, day_end)
        .filter(|h| NIGHT_HOURS.contains(&h.with_timezone(&tz.tz()).hour()))
        .collect()
}

/// The nights that have ended by `now`, latest first, as (local date, night hours).
fn finished_nights(
    tz: TimeZone,
    now: DateTime<Utc>,
) -> impl Iterator<Item = (NaiveDate, Vec<DateTime<Utc>>)> {
    let mut day = Some(bucket_start(tz, Bucket::Day, now));
    std::iter::from_fn(move || {
        loop {
            let start = day?;
            // Stepping back a second lands in the day before, whatever its length.
            day = start.checked_sub_signed(TimeDelta::seconds(1)).map(|t| bucket_start(tz, Bucket::Day, t));
            let hours = night_hours(tz, start);
            let over = hours.last().is_some_and(|last| next_bucket_start(tz, Bucket::Hour, *last) <= now);
            // Today's night may not be over yet; a day without night hours has no night at all.
            if over {
                return Some((start.with_timezone(&tz.tz()).date_naive(), hours));
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::rule::Hysteresis;
    use AlertState::{Active, Inactive};
    use chrono::TimeZone as _;

    fn zone(name: &str) -> TimeZone {
        TimeZone::parse(name).unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn date(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    /// A local wall-clock time that exists once.
    fn local(tz: TimeZone, s: &str) -> DateTime<Utc> {
        let naive = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
        tz.tz().from_local_datetime(&naive).single().unwrap().with_timezone(&Utc)
    }

    /// Every hour bucket of the local days `from..=to`, valued by `f(local date, local hour)`.
    fn series(
        tz: TimeZone,
        from: &str,
        to: &str,
        f: impl Fn(NaiveDate, u32) -> f64,
    ) -> Vec<(DateTime<Utc>, f64)> {
        let start = bucket_start(tz, Bucket::Day, local(tz, &format!("{from} 12:00")));
        let end = next_bucket_start(tz, Bucket::Day, local(tz, &format!("{to} 12:00")));
        bucket_starts(tz, Bucket::Hour, start, end)
            .map(|h| {
                let l = h.with_timezone(&tz.tz());
                (h, f(l.date_naive(), l.hour()))
            })
            .collect()
    }

    /// Daytime use, a leak of `night` through 02:00-05:00 and nothing at 01:00 and 05:00, so that
    /// taking the wrong hours for a night finds 0.
    fn leaky(night: f64) -> impl Fn(NaiveDate, u32) -> f64 {
        move |_, hour| match hour {
            2..=4 => night,
            1 | 5 => 0.0,
            _ => 5.0,
        }
    }

    fn without(mut s: Vec<(DateTime<Utc>, f64)>, gone: &[DateTime<Utc>]) -> Vec<(DateTime<Utc>, f64)> {
        s.retain(|(h, _)| !gone.contains(h));
        s
    }

    fn set(mut s: Vec<(DateTime<Utc>, f64)>, at: DateTime<Utc>, v: f64) -> Vec<(DateTime<Utc>, f64)> {
        s.iter_mut().filter(|(h, _)| *h == at).for_each(|(_, x)| *x = v);
        s
    }

    fn night_raise(value: f64, level: f64, nights: u32, last: &str) -> Decision {
        Decision::Raise(Facts {
            value,
            threshold: level,
            detail: Detail::NightFlow { nights, last_night: date(last) },
        })
    }

    #[test]
    fn a_night_is_the_local_hours_from_two_to_five_whatever_the_offset() {
        // (zone, a local noon of the day, the night's hour starts in UTC)
        let cases: [(&str, &str, &[&str]); 5] = [
            // São Paulo before and after the 2018-11-04 spring-forward (at midnight: -03 to -02).
            (
                "America/Sao_Paulo",
                "2018-11-03",
                &["2018-11-03T05:00:00Z", "2018-11-03T06:00:00Z", "2018-11-03T07:00:00Z"],
            ),
            (
                "America/Sao_Paulo",
                "2018-11-04",
                &["2018-11-04T04:00:00Z", "2018-11-04T05:00:00Z", "2018-11-04T06:00:00Z"],
            ),
            // And the 2019-02-17 fall-back (midnight became 23:00 of the 16th again).
            (
                "America/Sao_Paulo",
                "2019-02-17",
                &["2019-02-17T05:00:00Z", "2019-02-17T06:00:00Z", "2019-02-17T07:00:00Z"],
            ),
            // New York springs forward at 02:00: that night has only 03:00 and 04:00.
            ("America/New_York", "2024-03-10", &["2024-03-10T07:00:00Z", "2024-03-10T08:00:00Z"]),
            // Kolkata's hours start at half past in UTC.
            (
                "Asia/Kolkata",
                "2026-02-10",
                &["2026-02-09T20:30:00Z", "2026-02-09T21:30:00Z", "2026-02-09T22:30:00Z"],
            ),
        ];
        for (name, day, expected) in cases {
            let tz = zone(name);
            let start = bucket_start(tz, Bucket::Day, local(tz, &format!("{day} 12:00")));
            let expected: Vec<_> = expected.iter().map(|s| utc(s)).collect();
            assert_eq!(night_hours(tz, start), expected, "{name} {day}");
        }
    }

    #[test]
    fn night_flow_takes_each_nights_own_hours_across_sao_paulo_daylight_saving_changes() {
        let sp = TimeZone::default();
        let rule = NightFlow::new(0.2, 3).unwrap();
        let spring = series(sp, "2018-11-01", "2018-11-06", leaky(0.3));
        let fall = series(sp, "2019-02-14", "2019-02-19", leaky(0.3));
        let spring_now = local(sp, "2018-11-05 12:00");
        let fall_now = local(sp, "2019-02-18 12:00");
        // (series, now, decision)
        let cases = [
            (spring.clone(), spring_now, night_raise(0.3, 0.2, 3, "2018-11-05")),
            // 02:00 of the first night at -02 is 04:00 UTC, an hour that was 01:00 the night before.
            (set(spring.clone(), utc("2018-11-04T04:00:00Z"), 0.0), spring_now, Decision::Nothing),
            // 05:00 UTC was 02:00 on the 3rd and 03:00 on the 4th: the night before the change counts it.
            (set(spring.clone(), utc("2018-11-03T05:00:00Z"), 0.1), spring_now, Decision::Nothing),
            (
                set(spring, utc("2018-11-04T07:00:00Z"), 0.0),
                spring_now,
                night_raise(0.3, 0.2, 3, "2018-11-05"),
            ),
            (fall.clone(), fall_now, night_raise(0.3, 0.2, 3, "2019-02-18")),
            (set(fall, utc("2019-02-17T04:00:00Z"), 0.0), fall_now, night_raise(0.3, 0.2, 3, "2019-02-18")),
        ];
        for (i, (hours, now, expected)) in cases.into_iter().enumerate() {
            assert_eq!(
                night_flow(&rule, Damping::default(), Inactive, sp, &hours, now),
                expected,
                "case {i}"
            );
        }
    }

    #[test]
    fn night_flow_needs_consecutive_nights_and_a_gap_night_breaks_them() {
        let sp = TimeZone::default();
        let d = Damping { hysteresis: Hysteresis::new(0.05).ok(), hold: None };
        // Nights of 02-01 to 02-06 2026 with lowest hours 0.3, 0.25, 0.4, 0.5, 0.35, 0.45.
        let lowest = |day: u32| [0.3, 0.25, 0.4, 0.5, 0.35, 0.45][day as usize - 1];
        let full = series(sp, "2026-02-01", "2026-02-06", |date, hour| {
            use chrono::Datelike as _;
            match hour {
                3 => lowest(date.day()),
                2 | 4 => 0.9,
                _ => 4.0,
            }
        });
        let at = |s: &str| local(sp, s);
        let night_of_5th = [at("2026-02-05 02:00"), at("2026-02-05 03:00"), at("2026-02-05 04:00")];
        let after = at("2026-02-06 08:00");
        // (state, nights, series, now, decision)
        let cases = [
            (Inactive, 3, full.clone(), after, night_raise(0.35, 0.2, 3, "2026-02-06")),
            (Inactive, 6, full.clone(), after, night_raise(0.25, 0.2, 6, "2026-02-06")),
            (Active, 3, full.clone(), after, Decision::Hold),
            // The 6th's night ends at 05:00: at 04:30 the latest night is the 5th's.
            (Inactive, 3, full.clone(), at("2026-02-06 04:30"), night_raise(0.35, 0.2, 3, "2026-02-05")),
            (Inactive, 3, full.clone(), at("2026-02-06 05:00"), night_raise(0.35, 0.2, 3, "2026-02-06")),
            // No data on the night of the 5th: a gap, so only one night in a row.
            (Inactive, 3, without(full.clone(), &night_of_5th), after, Decision::Nothing),
            (
                Inactive,
                1,
                without(full.clone(), &night_of_5th),
                after,
                night_raise(0.45, 0.2, 1, "2026-02-06"),
            ),
            (Inactive, 2, without(full.clone(), &night_of_5th[1..2]), after, Decision::Nothing),
            // A night below the level breaks the run too; at the level itself it does not.
            (Inactive, 2, set(full.clone(), night_of_5th[1], 0.19), after, Decision::Nothing),
            (
                Inactive,
                2,
                set(full.clone(), night_of_5th[1], 0.2),
                after,
                night_raise(0.2, 0.2, 2, "2026-02-06"),
            ),
            // Clearing looks at the latest night: below 0.15 clears, 0.15 itself is kept.
            (Active, 3, set(full.clone(), at("2026-02-06 03:00"), 0.15), after, Decision::Hold),
            (Active, 3, set(full.clone(), at("2026-02-06 03:00"), 0.149), after, Decision::Clear),
            (Active, 3, set(full.clone(), at("2026-02-06 04:00"), 0.0), after, Decision::Clear),
            // A night with no data proves nothing; one low hour proves the flow stopped.
            (
                Active,
                3,
                without(
                    full.clone(),
                    &[at("2026-02-06 02:00"), at("2026-02-06 03:00"), at("2026-02-06 04:00")],
                ),
                after,
                Decision::Hold,
            ),
            (
                Active,
                3,
                set(without(full.clone(), &[at("2026-02-06 02:00")]), at("2026-02-06 04:00"), 0.0),
                after,
                Decision::Clear,
            ),
            (Active, 3, vec![], after, Decision::Hold),
            (Inactive, 3, vec![], after, Decision::Nothing),
        ];
        for (i, (state, nights, hours, now, expected)) in cases.into_iter().enumerate() {
            let rule = NightFlow::new(0.2, nights).unwrap();
            assert_eq!(night_flow(&rule, d, state, sp, &hours, now), expected, "case {i}");
        }
    }

    #[test]
    fn continuous_flow_counts_hours_with_consumption_and_one_zero_hour_breaks_the_run() {
        let sp = TimeZone::default();
        let rule = ContinuousFlow::new(6).unwrap();
        let at = |s: &str| local(sp, s);
        // Flow in every hour from 00:00 to 10:00 of 2026-02-10, then the current hour 10:00.
        let flowing: Vec<_> = (0..11).map(|h| (at(&format!("2026-02-10 {h:02}:00")), 0.4)).collect();
        let now = at("2026-02-10 10:20");
        let raise = |hours: f64, since: &str| {
            Decision::Raise(Facts {
                value: hours,
                threshold: 6.0,
                detail: Detail::ContinuousFlow { since: at(since) },
            })
        };
        // (state, series, decision)
        let cases = [
            (Inactive, flowing.clone(), raise(11.0, "2026-02-10 00:00")),
            (Active, flowing.clone(), Decision::Hold),
            // A zero hour at 05:00 leaves 06:00..=10:00: five hours.
            (Inactive, set(flowing.clone(), at("2026-02-10 05:00"), 0.0), Decision::Nothing),
            (Active, set(flowing.clone(), at("2026-02-10 05:00"), 0.0), Decision::Clear),
            // At 04:00 it leaves six.
            (Inactive, set(flowing.clone(), at("2026-02-10 04:00"), 0.0), raise(6.0, "2026-02-10 05:00")),
            // The current hour without consumption yet neither counts nor breaks.
            (Inactive, set(flowing.clone(), at("2026-02-10 10:00"), 0.0), raise(10.0, "2026-02-10 00:00")),
            (
                Inactive,
                set(set(flowing.clone(), at("2026-02-10 10:00"), 0.0), at("2026-02-10 04:00"), 0.0),
                Decision::Nothing,
            ),
            // A missing hour ends the run without proving the flow stopped.
            (Inactive, without(flowing.clone(), &[at("2026-02-10 05:00")]), Decision::Nothing),
            (Active, without(flowing.clone(), &[at("2026-02-10 05:00")]), Decision::Hold),
            (Active, vec![], Decision::Hold),
            (Inactive, vec![], Decision::Nothing),
        ];
        for (i, (state, hours, expected)) in cases.into_iter().enumerate() {
            assert_eq!(continuous_flow(&rule, state, sp, &hours, now), expected, "case {i}");
        }
    }

    #[test]
    fn continuous_flow_steps_through_the_tenants_own_hours() {
        // The repeated hour of São Paulo's 2019-02-16 fall-back is two hours of flow.
        let sp = TimeZone::default();
        let hours = series(sp, "2019-02-16", "2019-02-16", |_, h| if h >= 21 { 1.0 } else { 0.0 });
        let rule = ContinuousFlow::new(4).unwrap();
        let now = utc("2019-02-17T03:30:00Z");
        assert!(matches!(
            continuous_flow(&rule, Inactive, sp, &hours, now),
            Decision::Raise(Facts { value: 4.0, .. })
        ));
        // Kolkata's hours start at half past in UTC; hours at o'clock UTC are not its hours.
        let ist = zone("Asia/Kolkata");
        let rule = ContinuousFlow::new(3).unwrap();
        let now = utc("2026-02-10T12:00:00Z");
        let own: Vec<_> = (0..4).map(|k| (utc("2026-02-10T08:30:00Z") + TimeDelta::hours(k), 1.0)).collect();
        let shifted: Vec<_> = own.iter().map(|(h, v)| (*h + TimeDelta::minutes(30), *v)).collect();
        assert!(matches!(continuous_flow(&rule, Inactive, ist, &own, now), Decision::Raise(_)));
        assert_eq!(continuous_flow(&rule, Inactive, ist, &shifted, now), Decision::Nothing);
    }
}
