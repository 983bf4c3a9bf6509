//! The report as an XLSX workbook (SPEC §6), written by `rust_xlsxwriter`: a first sheet with the
//! title, tenant, period, zone and notes, then one sheet per section with typed cells (dates are
//! date cells, quantities and counts numbers, shares percentages, each with a number format), the
//! header row frozen, an autofilter over the table, incomplete rows shaded and marked in their
//! status column, and a native column chart where the section has one.
//!
//! Owns: the workbook layout. Must not: query or stream raw readings (see [`crate::export`]).

use crate::ReportError;
use crate::lang::{Lang, Text};
use crate::model::{Cell, ColumnKind, Mark, Report, Row, Section};
use chrono::{Datelike as _, NaiveDate, NaiveDateTime, Timelike as _};
use rust_xlsxwriter::{Chart, ChartType, Color, ExcelDateTime, Format, Workbook, Worksheet, XlsxError};

fn fail(e: XlsxError) -> ReportError {
    ReportError::render("XLSX", e)
}

/// An Excel date from a calendar date.
pub fn excel_date(d: NaiveDate) -> Result<ExcelDateTime, XlsxError> {
    ExcelDateTime::from_ymd(u16::try_from(d.year()).unwrap_or(1900), d.month() as u8, d.day() as u8)
}

/// An Excel date and time (to the millisecond).
pub fn excel_datetime(t: NaiveDateTime) -> Result<ExcelDateTime, XlsxError> {
    excel_date(t.date())?.and_hms(
        t.hour() as u16,
        t.minute() as u8,
        f64::from(t.second()) + f64::from(t.nanosecond() / 1_000_000) / 1000.0,
    )
}

/// The formats of a workbook, by what they show.
struct Formats {
    header: Format,
    date: Format,
    datetime: Format,
    number: Format,
    count: Format,
    percent: Format,
    text: Format,
}

impl Formats {
    fn new(lang: Lang, shade: bool) -> Self {
        let base =
            if shade { Format::new().set_background_color(Color::RGB(0x00FF_F2CC)) } else { Format::new() };
        Self {
            header: Format::new().set_bold().set_background_color(Color::RGB(0x00DD_EBF7)),
            date: base.clone().set_num_format(lang.xlsx_date()),
            datetime: base.clone().set_num_format(lang.xlsx_datetime()),
            number: base.clone().set_num_format("#,##0.00"),
            count: base.clone().set_num_format("#,##0"),
            percent: base.clone().set_num_format("0.0%"),
            text: base,
        }
    }
}

/// The workbook's bytes.
pub fn render(report: &Report) -> Result<Vec<u8>, ReportError> {
    let mut book = Workbook::new();
    let lang = report.lang;
    let plain = Formats::new(lang, false);
    let shaded = Formats::new(lang, true);
    let names = crate::report::sheet_names(report);
    {
        let info = book.add_worksheet();
        info.set_name(lang.t(Text::ReportTitle).chars().take(31).collect::<String>()).map_err(fail)?;
        let bold = Format::new().set_bold();
        info.write_string_with_format(0, 0, &report.title, &bold.clone().set_font_size(14)).map_err(fail)?;
        let lines = [
            (Text::Tenant, report.tenant.clone()),
            (Text::Scope, report.scope.clone()),
            (Text::Period, format!("{} – {}", lang.date(report.from), lang.date(report.to))),
            (Text::Zone, report.zone.clone()),
            (Text::Bucket, report.bucket_label.clone()),
            (Text::Generated, report.generated_at.format("%Y-%m-%d %H:%M UTC").to_string()),
        ];
        let mut row = 2;
        for (label, value) in lines {
            info.write_string_with_format(row, 0, lang.t(label), &bold).map_err(fail)?;
            info.write_string(row, 1, value).map_err(fail)?;
            row += 1;
        }
        row += 1;
        info.write_string_with_format(row, 0, lang.t(Text::Notes), &bold).map_err(fail)?;
        for note in &report.notes {
            row += 1;
            info.write_string(row, 0, note).map_err(fail)?;
        }
        info.set_column_width(0, 22).map_err(fail)?;
        info.set_column_width(1, 50).map_err(fail)?;
    }
    for (section, name) in report.sections.iter().zip(&names) {
        let sheet = book.add_worksheet();
        sheet.set_name(name).map_err(fail)?;
        write_section(sheet, name, section, &plain, &shaded)?;
    }
    book.save_to_buffer().map_err(fail)
}

fn write_section(
    sheet: &mut Worksheet,
    name: &str,
    section: &Section,
    plain: &Formats,
    shaded: &Formats,
) -> Result<(), ReportError> {
    let last_col = section.columns.len().saturating_sub(1) as u16;
    for (c, col) in section.columns.iter().enumerate() {
        sheet.write_string_with_format(0, c as u16, &col.title, &plain.header).map_err(fail)?;
        let width: f64 = match col.kind {
            ColumnKind::Text => 24.0,
            ColumnKind::DateTime => 17.0,
            ColumnKind::Date => 12.0,
            _ => 14.0,
        };
        sheet.set_column_width(c as u16, width.max(col.title.chars().count() as f64 * 0.9)).map_err(fail)?;
    }
    let mut r: u32 = 0;
    for row in &section.rows {
        r += 1;
        write_row(sheet, r, row, if row.mark == Mark::Whole { plain } else { shaded })?;
    }
    let last_row = r.max(1);
    sheet.set_freeze_panes(1, 0).map_err(fail)?;
    sheet.autofilter(0, 0, last_row, last_col).map_err(fail)?;
    if let Some(total) = &section.total {
        // After a blank row, so that the autofilter's sort never moves it into the buckets.
        write_row(sheet, last_row + 2, total, plain)?;
    }
    if let (Some(chart), false) = (&section.chart, section.rows.is_empty()) {
        let mut c = Chart::new(ChartType::Column);
        c.add_series()
            .set_categories((name, 1, chart.label_column as u16, r, chart.label_column as u16))
            .set_values((name, 1, chart.value_column as u16, r, chart.value_column as u16))
            .set_name((name, 0, chart.value_column as u16));
        c.title().set_name(chart.title.as_str());
        c.legend().set_hidden();
        sheet.insert_chart(1, last_col + 2, &c).map_err(fail)?;
    }
    Ok(())
}

fn write_row(sheet: &mut Worksheet, r: u32, row: &Row, f: &Formats) -> Result<(), ReportError> {
    for (c, cell) in row.cells.iter().enumerate() {
        let c = c as u16;
        match cell {
            Cell::Empty => sheet.write_blank(r, c, &f.text),
            Cell::Text(s) => sheet.write_string_with_format(r, c, s, &f.text),
            Cell::Date(d) => sheet.write_datetime_with_format(r, c, excel_date(*d).map_err(fail)?, &f.date),
            Cell::DateTime(t) => {
                sheet.write_datetime_with_format(r, c, excel_datetime(*t).map_err(fail)?, &f.datetime)
            }
            Cell::Number(v) => sheet.write_number_with_format(r, c, *v, &f.number),
            Cell::Count(n) => sheet.write_number_with_format(r, c, f64::from(*n), &f.count),
            Cell::Percent(p) => sheet.write_number_with_format(r, c, *p, &f.percent),
        }
        .map_err(fail)?;
    }
    Ok(())
}
