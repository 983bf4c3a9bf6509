//! What evaluating a rule decides, and the one state machine every kind decides with.
//!
//! Owns: the inputs every evaluation shares ([`AlertState`], [`Damping`]), its answer
//! ([`Decision`] with the [`Facts`] of a raise) and the rule of SPEC §5 that keeps an alert from
//! flapping: a rule raises when its value reaches the threshold (equal counts), and clears only
//! when the value is past the threshold minus the hysteresis (strictly), so a value in between
//! changes nothing; with a hold time, the value must have stayed in the raising (or clearing) zone
//! for the whole hold time first. An open alert whose condition still holds is kept
//! ([`Decision::Hold`]), never raised again, so evaluating the same inputs twice decides the same.
//! Must not: read a clock or the store; "how long has this lasted" is always an input.

use super::rule::{HoldTime, Hysteresis};
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

/// Whether the rule already has an open (not cleared) alert for the target being evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState {
    Inactive,
    Active,
}

/// A rule's settings against flapping, from [`super::Rule::damping`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Damping {
    pub hysteresis: Option<Hysteresis>,
    pub hold: Option<HoldTime>,
}

impl Damping {
    pub(super) fn band(self) -> f64 {
        self.hysteresis.map_or(0.0, Hysteresis::get)
    }
}

/// What to do with the target's alert.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// Open an alert (none was open).
    Raise(Facts),
    /// Keep the open alert as it is: the condition still holds, or has not ended for long enough.
    Hold,
    /// Clear the open alert: the condition has ended.
    Clear,
    /// No alert is open and none is due.
    Nothing,
}

/// What a raise is about, for the alert's value and message. `value` and `threshold` are in the
/// unit of the kind: the device's unit (consumption, gauge, night flow), seconds (no data, gateway
/// offline), days left (certificate expiry), a count (dead letters in the hour), hours (continuous
/// flow).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Facts {
    pub value: f64,
    pub threshold: f64,
    pub detail: Detail,
}

/// The kind-specific part of [`Facts`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Detail {
    /// A daily or monthly consumption (the rule's kind says which).
    Consumption,
    /// A gauge outside its band on `side`, since the first sample of the run out of it.
    Gauge { side: Side, since: DateTime<Utc> },
    /// A device or gateway silent since this instant.
    Silence { since: DateTime<Utc> },
    /// A certificate that expires at this instant; `value` is the days left (negative once
    /// expired), counted in calendar days of the tenant's zone.
    Certificate { expires_at: DateTime<Utc> },
    /// Dead letters in the hour before the evaluation.
    DeadLetters,
    /// Water flow on `nights` consecutive nights, the latest of which was on `last_night` (tenant
    /// date); `value` is the lowest hourly consumption over those nights.
    NightFlow { nights: u32, last_night: NaiveDate },
    /// Water flow in every hour since this hour's start; `value` is the number of hours.
    ContinuousFlow { since: DateTime<Utc> },
}

/// Which bound of a gauge band was crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Above,
    Below,
}

/// Where a value stands against a threshold and its hysteresis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Zone {
    /// At or past the threshold: raises.
    Beyond,
    /// Short of the threshold but not past the hysteresis: changes nothing.
    Band,
    /// Past the hysteresis: clears.
    Within,
}

/// How close to an edge, relative to the threshold (at least 1), counts as on it.
const EDGE_SLACK: f64 = 1e-9;

/// A threshold and the direction the value must move to reach it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Bound {
    /// Raises at or above; clears below `threshold - hysteresis`.
    Upper(f64),
    /// Raises at or below; clears above `threshold + hysteresis`.
    Lower(f64),
}

impl Bound {
    pub(super) fn zone(self, value: f64, hysteresis: f64) -> Zone {
        // Consumption is a sum of decimal fractions in binary floating point (0.1 added ten times
        // is 0.9999999999999999) and a threshold minus a hysteresis is computed too (0.2 - 0.05 is
        // 0.15000000000000002), so the edges are compared with a slack far below any meter's
        // resolution: a value that reads as the threshold reaches it, one that reads as the
        // threshold minus the hysteresis does not clear. Written so that NaN, which compares
        // false to everything, lands in the band: it neither raises nor clears.
        let slack = EDGE_SLACK * self.threshold().abs().max(1.0);
        match self {
            Self::Upper(t) if value >= t - slack => Zone::Beyond,
            Self::Upper(t) if value < t - hysteresis - slack => Zone::Within,
            Self::Lower(t) if value <= t + slack => Zone::Beyond,
            Self::Lower(t) if value > t + hysteresis + slack => Zone::Within,
            Self::Upper(_) | Self::Lower(_) => Zone::Band,
        }
    }

    pub(super) const fn threshold(self) -> f64 {
        match self {
            Self::Upper(t) | Self::Lower(t) => t,
        }
    }
}

/// The decision for a value now in `zone`, where it has been for `lasted` without a break.
/// `facts` is called only for a raise.
pub(super) fn decide(
    state: AlertState,
    zone: Zone,
    lasted: TimeDelta,
    hold: Option<HoldTime>,
    facts: impl FnOnce() -> Facts,
) -> Decision {
    let long_enough = hold.is_none_or(|h| lasted >= h.as_delta());
    match (state, zone) {
        (AlertState::Inactive, Zone::Beyond) if long_enough => Decision::Raise(facts()),
        (AlertState::Active, Zone::Within) if long_enough => Decision::Clear,
        (AlertState::Inactive, _) => Decision::Nothing,
        (AlertState::Active, _) => Decision::Hold,
    }
}

/// The decision when nothing is known either way (no samples, a device that never reported): an
/// open alert is kept, none is raised.
pub(super) const fn unknown(state: AlertState) -> Decision {
    match state {
        AlertState::Active => Decision::Hold,
        AlertState::Inactive => Decision::Nothing,
    }
}

/// The decision when the condition is known to be over (a gateway back online): an open alert
/// clears at once.
pub(super) const fn over(state: AlertState) -> Decision {
    match state {
        AlertState::Active => Decision::Clear,
        AlertState::Inactive => Decision::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AlertState::{Active, Inactive};

    #[test]
    fn a_value_raises_at_the_threshold_and_clears_only_past_the_hysteresis() {
        // (bound, value, hysteresis, zone)
        let cases = [
            (Bound::Upper(100.0), 100.0, 10.0, Zone::Beyond),
            (Bound::Upper(100.0), 99.999, 10.0, Zone::Band),
            (Bound::Upper(100.0), 90.0, 10.0, Zone::Band),
            (Bound::Upper(100.0), 89.999, 10.0, Zone::Within),
            (Bound::Upper(100.0), 99.999, 0.0, Zone::Within),
            (Bound::Lower(2.0), 2.0, 0.5, Zone::Beyond),
            (Bound::Lower(2.0), 2.5, 0.5, Zone::Band),
            (Bound::Lower(2.0), 2.501, 0.5, Zone::Within),
            (Bound::Lower(2.0), -7.0, 0.5, Zone::Beyond),
            (Bound::Upper(100.0), f64::NAN, 10.0, Zone::Band),
            // Binary fractions: ten 0.1s reach 1.0; 0.15 is at 0.2 - 0.05, not below it.
            (Bound::Upper(1.0), (0..10).map(|_| 0.1).sum(), 0.0, Zone::Beyond),
            (Bound::Upper(0.2), 0.15, 0.05, Zone::Band),
            (Bound::Upper(0.2), 0.1499, 0.05, Zone::Within),
            (Bound::Lower(0.3), 0.1 + 0.2, 0.1, Zone::Beyond),
        ];
        for (bound, value, h, zone) in cases {
            assert_eq!(bound.zone(value, h), zone, "{bound:?} {value} ±{h}");
        }
    }

    #[test]
    fn the_state_machine_raises_once_holds_and_clears() {
        let facts = || Facts { value: 1.0, threshold: 1.0, detail: Detail::Consumption };
        let raise = Decision::Raise(facts());
        let five = HoldTime::new(300).ok();
        let (short, enough) = (TimeDelta::seconds(299), TimeDelta::seconds(300));
        // (state, zone, lasted, hold, decision)
        let cases = [
            (Inactive, Zone::Beyond, TimeDelta::zero(), None, raise),
            (Active, Zone::Beyond, TimeDelta::zero(), None, Decision::Hold),
            (Inactive, Zone::Band, TimeDelta::zero(), None, Decision::Nothing),
            (Active, Zone::Band, TimeDelta::zero(), None, Decision::Hold),
            (Inactive, Zone::Within, TimeDelta::zero(), None, Decision::Nothing),
            (Active, Zone::Within, TimeDelta::zero(), None, Decision::Clear),
            (Inactive, Zone::Beyond, short, five, Decision::Nothing),
            (Inactive, Zone::Beyond, enough, five, raise),
            (Active, Zone::Within, short, five, Decision::Hold),
            (Active, Zone::Within, enough, five, Decision::Clear),
            (Active, Zone::Beyond, enough, five, Decision::Hold),
        ];
        for (state, zone, lasted, hold, expected) in cases {
            assert_eq!(
                decide(state, zone, lasted, hold, facts),
                expected,
                "{state:?} {zone:?} {lasted} {hold:?}"
            );
        }
    }

    #[test]
    fn a_value_hovering_at_the_threshold_raises_once_with_hysteresis_and_flaps_without() {
        let values = [95.0, 100.0, 99.0, 100.5, 98.0, 100.0, 99.5, 91.0, 100.0, 89.0, 95.0];
        let run =
            |h: f64| {
                let (mut state, mut raises, mut clears) = (Inactive, 0, 0);
                for v in values {
                    let d = decide(state, Bound::Upper(100.0).zone(v, h), TimeDelta::zero(), None, || {
                        Facts { value: v, threshold: 100.0, detail: Detail::Consumption }
                    });
                    match d {
                        Decision::Raise(_) => (state, raises) = (Active, raises + 1),
                        Decision::Clear => (state, clears) = (Inactive, clears + 1),
                        Decision::Hold | Decision::Nothing => {}
                    }
                }
                (raises, clears, state)
            };
        assert_eq!(run(10.0), (1, 1, Inactive), "raised at 100, cleared only at 89");
        assert_eq!(run(0.0), (4, 4, Inactive), "without hysteresis every crossing raises");
    }
}
