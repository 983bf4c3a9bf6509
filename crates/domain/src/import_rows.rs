//! CSV imports, bytes to rows: the pure half of `tds gateway|device import` and the web import
//! page (SPEC §3 pre-registration, §9 imports).
//!
//! Owns: the size bounds of an import file ([`ImportLimits`], SPEC §11: rows and bytes), reading
//! its CSV ([`read`]), and parsing each data row into typed values or the [`RowProblem`] that
//! refuses it, keeping the row's line for the report. Must not: look anything up (MACs and codes
//! already taken, certificate serials, capacity): that is the store's, after every row parsed.
//!
//! Formats (a header row is optional and recognised by its first column):
//! - gateways: `mac,code,name[,model,serial_number,device_id]`
//! - a factory manifest written by `tds cert batch`: `mac,serial_number,cert_serial,expires_at`,
//!   recognised by its header (second column `serial_number`);
//! - devices: `gateway_mac,code,name,type,medium,kind,unit[,slave_id,register]`.
//!
//! Decisions: blank lines and lines starting with `#` are skipped; fields are trimmed and a
//! leading byte-order mark is dropped; rows may have fewer columns than the format (missing
//! optional fields are absent, missing required ones are reported) but not more. A file over the
//! byte bound is refused before it is read; a file with more data rows than the row bound is
//! refused as soon as the first row past it is read, so nothing past the bound is parsed.

use crate::modbus::require_meter_address;
use crate::{
    DeviceCode, DeviceType, GatewayCode, Mac, MeasurementKind, Medium, ModbusRegister, Name, SlaveId, Unit,
    ValidationError,
};
use thiserror::Error;

/// Data rows an import accepts unless configured otherwise: a few hundred gateways with their
/// meters, while the checks stay cheap.
pub const DEFAULT_MAX_ROWS: usize = 5_000;
/// Bytes an import file may have unless configured otherwise (5,000 rows are ~500 KiB).
pub const DEFAULT_MAX_BYTES: usize = 2 * 1024 * 1024;
/// The most rows a configuration may allow: rows are held in memory and checked in one go.
pub const CEILING_ROWS: usize = 100_000;
/// The most bytes a configuration may allow (the web route buffers the file).
pub const CEILING_BYTES: usize = 32 * 1024 * 1024;
/// Longest certificate serial accepted in a manifest, in hex digits (RFC 5280: 20 bytes).
pub const MAX_CERT_SERIAL_HEX: usize = 40;

/// How large an import file may be: data rows and bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportLimits {
    max_rows: usize,
    max_bytes: usize,
}

impl Default for ImportLimits {
    fn default() -> Self {
        Self { max_rows: DEFAULT_MAX_ROWS, max_bytes: DEFAULT_MAX_BYTES }
    }
}

impl ImportLimits {
    /// Limits of `max_rows` data rows (1..=[`CEILING_ROWS`]) and `max_bytes` bytes
    /// (1..=[`CEILING_BYTES`]).
    pub fn new(max_rows: usize, max_bytes: usize) -> Result<Self, ValidationError> {
        if !(1..=CEILING_ROWS).contains(&max_rows) {
            return Err(ValidationError::out_of_range("import_max_rows", max_rows, 1, CEILING_ROWS));
        }
        if !(1..=CEILING_BYTES).contains(&max_bytes) {
            return Err(ValidationError::out_of_range("import_max_bytes", max_bytes, 1, CEILING_BYTES));
        }
        Ok(Self { max_rows, max_bytes })
    }

    pub const fn max_rows(self) -> usize {
        self.max_rows
    }

    pub const fn max_bytes(self) -> usize {
        self.max_bytes
    }
}

/// Why a whole file is refused before its rows are looked at.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReadError {
    #[error("the file is not valid CSV: {0}")]
    Csv(String),
    #[error("the file has no data rows")]
    Empty,
    #[error("the file is larger than {max} bytes, the most an import accepts; split it")]
    TooLarge { max: usize },
    #[error("the file has more than {max} data rows, the most an import accepts; split it")]
    TooManyRows { max: usize },
}

/// Why a row was refused: a rule of the domain (translatable) or a fact about the database.
#[derive(Debug, Clone, PartialEq)]
pub enum RowProblem {
    Invalid(ValidationError),
    Columns { found: usize, expected: &'static str },
    Other(String),
}

impl std::fmt::Display for RowProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Invalid(e) => e.fmt(f),
            Self::Columns { found, expected } => write!(f, "{found} columns; expected {expected}"),
            Self::Other(m) => f.write_str(m),
        }
    }
}

impl From<ValidationError> for RowProblem {
    fn from(e: ValidationError) -> Self {
        Self::Invalid(e)
    }
}

/// One data row: its line in the file and its trimmed fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvRow {
    pub line: u64,
    pub fields: Vec<String>,
}

impl CsvRow {
    fn required(&self, i: usize, name: &'static str) -> Result<&str, ValidationError> {
        self.optional(i).ok_or(ValidationError::Required { field: name })
    }

    fn optional(&self, i: usize) -> Option<&str> {
        self.fields.get(i).map(String::as_str).filter(|s| !s.is_empty())
    }

    fn at_most(&self, columns: usize, expected: &'static str) -> Result<(), RowProblem> {
        if self.fields.len() > columns {
            return Err(RowProblem::Columns { found: self.fields.len(), expected });
        }
        Ok(())
    }
}

/// A file as read: its header (lower-cased) when it had one, and its data rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvFile {
    pub header: Option<Vec<String>>,
    pub rows: Vec<CsvRow>,
}

/// Reads CSV within `limits`; a first row whose first field is `header_first` is a header.
pub fn read(bytes: &[u8], header_first: &str, limits: ImportLimits) -> Result<CsvFile, ReadError> {
    if bytes.len() > limits.max_bytes {
        return Err(ReadError::TooLarge { max: limits.max_bytes });
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(bytes);
    let mut rows = Vec::new();
    let mut header = None;
    let mut lines = LineCounter::default();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| ReadError::Csv(e.to_string()))?;
        let line = lines.line_of(bytes, record.position().map_or(0, |p| p.byte() as usize));
        let fields: Vec<String> =
            record.iter().map(|f| f.trim_start_matches('\u{feff}').to_owned()).collect();
        if i == 0 && fields.first().is_some_and(|f| f.eq_ignore_ascii_case(header_first)) {
            header = Some(fields.iter().map(|f| f.to_ascii_lowercase()).collect());
            continue;
        }
        if fields.iter().all(String::is_empty) {
            continue;
        }
        if rows.len() == limits.max_rows {
            return Err(ReadError::TooManyRows { max: limits.max_rows });
        }
        rows.push(CsvRow { line, fields });
    }
    if rows.is_empty() {
        return Err(ReadError::Empty);
    }
    Ok(CsvFile { header, rows })
}

/// The line a record starts on. The `csv` crate's own record positions are wrong whenever blank or
/// comment lines come before a record (it reports where it began reading, before skipping them)
/// and with CRLF line ends (its line count stays behind), which made the report name the wrong
/// lines of files saved by spreadsheets. Its byte count of what it has read is right, so the
/// line is found from there: past the blank and comment lines it skipped, counting line breaks
/// (`\n`, `\r\n` or a lone `\r`) incrementally, as records come in order.
#[derive(Debug, Default)]
struct LineCounter {
    /// Bytes counted so far, and the line breaks in them.
    counted: usize,
    breaks: u64,
}

impl LineCounter {
    fn line_of(&mut self, bytes: &[u8], from: usize) -> u64 {
        let mut at = from.clamp(self.counted, bytes.len());
        loop {
            match bytes.get(at) {
                Some(b'\r' | b'\n') => at += 1,
                Some(b'#') => {
                    at = bytes[at..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |p| at + p + 1);
                }
                _ => break,
            }
        }
        let seen = &bytes[self.counted..at];
        self.breaks += seen
            .iter()
            .enumerate()
            .filter(|&(i, &b)| b == b'\n' || (b == b'\r' && bytes.get(self.counted + i + 1) != Some(&b'\n')))
            .count() as u64;
        self.counted = at;
        self.breaks + 1
    }
}

/// A data row with its line and what it parsed into.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedRow<T> {
    pub line: u64,
    pub parsed: Result<T, RowProblem>,
}

fn parse_rows<T>(rows: &[CsvRow], parse: impl Fn(&CsvRow) -> Result<T, RowProblem>) -> Vec<ParsedRow<T>> {
    rows.iter().map(|r| ParsedRow { line: r.line, parsed: parse(r) }).collect()
}

/// A row of a gateway file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayRow {
    pub mac: Mac,
    pub code: GatewayCode,
    pub name: Name,
    pub model: Option<String>,
    pub serial_number: Option<String>,
    pub device_id: Option<String>,
}

impl GatewayRow {
    pub const FORMAT: &'static str = "mac,code,name[,model,serial_number,device_id]";

    pub fn parse(row: &CsvRow) -> Result<Self, RowProblem> {
        row.at_most(6, Self::FORMAT)?;
        Ok(Self {
            mac: Mac::parse(row.required(0, "mac")?)?,
            code: GatewayCode::parse(row.required(1, "code")?)?,
            name: Name::parse("name", row.required(2, "name")?)?,
            model: row.optional(3).map(str::to_owned),
            serial_number: row.optional(4).map(str::to_owned),
            device_id: row.optional(5).map(str::to_owned),
        })
    }
}

/// A row of a factory manifest: the gateway is pre-registered with its serial number as code
/// (or `GW-` and the MAC's digits when the serial number is not a valid code) and name, and the
/// row names the certificate the factory batch issued for that MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRow {
    pub mac: Mac,
    pub serial_number: String,
    /// Lower-case hex, as certificates are stored.
    pub cert_serial: String,
    pub code: GatewayCode,
    pub name: Name,
}

impl ManifestRow {
    pub const FORMAT: &'static str = "mac,serial_number,cert_serial,expires_at";

    pub fn parse(row: &CsvRow) -> Result<Self, RowProblem> {
        row.at_most(4, Self::FORMAT)?;
        let mac = Mac::parse(row.required(0, "mac")?)?;
        let serial_number = row.required(1, "serial_number")?.to_owned();
        let cert_serial = row.required(2, "cert_serial")?.to_ascii_lowercase();
        if cert_serial.len() > MAX_CERT_SERIAL_HEX {
            return Err(ValidationError::TooLong {
                field: "cert_serial",
                len: cert_serial.chars().count(),
                max: MAX_CERT_SERIAL_HEX,
            }
            .into());
        }
        // The serial number is the code people find on the label.
        let code = GatewayCode::parse(&serial_number)
            .or_else(|_| GatewayCode::parse(&format!("GW-{}", mac.to_string().replace(':', ""))))?;
        let name = Name::parse("name", &format!("Gateway {serial_number}"))?;
        Ok(Self { mac, serial_number, cert_serial, code, name })
    }
}

/// A gateway import: plain rows, or a factory manifest.
#[derive(Debug, Clone, PartialEq)]
pub enum GatewayFile {
    Gateways(Vec<ParsedRow<GatewayRow>>),
    Manifest(Vec<ParsedRow<ManifestRow>>),
}

impl GatewayFile {
    /// Reads and parses a gateway file or a factory manifest (told apart by the header).
    pub fn parse(bytes: &[u8], limits: ImportLimits) -> Result<Self, ReadError> {
        let file = read(bytes, "mac", limits)?;
        let is_manifest =
            file.header.as_ref().is_some_and(|h| h.get(1).is_some_and(|c| c == "serial_number"));
        Ok(if is_manifest {
            Self::Manifest(parse_rows(&file.rows, ManifestRow::parse))
        } else {
            Self::Gateways(parse_rows(&file.rows, GatewayRow::parse))
        })
    }
}

/// A row of a device file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    pub gateway_mac: Mac,
    pub code: DeviceCode,
    pub name: Name,
    pub device_type: DeviceType,
    pub medium: Medium,
    pub kind: MeasurementKind,
    pub unit: Unit,
    pub slave_id: Option<SlaveId>,
    pub register: Option<ModbusRegister>,
}

impl DeviceRow {
    pub const FORMAT: &'static str = "gateway_mac,code,name,type,medium,kind,unit[,slave_id,register]";

    pub fn parse(row: &CsvRow) -> Result<Self, RowProblem> {
        row.at_most(9, Self::FORMAT)?;
        let parsed = Self {
            gateway_mac: Mac::parse(row.required(0, "gateway_mac")?)?,
            code: DeviceCode::parse(row.required(1, "code")?)?,
            name: Name::parse("name", row.required(2, "name")?)?,
            device_type: DeviceType::parse(row.required(3, "type")?)?,
            medium: Medium::parse(row.required(4, "medium")?)?,
            kind: MeasurementKind::parse(row.required(5, "kind")?)?,
            unit: Unit::parse(row.required(6, "unit")?)?,
            slave_id: row.optional(7).map(SlaveId::parse).transpose()?,
            register: row.optional(8).map(ModbusRegister::parse).transpose()?,
        };
        require_meter_address(parsed.device_type, parsed.slave_id, parsed.register)?;
        Ok(parsed)
    }

    /// Reads and parses a device file.
    pub fn parse_file(bytes: &[u8], limits: ImportLimits) -> Result<Vec<ParsedRow<Self>>, ReadError> {
        let file = read(bytes, "gateway_mac", limits)?;
        Ok(parse_rows(&file.rows, Self::parse))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::fmt::Write as _;

    fn limits(rows: usize, bytes: usize) -> ImportLimits {
        ImportLimits::new(rows, bytes).unwrap()
    }

    #[test]
    fn a_header_is_recognised_by_its_first_column_and_blank_and_comment_lines_are_skipped() {
        let file = read(
            b"\xef\xbb\xbfMAC,Code,Name\n\n# note\naa:bb:cc:dd:ee:01 , GW-1,Um\n",
            "mac",
            limits(10, 1000),
        )
        .unwrap();
        assert_eq!(file.header, Some(vec!["mac".into(), "code".into(), "name".into()]));
        assert_eq!(
            file.rows,
            vec![CsvRow { line: 4, fields: vec!["aa:bb:cc:dd:ee:01".into(), "GW-1".into(), "Um".into()] }]
        );
        assert_eq!(read(b"mac,code,name\n\n", "mac", ImportLimits::default()), Err(ReadError::Empty));
    }

    /// Found while writing these tests: the report named wrong lines after blank or comment
    /// lines and in CRLF files (the `csv` crate's positions).
    #[test]
    fn every_row_keeps_its_line_after_blank_and_comment_lines_with_any_line_end() {
        let lines = |text: &str| -> Vec<u64> {
            read(text.as_bytes(), "mac", ImportLimits::default())
                .unwrap()
                .rows
                .iter()
                .map(|r| r.line)
                .collect()
        };
        assert_eq!(lines("a\n\nb\n#c\n\n#d\nc\n"), vec![1, 3, 7]);
        assert_eq!(lines("mac\r\n\r\nb\r\n# x\r\nc\r\n"), vec![3, 5]);
        assert_eq!(lines("a\rb\r\rc"), vec![1, 2, 4]);
        assert_eq!(lines("\"x\ny\",1\n\nb\n \n#\"\nc"), vec![1, 4, 7]);
        assert_eq!(lines("\u{feff}mac,code\n\n\na,b\n"), vec![4]);
    }

    #[test]
    fn a_file_over_the_byte_bound_is_refused_before_it_is_read() {
        // Not even text: the size is checked first.
        let bytes = [0xff; 101];
        assert_eq!(read(&bytes, "mac", limits(10, 100)), Err(ReadError::TooLarge { max: 100 }));
        assert!(read(&bytes[..100], "mac", limits(10, 100)).is_err_and(|e| matches!(e, ReadError::Csv(_))));
    }

    #[test]
    fn a_file_over_the_row_bound_is_refused_at_the_first_row_past_it() {
        let mut csv = String::from("mac,code,name\n");
        for i in 0..3 {
            writeln!(csv, "aa:bb:cc:dd:ee:{i:02x},GW-{i},G").unwrap();
        }
        assert_eq!(read(csv.as_bytes(), "mac", limits(3, 1000)).unwrap().rows.len(), 3);
        csv.push_str("aa:bb:cc:dd:ee:ff,GW-X,G\n");
        assert_eq!(read(csv.as_bytes(), "mac", limits(3, 1000)), Err(ReadError::TooManyRows { max: 3 }));
        // The header and blank lines do not count.
        assert_eq!(read(b"mac\n\n\na\n", "mac", limits(1, 1000)).unwrap().rows.len(), 1);
    }

    #[test]
    fn limits_are_checked_against_their_ceilings() {
        assert_eq!(ImportLimits::default().max_rows(), 5_000);
        assert_eq!(ImportLimits::default().max_bytes(), 2 * 1024 * 1024);
        assert!(ImportLimits::new(0, 10).is_err());
        assert!(ImportLimits::new(CEILING_ROWS + 1, 10).is_err());
        assert!(ImportLimits::new(10, CEILING_BYTES + 1).is_err());
        assert!(ImportLimits::new(CEILING_ROWS, CEILING_BYTES).is_ok());
    }

    #[test]
    fn gateway_rows_report_each_problem_and_keep_their_lines() {
        let file = GatewayFile::parse(
            b"mac,code,name\naa:00:00:00:00:01,gw-1,Um,DCU-8210\nnot-a-mac,GW-2,Dois\naa:00:00:00:00:03,,Tres\n\
              aa:00:00:00:00:04,GW-4,Quatro,m,s,d,extra\n",
            ImportLimits::default(),
        )
        .unwrap();
        let GatewayFile::Gateways(rows) = file else { panic!("not a manifest") };
        assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), vec![2, 3, 4, 5]);
        let first = rows[0].parsed.as_ref().unwrap();
        assert_eq!((first.code.as_str(), first.model.as_deref()), ("GW-1", Some("DCU-8210")));
        assert!(matches!(rows[1].parsed, Err(RowProblem::Invalid(ValidationError::Mac { .. }))));
        assert_eq!(rows[2].parsed, Err(RowProblem::Invalid(ValidationError::Required { field: "code" })));
        assert!(matches!(rows[3].parsed, Err(RowProblem::Columns { found: 7, .. })));
    }

    #[test]
    fn a_manifest_is_told_apart_by_its_header_and_takes_its_code_from_the_serial_number() {
        let file = GatewayFile::parse(
            b"mac,serial_number,cert_serial,expires_at\naa:00:00:00:00:01,SN-1,0A1B,2036-01-01\n\
              aa:00:00:00:00:02,SN 2,0c,2036-01-01\naa:00:00:00:00:03,SN-3,,2036-01-01\n",
            ImportLimits::default(),
        )
        .unwrap();
        let GatewayFile::Manifest(rows) = file else { panic!("a manifest") };
        let first = rows[0].parsed.as_ref().unwrap();
        assert_eq!((first.code.as_str(), first.cert_serial.as_str()), ("SN-1", "0a1b"));
        assert_eq!(first.name.as_str(), "Gateway SN-1");
        assert_eq!(rows[1].parsed.as_ref().unwrap().code.as_str(), "GW-AA0000000002");
        assert_eq!(
            rows[2].parsed,
            Err(RowProblem::Invalid(ValidationError::Required { field: "cert_serial" }))
        );
        let long = format!("mac,serial_number,cert_serial\naa:00:00:00:00:01,SN,{}\n", "a".repeat(41));
        let GatewayFile::Manifest(rows) =
            GatewayFile::parse(long.as_bytes(), ImportLimits::default()).unwrap()
        else {
            panic!("a manifest")
        };
        assert!(matches!(rows[0].parsed, Err(RowProblem::Invalid(ValidationError::TooLong { .. }))));
    }

    #[test]
    fn a_meter_row_needs_its_modbus_address() {
        let rows = DeviceRow::parse_file(
            "gateway_mac,code,name,type,medium,kind,unit,slave_id,register\n\
             aa:00:00:00:00:01,D01,Água,MEDIDOR,water,counter,m3,1,100\n\
             aa:00:00:00:00:01,D02,Água,MEDIDOR,water,counter,m3,1,\n\
             aa:00:00:00:00:01,T01,Temperatura,SENSOR,other,gauge,°C\n"
                .as_bytes(),
            ImportLimits::default(),
        )
        .unwrap();
        assert_eq!(rows[0].parsed.as_ref().unwrap().slave_id.map(SlaveId::get), Some(1));
        assert_eq!(
            rows[1].parsed,
            Err(RowProblem::Invalid(ValidationError::Required { field: "Modbus register" }))
        );
        assert!(rows[2].parsed.is_ok());
    }

    proptest! {
        #[test]
        fn any_bytes_within_the_bounds_give_rows_within_the_bounds_or_an_error(
            bytes in proptest::collection::vec(any::<u8>(), 0..400),
            max_rows in 1usize..6,
        ) {
            let limits = limits(max_rows, 300);
            match GatewayFile::parse(&bytes, limits) {
                Ok(GatewayFile::Gateways(rows)) => prop_assert!(!rows.is_empty() && rows.len() <= max_rows),
                Ok(GatewayFile::Manifest(rows)) => prop_assert!(!rows.is_empty() && rows.len() <= max_rows),
                Err(ReadError::TooLarge { .. }) => prop_assert!(bytes.len() > 300),
                Err(_) => {}
            }
            if let Ok(rows) = DeviceRow::parse_file(&bytes, limits) {
                prop_assert!(rows.windows(2).all(|w| w[0].line < w[1].line));
            }
        }
    }
}
