//! Time buckets in a tenant's time zone: the local clock hour, local day and local month that
//! rollups (SPEC §1), reports and charts group readings by.
//!
//! Owns: the UTC instant at which the bucket containing an instant starts, the next bucket's
//! start, a bucket's length, the buckets overlapping a UTC range, and the number of readings a
//! bucket should hold (completeness). Must not: do I/O or know about readings (see
//! [`crate::rollup`]).
//!
//! A bucket is a half-open UTC range `[start, next start)`: buckets of one size neither overlap
//! nor leave gaps, so every instant is in exactly one. Where the local calendar is irregular:
//! - A day or month starts at the first instant of its local date. A local midnight that occurs
//!   twice (a fall-back at midnight) starts the day at the earlier one; one that does not exist
//!   (a spring-forward at midnight, as in `America/Sao_Paulo` until 2019) starts the day at the
//!   transition, i.e. at 01:00 local. Days of a daylight-saving change last 23 or 25 hours and
//!   months end where the local calendar says.
//! - An hour bucket is a local clock hour *at one UTC offset*: in `Asia/Kolkata` (+05:30) hours
//!   start at hh:30 UTC; the clock hour that a fall-back repeats is two buckets of one hour each
//!   (the 25-hour day has 25 hour buckets, and a reading is never counted in an hour that is two
//!   hours long); a transition off the hour (`Australia/Lord_Howe` shifts by 30 minutes) cuts the
//!   clock hour it falls in.
//!
//! Instants within a day of chrono's representable range saturate at its ends rather than fail:
//! no reading is ever that far out (the telemetry parser bounds times).

use crate::TimeZone;
use chrono::{
    DateTime, Datelike as _, FixedOffset, LocalResult, Months, NaiveDate, NaiveDateTime, NaiveTime,
    Offset as _, TimeDelta, TimeZone as _, Timelike as _, Utc,
};
use chrono_tz::Tz;
use std::fmt;

/// A rollup granularity. The canonical spelling (`hour`, `day`, `month`) is what the database's
/// `granularity` column stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    Hour,
    Day,
    Month,
}

impl Bucket {
    pub const ALL: &'static [Bucket] = &[Bucket::Hour, Bucket::Day, Bucket::Month];

    pub const fn as_str(self) -> &'static str {
        match self {
            Bucket::Hour => "hour",
            Bucket::Day => "day",
            Bucket::Month => "month",
        }
    }

    /// The inverse of [`Bucket::as_str`]; `None` for anything else (the column has a CHECK).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|b| b.as_str() == name)
    }
}

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The UTC instant at which the local hour, day or month containing `instant` starts.
pub fn bucket_start(tz: TimeZone, bucket: Bucket, instant: DateTime<Utc>) -> DateTime<Utc> {
    let tz = tz.tz();
    match bucket {
        Bucket::Hour => hour_start(tz, instant),
        Bucket::Day => first_instant_of(tz, local(tz, instant).date()),
        Bucket::Month => {
            let date = local(tz, instant).date();
            first_instant_of(tz, date.with_day(1).unwrap_or(date))
        }
    }
}

/// The UTC instant at which the local date `date` starts in `tz` (its first real instant, as
/// for day buckets): what a report's `from`/`to` dates mean.
pub fn day_start(tz: TimeZone, date: NaiveDate) -> DateTime<Utc> {
    first_instant_of(tz.tz(), date)
}

/// The instant a period whose last day is `date` ends: the start of the next local day (a token's
/// or a report's last day lasts through that whole day in `tz`). `None` past chrono's range.
pub fn end_of_day(tz: TimeZone, date: NaiveDate) -> Option<DateTime<Utc>> {
    date.succ_opt().map(|next| day_start(tz, next))
}

/// The UTC instant at which the ISO week (Monday to Sunday, local) containing `instant` starts.
pub fn week_start(tz: TimeZone, instant: DateTime<Utc>) -> DateTime<Utc> {
    let date = local(tz.tz(), instant).date();
    let monday = date - TimeDelta::days(i64::from(date.weekday().num_days_from_monday()));
    first_instant_of(tz.tz(), monday)
}

/// The UTC instant at which the bucket after the one containing `instant` starts (the end of
/// `instant`'s bucket).
pub fn next_bucket_start(tz: TimeZone, bucket: Bucket, instant: DateTime<Utc>) -> DateTime<Utc> {
    let tz = tz.tz();
    let date = local(tz, instant).date();
    let next_date = match bucket {
        Bucket::Hour => return next_hour_start(tz, instant),
        Bucket::Day => date.succ_opt(),
        Bucket::Month => date.with_day(1).and_then(|first| first.checked_add_months(Months::new(1))),
    };
    next_date.map_or(DateTime::<Utc>::MAX_UTC, |d| first_instant_of(tz, d))
}

/// The length in seconds of the bucket containing `instant`: 3600 for most hours, 82 800 or
/// 90 000 for the days of a one-hour daylight-saving change, 2 419 200 to 2 678 400 (± an hour)
/// for months.
pub fn bucket_len_seconds(tz: TimeZone, bucket: Bucket, instant: DateTime<Utc>) -> i64 {
    (next_bucket_start(tz, bucket, instant) - bucket_start(tz, bucket, instant)).num_seconds()
}

/// The start of every bucket that overlaps `[from, to)`, in order: the first is the start of the
/// bucket containing `from` (which may be before `from`); none when `to <= from`.
pub fn bucket_starts(tz: TimeZone, bucket: Bucket, from: DateTime<Utc>, to: DateTime<Utc>) -> BucketStarts {
    let next = (from < to).then(|| bucket_start(tz, bucket, from));
    BucketStarts { tz, bucket, next, end: to }
}

/// Iterator returned by [`bucket_starts`].
#[derive(Debug, Clone)]
pub struct BucketStarts {
    tz: TimeZone,
    bucket: Bucket,
    next: Option<DateTime<Utc>>,
    end: DateTime<Utc>,
}

impl Iterator for BucketStarts {
    type Item = DateTime<Utc>;

    fn next(&mut self) -> Option<DateTime<Utc>> {
        let start = self.next.filter(|s| *s < self.end)?;
        let following = next_bucket_start(self.tz, self.bucket, start);
        // Only a saturated end of time fails to move forward; stop there instead of looping.
        self.next = (following > start).then_some(following);
        Some(start)
    }
}

/// How many readings a bucket of `bucket_len_seconds` should hold from a device reporting every
/// `interval_seconds`: the whole number of intervals in the bucket (rounded down, so that a
/// device that never misses a reading is complete whatever the phase of its clock). 0 when
/// either is not positive or the interval is longer than the bucket.
pub fn expected_readings(bucket_len_seconds: i64, interval_seconds: i64) -> u32 {
    if bucket_len_seconds <= 0 || interval_seconds <= 0 {
        return 0;
    }
    u32::try_from(bucket_len_seconds / interval_seconds).unwrap_or(u32::MAX)
}

/// Readings received / readings expected, capped at 1.0 (a gateway that reported more often
/// than configured, or a backlog replayed, is complete, not 130 % complete). `None` when nothing
/// was expected: completeness of an hour for a device that reports daily means nothing.
pub fn completeness(received: u32, expected: u32) -> Option<f64> {
    (expected > 0).then(|| (f64::from(received) / f64::from(expected)).min(1.0))
}

// ---------------------------------------------------------------------------------------------

fn local(tz: Tz, t: DateTime<Utc>) -> NaiveDateTime {
    t.with_timezone(&tz).naive_local()
}

fn offset_at(tz: Tz, t: DateTime<Utc>) -> FixedOffset {
    tz.offset_from_utc_datetime(&t.naive_utc()).fix()
}

fn plus(t: DateTime<Utc>, d: TimeDelta) -> DateTime<Utc> {
    t.checked_add_signed(d).unwrap_or(if d < TimeDelta::zero() {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

/// How far `t` is past the start of its local clock hour.
fn into_local_hour(tz: Tz, t: DateTime<Utc>) -> TimeDelta {
    let l = local(tz, t);
    TimeDelta::seconds(i64::from(l.minute() * 60 + l.second()))
        + TimeDelta::nanoseconds(i64::from(l.nanosecond()))
}

fn hour_start(tz: Tz, t: DateTime<Utc>) -> DateTime<Utc> {
    let offset = offset_at(tz, t);
    let start = plus(t, -into_local_hour(tz, t));
    if offset_at(tz, start) == offset {
        start
    } else {
        // The offset changed within this clock hour: the bucket starts at the change.
        first_where(start, t, |u| offset_at(tz, u) == offset)
    }
}

fn next_hour_start(tz: Tz, t: DateTime<Utc>) -> DateTime<Utc> {
    let start = hour_start(tz, t);
    let offset = offset_at(tz, start);
    let end = plus(start, TimeDelta::hours(1) - into_local_hour(tz, start));
    if offset_at(tz, plus(end, TimeDelta::seconds(-1))) == offset {
        end
    } else {
        first_where(start, end, |u| offset_at(tz, u) != offset)
    }
}

/// The first instant of a local date (see the module header for repeated and missing midnights).
fn first_instant_of(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    let midnight = date.and_time(NaiveTime::MIN);
    match tz.from_local_datetime(&midnight) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => a.min(b).with_timezone(&Utc),
        LocalResult::None => {
            // Midnight is in a spring-forward gap: the day starts at the first instant whose local
            // time is past midnight, the transition. UTC offsets are within ±14 h, so 26 h either
            // side of midnight-as-UTC brackets it.
            let guess = midnight.and_utc();
            first_where(plus(guess, TimeDelta::hours(-26)), plus(guess, TimeDelta::hours(26)), |u| {
                local(tz, u) >= midnight
            })
        }
    }
}

/// The first whole-second instant in `(lo, hi]` at which `holds` is true, for a predicate that is
/// false at `lo`, true at `hi`, and changes once in between (an offset transition; transitions
/// fall on whole seconds). Bisection: at most about 18 steps for the widest bracket used.
fn first_where(lo: DateTime<Utc>, hi: DateTime<Utc>, holds: impl Fn(DateTime<Utc>) -> bool) -> DateTime<Utc> {
    let base = plus(lo, -TimeDelta::nanoseconds(i64::from(lo.timestamp_subsec_nanos())));
    let at = |k: i64| plus(base, TimeDelta::seconds(k));
    let (mut false_at, mut true_at) = (0_i64, (hi - base).num_seconds() + 1);
    while true_at - false_at > 1 {
        let mid = false_at + (true_at - false_at) / 2;
        if holds(at(mid)) {
            true_at = mid;
        } else {
            false_at = mid;
        }
    }
    at(true_at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn zone(name: &str) -> TimeZone {
        TimeZone::parse(name).unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// (start, length in seconds) of the bucket containing `at`.
    fn bucket(tz: &str, b: Bucket, at: &str) -> (DateTime<Utc>, i64) {
        let tz = zone(tz);
        (bucket_start(tz, b, utc(at)), bucket_len_seconds(tz, b, utc(at)))
    }

    #[test]
    fn sao_paulo_day_that_began_at_one_in_the_morning_is_23_hours_long() {
        // 2018-11-04: clocks went from 00:00 -03 to 01:00 -02; local midnight did not exist.
        assert_eq!(
            bucket("America/Sao_Paulo", Bucket::Day, "2018-11-04T12:00:00Z"),
            (utc("2018-11-04T03:00:00Z"), 82_800)
        );
        assert_eq!(
            bucket("America/Sao_Paulo", Bucket::Day, "2018-11-04T02:59:59Z"),
            (utc("2018-11-03T03:00:00Z"), 86_400)
        );
        assert_eq!(
            bucket("America/Sao_Paulo", Bucket::Day, "2018-11-05T02:00:00Z"),
            (utc("2018-11-05T02:00:00Z"), 86_400)
        );
        // The hour before the gap is 23:00 -03, the next one 01:00 -02.
        assert_eq!(
            bucket("America/Sao_Paulo", Bucket::Hour, "2018-11-04T02:30:00Z"),
            (utc("2018-11-04T02:00:00Z"), 3600)
        );
        assert_eq!(
            bucket("America/Sao_Paulo", Bucket::Hour, "2018-11-04T03:00:00Z"),
            (utc("2018-11-04T03:00:00Z"), 3600)
        );
    }

    #[test]
    fn sao_paulo_day_before_the_end_of_daylight_saving_is_25_hours_long() {
        // 2019-02-17 00:00 -02 became 2019-02-16 23:00 -03: the 16th had 23:00 twice.
        assert_eq!(
            bucket("America/Sao_Paulo", Bucket::Day, "2019-02-16T12:00:00Z"),
            (utc("2019-02-16T02:00:00Z"), 90_000)
        );
        assert_eq!(
            bucket("America/Sao_Paulo", Bucket::Day, "2019-02-17T02:59:59Z"),
            (utc("2019-02-16T02:00:00Z"), 90_000)
        );
        assert_eq!(
            bucket("America/Sao_Paulo", Bucket::Day, "2019-02-17T03:00:00Z"),
            (utc("2019-02-17T03:00:00Z"), 86_400)
        );
        // Both 23:00s are hour buckets of their own.
        assert_eq!(
            bucket("America/Sao_Paulo", Bucket::Hour, "2019-02-17T01:59:59Z"),
            (utc("2019-02-17T01:00:00Z"), 3600)
        );
        assert_eq!(
            bucket("America/Sao_Paulo", Bucket::Hour, "2019-02-17T02:00:00Z"),
            (utc("2019-02-17T02:00:00Z"), 3600)
        );
        // February 2019 started at -02 and March at -03.
        assert_eq!(
            bucket("America/Sao_Paulo", Bucket::Month, "2019-02-20T00:00:00Z"),
            (utc("2019-02-01T02:00:00Z"), 28 * 86_400 + 3600)
        );
    }

    #[test]
    fn new_york_spring_forward_and_fall_back_days_and_hours() {
        assert_eq!(
            bucket("America/New_York", Bucket::Day, "2026-03-08T12:00:00Z"),
            (utc("2026-03-08T05:00:00Z"), 82_800)
        );
        assert_eq!(
            bucket("America/New_York", Bucket::Hour, "2026-03-08T06:59:59Z"),
            (utc("2026-03-08T06:00:00Z"), 3600)
        );
        assert_eq!(
            bucket("America/New_York", Bucket::Hour, "2026-03-08T07:00:00Z"),
            (utc("2026-03-08T07:00:00Z"), 3600)
        );
        assert_eq!(
            bucket("America/New_York", Bucket::Day, "2026-11-01T12:00:00Z"),
            (utc("2026-11-01T04:00:00Z"), 90_000)
        );
        // 01:00-02:00 happens at -04 and again at -05.
        assert_eq!(
            bucket("America/New_York", Bucket::Hour, "2026-11-01T05:30:00Z"),
            (utc("2026-11-01T05:00:00Z"), 3600)
        );
        assert_eq!(
            bucket("America/New_York", Bucket::Hour, "2026-11-01T06:30:00Z"),
            (utc("2026-11-01T06:00:00Z"), 3600)
        );
        assert_eq!(
            bucket("America/New_York", Bucket::Month, "2026-03-31T12:00:00Z"),
            (utc("2026-03-01T05:00:00Z"), 31 * 86_400 - 3600)
        );
    }

    #[test]
    fn half_hour_zone_hours_start_at_half_past_utc() {
        assert_eq!(
            bucket("Asia/Kolkata", Bucket::Hour, "2026-04-01T04:29:59Z"),
            (utc("2026-04-01T03:30:00Z"), 3600)
        );
        assert_eq!(
            bucket("Asia/Kolkata", Bucket::Hour, "2026-04-01T04:30:00Z"),
            (utc("2026-04-01T04:30:00Z"), 3600)
        );
        assert_eq!(
            bucket("Asia/Kolkata", Bucket::Day, "2026-04-01T18:29:59Z"),
            (utc("2026-03-31T18:30:00Z"), 86_400)
        );
    }

    #[test]
    fn transition_off_the_hour_cuts_the_clock_hour() {
        // Lord Howe Island: 2026-10-04 02:00 +10:30 became 02:30 +11 (at 15:30 UTC on the 3rd).
        let tz = "Australia/Lord_Howe";
        assert_eq!(bucket(tz, Bucket::Hour, "2026-10-03T15:29:59Z"), (utc("2026-10-03T14:30:00Z"), 3600));
        assert_eq!(bucket(tz, Bucket::Hour, "2026-10-03T15:45:00Z"), (utc("2026-10-03T15:30:00Z"), 1800));
        assert_eq!(bucket(tz, Bucket::Hour, "2026-10-03T16:00:00Z"), (utc("2026-10-03T16:00:00Z"), 3600));
        assert_eq!(bucket(tz, Bucket::Day, "2026-10-04T00:00:00Z"), (utc("2026-10-03T13:30:00Z"), 84_600));
    }

    #[test]
    fn month_ends_where_the_local_calendar_says() {
        // 2026-01-31 23:30 -03 and 2026-02-01 00:30 -03 are both on 2026-02-01 in UTC.
        assert_eq!(
            bucket("America/Sao_Paulo", Bucket::Month, "2026-02-01T02:30:00Z"),
            (utc("2026-01-01T03:00:00Z"), 31 * 86_400)
        );
        assert_eq!(
            bucket("America/Sao_Paulo", Bucket::Month, "2026-02-01T03:30:00Z"),
            (utc("2026-02-01T03:00:00Z"), 28 * 86_400)
        );
        assert_eq!(
            bucket("UTC", Bucket::Month, "2026-02-01T02:30:00Z"),
            (utc("2026-02-01T00:00:00Z"), 28 * 86_400)
        );
        assert_eq!(
            bucket("UTC", Bucket::Month, "2028-02-10T00:00:00Z"),
            (utc("2028-02-01T00:00:00Z"), 29 * 86_400)
        );
    }

    #[test]
    fn skipped_local_day_is_not_a_bucket() {
        // Samoa skipped 2011-12-30 entirely: the 29th (-10) is followed by the 31st (+14).
        let tz = zone("Pacific/Apia");
        let day29 = utc("2011-12-30T09:00:00Z");
        assert_eq!(next_bucket_start(tz, Bucket::Day, day29), utc("2011-12-30T10:00:00Z"));
        assert_eq!(bucket_start(tz, Bucket::Day, utc("2011-12-30T10:00:00Z")), utc("2011-12-30T10:00:00Z"));
    }

    #[test]
    fn bucket_starts_lists_every_overlapping_bucket() {
        let tz = zone("America/Sao_Paulo");
        let days: Vec<_> =
            bucket_starts(tz, Bucket::Day, utc("2018-11-03T12:00:00Z"), utc("2018-11-05T02:00:00Z"))
                .collect();
        assert_eq!(days, [utc("2018-11-03T03:00:00Z"), utc("2018-11-04T03:00:00Z")]);
        let hours = bucket_starts(tz, Bucket::Hour, utc("2019-02-16T02:00:00Z"), utc("2019-02-17T03:00:00Z"));
        assert_eq!(hours.count(), 25);
        assert_eq!(
            bucket_starts(tz, Bucket::Month, utc("2026-01-01T00:00:00Z"), utc("2026-01-01T00:00:00Z"))
                .count(),
            0
        );
    }

    #[test]
    fn expected_readings_and_completeness() {
        assert_eq!(expected_readings(3600, 300), 12);
        assert_eq!(expected_readings(82_800, 300), 276);
        assert_eq!(expected_readings(90_000, 300), 300);
        assert_eq!(expected_readings(3600, 7), 514);
        assert_eq!(expected_readings(3600, 86_400), 0);
        assert_eq!(expected_readings(3600, 0), 0);
        assert_eq!(expected_readings(-1, 300), 0);
        assert_eq!(completeness(6, 12), Some(0.5));
        assert_eq!(completeness(13, 12), Some(1.0));
        assert_eq!(completeness(1, 0), None);
    }

    #[test]
    fn granularity_names_round_trip() {
        for b in Bucket::ALL {
            assert_eq!(Bucket::from_name(&b.to_string()), Some(*b));
        }
        assert_eq!(Bucket::from_name("week"), None);
    }

    const ZONES: &[&str] = &[
        "America/Sao_Paulo",
        "America/New_York",
        "Asia/Kolkata",
        "Australia/Lord_Howe",
        "Europe/London",
        "UTC",
    ];

    proptest! {
        #[test]
        fn every_instant_is_in_exactly_one_bucket(
            zone_index in 0..ZONES.len(),
            b in prop::sample::select(Bucket::ALL),
            // 2000-01-01 .. 2040-01-01, to the millisecond.
            millis in 946_684_800_000_i64..2_208_988_800_000,
        ) {
            let tz = zone(ZONES[zone_index]);
            let t = DateTime::from_timestamp_millis(millis).unwrap();
            let start = bucket_start(tz, b, t);
            let next = next_bucket_start(tz, b, t);
            prop_assert!(start <= t && t < next, "{start} <= {t} < {next}");
            prop_assert_eq!(bucket_start(tz, b, start), start);
            prop_assert_eq!(bucket_start(tz, b, next), next);
            prop_assert_eq!(next_bucket_start(tz, b, start), next);
            let before = start - TimeDelta::nanoseconds(1);
            prop_assert_eq!(next_bucket_start(tz, b, before), start);
            let len = (next - start).num_seconds();
            let (min, max) = match b {
                Bucket::Hour => (1800, 3600),
                Bucket::Day => (82_800, 90_000),
                Bucket::Month => (28 * 86_400 - 3600, 31 * 86_400 + 3600),
            };
            prop_assert!((min..=max).contains(&len), "{b} of {len} s at {start}");
        }
    }
}

#[cfg(test)]
mod week_tests {
    use super::*;

    fn sp() -> TimeZone {
        TimeZone::parse("America/Sao_Paulo").unwrap()
    }

    #[test]
    fn iso_weeks_start_on_local_monday_even_across_a_month_end() {
        // Sunday 2026-11-01 23:30 in São Paulo (-03:00) is 02:30 UTC on Monday the 2nd.
        let late_sunday = DateTime::parse_from_rfc3339("2026-11-02T02:30:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(week_start(sp(), late_sunday).to_rfc3339(), "2026-10-26T03:00:00+00:00");
        let monday = DateTime::parse_from_rfc3339("2026-11-02T03:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(week_start(sp(), monday), monday);
    }

    #[test]
    fn a_day_without_a_midnight_starts_at_the_transition() {
        // 2018-11-04: clocks went from 00:00 to 01:00 in São Paulo; the day starts at 01:00 -02:00.
        let start = day_start(sp(), NaiveDate::from_ymd_opt(2018, 11, 4).unwrap());
        assert_eq!(start.to_rfc3339(), "2018-11-04T03:00:00+00:00");
    }
}
