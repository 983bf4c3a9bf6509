//! A whole consumption [`Report`] from a [`ReportRequest`]: what `tds report`, the Relatórios
//! page and scheduled reports all make, before a renderer writes it.
//!
//! Sections, in order: a summary per series (the device comparison when several devices are
//! asked for: totals side by side with each one's share of its unit's sum); the buckets of each
//! series; the period-over-period comparison when asked for (the same period just before, or a
//! year earlier: a change in % only where the compared consumption is above zero, never from
//! zero); and, when the range holds today, the month-end projection of the current (billing)
//! month, marked as a projection. Every bucket short of its expected readings is marked
//! incomplete.

use crate::ReportError;
use crate::lang::{Lang, Text};
use crate::model::{Cell, Chart, Column, ColumnKind, Mark, Report, Row, Section, SeriesInfo};
use crate::period::{Compare, DayRange, ReportBucket, month_start, next_month_start};
use crate::query::{Consumption, ConsumptionQuery, Figures, Scope, Series, consumption};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use tds_domain::buckets::day_start;
use tds_domain::{Medium, TenantId};
use tds_store::Store;

/// Everything a report is made from.
#[derive(Debug, Clone)]
pub struct ReportRequest {
    pub tenant: TenantId,
    pub scope: Scope,
    pub range: DayRange,
    pub bucket: ReportBucket,
    /// Comparisons wanted (none, one or both).
    pub compare: Vec<Compare>,
    pub lang: Lang,
    /// The clock: what "today" and "the current month" are (a test's fixed instant).
    pub now: DateTime<Utc>,
}

/// Queries and assembles the report.
pub async fn build(store: &Store, req: &ReportRequest) -> Result<Report, ReportError> {
    let tenant = store.tenants().get(req.tenant).await?;
    let lang = req.lang;
    let q = ConsumptionQuery {
        tenant: req.tenant,
        scope: req.scope.clone(),
        range: req.range,
        bucket: req.bucket,
    };
    let main = consumption(store, &q).await?;
    let mut sections = vec![summary(&main, lang)];
    for (i, s) in main.series.iter().enumerate() {
        sections.push(series_section(&main, s, i, lang));
    }
    let mut notes = Vec::new();
    if !req.compare.is_empty() && !main.series.is_empty() {
        let mut others = Vec::new();
        for c in &req.compare {
            let Some(range) = req.range.compared(*c, main.billing_day) else { continue };
            let other =
                consumption(store, &ConsumptionQuery { range, bucket: ReportBucket::Day, ..q.clone() })
                    .await?;
            others.push((*c, range, other));
        }
        sections.push(comparison(&main, &others, lang));
        notes.push(lang.t(Text::NoteChange).to_owned());
    }
    if let Some(p) = projection(store, &q, &main, req.now, lang).await? {
        sections.push(p);
        notes.push(lang.t(Text::NoteProjection).to_owned());
    }
    let any_incomplete = main.series.iter().any(|s| s.buckets.iter().any(Figures::incomplete));
    notes.insert(
        0,
        lang.t(if any_incomplete { Text::NoteIncomplete } else { Text::NoteAllComplete }).to_owned(),
    );
    if main.series.is_empty() {
        notes.insert(0, lang.t(Text::NoData).to_owned());
    }
    Ok(Report {
        title: lang.t(Text::ReportTitle).to_owned(),
        tenant: tenant.name.to_string(),
        scope: scope_label(&req.scope, lang),
        from: req.range.from,
        to: req.range.to,
        zone: main.zone.to_string(),
        bucket: req.bucket,
        bucket_label: bucket_label(req.bucket, main.billing_day, lang),
        lang,
        generated_at: req.now,
        sections,
        notes,
    })
}

pub fn medium_label(m: Medium, lang: Lang) -> &'static str {
    match (m, lang) {
        (Medium::Water, Lang::PtBr) => "Água",
        (Medium::Energy, Lang::PtBr) => "Energia",
        (Medium::Gas, Lang::PtBr) => "Gás",
        (Medium::Other, Lang::PtBr) => "Outro",
        (Medium::Water, Lang::En) => "Water",
        (Medium::Energy, Lang::En) => "Energy",
        (Medium::Gas, Lang::En) => "Gas",
        (Medium::Other, Lang::En) => "Other",
    }
}

fn scope_label(scope: &Scope, lang: Lang) -> String {
    match scope {
        Scope::Devices { gateway, codes } => {
            let codes: Vec<_> = codes.iter().map(ToString::to_string).collect();
            let word = if codes.len() == 1 { Text::Device } else { Text::Devices };
            format!("{} {} ({} {gateway})", lang.t(word), codes.join(", "), lang.t(Text::Gateway))
        }
        Scope::Gateway(mac) => format!("{} {mac}", lang.t(Text::Gateway)),
        Scope::Medium(m) => format!("{}: {}", lang.t(Text::Medium), medium_label(*m, lang)),
        Scope::Tenant => lang.t(Text::AllTenant).to_owned(),
    }
}

fn bucket_label(bucket: ReportBucket, billing_day: Option<u8>, lang: Lang) -> String {
    match (bucket, billing_day) {
        (ReportBucket::Hour, _) => lang.t(Text::Hour).to_owned(),
        (ReportBucket::Day, _) => lang.t(Text::Day).to_owned(),
        (ReportBucket::Week, _) => lang.t(Text::Week).to_owned(),
        (ReportBucket::Month, None) => lang.t(Text::CalendarMonth).to_owned(),
        (ReportBucket::Month, Some(d)) => format!("{} {d}", lang.t(Text::BillingMonth)),
    }
}

/// A series in words: `D01 Medidor D01` or `Energia`.
pub fn series_label(s: &Series, lang: Lang) -> String {
    match (&s.device, &s.device_name) {
        (Some(code), Some(name)) => format!("{code} {name}"),
        (Some(code), None) => code.to_string(),
        _ => medium_label(s.medium, lang).to_owned(),
    }
}

fn mark(f: &Figures) -> Mark {
    if f.incomplete() { Mark::Incomplete } else { Mark::Whole }
}

fn status(f: &Figures, lang: Lang) -> Cell {
    if f.incomplete() { Cell::Text(lang.t(Text::Incomplete).to_owned()) } else { Cell::Empty }
}

/// A sheet name: at most 31 characters, none of `[]:*?/\`, unique among `taken`.
fn sheet_name(base: &str, taken: &[String]) -> String {
    let clean: String = base.chars().map(|c| if "[]:*?/\\".contains(c) { '-' } else { c }).take(28).collect();
    let mut name = clean.clone();
    let mut n = 2;
    while taken.iter().any(|t| t.eq_ignore_ascii_case(&name)) {
        name = format!("{clean} {n}");
        n += 1;
    }
    name
}

fn summary(c: &Consumption, lang: Lang) -> Section {
    let mut unit_totals: HashMap<&str, f64> = HashMap::new();
    for s in &c.series {
        *unit_totals.entry(s.unit.as_str()).or_default() += s.total().consumption;
    }
    let rows = c
        .series
        .iter()
        .map(|s| {
            let t = s.total();
            let unit_total = unit_totals.get(s.unit.as_str()).copied().unwrap_or(0.0);
            Row {
                cells: vec![
                    Cell::Text(series_label(s, lang)),
                    Cell::Text(s.unit.clone()),
                    Cell::Count(u32::try_from(s.devices).unwrap_or(u32::MAX)),
                    Cell::Number(t.consumption),
                    Cell::Count(t.readings),
                    Cell::Count(t.expected),
                    Cell::percent(t.completeness()),
                    Cell::percent((unit_total > 0.0).then(|| t.consumption / unit_total)),
                    Cell::Count(
                        u32::try_from(s.buckets.iter().filter(|b| b.incomplete()).count()).unwrap_or(0),
                    ),
                ],
                mark: mark(&t),
            }
        })
        .collect();
    Section {
        title: lang.t(Text::Summary).to_owned(),
        name: lang.t(Text::Summary).to_owned(),
        columns: vec![
            Column::new(lang.t(Text::Series), ColumnKind::Text),
            Column::new(lang.t(Text::Unit), ColumnKind::Text),
            Column::new(lang.t(Text::DevicesColumn), ColumnKind::Count),
            Column::new(lang.t(Text::Total), ColumnKind::Number),
            Column::new(lang.t(Text::Readings), ColumnKind::Count),
            Column::new(lang.t(Text::Expected), ColumnKind::Count),
            Column::new(lang.t(Text::Completeness), ColumnKind::Percent),
            Column::new(lang.t(Text::Share), ColumnKind::Percent),
            Column::new(lang.t(Text::IncompleteBuckets), ColumnKind::Count),
        ],
        chart: (c.series.len() > 1).then(|| Chart {
            title: format!("{} ({})", lang.t(Text::Total), lang.t(Text::Series)),
            label_column: 0,
            value_column: 3,
        }),
        rows,
        total: None,
        series: None,
    }
}

fn series_section(c: &Consumption, s: &Series, index: usize, lang: Lang) -> Section {
    let hourly = c.bucket == ReportBucket::Hour;
    let (start_kind, end_kind) = if hourly {
        (ColumnKind::DateTime, ColumnKind::DateTime)
    } else {
        (ColumnKind::Date, ColumnKind::Date)
    };
    let zone = c.zone.tz();
    let rows = c
        .axis
        .periods
        .iter()
        .zip(&s.buckets)
        .map(|(p, f)| {
            let (start, end) = if hourly {
                (Cell::DateTime(p.local_start), Cell::DateTime(p.to.with_timezone(&zone).naive_local()))
            } else {
                (Cell::Date(p.first_day), Cell::Date(p.last_day))
            };
            Row {
                cells: vec![
                    start,
                    end,
                    Cell::Number(f.consumption),
                    Cell::Count(f.readings),
                    Cell::Count(f.expected),
                    Cell::percent(f.completeness()),
                    status(f, lang),
                ],
                mark: mark(f),
            }
        })
        .collect();
    let t = s.total();
    let label = series_label(s, lang);
    Section {
        title: format!("{label} ({})", s.unit),
        name: format!("{index:02} {label}"),
        columns: vec![
            Column::new(lang.t(Text::Start), start_kind),
            Column::new(lang.t(Text::End), end_kind),
            Column::new(format!("{} ({})", lang.t(Text::Consumption), s.unit), ColumnKind::Number),
            Column::new(lang.t(Text::Readings), ColumnKind::Count),
            Column::new(lang.t(Text::Expected), ColumnKind::Count),
            Column::new(lang.t(Text::Completeness), ColumnKind::Percent),
            Column::new(lang.t(Text::Status), ColumnKind::Text),
        ],
        rows,
        chart: Some(Chart {
            title: format!("{} ({}) — {label}", lang.t(Text::Consumption), s.unit),
            label_column: 0,
            value_column: 2,
        }),
        total: Some(Row {
            cells: vec![
                Cell::Text(lang.t(Text::Total).to_owned()),
                Cell::Empty,
                Cell::Number(t.consumption),
                Cell::Count(t.readings),
                Cell::Count(t.expected),
                Cell::percent(t.completeness()),
                status(&t, lang),
            ],
            mark: mark(&t),
        }),
        series: Some(SeriesInfo {
            gateway: s.gateway.map(|m| m.to_string()),
            device: s.device.as_ref().map(ToString::to_string),
            label,
            medium: s.medium.as_str().to_owned(),
            unit: s.unit.clone(),
        }),
    }
}

/// Change from `before` to `now`, only where `before` is above zero (a change "from zero" means
/// nothing) and was measured.
pub fn change(now: f64, before: &Figures) -> Option<f64> {
    (before.consumption > 0.0 && before.readings > 0).then(|| (now - before.consumption) / before.consumption)
}

fn comparison(main: &Consumption, others: &[(Compare, DayRange, Consumption)], lang: Lang) -> Section {
    let mut columns = vec![
        Column::new(lang.t(Text::Series), ColumnKind::Text),
        Column::new(lang.t(Text::Unit), ColumnKind::Text),
        Column::new(
            format!(
                "{} {}–{}",
                lang.t(Text::ThisPeriod),
                lang.date(main.range.from),
                lang.date(main.range.to)
            ),
            ColumnKind::Number,
        ),
    ];
    for (c, range, _) in others {
        let word = match c {
            Compare::Previous => Text::PreviousPeriod,
            Compare::Year => Text::YearAgo,
        };
        columns.push(Column::new(
            format!("{} {}–{}", lang.t(word), lang.date(range.from), lang.date(range.to)),
            ColumnKind::Number,
        ));
        columns.push(Column::new(lang.t(Text::Change), ColumnKind::Percent));
    }
    columns.push(Column::new(lang.t(Text::Status), ColumnKind::Text));
    let rows = main
        .series
        .iter()
        .map(|s| {
            let t = s.total();
            let mut cells = vec![
                Cell::Text(series_label(s, lang)),
                Cell::Text(s.unit.clone()),
                Cell::Number(t.consumption),
            ];
            let mut incomplete = t.incomplete();
            for (_, _, other) in others {
                let o =
                    other.series.iter().find(|x| x.key() == s.key()).map(Series::total).unwrap_or_default();
                incomplete |= o.incomplete();
                cells.push(Cell::Number(o.consumption));
                cells.push(Cell::percent(change(t.consumption, &o)));
            }
            cells.push(if incomplete {
                Cell::Text(lang.t(Text::Incomplete).to_owned())
            } else {
                Cell::Empty
            });
            Row { cells, mark: if incomplete { Mark::Incomplete } else { Mark::Whole } }
        })
        .collect();
    Section {
        title: lang.t(Text::Comparison).to_owned(),
        name: lang.t(Text::Comparison).to_owned(),
        columns,
        rows,
        chart: None,
        total: None,
        series: None,
    }
}

/// The current month's projection, when the range holds today: consumption so far times the
/// month's length over the time elapsed.
async fn projection(
    store: &Store,
    q: &ConsumptionQuery,
    main: &Consumption,
    now: DateTime<Utc>,
    lang: Lang,
) -> Result<Option<Section>, ReportError> {
    let tz = main.zone;
    let today = now.with_timezone(&tz.tz()).date_naive();
    if today < q.range.from || today > q.range.to || main.series.is_empty() {
        return Ok(None);
    }
    let first = month_start(today, main.billing_day);
    let next = next_month_start(first);
    let (month_from, month_to) = (day_start(tz, first), day_start(tz, next));
    let elapsed = (now - month_from).num_seconds();
    let length = (month_to - month_from).num_seconds();
    if elapsed <= 0 || length <= 0 {
        return Ok(None);
    }
    // Hours, so that "so far" stops at the current hour: the rest of today is not counted.
    let range = DayRange::new(first, today, ReportBucket::Hour)?;
    let so_far =
        consumption(store, &ConsumptionQuery { range, bucket: ReportBucket::Hour, ..q.clone() }).await?;
    let share = elapsed as f64 / length as f64;
    let month = format!("{}–{}", lang.date(first), lang.date(next.pred_opt().unwrap_or(next)));
    let rows = so_far
        .series
        .iter()
        .map(|s| {
            let mut t = Figures::default();
            for (p, f) in so_far.axis.periods.iter().zip(&s.buckets) {
                if p.start < now {
                    t.add(f.consumption, f.readings, f.expected);
                }
            }
            Row {
                cells: vec![
                    Cell::Text(series_label(s, lang)),
                    Cell::Text(s.unit.clone()),
                    Cell::Text(month.clone()),
                    Cell::Number(t.consumption),
                    Cell::Percent(share),
                    Cell::Number(t.consumption / share),
                    Cell::Text(lang.t(Text::Projection).to_owned()),
                ],
                mark: Mark::Projection,
            }
        })
        .collect();
    Ok(Some(Section {
        title: lang.t(Text::ProjectionTitle).to_owned(),
        name: lang.t(Text::ProjectionTitle).to_owned(),
        columns: vec![
            Column::new(lang.t(Text::Series), ColumnKind::Text),
            Column::new(lang.t(Text::Unit), ColumnKind::Text),
            Column::new(lang.t(Text::Month), ColumnKind::Text),
            Column::new(lang.t(Text::SoFar), ColumnKind::Number),
            Column::new(lang.t(Text::Elapsed), ColumnKind::Percent),
            Column::new(lang.t(Text::Projected), ColumnKind::Number),
            Column::new(lang.t(Text::Status), ColumnKind::Text),
        ],
        rows,
        chart: None,
        total: None,
        series: None,
    }))
}

/// Gives every section a sheet name that a workbook accepts.
pub(crate) fn sheet_names(report: &Report) -> Vec<String> {
    let mut taken: Vec<String> = Vec::new();
    for s in &report.sections {
        let name = sheet_name(&s.name, &taken);
        taken.push(name);
    }
    taken
}
