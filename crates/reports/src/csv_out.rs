//! CSV (SPEC §6): RFC 4180, UTF-8, with the options a Brazilian spreadsheet needs: a byte-order
//! mark, and `;` as the delimiter with decimal commas. Shared by the API's CSV answers, the
//! report's CSV and the raw readings export.
//!
//! Owns: [`CsvStyle`] and the report's CSV (one table: every bucket of every series, keyed by
//! gateway, device, medium and unit, with an `incomplete` column). Machine-readable on purpose:
//! headers are stable English names, dates ISO 8601, numbers unformatted (only the decimal mark
//! follows the style). Must not: hold a whole export in memory (callers stream chunks).

use crate::ReportError;
use crate::model::{Cell, Mark, Report};
use std::io::Write;

/// CSV settings: RFC 4180 with `,` and decimal points, or `;` with decimal commas; optionally a
/// byte-order mark first (Excel then reads UTF-8).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CsvStyle {
    pub semicolon: bool,
    pub bom: bool,
}

impl CsvStyle {
    /// From the API's and the CLI's words: `comma`/`,` (default) or `semicolon`/`;`.
    pub fn parse(delimiter: Option<&str>, bom: Option<bool>) -> Result<Self, ReportError> {
        let semicolon = match delimiter.unwrap_or("comma") {
            "comma" | "," => false,
            "semicolon" | ";" => true,
            _ => return Err(ReportError::Invalid("delimiter must be comma or semicolon".into())),
        };
        Ok(Self { semicolon, bom: bom.unwrap_or(false) })
    }

    /// A writer for rows after the first chunk.
    pub fn writer(self) -> csv::Writer<Vec<u8>> {
        self.writer_into(Vec::new())
    }

    /// A writer for the file's first bytes: the byte-order mark, when asked for, goes first.
    pub fn head_writer(self) -> csv::Writer<Vec<u8>> {
        self.writer_into(if self.bom { "\u{feff}".as_bytes().to_vec() } else { Vec::new() })
    }

    fn writer_into(self, start: Vec<u8>) -> csv::Writer<Vec<u8>> {
        self.builder().from_writer(start)
    }

    /// A writer straight onto `out` (a file): the byte-order mark is written first.
    pub fn writer_on<W: Write>(self, mut out: W) -> Result<csv::Writer<W>, ReportError> {
        if self.bom {
            out.write_all("\u{feff}".as_bytes())?;
        }
        Ok(self.builder().from_writer(out))
    }

    fn builder(self) -> csv::WriterBuilder {
        let mut b = csv::WriterBuilder::new();
        b.delimiter(if self.semicolon { b';' } else { b',' });
        b
    }

    /// A number as the style writes it: shortest round-trip form, with a decimal comma for `;`.
    pub fn number(self, v: f64) -> String {
        let s = v.to_string();
        if self.semicolon { s.replace('.', ",") } else { s }
    }
}

/// The columns of a report's CSV.
pub const REPORT_HEADER: [&str; 13] = [
    "gateway_mac",
    "device_code",
    "series",
    "medium",
    "unit",
    "bucket_start",
    "bucket_end",
    "consumption",
    "readings",
    "expected",
    "completeness",
    "incomplete",
    "timezone",
];

/// The report's buckets as one CSV table onto `out`. Comparison and projection sections are in
/// the PDF and the workbook; a CSV is one table.
pub fn write_report(report: &Report, style: CsvStyle, out: impl Write) -> Result<(), ReportError> {
    let fail = |e: csv::Error| ReportError::render("CSV", e);
    let mut w = style.writer_on(out)?;
    w.write_record(REPORT_HEADER).map_err(fail)?;
    for section in &report.sections {
        let Some(info) = &section.series else { continue };
        for row in &section.rows {
            let cell = |i: usize| row.cells.get(i).unwrap_or(&Cell::Empty);
            let text = |c: &Cell| match c {
                Cell::Empty => String::new(),
                Cell::Text(s) => s.clone(),
                Cell::Date(d) => d.format("%Y-%m-%d").to_string(),
                Cell::DateTime(t) => t.format("%Y-%m-%dT%H:%M:%S").to_string(),
                Cell::Number(v) | Cell::Percent(v) => style.number(*v),
                Cell::Count(n) => n.to_string(),
            };
            w.write_record([
                info.gateway.clone().unwrap_or_default(),
                info.device.clone().unwrap_or_default(),
                info.label.clone(),
                info.medium.clone(),
                info.unit.clone(),
                text(cell(0)),
                text(cell(1)),
                text(cell(2)),
                text(cell(3)),
                text(cell(4)),
                text(cell(5)),
                (if row.mark == Mark::Incomplete { "true" } else { "false" }).to_owned(),
                report.zone.clone(),
            ])
            .map_err(fail)?;
        }
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semicolon_style_writes_decimal_commas_after_a_bom() {
        let style = CsvStyle::parse(Some("semicolon"), Some(true)).unwrap();
        let mut w = style.head_writer();
        w.write_record(["a", &style.number(1.5), "x;y"]).unwrap();
        let bytes = w.into_inner().unwrap();
        assert_eq!(String::from_utf8(bytes).unwrap(), "\u{feff}a;1,5;\"x;y\"\n");
        assert!(CsvStyle::parse(Some("tab"), None).is_err());
    }
}
