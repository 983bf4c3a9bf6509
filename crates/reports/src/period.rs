//! A report's time axis: the range of local days asked for, the buckets it is cut into (hour,
//! day, ISO week, calendar month or billing month in the tenant's zone, SPEC §6) and the ranges
//! it is compared with.
//!
//! Owns: which rollup granularity a bucket is summed from (hours for hours, days for everything
//! else, so that a range starting or ending inside a week or month holds exactly the days asked
//! for), the bucket each hour or day falls in, and the length of each hour or day (for the
//! readings expected). Must not: read the store.

use crate::ReportError;
use chrono::{DateTime, Datelike as _, Months, NaiveDate, NaiveDateTime, TimeDelta, Utc};
use tds_domain::TimeZone;
use tds_domain::buckets::{Bucket, bucket_starts, day_start, end_of_day, week_start};

/// The longest range a report covers in days (SPEC §11: a few years at most; a longer one is
/// refused, not computed), and in hours for hourly buckets (a quarter: ~2,200 rows per series).
pub const MAX_RANGE_DAYS: i64 = 1100;
pub const MAX_HOURLY_DAYS: i64 = 93;

/// How a report groups time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportBucket {
    Hour,
    Day,
    /// ISO week, Monday to Sunday, in the tenant's zone.
    Week,
    /// Calendar month, or the tenant's billing month when it has a billing day.
    Month,
}

impl ReportBucket {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "hour" => Some(Self::Hour),
            "day" => Some(Self::Day),
            "week" => Some(Self::Week),
            "month" => Some(Self::Month),
            _ => None,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
        }
    }

    /// The rollup granularity the buckets are summed from.
    pub const fn granularity(self) -> Bucket {
        match self {
            Self::Hour => Bucket::Hour,
            _ => Bucket::Day,
        }
    }
}

/// Local days `from..=to` in a zone, checked against the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRange {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl DayRange {
    pub fn new(from: NaiveDate, to: NaiveDate, bucket: ReportBucket) -> Result<Self, ReportError> {
        if to < from {
            return Err(ReportError::Invalid(format!("the last day {to} is before the first day {from}")));
        }
        let days = (to - from).num_days() + 1;
        let max = if bucket == ReportBucket::Hour { MAX_HOURLY_DAYS } else { MAX_RANGE_DAYS };
        if days > max {
            return Err(ReportError::Invalid(format!(
                "{days} days asked for; a report by {} covers at most {max} days",
                bucket.as_str()
            )));
        }
        end_of_day(TimeZone::default(), to)
            .ok_or_else(|| ReportError::Invalid(format!("{to} is out of range")))?;
        Ok(Self { from, to })
    }

    /// `[start, end)` in UTC: from the first instant of `from` to the first of the day after `to`.
    pub fn instants(self, tz: TimeZone) -> (DateTime<Utc>, DateTime<Utc>) {
        let end = end_of_day(tz, self.to).unwrap_or(DateTime::<Utc>::MAX_UTC);
        (day_start(tz, self.from), end)
    }

    pub fn days(self) -> impl Iterator<Item = NaiveDate> {
        self.from.iter_days().take_while(move |d| *d <= self.to)
    }

    /// Whether the range is whole months starting on `anchor` (1, or the billing day): then it is
    /// compared month for month rather than day for day.
    fn whole_months(self, anchor: u32) -> Option<u32> {
        let next = self.to.succ_opt()?;
        if self.from.day() != anchor || next.day() != anchor {
            return None;
        }
        let months = (next.year() - self.from.year()) * 12 + next.month() as i32 - self.from.month() as i32;
        u32::try_from(months).ok().filter(|m| *m > 0)
    }

    /// The range a comparison is made with: the same length just before (whole months stay whole
    /// months: March is compared with February), or the same days a year earlier.
    pub fn compared(self, with: Compare, billing_day: Option<u8>) -> Option<Self> {
        match with {
            Compare::Year => Some(Self {
                from: self.from.checked_sub_months(Months::new(12))?,
                to: self.to.checked_sub_months(Months::new(12))?,
            }),
            Compare::Previous => {
                let from = if let Some(n) = self.whole_months(billing_day.map_or(1, u32::from)) {
                    self.from.checked_sub_months(Months::new(n))?
                } else {
                    self.from - TimeDelta::days((self.to - self.from).num_days() + 1)
                };
                Some(Self { from, to: self.from.pred_opt()? })
            }
        }
    }
}

/// What a period is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compare {
    /// The period just before, of the same length (the previous month for a month).
    Previous,
    /// The same period a year earlier.
    Year,
}

impl Compare {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "previous" => Some(Self::Previous),
            "year" => Some(Self::Year),
            _ => None,
        }
    }
}

/// The first day of the month (calendar, or billing from `billing_day`) that `date` is in.
pub fn month_start(date: NaiveDate, billing_day: Option<u8>) -> NaiveDate {
    let anchor = billing_day.map_or(1, u32::from).clamp(1, 28);
    let this = date.with_day(anchor).unwrap_or(date);
    if date.day() >= anchor { this } else { this.checked_sub_months(Months::new(1)).unwrap_or(this) }
}

/// The first day of the month after the one starting at `start`.
pub fn next_month_start(start: NaiveDate) -> NaiveDate {
    start.checked_add_months(Months::new(1)).unwrap_or(start)
}

/// One bucket of a report, clipped to the range.
#[derive(Debug, Clone, PartialEq)]
pub struct Period {
    /// The bucket's nominal start (UTC): a week's Monday even when the range starts on a
    /// Wednesday (see [`Period::clipped`]).
    pub start: DateTime<Utc>,
    /// The same on the tenant's clock.
    pub local_start: NaiveDateTime,
    /// The first and last instant of the range inside the bucket: `[from, to)`.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The first and the last local day of the bucket inside the range (the hour's day for hours).
    pub first_day: NaiveDate,
    pub last_day: NaiveDate,
    /// The range cuts the bucket: it holds only the days asked for.
    pub clipped: bool,
}

/// The hours or days of a range (the rows a report sums) and the bucket each belongs to.
#[derive(Debug, Clone)]
pub struct Axis {
    pub periods: Vec<Period>,
    /// Start of each hour or day in the range (UTC), its length in seconds, and its period.
    pub slots: Vec<(DateTime<Utc>, i64, usize)>,
}

impl Axis {
    pub fn new(tz: TimeZone, range: DayRange, bucket: ReportBucket, billing_day: Option<u8>) -> Self {
        let zone = tz.tz();
        let local = |t: DateTime<Utc>| t.with_timezone(&zone).naive_local();
        let (start, end) = range.instants(tz);
        let mut periods: Vec<Period> = Vec::new();
        let mut slots = Vec::new();
        if bucket == ReportBucket::Hour {
            let starts: Vec<_> = bucket_starts(tz, Bucket::Hour, start, end).collect();
            for (i, s) in starts.iter().enumerate() {
                let next = starts.get(i + 1).copied().unwrap_or(end);
                let day = local(*s).date();
                periods.push(Period {
                    start: *s,
                    local_start: local(*s),
                    from: *s,
                    to: next,
                    first_day: day,
                    last_day: day,
                    clipped: false,
                });
                slots.push((*s, (next - *s).num_seconds(), i));
            }
            return Self { periods, slots };
        }
        for day in range.days() {
            let from = day_start(tz, day);
            let to = end_of_day(tz, day).unwrap_or(end);
            let nominal = match bucket {
                ReportBucket::Week => week_start(tz, from),
                ReportBucket::Month => day_start(tz, month_start(day, billing_day)),
                ReportBucket::Day | ReportBucket::Hour => from,
            };
            match periods.last_mut() {
                Some(p) if p.start == nominal => {
                    p.to = to;
                    p.last_day = day;
                }
                _ => periods.push(Period {
                    start: nominal,
                    local_start: local(nominal),
                    from,
                    to,
                    first_day: day,
                    last_day: day,
                    clipped: false,
                }),
            }
            slots.push((from, (to - from).num_seconds(), periods.len() - 1));
        }
        for p in &mut periods {
            let bucket_first = local(p.start).date();
            let whole_end = match bucket {
                ReportBucket::Week => bucket_first.checked_add_days(chrono::Days::new(7)),
                ReportBucket::Month => Some(next_month_start(bucket_first)),
                ReportBucket::Day | ReportBucket::Hour => None,
            };
            if let Some(whole_end) = whole_end {
                p.clipped = p.from != p.start || p.to != day_start(tz, whole_end);
            }
        }
        Self { periods, slots }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn sp() -> TimeZone {
        TimeZone::parse("America/Sao_Paulo").unwrap()
    }

    #[test]
    fn billing_months_run_from_the_billing_day_to_the_day_before_it() {
        assert_eq!(month_start(d("2019-02-14"), Some(15)), d("2019-01-15"));
        assert_eq!(month_start(d("2019-02-15"), Some(15)), d("2019-02-15"));
        assert_eq!(month_start(d("2019-02-15"), None), d("2019-02-01"));
        let axis = Axis::new(
            sp(),
            DayRange::new(d("2019-01-15"), d("2019-03-14"), ReportBucket::Month).unwrap(),
            ReportBucket::Month,
            Some(15),
        );
        let spans: Vec<_> = axis.periods.iter().map(|p| (p.first_day, p.last_day, p.clipped)).collect();
        assert_eq!(
            spans,
            [(d("2019-01-15"), d("2019-02-14"), false), (d("2019-02-15"), d("2019-03-14"), false)]
        );
    }

    #[test]
    fn an_iso_week_across_a_month_end_is_one_bucket_and_clipped_at_the_range() {
        // 2026-09-28 (Monday) .. 2026-10-04 (Sunday).
        let axis = Axis::new(
            sp(),
            DayRange::new(d("2026-09-28"), d("2026-10-04"), ReportBucket::Week).unwrap(),
            ReportBucket::Week,
            None,
        );
        assert_eq!(axis.periods.len(), 1);
        assert!(!axis.periods[0].clipped);
        let axis = Axis::new(
            sp(),
            DayRange::new(d("2026-09-30"), d("2026-10-04"), ReportBucket::Week).unwrap(),
            ReportBucket::Week,
            None,
        );
        assert_eq!(axis.periods[0].local_start.to_string(), "2026-09-28 00:00:00");
        assert!(axis.periods[0].clipped);
    }

    #[test]
    fn compared_ranges() {
        let march = DayRange::new(d("2026-03-01"), d("2026-03-31"), ReportBucket::Day).unwrap();
        let prev = march.compared(Compare::Previous, None).unwrap();
        assert_eq!((prev.from, prev.to), (d("2026-02-01"), d("2026-02-28")));
        let year = march.compared(Compare::Year, None).unwrap();
        assert_eq!((year.from, year.to), (d("2025-03-01"), d("2025-03-31")));
        let billing = DayRange::new(d("2026-03-15"), d("2026-04-14"), ReportBucket::Month).unwrap();
        let prev = billing.compared(Compare::Previous, Some(15)).unwrap();
        assert_eq!((prev.from, prev.to), (d("2026-02-15"), d("2026-03-14")));
        let ten = DayRange::new(d("2026-03-05"), d("2026-03-14"), ReportBucket::Day).unwrap();
        let prev = ten.compared(Compare::Previous, None).unwrap();
        assert_eq!((prev.from, prev.to), (d("2026-02-23"), d("2026-03-04")));
    }

    #[test]
    fn ranges_are_bounded() {
        assert!(DayRange::new(d("2020-01-01"), d("2026-01-01"), ReportBucket::Month).is_err());
        assert!(DayRange::new(d("2026-01-01"), d("2026-06-01"), ReportBucket::Hour).is_err());
        assert!(DayRange::new(d("2026-01-02"), d("2026-01-01"), ReportBucket::Day).is_err());
    }
}
