//! When a notification is attempted (SPEC §5): the retry back-off of failed deliveries and the
//! quiet hours that make a non-critical email wait.
//!
//! Owns: [`QuietHours`] and its arithmetic in the tenant's zone (DST included), [`retry_at`] and
//! its constants. Must not: read a clock (callers pass `now`) or know how rows are stored.

use super::Severity;
use crate::ValidationError;
use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone as _, Timelike, Utc};
use chrono_tz::Tz;
use serde::Serialize;

/// The first retry waits this long; each next one twice as long as the one before.
pub const FIRST_RETRY: Duration = Duration::seconds(30);
/// No wait between attempts is longer.
pub const MAX_RETRY: Duration = Duration::hours(1);
/// A delivery is given up this long after it was queued.
pub const GIVE_UP_AFTER: Duration = Duration::hours(24);

/// When to try a failed delivery again, or `None` to give up: `attempts` have been made so far
/// (this failure included), the row was queued at `created_at`, this attempt failed at `now`.
/// Waits 30 s, 1 min, 2 min, … up to an hour; the last attempt is made at `created_at + 24 h`.
pub fn retry_at(created_at: DateTime<Utc>, attempts: i64, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let deadline = created_at + GIVE_UP_AFTER;
    if now >= deadline {
        return None;
    }
    // 30 s · 2^7 = 64 min is past the cap already: larger exponents change nothing.
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 7)).unwrap_or(7);
    let wait = (FIRST_RETRY * 2i32.pow(doublings)).min(MAX_RETRY);
    Some((now + wait).min(deadline))
}

/// Quiet hours in the tenant's time, minute precision: non-critical email waits until they end.
/// `start` after `end` crosses midnight (22:00–07:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QuietHours {
    start: NaiveTime,
    end: NaiveTime,
}

impl QuietHours {
    /// Seconds are dropped; a start equal to the end is refused (empty, or the whole day).
    pub fn new(start: NaiveTime, end: NaiveTime) -> Result<Self, ValidationError> {
        let (start, end) = (minute(start), minute(end));
        if start == end {
            return Err(ValidationError::Rule {
                field: "quiet hours",
                value: format!("{}–{}", start.format("%H:%M"), end.format("%H:%M")),
                reason: "must start and end at different times".into(),
            });
        }
        Ok(Self { start, end })
    }
    pub const fn start(self) -> NaiveTime {
        self.start
    }
    pub const fn end(self) -> NaiveTime {
        self.end
    }
    /// Whether the local time `t` is inside them (the start included, the end not).
    pub fn contains(self, t: NaiveTime) -> bool {
        if self.start < self.end { self.start <= t && t < self.end } else { t >= self.start || t < self.end }
    }

    /// When quiet hours that hold at `at` end (`at` itself when they do not hold), in `zone`.
    pub fn end_after(self, at: DateTime<Utc>, zone: Tz) -> DateTime<Utc> {
        let local = at.with_timezone(&zone);
        let time = local.time();
        if !self.contains(time) {
            return at;
        }
        // Inside: the end is today, unless the hours cross midnight and we are before it.
        let today = local.date_naive();
        let day = if self.start > self.end && time >= self.start {
            today.succ_opt().unwrap_or(today)
        } else {
            today
        };
        local_instant(zone, day, self.end).max(at)
    }
}

/// The first instant at `time` on `day` in `zone`; a time skipped by a DST change becomes the
/// first instant after the gap.
fn local_instant(zone: Tz, day: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
    let mut naive = day.and_time(time);
    // A gap is at most a few hours; step through it a quarter hour at a time.
    for _ in 0..16 {
        if let Some(t) = zone.from_local_datetime(&naive).earliest() {
            return t.with_timezone(&Utc);
        }
        naive += Duration::minutes(15);
    }
    naive.and_utc()
}

fn minute(t: NaiveTime) -> NaiveTime {
    NaiveTime::from_hms_opt(t.hour(), t.minute(), 0).unwrap_or(t)
}

/// The first attempt of an email of `severity` queued at `now` for someone with `quiet` hours:
/// the end of their quiet hours for INFO and WARNING, at once for CRITICAL (never waits) or
/// without quiet hours.
pub fn first_email_attempt(
    now: DateTime<Utc>,
    severity: Severity,
    quiet: Option<QuietHours>,
    zone: Tz,
) -> DateTime<Utc> {
    match quiet {
        Some(q) if severity != Severity::Critical => q.end_after(now, zone),
        _ => now,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }
    fn hm(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    #[test]
    fn back_off_doubles_from_30_s_to_an_hour_and_gives_up_after_a_day() {
        let created = t("2026-03-01T12:00:00Z");
        let cases: [(i64, i64, Option<i64>); 11] = [
            // (attempts, seconds after created when it failed, seconds to wait)
            (1, 0, Some(30)),
            (2, 30, Some(60)),
            (3, 90, Some(120)),
            (4, 210, Some(240)),
            (7, 2000, Some(1920)),
            (8, 4000, Some(3600)),
            (40, 40_000, Some(3600)),
            (0, 0, Some(30)),
            // An hour before the deadline the wait is cut short to it.
            (30, 86_400 - 600, Some(600)),
            (31, 86_400, None),
            (31, 90_000, None),
        ];
        for (attempts, after, wait) in cases {
            let now = created + Duration::seconds(after);
            let got = retry_at(created, attempts, now).map(|at| (at - now).num_seconds());
            assert_eq!(got, wait, "attempts {attempts} at +{after}s");
        }
    }

    #[test]
    fn quiet_hours_contain_their_start_not_their_end() {
        let night = QuietHours::new(hm(22, 0), hm(7, 0)).unwrap();
        assert!(night.contains(hm(22, 0)) && night.contains(hm(3, 0)) && night.contains(hm(6, 59)));
        assert!(!night.contains(hm(7, 0)) && !night.contains(hm(12, 0)));
        let lunch = QuietHours::new(hm(12, 0), hm(13, 30)).unwrap();
        assert!(lunch.contains(hm(12, 30)) && !lunch.contains(hm(13, 30)) && !lunch.contains(hm(11, 0)));
        assert!(QuietHours::new(hm(8, 0), NaiveTime::from_hms_opt(8, 0, 40).unwrap()).is_err());
    }

    #[test]
    fn a_non_critical_email_waits_for_the_end_of_quiet_hours_in_the_tenants_zone() {
        let sp = chrono_tz::America::Sao_Paulo; // UTC−3, no DST since 2019
        let night = Some(QuietHours::new(hm(22, 0), hm(7, 0)).unwrap());
        let cases = [
            // (now UTC, severity, first attempt UTC)
            ("2026-03-02T02:00:00Z", Severity::Warning, "2026-03-02T10:00:00Z"), // 23:00 local → 07:00 next day
            ("2026-03-02T08:00:00Z", Severity::Info, "2026-03-02T10:00:00Z"),    // 05:00 local → 07:00
            ("2026-03-02T01:00:00Z", Severity::Warning, "2026-03-02T10:00:00Z"), // 22:00 exactly
            ("2026-03-02T10:00:00Z", Severity::Warning, "2026-03-02T10:00:00Z"), // 07:00: over
            ("2026-03-02T15:00:00Z", Severity::Warning, "2026-03-02T15:00:00Z"), // noon: not quiet
            ("2026-03-02T02:00:00Z", Severity::Critical, "2026-03-02T02:00:00Z"), // critical never waits
        ];
        for (now, severity, want) in cases {
            assert_eq!(first_email_attempt(t(now), severity, night, sp), t(want), "{now} {severity}");
        }
        assert_eq!(
            first_email_attempt(t("2026-03-02T02:00:00Z"), Severity::Info, None, sp),
            t("2026-03-02T02:00:00Z")
        );
        let lunch = Some(QuietHours::new(hm(12, 0), hm(13, 0)).unwrap());
        assert_eq!(
            first_email_attempt(t("2026-03-02T15:20:00Z"), Severity::Info, lunch, sp),
            t("2026-03-02T16:00:00Z")
        );
    }

    #[test]
    fn a_quiet_end_skipped_by_a_dst_change_becomes_the_first_instant_after_it() {
        // New York, 2026-03-08: 02:00 → 03:00. Quiet 23:00–02:30 ends at 03:00 local (07:00 UTC).
        let ny = chrono_tz::America::New_York;
        let q = Some(QuietHours::new(hm(23, 0), hm(2, 30)).unwrap());
        let now = t("2026-03-08T05:00:00Z"); // 00:00 EST
        assert_eq!(first_email_attempt(now, Severity::Warning, q, ny), t("2026-03-08T07:00:00Z"));
    }
}
