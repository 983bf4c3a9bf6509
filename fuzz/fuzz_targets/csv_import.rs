//! Fuzzes the CSV import parsing (`tds_domain::import_rows`): gateway files, factory manifests
//! and device files, as the web page and `tds gateway|device import` read them.
//!
//! Input: byte 0 picks small bounds (so that the row and byte limits are hit often), the rest is
//! the file. Invariants: the bounds hold, lines increase, and a gateway row written back as CSV
//! reads back as the same row.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tds_domain::import_rows::{DeviceRow, GatewayFile, GatewayRow, ImportLimits, ParsedRow, ReadError};

/// The file's lines, split at `\n`, `\r\n` or a lone `\r`, as the report counts them.
fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\n' || bytes[i] == b'\r' {
            out.push(&bytes[start..i]);
            if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
                i += 1;
            }
            start = i + 1;
        }
        i += 1;
    }
    out.push(&bytes[start..]);
    out
}

fn check_rows<T>(rows: &[ParsedRow<T>], limits: ImportLimits, bytes: &[u8]) {
    assert!(!rows.is_empty(), "an empty file is ReadError::Empty");
    assert!(rows.len() <= limits.max_rows());
    assert!(rows.windows(2).all(|w| w[0].line < w[1].line), "lines increase");
    // Each row's line is where its text starts: never a blank or comment line.
    let lines = lines(bytes);
    for r in rows {
        let text =
            lines.get(r.line as usize - 1).unwrap_or_else(|| panic!("line {} of {}", r.line, lines.len()));
        assert!(
            !text.trim_ascii().is_empty() && !text.starts_with(b"#"),
            "line {}: {:?}",
            r.line,
            String::from_utf8_lossy(text)
        );
    }
    for r in rows {
        if let Err(p) = &r.parsed {
            let _ = p.to_string();
        }
    }
}

fn check_error(e: &ReadError, bytes: &[u8], limits: ImportLimits) {
    assert_eq!(matches!(e, ReadError::TooLarge { .. }), bytes.len() > limits.max_bytes());
    let _ = e.to_string();
}

/// A parsed gateway row, written back as one CSV record, parses to the same row.
fn round_trip(row: &GatewayRow) {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        row.mac.to_string().as_str(),
        row.code.as_str(),
        row.name.as_str(),
        row.model.as_deref().unwrap_or(""),
        row.serial_number.as_deref().unwrap_or(""),
        row.device_id.as_deref().unwrap_or(""),
    ])
    .unwrap();
    let bytes = w.into_inner().unwrap();
    match GatewayFile::parse(&bytes, ImportLimits::default()) {
        Ok(GatewayFile::Gateways(rows)) => {
            assert_eq!(rows.len(), 1, "{:?}", String::from_utf8_lossy(&bytes));
            assert_eq!(rows[0].parsed.as_ref(), Ok(row), "{:?}", String::from_utf8_lossy(&bytes));
        }
        other => panic!("{row:?} written as {:?} read back as {other:?}", String::from_utf8_lossy(&bytes)),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&knob, bytes)) = data.split_first() else { return };
    let limits = ImportLimits::new(1 + usize::from(knob & 0x0f), 64 + 64 * usize::from(knob >> 4)).unwrap();
    match GatewayFile::parse(bytes, limits) {
        Ok(GatewayFile::Gateways(rows)) => {
            check_rows(&rows, limits, bytes);
            for r in &rows {
                if let Ok(row) = &r.parsed {
                    round_trip(row);
                }
            }
        }
        Ok(GatewayFile::Manifest(rows)) => {
            check_rows(&rows, limits, bytes);
            for row in rows.iter().filter_map(|r| r.parsed.as_ref().ok()) {
                assert_eq!(row.cert_serial, row.cert_serial.to_ascii_lowercase());
            }
        }
        Err(e) => check_error(&e, bytes, limits),
    }
    match DeviceRow::parse_file(bytes, limits) {
        Ok(rows) => {
            check_rows(&rows, limits, bytes);
            for row in rows.iter().filter_map(|r| r.parsed.as_ref().ok()) {
                if row.device_type == tds_domain::DeviceType::Meter {
                    assert!(row.slave_id.is_some() && row.register.is_some(), "{row:?}");
                }
            }
        }
        Err(e) => check_error(&e, bytes, limits),
    }
});
