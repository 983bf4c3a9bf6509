//! When a scheduled report runs (SPEC §6): monthly on a day of the month, or weekly on a day of
//! the week, at a local hour of the tenant's zone.
//!
//! Owns: the next run after an instant, across month ends and DST changes (a local hour that a
//! change skips runs at the first instant after the gap; one it repeats runs once, at the
//! first). Must not: run anything (the jobs crate does).

use chrono::{DateTime, Datelike as _, NaiveDate, NaiveTime, TimeDelta, Utc, Weekday};
use tds_domain::TimeZone;
use tds_domain::buckets::day_start;

/// A definition's schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// On `day` (1..=28, so that every month has it) at `hour`.
    Monthly { day: u8, hour: u8 },
    /// On `weekday` at `hour`.
    Weekly { weekday: Weekday, hour: u8 },
}

impl Schedule {
    /// A schedule from its stored words: `monthly` with a day 1..=28, or `weekly` with an ISO day
    /// 1 (Monday)..=7; an hour 0..=23. `None` for anything else.
    pub fn new(kind: &str, day: u8, hour: u8) -> Option<Self> {
        if hour > 23 {
            return None;
        }
        match kind {
            "monthly" if (1..=28).contains(&day) => Some(Self::Monthly { day, hour }),
            "weekly" if (1..=7).contains(&day) => {
                Some(Self::Weekly { weekday: Weekday::try_from(day - 1).ok()?, hour })
            }
            _ => None,
        }
    }

    pub const fn kind(self) -> &'static str {
        match self {
            Self::Monthly { .. } => "monthly",
            Self::Weekly { .. } => "weekly",
        }
    }

    /// The day number stored: the day of the month, or the ISO day of the week.
    pub fn day(self) -> u8 {
        match self {
            Self::Monthly { day, .. } => day,
            Self::Weekly { weekday, .. } => u8::try_from(weekday.number_from_monday()).unwrap_or(1),
        }
    }

    pub const fn hour(self) -> u8 {
        match self {
            Self::Monthly { hour, .. } | Self::Weekly { hour, .. } => hour,
        }
    }

    /// The period a run of this schedule reports by default: the month or week that just ended.
    pub const fn default_period(self) -> &'static str {
        match self {
            Self::Monthly { .. } => "previous_month",
            Self::Weekly { .. } => "previous_week",
        }
    }

    /// The first run strictly after `after`, in `zone`.
    pub fn next_after(self, after: DateTime<Utc>, zone: TimeZone) -> DateTime<Utc> {
        let today = after.with_timezone(&zone.tz()).date_naive();
        // The run of this period or of the next one: at most two months or two weeks ahead.
        let mut date = self.first_date_from(today);
        loop {
            let at = run_at(zone, date, self.hour());
            if at > after {
                return at;
            }
            date = self.first_date_from(date + TimeDelta::days(1));
        }
    }

    /// The first day on or after `date` that this schedule runs on.
    fn first_date_from(self, date: NaiveDate) -> NaiveDate {
        match self {
            Self::Monthly { day, .. } => {
                let day = u32::from(day);
                let this = date.with_day(day).unwrap_or(date);
                if date.day() <= day {
                    this
                } else {
                    crate::period::next_month_start(date.with_day(1).unwrap_or(date))
                        .with_day(day)
                        .unwrap_or(date)
                }
            }
            Self::Weekly { weekday, .. } => {
                let ahead = (7 + i64::from(weekday.num_days_from_monday())
                    - i64::from(date.weekday().num_days_from_monday()))
                    % 7;
                date + TimeDelta::days(ahead)
            }
        }
    }
}

/// The instant local `hour` o'clock on `date` is in `zone`: the earliest when the hour repeats,
/// the end of the gap when a DST change skips it.
fn run_at(zone: TimeZone, date: NaiveDate, hour: u8) -> DateTime<Utc> {
    let tz = zone.tz();
    let local = date.and_time(NaiveTime::from_hms_opt(u32::from(hour), 0, 0).unwrap_or(NaiveTime::MIN));
    if let Some(t) = local.and_local_timezone(tz).earliest() {
        return t.with_timezone(&Utc);
    }
    // Skipped: the next whole hour that exists (a gap lasts an hour, at most two).
    for h in 1..=3 {
        if let Some(t) = (local + TimeDelta::hours(h)).and_local_timezone(tz).earliest() {
            return t.with_timezone(&Utc);
        }
    }
    day_start(zone, date)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn zone(name: &str) -> TimeZone {
        TimeZone::parse(name).unwrap()
    }

    #[test]
    fn monthly_runs_on_its_day_at_the_local_hour() {
        let s = Schedule::new("monthly", 1, 6).unwrap();
        let sp = zone("America/Sao_Paulo");
        // 06:00 in São Paulo (UTC-3) is 09:00 UTC.
        assert_eq!(s.next_after(utc("2026-11-15T12:00:00Z"), sp), utc("2026-12-01T09:00:00Z"));
        assert_eq!(s.next_after(utc("2026-12-01T08:59:59Z"), sp), utc("2026-12-01T09:00:00Z"));
        assert_eq!(s.next_after(utc("2026-12-01T09:00:00Z"), sp), utc("2027-01-01T09:00:00Z"));
        let s = Schedule::new("monthly", 28, 23).unwrap();
        assert_eq!(s.next_after(utc("2027-02-28T12:00:00Z"), zone("UTC")), utc("2027-02-28T23:00:00Z"));
    }

    #[test]
    fn weekly_runs_on_its_weekday() {
        // ISO day 1 = Monday; 2026-12-03 is a Thursday.
        let s = Schedule::new("weekly", 1, 7).unwrap();
        assert_eq!(s.next_after(utc("2026-12-03T10:00:00Z"), zone("UTC")), utc("2026-12-07T07:00:00Z"));
        assert_eq!(s.next_after(utc("2026-12-07T07:00:00Z"), zone("UTC")), utc("2026-12-14T07:00:00Z"));
        assert_eq!(s.day(), 1);
    }

    #[test]
    fn a_skipped_local_hour_runs_after_the_gap() {
        // Europe/Berlin skips 02:00..03:00 on 2027-03-28.
        let s = Schedule::new("monthly", 28, 2).unwrap();
        assert_eq!(
            s.next_after(utc("2027-03-01T00:00:00Z"), zone("Europe/Berlin")),
            utc("2027-03-28T01:00:00Z")
        );
    }

    #[test]
    fn out_of_range_schedules_are_refused() {
        assert!(Schedule::new("monthly", 29, 6).is_none());
        assert!(Schedule::new("weekly", 8, 6).is_none());
        assert!(Schedule::new("monthly", 1, 24).is_none());
        assert!(Schedule::new("daily", 1, 6).is_none());
    }
}
