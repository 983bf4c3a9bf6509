//! CSV imports of gateways and devices, shared by the web page and `tds gateway|device import`.
//!
//! Every row is parsed into domain types first; if any row is bad, the report names each bad
//! row by its line and nothing is written. The store then checks what needs the database (MACs
//! and codes already taken, capacity, limits) in the same all-or-nothing way, and its refusals
//! are mapped back to lines.
//!
//! Formats (a header row is optional and recognised by its first column):
//! - gateways: `mac,code,name[,model,serial_number,device_id]`
//! - a factory manifest written by `tds cert batch`: `mac,serial_number,cert_serial,expires_at`
//!   (pre-registers each gateway; its certificate must come from a factory batch for that MAC)
//! - devices: `gateway_mac,code,name,type,medium,kind,unit[,slave_id,register]`

use tds_domain::limits::ScaleFactor;
use tds_domain::{
    Description, DeviceCode, DeviceMode, DeviceStatus, DeviceType, GatewayCode, GatewayId, Mac,
    MeasurementKind, Medium, ModbusRegister, Name, SlaveId, TenantId, Unit, UserId, ValidationError,
};
use tds_store::devices::DeviceFields;
use tds_store::gateways::GatewayFields;
use tds_store::{Store, StoreError};

/// Largest file accepted (rows are held in memory while checked).
pub const MAX_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the file is not valid CSV: {0}")]
    Csv(String),
    #[error("the file has no data rows")]
    Empty,
    #[error(transparent)]
    Store(#[from] StoreError),
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

/// One line of the report.
#[derive(Debug, Clone)]
pub struct RowReport {
    pub line: u64,
    /// What the row would create, or why it cannot.
    pub outcome: Result<String, RowProblem>,
}

#[derive(Debug, Clone)]
pub struct ImportOutcome {
    pub rows: Vec<RowReport>,
    /// Rows written: all of them, or 0 when any row was refused.
    pub created: usize,
}

impl ImportOutcome {
    pub fn refused(&self) -> usize {
        self.rows.iter().filter(|r| r.outcome.is_err()).count()
    }
}

/// One data row: its line in the file and its trimmed fields.
#[derive(Debug)]
struct CsvRow {
    line: u64,
    fields: Vec<String>,
}

impl CsvRow {
    fn required(&self, i: usize, name: &'static str) -> Result<&str, ValidationError> {
        self.optional(i).ok_or(ValidationError::Required { field: name })
    }

    fn optional(&self, i: usize) -> Option<&str> {
        self.fields.get(i).map(String::as_str).filter(|s| !s.is_empty())
    }
}

/// Reads CSV; a first row whose first field is `header_first` is a header (returned lower-cased).
fn read(bytes: &[u8], header_first: &str) -> Result<(Option<Vec<String>>, Vec<CsvRow>), ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(bytes);
    let mut rows = Vec::new();
    let mut header = None;
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| ImportError::Csv(e.to_string()))?;
        let line = record.position().map_or(i as u64 + 1, csv::Position::line);
        let fields: Vec<String> =
            record.iter().map(|f| f.trim_start_matches('\u{feff}').to_owned()).collect();
        if i == 0 && fields.first().is_some_and(|f| f.eq_ignore_ascii_case(header_first)) {
            header = Some(fields.iter().map(|f| f.to_ascii_lowercase()).collect());
            continue;
        }
        if fields.iter().all(String::is_empty) {
            continue;
        }
        rows.push(CsvRow { line, fields });
    }
    if rows.is_empty() {
        return Err(ImportError::Empty);
    }
    Ok((header, rows))
}

/// Writes the rows when all parsed, mapping the store's per-row refusals (1-based data rows)
/// back to file lines.
fn finish<T>(
    rows: &[CsvRow],
    parsed: Vec<Result<T, RowProblem>>,
    describe: impl Fn(&T) -> String,
) -> (Vec<RowReport>, Option<Vec<T>>) {
    let all_ok = parsed.iter().all(Result::is_ok);
    let report = rows
        .iter()
        .zip(&parsed)
        .map(|(row, p)| RowReport {
            line: row.line,
            outcome: p.as_ref().map(&describe).map_err(Clone::clone),
        })
        .collect();
    let good = all_ok.then(|| parsed.into_iter().filter_map(Result::ok).collect());
    (report, good)
}

fn store_refusal(
    rows: &[CsvRow],
    mut report: Vec<RowReport>,
    err: StoreError,
) -> Result<ImportOutcome, ImportError> {
    match err {
        StoreError::Import(errors) => {
            for e in errors {
                let at = e.row.checked_sub(1).filter(|i| *i < report.len());
                match at {
                    // A row may break several rules (MAC and code both taken): keep them all.
                    Some(i) => {
                        report[i].outcome = Err(RowProblem::Other(match &report[i].outcome {
                            Err(RowProblem::Other(earlier)) => format!("{earlier}; {}", e.message),
                            _ => e.message,
                        }));
                    }
                    None => report.push(RowReport { line: 0, outcome: Err(RowProblem::Other(e.message)) }),
                }
            }
            let _ = rows;
            Ok(ImportOutcome { rows: report, created: 0 })
        }
        e => Err(e.into()),
    }
}

fn parse_gateway_row(row: &CsvRow) -> Result<(Mac, GatewayFields), RowProblem> {
    if row.fields.len() > 6 {
        return Err(RowProblem::Columns {
            found: row.fields.len(),
            expected: "mac,code,name[,model,serial_number,device_id]",
        });
    }
    let mac = Mac::parse(row.required(0, "mac")?)?;
    let code = GatewayCode::parse(row.required(1, "code")?)?;
    let name = Name::parse("name", row.required(2, "name")?)?;
    let mut fields = GatewayFields::new(code, name);
    fields.model = row.optional(3).map(str::to_owned);
    fields.serial_number = row.optional(4).map(str::to_owned);
    fields.device_id = row.optional(5).map(str::to_owned);
    Ok((mac, fields))
}

/// A manifest row: the gateway is pre-registered with its serial number as code and name, and
/// the row must name the factory certificate issued for that MAC.
async fn parse_manifest_row(
    store: &Store,
    row: &CsvRow,
) -> Result<Result<(Mac, GatewayFields), RowProblem>, StoreError> {
    let parsed = (|| -> Result<(Mac, String, String), RowProblem> {
        Ok((
            Mac::parse(row.required(0, "mac")?)?,
            row.required(1, "serial_number")?.to_owned(),
            row.required(2, "cert_serial")?.to_ascii_lowercase(),
        ))
    })();
    let (mac, serial_number, cert_serial) = match parsed {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    match store.certificates().staff_by_serial(&cert_serial).await {
        Ok(c) if c.mac == mac.to_string() => {}
        Ok(_) | Err(StoreError::NotFound) => {
            return Ok(Err(RowProblem::Other(format!(
                "certificate {cert_serial} was not issued for {mac} by a factory batch"
            ))));
        }
        Err(e) => return Err(e),
    }
    // The serial number is the code people find on the label; fall back to the MAC when it
    // does not make a valid code.
    let code = GatewayCode::parse(&serial_number)
        .or_else(|_| GatewayCode::parse(&format!("GW-{}", mac.to_string().replace(':', ""))));
    let name = Name::parse("name", &format!("Gateway {serial_number}"));
    Ok(match (code, name) {
        (Ok(code), Ok(name)) => {
            let mut fields = GatewayFields::new(code, name);
            fields.serial_number = Some(serial_number);
            Ok((mac, fields))
        }
        (Err(e), _) | (_, Err(e)) => Err(e.into()),
    })
}

/// Imports gateways (or a factory manifest) into `tenant`, all or none.
pub async fn gateways(
    store: &Store,
    tenant: TenantId,
    bytes: &[u8],
    by: Option<UserId>,
) -> Result<ImportOutcome, ImportError> {
    let (header, rows) = read(bytes, "mac")?;
    let is_manifest = header.as_ref().is_some_and(|h| h.get(1).is_some_and(|c| c == "serial_number"));
    let mut parsed = Vec::with_capacity(rows.len());
    for row in &rows {
        parsed.push(if is_manifest { parse_manifest_row(store, row).await? } else { parse_gateway_row(row) });
    }
    let (report, good) = finish(&rows, parsed, |(mac, f)| format!("{mac} {} {:?}", f.code, f.name.as_str()));
    let Some(good) = good else { return Ok(ImportOutcome { rows: report, created: 0 }) };
    match store.gateways().import(tenant, &good, by).await {
        Ok(created) => Ok(ImportOutcome { rows: report, created: created.len() }),
        Err(e) => store_refusal(&rows, report, e),
    }
}

fn parse_device_row(row: &CsvRow) -> Result<(Mac, DeviceFields), RowProblem> {
    if row.fields.len() > 9 {
        return Err(RowProblem::Columns {
            found: row.fields.len(),
            expected: "gateway_mac,code,name,type,medium,kind,unit[,slave_id,register]",
        });
    }
    let gateway_mac = Mac::parse(row.required(0, "gateway_mac")?)?;
    let fields = DeviceFields {
        code: DeviceCode::parse(row.required(1, "code")?)?,
        mac: None,
        name: Name::parse("name", row.required(2, "name")?)?,
        description: Description::default(),
        device_type: DeviceType::parse(row.required(3, "type")?)?,
        medium: Medium::parse(row.required(4, "medium")?)?,
        kind: MeasurementKind::parse(row.required(5, "kind")?)?,
        unit: Unit::parse(row.required(6, "unit")?)?,
        scale_factor: ScaleFactor::default(),
        rollover_value: None,
        slave_id: row.optional(7).map(SlaveId::parse).transpose()?,
        register: row.optional(8).map(ModbusRegister::parse).transpose()?,
        mode: DeviceMode::Auto,
        status: DeviceStatus::Active,
        alarm_daily: None,
        alarm_monthly: None,
    };
    fields.check()?;
    Ok((gateway_mac, fields))
}

/// Imports devices into `tenant`'s gateways, all or none.
pub async fn devices(
    store: &Store,
    tenant: TenantId,
    bytes: &[u8],
    by: Option<UserId>,
) -> Result<ImportOutcome, ImportError> {
    let (_, rows) = read(bytes, "gateway_mac")?;
    let mut parsed: Vec<Result<(GatewayId, DeviceFields), RowProblem>> = Vec::with_capacity(rows.len());
    for row in &rows {
        parsed.push(match parse_device_row(row) {
            Ok((mac, fields)) => match store.gateways().by_mac(tenant, mac).await {
                Ok(g) => Ok((g.id, fields)),
                Err(StoreError::NotFound) => {
                    Err(RowProblem::Other(format!("no gateway with MAC {mac} in this tenant")))
                }
                Err(e) => return Err(e.into()),
            },
            Err(e) => Err(e),
        });
    }
    let (report, good) = finish(&rows, parsed, |(_, f)| {
        format!("{} {:?} {} {} {}", f.code, f.name.as_str(), f.medium, f.kind, f.unit)
    });
    let Some(good) = good else { return Ok(ImportOutcome { rows: report, created: 0 }) };
    match store.devices().import(tenant, &good, by).await {
        Ok(created) => Ok(ImportOutcome { rows: report, created: created.len() }),
        Err(e) => store_refusal(&rows, report, e),
    }
}
