//! The Relatórios page's form and what it shows: the report's parameters as the browser sends
//! them (repeated keys for the devices and comparisons), the spec they make, and the finished
//! report as HTML tables and chart data.
//!
//! Owns: reading the query string and the save form into a [`ReportSpec`], writing a spec back as
//! a query string (export links, the save form's hidden fields), and the view of a
//! [`tds_reports::Report`]. Must not: query or render files (the reports crate does).

use crate::forms::FieldErrors;
use crate::i18n::Lang;
use serde::Serialize;
use tds_reports::definition::ReportSpec;
use tds_reports::{Cell, ColumnKind, Mark, Report, ReportError};

/// Every field of the page's forms, as text.
#[derive(Debug, Clone, Default)]
pub struct ReportForm {
    pub scope: String,
    pub medium: String,
    pub gateway: String,
    /// `MAC|CODE` of each device chosen (scope `devices`).
    pub devices: Vec<String>,
    pub period: String,
    pub from: String,
    pub to: String,
    pub days: String,
    pub bucket: String,
    pub compare: Vec<String>,
    /// Set when the report is to be shown (the form was submitted).
    pub show: bool,
    /// A saved definition being shown or edited.
    pub definition: Option<i64>,
    // The save form.
    pub name: String,
    pub format: String,
    pub lang: String,
    pub recipients: String,
    pub schedule: String,
    pub schedule_day: String,
    pub schedule_hour: String,
}

impl ReportForm {
    /// The defaults of a first visit: the whole tenant, the previous month by day.
    pub fn blank() -> Self {
        Self {
            scope: "tenant".into(),
            period: "previous_month".into(),
            bucket: "day".into(),
            days: "30".into(),
            format: "pdf".into(),
            schedule_day: "1".into(),
            schedule_hour: "6".into(),
            ..Self::default()
        }
    }

    /// From a query string or a form body (`application/x-www-form-urlencoded`).
    pub fn parse(encoded: &str) -> Self {
        let mut f = Self::blank();
        for (k, v) in url::form_urlencoded::parse(encoded.as_bytes()) {
            let v = v.trim().to_owned();
            match k.as_ref() {
                "scope" => f.scope = v,
                "medium" => f.medium = v,
                "gateway" => f.gateway = v,
                "devices" if !v.is_empty() && f.devices.len() < 200 => f.devices.push(v),
                "period" => f.period = v,
                "from" => f.from = v,
                "to" => f.to = v,
                "days" => f.days = v,
                "bucket" => f.bucket = v,
                "compare" if !v.is_empty() && f.compare.len() < 4 => f.compare.push(v),
                "show" => f.show = true,
                "definition" => f.definition = v.parse().ok(),
                "name" => f.name = v,
                "format" => f.format = v,
                "lang" => f.lang = v,
                "recipients" => f.recipients = v,
                "schedule" => f.schedule = v,
                "schedule_day" => f.schedule_day = v,
                "schedule_hour" => f.schedule_hour = v,
                _ => {}
            }
        }
        f
    }

    /// The form of a saved spec.
    pub fn of_spec(spec: &ReportSpec) -> Self {
        let mut f = Self::blank();
        f.scope = if spec.scope == "devices" { "devices".into() } else { spec.scope.clone() };
        f.medium = spec.medium.clone().unwrap_or_default();
        f.gateway = spec.gateway.clone().unwrap_or_default();
        f.devices = match &spec.gateway {
            Some(mac) => spec.devices.iter().map(|d| format!("{mac}|{d}")).collect(),
            None => Vec::new(),
        };
        f.period.clone_from(&spec.period);
        f.from = spec.from.map(|d| d.to_string()).unwrap_or_default();
        f.to = spec.to.map(|d| d.to_string()).unwrap_or_default();
        f.days = spec.days.map_or_else(|| "30".into(), |d| d.to_string());
        f.bucket.clone_from(&spec.bucket);
        f.compare.clone_from(&spec.compare);
        f
    }

    pub fn compares(&self, c: &str) -> bool {
        self.compare.iter().any(|x| x == c)
    }

    pub fn chose(&self, device: &str) -> bool {
        self.devices.iter().any(|d| d == device)
    }

    /// The spec of the report fields, or each field's error.
    pub fn spec(&self, lang: Lang) -> Result<ReportSpec, FieldErrors> {
        let mut errors = FieldErrors::default();
        let date = |errors: &mut FieldErrors, field: &str, v: &str| -> Option<chrono::NaiveDate> {
            if v.is_empty() {
                return None;
            }
            v.parse().map_err(|_| errors.set(field, lang.t("reports.bad_date"))).ok()
        };
        let from = date(&mut errors, "from", &self.from);
        let to = date(&mut errors, "to", &self.to);
        let days = if self.period == "last_days" {
            let days = self.days.parse::<u16>().ok();
            if days.is_none() {
                errors.set("days", lang.t("reports.bad_days"));
            }
            days
        } else {
            None
        };
        // Devices are chosen as MAC|CODE; a comparison is of devices of one gateway.
        let mut gateway = (!self.gateway.is_empty()).then(|| self.gateway.clone());
        let mut devices = Vec::new();
        if self.scope == "devices" {
            gateway = None;
            for d in &self.devices {
                let Some((mac, code)) = d.split_once('|') else { continue };
                match &gateway {
                    None => gateway = Some(mac.to_owned()),
                    Some(g) if g != mac => {
                        errors.set("devices", lang.t("reports.one_gateway"));
                        break;
                    }
                    Some(_) => {}
                }
                devices.push(code.to_owned());
            }
            if devices.is_empty() {
                errors.set("devices", lang.t("reports.no_device"));
            }
        }
        let spec = ReportSpec {
            scope: self.scope.clone(),
            medium: (self.scope == "medium").then(|| self.medium.clone()),
            gateway: if matches!(self.scope.as_str(), "gateway" | "devices") { gateway } else { None },
            devices,
            period: self.period.clone(),
            from: if self.period == "fixed" { from } else { None },
            to: if self.period == "fixed" { to } else { None },
            days,
            bucket: self.bucket.clone(),
            compare: self.compare.clone(),
        };
        if errors.is_empty()
            && let Err(e) = spec.check()
        {
            set_report_error(&mut errors, &e);
        }
        if errors.is_empty() { Ok(spec) } else { Err(errors) }
    }
}

/// A report error on the field it names (`from: …`), else on the form as a whole.
pub fn set_report_error(errors: &mut FieldErrors, e: &ReportError) {
    let text = e.to_string();
    match text.split_once(": ") {
        Some((field, why)) if !field.contains(' ') => errors.set(field, why.to_owned()),
        _ => errors.form.push(text),
    }
}

/// A spec as the page's query string (export links and the saved definition's "show").
pub fn query_of(spec: &ReportSpec) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("scope", &spec.scope);
    if let Some(m) = &spec.medium {
        q.append_pair("medium", m);
    }
    if let Some(g) = &spec.gateway {
        q.append_pair("gateway", g);
        for d in &spec.devices {
            q.append_pair("devices", &format!("{g}|{d}"));
        }
    }
    q.append_pair("period", &spec.period);
    if let Some(d) = spec.from {
        q.append_pair("from", &d.to_string());
    }
    if let Some(d) = spec.to {
        q.append_pair("to", &d.to_string());
    }
    if let Some(n) = spec.days {
        q.append_pair("days", &n.to_string());
    }
    q.append_pair("bucket", &spec.bucket);
    for c in &spec.compare {
        q.append_pair("compare", c);
    }
    q.finish()
}

/// A section of the report as the page shows it.
#[derive(Debug, Clone)]
pub struct TableView {
    pub title: String,
    pub columns: Vec<(String, bool)>,
    pub rows: Vec<RowView>,
    pub total: Option<RowView>,
    pub chart: Option<ChartView>,
}

#[derive(Debug, Clone)]
pub struct RowView {
    /// Each cell as shown, and whether it is a number (right-aligned).
    pub cells: Vec<(String, bool)>,
    /// `incomplete`, `projection` or empty.
    pub mark: &'static str,
}

/// Bars of one column, for Chart.js (the data go in `data-` attributes: the CSP forbids inline
/// scripts).
#[derive(Debug, Clone, Serialize)]
pub struct ChartView {
    pub title: String,
    pub labels: String,
    pub values: String,
}

fn row(r: &tds_reports::Row, lang: tds_reports::Lang, numeric: &[bool]) -> RowView {
    RowView {
        cells: r
            .cells
            .iter()
            .enumerate()
            .map(|(i, c)| (c.display(lang), numeric.get(i).copied().unwrap_or(false)))
            .collect(),
        mark: match r.mark {
            Mark::Whole => "",
            Mark::Incomplete => "incomplete",
            Mark::Projection => "projection",
        },
    }
}

/// The report's sections as tables (with their charts).
pub fn tables(report: &Report) -> Vec<TableView> {
    let lang = report.lang;
    report
        .sections
        .iter()
        .map(|s| {
            let chart = s.chart.as_ref().map(|c| {
                let labels: Vec<String> = s
                    .rows
                    .iter()
                    .map(|r| r.cells.get(c.label_column).map(|x| x.display(lang)).unwrap_or_default())
                    .collect();
                let values: Vec<Option<f64>> =
                    s.rows.iter().map(|r| r.cells.get(c.value_column).and_then(Cell::as_f64)).collect();
                ChartView {
                    title: c.title.clone(),
                    labels: serde_json::to_string(&labels).unwrap_or_default(),
                    values: serde_json::to_string(&values).unwrap_or_default(),
                }
            });
            let numeric: Vec<bool> = s
                .columns
                .iter()
                .map(|c| matches!(c.kind, ColumnKind::Number | ColumnKind::Count | ColumnKind::Percent))
                .collect();
            TableView {
                title: s.title.clone(),
                columns: s.columns.iter().zip(&numeric).map(|(c, n)| (c.title.clone(), *n)).collect(),
                rows: s.rows.iter().map(|r| row(r, lang, &numeric)).collect(),
                total: s.total.as_ref().map(|r| row(r, lang, &numeric)),
                chart,
            }
        })
        .collect()
}

/// The reports crate's language for the page's.
pub fn report_lang(lang: Lang) -> tds_reports::Lang {
    match lang {
        Lang::PtBr => tds_reports::Lang::PtBr,
        Lang::En => tds_reports::Lang::En,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_comparison_round_trips_through_the_query_string() {
        let f = ReportForm::parse(
            "scope=devices&devices=aa%3Abb%3Acc%3Add%3Aee%3Aff%7CD01&devices=aa%3Abb%3Acc%3Add%3Aee%3Aff%7CD02\
             &period=fixed&from=2026-11-01&to=2026-11-30&bucket=week&compare=previous&show=1",
        );
        let spec = f.spec(Lang::En).unwrap();
        assert_eq!(spec.gateway.as_deref(), Some("aa:bb:cc:dd:ee:ff"));
        assert_eq!(spec.devices, ["D01", "D02"]);
        let again = ReportForm::parse(&query_of(&spec)).spec(Lang::En).unwrap();
        assert_eq!(again, spec);
    }

    #[test]
    fn devices_of_two_gateways_are_refused_on_the_devices_field() {
        let f = ReportForm::parse(
            "scope=devices&devices=aa%3Abb%3Acc%3Add%3Aee%3Aff%7CD01&devices=aa%3Abb%3Acc%3Add%3Aee%3A00%7CD02",
        );
        let errors = f.spec(Lang::En).unwrap_err();
        assert!(errors.get("devices").is_some());
        let f = ReportForm::parse("scope=tenant&period=fixed&from=2026-11-30&to=2026-11-01&bucket=day");
        assert!(f.spec(Lang::En).unwrap_err().get("to").is_some());
    }
}
