//! Evaluating the rules that fire on the clock because nothing arrives: no data from a device, a
//! gateway offline, a certificate close to its expiry (SPEC §5: "a silent device alerts even
//! though nothing arrives").
//!
//! Owns: the decision for each, from the last time something was heard (or the expiry date) and
//! the evaluation time `now`, which is always an argument. Must not: read a clock or the store.
//! These rules have no hysteresis or hold time (see `Rule::new`): their period is the wait, and
//! they end at once when data arrives, the gateway reconnects or the certificate is renewed.

use super::decision::{AlertState, Bound, Decision, Detail, Facts, decide, over, unknown};
use super::params::{CertificateExpiry, Period};
use crate::TimeZone;
use chrono::{DateTime, TimeDelta, Utc};

/// A no-data rule, given the time of the device's last reading. A device that has never reported
/// has nothing to measure its silence from: pass the time it was created to alert a period after
/// that, or `None` to leave it alone (an open alert is kept).
pub fn no_data(
    period: &Period,
    state: AlertState,
    last_reading: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Decision {
    match last_reading {
        Some(since) => silence(*period, state, since, now),
        None => unknown(state),
    }
}

/// A gateway offline rule, given since when the gateway has been offline (its last-seen time
/// while its online flag is off), or `None` while it is online, which clears the alert.
pub fn gateway_offline(
    period: &Period,
    state: AlertState,
    offline_since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Decision {
    match offline_since {
        Some(since) => silence(*period, state, since, now),
        None => over(state),
    }
}

/// Silent since `since`: raises once the silence reaches the period. A `since` after `now` (a
/// gateway clock ahead of ours) is no silence.
fn silence(period: Period, state: AlertState, since: DateTime<Utc>, now: DateTime<Utc>) -> Decision {
    let silent = (now - since).max(TimeDelta::zero()).num_seconds();
    let zone = Bound::Upper(period.seconds() as f64).zone(silent as f64, 0.0);
    decide(state, zone, TimeDelta::zero(), None, || Facts {
        value: silent as f64,
        threshold: period.seconds() as f64,
        detail: Detail::Silence { since },
    })
}

/// A certificate expiry rule, given when the gateway's certificate expires: the active one, or,
/// when none is active, the latest (an expired certificate keeps its alert open). `None`: the
/// gateway has no certificate, so none expires, and an open alert clears.
///
/// Days are counted as people read a date: the calendar days in the tenant's zone from today to
/// the expiry date. A rule of 30 days raises on the day the expiry date is 30 days away, at any
/// hour; 0 raises on the day it expires; an expired certificate has negative days left.
pub fn certificate_expiry(
    rule: &CertificateExpiry,
    state: AlertState,
    tz: TimeZone,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Decision {
    let Some(expires_at) = expires_at else {
        return over(state);
    };
    let date = |t: DateTime<Utc>| t.with_timezone(&tz.tz()).date_naive();
    let days_left = (date(expires_at) - date(now)).num_days();
    let bound = Bound::Lower(rule.days() as f64);
    decide(state, bound.zone(days_left as f64, 0.0), TimeDelta::zero(), None, || Facts {
        value: days_left as f64,
        threshold: bound.threshold(),
        detail: Detail::Certificate { expires_at },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use AlertState::{Active, Inactive};

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn no_data_raises_when_the_silence_reaches_the_period() {
        let period = Period::new(3600).unwrap();
        let now = utc("2026-02-10T12:00:00Z");
        let raise = |since: &str, seconds: f64| {
            Decision::Raise(Facts {
                value: seconds,
                threshold: 3600.0,
                detail: Detail::Silence { since: utc(since) },
            })
        };
        // (state, last reading, decision)
        let cases = [
            (Inactive, Some("2026-02-10T11:00:01Z"), Decision::Nothing),
            (Inactive, Some("2026-02-10T11:00:00Z"), raise("2026-02-10T11:00:00Z", 3600.0)),
            (Inactive, Some("2026-02-08T12:00:00Z"), raise("2026-02-08T12:00:00Z", 172_800.0)),
            (Active, Some("2026-02-10T10:00:00Z"), Decision::Hold),
            (Active, Some("2026-02-10T11:59:00Z"), Decision::Clear),
            // A reading stamped ahead of our clock is fresh data.
            (Active, Some("2026-02-10T12:05:00Z"), Decision::Clear),
            (Inactive, None, Decision::Nothing),
            (Active, None, Decision::Hold),
        ];
        for (state, last, expected) in cases {
            assert_eq!(no_data(&period, state, last.map(utc), now), expected, "{state:?} {last:?}");
        }
    }

    #[test]
    fn gateway_offline_raises_after_the_period_and_clears_when_it_is_back() {
        let period = Period::new(900).unwrap();
        let now = utc("2026-02-10T12:00:00Z");
        // (state, offline since, decision)
        let cases = [
            (Inactive, Some("2026-02-10T11:45:01Z"), Decision::Nothing),
            (
                Inactive,
                Some("2026-02-10T11:45:00Z"),
                Decision::Raise(Facts {
                    value: 900.0,
                    threshold: 900.0,
                    detail: Detail::Silence { since: utc("2026-02-10T11:45:00Z") },
                }),
            ),
            (Active, Some("2026-02-10T09:00:00Z"), Decision::Hold),
            (Active, None, Decision::Clear),
            (Inactive, None, Decision::Nothing),
        ];
        for (state, since, expected) in cases {
            assert_eq!(gateway_offline(&period, state, since.map(utc), now), expected, "{state:?} {since:?}");
        }
    }

    #[test]
    fn certificate_expiry_counts_calendar_days_in_the_tenants_zone() {
        let rule = CertificateExpiry::new(30).unwrap();
        let sp = TimeZone::default();
        // 2026-02-08 09:00 in São Paulo (-03).
        let now = utc("2026-02-08T12:00:00Z");
        // (state, expires at, days left or the decision)
        let cases = [
            // 2026-03-10 is 30 days after 2026-02-08: raise, at the boundary.
            (Inactive, "2026-03-10T23:59:59-03:00", Some(30)),
            (Inactive, "2026-03-11T00:00:00-03:00", None),
            // 02:00 UTC on 03-11 is still 03-10 in São Paulo.
            (Inactive, "2026-03-11T02:00:00Z", Some(30)),
            (Inactive, "2026-03-11T03:00:00Z", None),
            (Inactive, "2026-02-08T23:00:00-03:00", Some(0)),
            (Inactive, "2026-02-01T10:00:00Z", Some(-7)),
        ];
        for (state, expires, expected) in cases {
            let got = certificate_expiry(&rule, state, sp, Some(utc(expires)), now);
            let want = expected.map_or(Decision::Nothing, |days: i64| {
                Decision::Raise(Facts {
                    value: days as f64,
                    threshold: 30.0,
                    detail: Detail::Certificate { expires_at: utc(expires) },
                })
            });
            assert_eq!(got, want, "{expires}");
        }
        // (state, expires at, decision): renewal (a later expiry) clears, no certificate clears.
        let cases = [
            (Active, Some("2026-03-01T00:00:00Z"), Decision::Hold),
            (Active, Some("2026-01-01T00:00:00Z"), Decision::Hold),
            (Active, Some("2027-02-08T00:00:00Z"), Decision::Clear),
            (Active, None, Decision::Clear),
            (Inactive, None, Decision::Nothing),
        ];
        for (state, expires, expected) in cases {
            assert_eq!(certificate_expiry(&rule, state, sp, expires.map(utc), now), expected, "{expires:?}");
        }
    }

    #[test]
    fn a_certificate_rule_of_zero_days_raises_on_the_expiry_date_only() {
        let rule = CertificateExpiry::new(0).unwrap();
        let tokyo = TimeZone::parse("Asia/Tokyo").unwrap();
        let expires = Some(utc("2026-05-01T00:30:00+09:00"));
        // 2026-04-30 23:59 in Tokyo is the day before; 2026-05-01 00:00 is the day.
        assert_eq!(
            certificate_expiry(&rule, Inactive, tokyo, expires, utc("2026-04-30T23:59:00+09:00")),
            Decision::Nothing
        );
        assert!(matches!(
            certificate_expiry(&rule, Inactive, tokyo, expires, utc("2026-05-01T00:00:00+09:00")),
            Decision::Raise(Facts { value: 0.0, .. })
        ));
    }
}
