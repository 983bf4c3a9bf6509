//! The rule editor's preview (SPEC §5: "would have raised N alerts"): a rule replayed hour by
//! hour over a device's stored hourly rollups, through the same decisions the evaluation job
//! makes, with the alert state carried from one hour to the next, so the preview counts raises
//! the way the job would have raised them (hysteresis and hold times included).
//!
//! Owns: turning hourly rollups into each kind's inputs at a given instant. The kinds on device
//! data replay from rollups alone: daily and monthly consumption (the hours of the local day or
//! month so far), gauge band (each hour's minimum and maximum as samples), night and continuous
//! flow (hourly consumption), no data (the last hour with readings). The others (gateway offline,
//! certificate expiry, dead letters) are about gateways and the clock, not rollups:
//! [`replays_from_rollups`] says so and the editor evaluates them at the present instead.
//! Must not: read a clock or the store.

use super::decision::{AlertState, Decision};
use super::params::RuleKind;
use super::rule::Rule;
use super::{clock, evaluate, water};
use crate::TimeZone;
use crate::buckets::{Bucket, bucket_start};
use chrono::{DateTime, Duration, Utc};

/// One hourly rollup of a device, as the preview needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HourRow {
    pub start: DateTime<Utc>,
    /// Counters and interval meters.
    pub consumption: Option<f64>,
    /// Gauges.
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Readings in the hour.
    pub count: u32,
}

/// A raise the rule would have made: when, and the value it would have raised with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub at: DateTime<Utc>,
    pub value: f64,
}

/// Whether a rule of this kind can be replayed from a device's rollups.
pub const fn replays_from_rollups(kind: &RuleKind) -> bool {
    matches!(
        kind,
        RuleKind::DailyConsumption(_)
            | RuleKind::MonthlyConsumption(_)
            | RuleKind::GaugeBand(_)
            | RuleKind::NightFlow(_)
            | RuleKind::ContinuousFlow(_)
            | RuleKind::NoData(_)
    )
}

/// The raises the rule would have made for one device, evaluated at the end of every hour from
/// `from` to `to`. `hours` are the device's hourly rollups in time order, reaching back far enough
/// before `from` for the kind (its month so far, its nights, its hold time); hours without a row
/// are hours without readings. Kinds that do not replay from rollups give no hits.
pub fn replay(
    rule: &Rule,
    tz: TimeZone,
    hours: &[HourRow],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<Hit> {
    if !replays_from_rollups(rule.kind()) {
        return Vec::new();
    }
    let mut hits = Vec::new();
    let mut state = AlertState::Inactive;
    let mut at = bucket_start(tz, Bucket::Hour, from) + Duration::hours(1);
    while at <= to {
        // Rows of hours that have ended by `at` (the job sees an hour's rollup as it fills; at
        // the end of each hour the whole of it).
        let seen = hours.partition_point(|h| h.start < at);
        let decision = decide_at(rule, tz, &hours[..seen], at, state);
        match decision {
            Decision::Raise(facts) => {
                hits.push(Hit { at, value: facts.value });
                state = AlertState::Active;
            }
            Decision::Clear => state = AlertState::Inactive,
            Decision::Hold | Decision::Nothing => {}
        }
        at += Duration::hours(1);
    }
    hits
}

/// The rows with `start >= since` of a time-ordered slice.
fn since(hours: &[HourRow], since: DateTime<Utc>) -> &[HourRow] {
    &hours[hours.partition_point(|h| h.start < since)..]
}

fn consumption_pairs(hours: &[HourRow]) -> Vec<(DateTime<Utc>, f64)> {
    hours.iter().filter_map(|h| h.consumption.map(|c| (h.start, c))).collect()
}

fn decide_at(rule: &Rule, tz: TimeZone, seen: &[HourRow], at: DateTime<Utc>, state: AlertState) -> Decision {
    let damping = rule.damping();
    // The instant just before `at` names the local day or month the hour belonged to; at
    // midnight the job sees the new day, with nothing consumed yet.
    match rule.kind() {
        RuleKind::DailyConsumption(limit) | RuleKind::MonthlyConsumption(limit) => {
            let bucket = if matches!(rule.kind(), RuleKind::DailyConsumption(_)) {
                Bucket::Day
            } else {
                Bucket::Month
            };
            let start = bucket_start(tz, bucket, at);
            let so_far: f64 = since(seen, start).iter().filter_map(|h| h.consumption).sum();
            evaluate::consumption(limit, damping, state, so_far)
        }
        RuleKind::GaugeBand(band) => {
            let back = damping.hold.map_or(Duration::hours(2), |h| h.as_delta() + Duration::hours(2));
            let samples: Vec<(DateTime<Utc>, f64)> = since(seen, at - back)
                .iter()
                .flat_map(|h| {
                    let end = h.start + Duration::minutes(59);
                    [h.min.map(|v| (h.start, v)), h.max.map(|v| (end, v))]
                })
                .flatten()
                .collect();
            evaluate::gauge_band(band, damping, state, &samples)
        }
        RuleKind::NightFlow(night) => {
            let back = Duration::days(i64::from(night.nights()) + 2);
            water::night_flow(night, damping, state, tz, &consumption_pairs(since(seen, at - back)), at)
        }
        RuleKind::ContinuousFlow(flow) => {
            let back = Duration::hours(i64::from(flow.hours()) + 2);
            water::continuous_flow(flow, state, tz, &consumption_pairs(since(seen, at - back)), at)
        }
        RuleKind::NoData(period) => {
            // The last reading was at the latest within its hour; the end of that hour (or `at`,
            // if sooner) is what the job would have seen.
            let last =
                seen.iter().rev().find(|h| h.count > 0).map(|h| (h.start + Duration::hours(1)).min(at));
            clock::no_data(period, state, last, at)
        }
        RuleKind::GatewayOffline(_) | RuleKind::CertificateExpiry(_) | RuleKind::DeadLetterRate(_) => {
            Decision::Nothing
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DeviceId;
    use crate::alerts::{ConsumptionLimit, Hysteresis, NightFlow, Period, Severity, Target};
    use chrono::TimeZone as _;

    fn sp() -> TimeZone {
        TimeZone::parse("America/Sao_Paulo").unwrap()
    }

    /// Local hour `h` of 2026-11-`day` in São Paulo (UTC−3).
    fn at(day: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, 3, 0, 0).unwrap() + Duration::hours(i64::from(h))
    }

    fn counter(start: DateTime<Utc>, consumption: f64) -> HourRow {
        HourRow { start, consumption: Some(consumption), min: None, max: None, count: 4 }
    }

    fn rule(kind: RuleKind, hysteresis: Option<f64>) -> Rule {
        Rule::new(
            Severity::Warning,
            Target::Device(DeviceId::new(1)),
            kind,
            hysteresis.map(|h| Hysteresis::new(h).unwrap()),
            None,
        )
        .unwrap()
    }

    #[test]
    fn a_daily_threshold_raises_once_per_day_it_is_crossed() {
        // 1 kWh an hour all day on the 10th (24 kWh), 0.2 on the 11th (4.8), 1 again on the 12th.
        let mut hours = Vec::new();
        for (day, per_hour) in [(10, 1.0), (11, 0.2), (12, 1.0)] {
            hours.extend((0..24).map(|h| counter(at(day, h), per_hour)));
        }
        let r = rule(RuleKind::DailyConsumption(ConsumptionLimit::new(10.0).unwrap()), None);
        let hits = replay(&r, sp(), &hours, at(10, 0), at(13, 0));
        // Crossed at the end of the 10th hour of the 10th and of the 12th: two raises, the new day
        // clearing the first.
        assert_eq!(hits.iter().map(|h| h.at).collect::<Vec<_>>(), [at(10, 10), at(12, 10)]);
        assert_eq!(hits[0].value, 10.0);
    }

    #[test]
    fn a_monthly_threshold_clears_with_the_new_month_and_raises_again() {
        // 1 kWh an hour from 29 November to 1 December, local time.
        let hours: Vec<HourRow> = (0..72).map(|h| counter(at(29, 0) + Duration::hours(h), 1.0)).collect();
        let r = rule(RuleKind::MonthlyConsumption(ConsumptionLimit::new(20.0).unwrap()), None);
        let hits = replay(&r, sp(), &hours, at(29, 0), at(29, 0) + Duration::hours(72));
        // 20 kWh by 20:00 on the 29th; December starts from 0 (cleared) and reaches 20 by 20:00.
        assert_eq!(hits.iter().map(|h| h.at).collect::<Vec<_>>(), [at(29, 20), at(29, 68)]);
    }

    #[test]
    fn hysteresis_keeps_a_hovering_gauge_from_flapping() {
        use crate::alerts::GaugeBand;
        let gauge =
            |start, v: f64| HourRow { start, consumption: None, min: Some(v), max: Some(v), count: 4 };
        // Every other hour at 10.5 and 9.5 around a maximum of 10.
        let hours: Vec<HourRow> = (0..12)
            .map(|h| gauge(at(10, 0) + Duration::hours(h), if h % 2 == 0 { 10.5 } else { 9.5 }))
            .collect();
        let band = || RuleKind::GaugeBand(GaugeBand::new(None, Some(10.0)).unwrap());
        let flapping = replay(&rule(band(), None), sp(), &hours, at(10, 0), at(10, 12));
        assert_eq!(flapping.len(), 6, "without hysteresis every crossing raises again: {flapping:?}");
        let steady = replay(&rule(band(), Some(2.0)), sp(), &hours, at(10, 0), at(10, 12));
        assert_eq!(steady.len(), 1, "9.5 is within the hysteresis: the alert stays open: {steady:?}");
    }

    #[test]
    fn night_flow_counts_consecutive_nights() {
        // 0.5 m³ every hour for four days: a leak from the first night on.
        let hours: Vec<HourRow> = (0..96).map(|h| counter(at(10, 0) + Duration::hours(h), 0.5)).collect();
        let r = rule(RuleKind::NightFlow(NightFlow::new(0.3, 2).unwrap()), None);
        let hits = replay(&r, sp(), &hours, at(10, 0), at(14, 0));
        // Two nights are proven at 05:00 of the 11th: one raise, held afterwards.
        assert_eq!(hits.iter().map(|h| h.at).collect::<Vec<_>>(), [at(11, 5)]);
    }

    #[test]
    fn a_silent_stretch_raises_a_no_data_alert() {
        let mut hours: Vec<HourRow> = (0..6).map(|h| counter(at(10, h), 1.0)).collect();
        hours.extend((12..24).map(|h| counter(at(10, h), 1.0)));
        let r = rule(RuleKind::NoData(Period::new(3 * 3600).unwrap()), None);
        let hits = replay(&r, sp(), &hours, at(10, 1), at(11, 0));
        // Last heard by 06:00; three hours later (09:00) it is silent: one raise, cleared when it
        // reports again at noon.
        assert_eq!(hits.iter().map(|h| h.at).collect::<Vec<_>>(), [at(10, 9)]);
    }

    #[test]
    fn clock_kinds_on_gateways_do_not_replay() {
        let r = Rule::new(
            Severity::Warning,
            Target::Tenant,
            RuleKind::GatewayOffline(Period::new(3600).unwrap()),
            None,
            None,
        )
        .unwrap();
        assert!(!replays_from_rollups(r.kind()));
        assert!(replay(&r, sp(), &[counter(at(10, 0), 1.0)], at(10, 0), at(11, 0)).is_empty());
    }
}
