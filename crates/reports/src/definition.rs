//! A saved report (SPEC §6): what the Relatórios page asks for, kept as a [`ReportSpec`] so that
//! the page, a saved definition and a scheduled run make the same report. Periods may be
//! relative ("the previous month"), resolved against the day a report is made in the tenant's
//! zone: a monthly schedule on the 1st reports the month that just ended.
//!
//! Owns: the spec's stored form (JSON, every field checked on the way in and out), the relative
//! periods, the file formats a report is delivered as and [`render`]. Must not: read the store or
//! decide when a schedule runs (see [`crate::schedule`]).

use crate::csv_out::CsvStyle;
use crate::period::{Compare, DayRange, ReportBucket, month_start};
use crate::query::Scope;
use crate::{Lang, Report, ReportError, ReportRequest};
use chrono::{DateTime, Datelike as _, NaiveDate, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use tds_domain::{DeviceCode, Mac, Medium, TenantId, TimeZone};

/// Most devices one report compares (SPEC §11: every input bounded).
pub const MAX_DEVICES: usize = 50;
/// The longest "last N days".
pub const MAX_LAST_DAYS: u16 = 366;

/// What a report covers and how it is cut, as saved and as the page's form sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSpec {
    /// `tenant`, `medium`, `gateway` or `devices`.
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<String>,
    /// The gateway's MAC (scopes `gateway` and `devices`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Device codes of the gateway (scope `devices`): one, or several to compare.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// See [`PeriodKind`].
    pub period: String,
    /// `fixed` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<NaiveDate>,
    /// `last_days` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<u16>,
    /// `hour`, `day`, `week` or `month`.
    pub bucket: String,
    /// `previous` and/or `year`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compare: Vec<String>,
}

/// The periods a report may cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeriodKind {
    /// The (billing) month before the current one: what a monthly schedule sends.
    PreviousMonth,
    /// The current (billing) month so far, with the month-end projection.
    CurrentMonth,
    /// The ISO week before the current one: what a weekly schedule sends.
    PreviousWeek,
    /// The N whole days before today.
    LastDays,
    /// From `from` to `to`, both included.
    Fixed,
}

impl PeriodKind {
    pub const ALL: [Self; 5] =
        [Self::PreviousMonth, Self::CurrentMonth, Self::PreviousWeek, Self::LastDays, Self::Fixed];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::PreviousMonth => "previous_month",
            Self::CurrentMonth => "current_month",
            Self::PreviousWeek => "previous_week",
            Self::LastDays => "last_days",
            Self::Fixed => "fixed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

fn invalid(field: &str, why: impl std::fmt::Display) -> ReportError {
    ReportError::Invalid(format!("{field}: {why}"))
}

impl ReportSpec {
    /// A spec from its stored JSON, checked.
    pub fn from_json(json: &str) -> Result<Self, ReportError> {
        let spec: Self = serde_json::from_str(json).map_err(|e| invalid("definition", e))?;
        spec.check()?;
        Ok(spec)
    }

    pub fn to_json(&self) -> String {
        // A struct of strings, dates and numbers always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Every field checked, each error naming its field.
    pub fn check(&self) -> Result<(), ReportError> {
        self.scope()?;
        self.bucket()?;
        self.compare()?;
        let kind = self.period_kind()?;
        match kind {
            PeriodKind::Fixed => {
                let (from, to) = self.fixed()?;
                DayRange::new(from, to, self.bucket()?)?;
            }
            PeriodKind::LastDays => {
                self.last_days()?;
            }
            _ => {}
        }
        Ok(())
    }

    pub fn period_kind(&self) -> Result<PeriodKind, ReportError> {
        PeriodKind::parse(&self.period).ok_or_else(|| {
            invalid("period", "must be previous_month, current_month, previous_week, last_days or fixed")
        })
    }

    pub fn bucket(&self) -> Result<ReportBucket, ReportError> {
        ReportBucket::parse(&self.bucket).ok_or_else(|| invalid("bucket", "must be hour, day, week or month"))
    }

    pub fn compare(&self) -> Result<Vec<Compare>, ReportError> {
        let mut out = Vec::new();
        for c in &self.compare {
            let c = Compare::parse(c).ok_or_else(|| invalid("compare", "must be previous or year"))?;
            if !out.contains(&c) {
                out.push(c);
            }
        }
        Ok(out)
    }

    pub fn scope(&self) -> Result<Scope, ReportError> {
        let gateway = || -> Result<Mac, ReportError> {
            let mac =
                self.gateway.as_deref().ok_or_else(|| invalid("gateway", "this scope needs a gateway"))?;
            Mac::parse(mac).map_err(|e| invalid("gateway", e))
        };
        match self.scope.as_str() {
            "tenant" => Ok(Scope::Tenant),
            "medium" => {
                let m =
                    self.medium.as_deref().ok_or_else(|| invalid("medium", "scope medium needs a medium"))?;
                Ok(Scope::Medium(Medium::parse(m).map_err(|e| invalid("medium", e))?))
            }
            "gateway" => Ok(Scope::Gateway(gateway()?)),
            "devices" => {
                let gateway = gateway()?;
                if self.devices.is_empty() {
                    return Err(invalid("devices", "choose at least one device"));
                }
                if self.devices.len() > MAX_DEVICES {
                    return Err(invalid("devices", format!("at most {MAX_DEVICES} devices in one report")));
                }
                let mut codes = Vec::with_capacity(self.devices.len());
                for d in &self.devices {
                    let code = DeviceCode::parse(d).map_err(|e| invalid("devices", e))?;
                    if !codes.contains(&code) {
                        codes.push(code);
                    }
                }
                Ok(Scope::Devices { gateway, codes })
            }
            _ => Err(invalid("scope", "must be tenant, medium, gateway or devices")),
        }
    }

    fn fixed(&self) -> Result<(NaiveDate, NaiveDate), ReportError> {
        let from = self.from.ok_or_else(|| invalid("from", "a fixed period needs a first day"))?;
        let to = self.to.ok_or_else(|| invalid("to", "a fixed period needs a last day"))?;
        if to < from {
            return Err(invalid("to", "the last day is before the first"));
        }
        Ok((from, to))
    }

    fn last_days(&self) -> Result<i64, ReportError> {
        match self.days {
            Some(n @ 1..=MAX_LAST_DAYS) => Ok(i64::from(n)),
            _ => Err(invalid("days", format!("must be 1 to {MAX_LAST_DAYS}"))),
        }
    }

    /// The days covered when the report is made on local day `today`.
    pub fn days_on(
        &self,
        today: NaiveDate,
        billing_day: Option<u8>,
    ) -> Result<(NaiveDate, NaiveDate), ReportError> {
        let yesterday = today.pred_opt().unwrap_or(today);
        Ok(match self.period_kind()? {
            PeriodKind::Fixed => self.fixed()?,
            PeriodKind::CurrentMonth => (month_start(today, billing_day), today),
            PeriodKind::PreviousMonth => {
                let this = month_start(today, billing_day);
                let last_day = this.pred_opt().unwrap_or(this);
                (month_start(last_day, billing_day), last_day)
            }
            PeriodKind::PreviousWeek => {
                let monday = today - TimeDelta::days(i64::from(today.weekday().num_days_from_monday()));
                (monday - TimeDelta::days(7), monday - TimeDelta::days(1))
            }
            PeriodKind::LastDays => (today - TimeDelta::days(self.last_days()?), yesterday),
        })
    }

    /// The request this spec makes at instant `now` for a tenant in `zone` (its billing day
    /// decides what a month is).
    pub fn request(
        &self,
        tenant: TenantId,
        zone: TimeZone,
        billing_day: Option<u8>,
        lang: Lang,
        now: DateTime<Utc>,
    ) -> Result<ReportRequest, ReportError> {
        let today = now.with_timezone(&zone.tz()).date_naive();
        let (from, to) = self.days_on(today, billing_day)?;
        let bucket = self.bucket()?;
        Ok(ReportRequest {
            tenant,
            scope: self.scope()?,
            range: DayRange::new(from, to, bucket)?,
            bucket,
            compare: self.compare()?,
            lang,
            now,
        })
    }
}

/// The files a report is delivered as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Pdf,
    Xlsx,
    /// RFC 4180, comma-separated, UTF-8.
    Csv,
    /// `;`-separated with decimal commas and a BOM: what Brazilian Excel opens.
    CsvExcelBr,
}

impl FileFormat {
    pub const ALL: [Self; 4] = [Self::Pdf, Self::Xlsx, Self::Csv, Self::CsvExcelBr];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pdf => "pdf",
            Self::Xlsx => "xlsx",
            Self::Csv => "csv",
            Self::CsvExcelBr => "csv-br",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }

    pub const fn content_type(self) -> &'static str {
        match self {
            Self::Pdf => "application/pdf",
            Self::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            Self::Csv | Self::CsvExcelBr => "text/csv; charset=utf-8",
        }
    }

    pub const fn extension(self) -> &'static str {
        match self {
            Self::Pdf => "pdf",
            Self::Xlsx => "xlsx",
            Self::Csv | Self::CsvExcelBr => "csv",
        }
    }
}

/// The report as a file of `format`. PDF and XLSX take CPU for a while: call from a blocking
/// thread in async code.
pub fn render(report: &Report, format: FileFormat) -> Result<Vec<u8>, ReportError> {
    match format {
        FileFormat::Pdf => crate::pdf::render(report),
        FileFormat::Xlsx => crate::xlsx::render(report),
        FileFormat::Csv | FileFormat::CsvExcelBr => {
            let style = if format == FileFormat::Csv {
                CsvStyle::default()
            } else {
                CsvStyle { semicolon: true, bom: true }
            };
            let mut out = Vec::new();
            crate::csv_out::write_report(report, style, &mut out)?;
            Ok(out)
        }
    }
}

/// A file name for the report: `consumo-2026-11-01-2026-11-30.pdf`.
pub fn file_name(report: &Report, format: FileFormat) -> String {
    let stem = match report.lang {
        Lang::PtBr => "consumo",
        Lang::En => "consumption",
    };
    format!("{stem}-{}-{}.{}", report.from, report.to, format.extension())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(period: &str) -> ReportSpec {
        ReportSpec {
            scope: "tenant".into(),
            medium: None,
            gateway: None,
            devices: Vec::new(),
            period: period.into(),
            from: None,
            to: None,
            days: None,
            bucket: "day".into(),
            compare: Vec::new(),
        }
    }

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn relative_periods_resolve_against_the_local_day() {
        let today = d("2026-12-01");
        assert_eq!(spec("previous_month").days_on(today, None).unwrap(), (d("2026-11-01"), d("2026-11-30")));
        assert_eq!(
            spec("previous_month").days_on(today, Some(15)).unwrap(),
            (d("2026-10-15"), d("2026-11-14"))
        );
        assert_eq!(
            spec("current_month").days_on(d("2026-12-20"), Some(15)).unwrap(),
            (d("2026-12-15"), d("2026-12-20"))
        );
        // 2026-12-03 is a Thursday: the previous ISO week is Monday 23 to Sunday 29 November.
        assert_eq!(
            spec("previous_week").days_on(d("2026-12-03"), None).unwrap(),
            (d("2026-11-23"), d("2026-11-29"))
        );
        let mut last = spec("last_days");
        last.days = Some(7);
        assert_eq!(last.days_on(today, None).unwrap(), (d("2026-11-24"), d("2026-11-30")));
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut s = spec("fixed");
        assert!(s.check().unwrap_err().to_string().starts_with("from:"));
        s.from = Some(d("2026-11-02"));
        s.to = Some(d("2026-11-01"));
        assert!(s.check().unwrap_err().to_string().starts_with("to:"));
        let mut s = spec("last_days");
        s.days = Some(0);
        assert!(s.check().unwrap_err().to_string().starts_with("days:"));
        let mut s = spec("previous_month");
        s.scope = "devices".into();
        s.gateway = Some("aa:bb:cc:dd:ee:ff".into());
        assert!(s.check().unwrap_err().to_string().starts_with("devices:"));
        s.devices = vec!["D01".into()];
        s.check().unwrap();
        s.compare = vec!["sideways".into()];
        assert!(s.check().unwrap_err().to_string().starts_with("compare:"));
        assert!(
            ReportSpec::from_json(r#"{"scope":"tenant","period":"fixed","bucket":"day","extra":1}"#).is_err()
        );
    }

    #[test]
    fn a_spec_survives_its_stored_form() {
        let mut s = spec("last_days");
        s.days = Some(30);
        s.compare = vec!["previous".into()];
        assert_eq!(ReportSpec::from_json(&s.to_json()).unwrap(), s);
    }
}
