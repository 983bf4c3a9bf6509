//! `tds gateway import` and `tds device import`: CSV files checked row by row, written all or
//! nothing. Every row is parsed into domain types first; if any row is bad, the report names each
//! bad row by its line in the file and nothing is written. The store then checks what needs the
//! database (MACs and codes already taken, capacity) in the same all-or-nothing way.

use crate::admin::audit;
use crate::cli::{DeviceCommand, GatewayCommand, ImportArgs};
use anyhow::{Context, bail};
use std::fmt::Display;
use std::path::Path;
use tds_domain::limits::ScaleFactor;
use tds_domain::{
    Description, DeviceCode, DeviceMode, DeviceStatus, DeviceType, GatewayCode, GatewayId, Mac,
    MeasurementKind, Medium, ModbusRegister, Name, SlaveId, TenantId, Unit, ValidationError,
};
use tds_store::devices::DeviceFields;
use tds_store::gateways::GatewayFields;
use tds_store::{Store, StoreError};

/// One data row of a CSV file: its line number and its trimmed fields.
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

/// Reads a CSV file; a first row whose first field is `header_first` is a header and skipped.
fn read_csv(path: &Path, header_first: &str) -> anyhow::Result<Vec<CsvRow>> {
    read_csv_with_header(path, header_first).map(|(_, rows)| rows)
}

/// Like [`read_csv`], also returning the header row's lower-cased fields when there is one.
fn read_csv_with_header(
    path: &Path,
    header_first: &str,
) -> anyhow::Result<(Option<Vec<String>>, Vec<CsvRow>)> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_path(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut rows = Vec::new();
    let mut header = None;
    for (i, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("{} is not valid CSV", path.display()))?;
        let line = record.position().map_or(i as u64 + 1, csv::Position::line);
        let fields: Vec<String> = record.iter().map(str::to_owned).collect();
        if i == 0
            && fields
                .first()
                .is_some_and(|f| f.trim_start_matches('\u{feff}').eq_ignore_ascii_case(header_first))
        {
            header =
                Some(fields.iter().map(|f| f.trim_start_matches('\u{feff}').to_ascii_lowercase()).collect());
            continue;
        }
        if fields.iter().all(String::is_empty) {
            continue;
        }
        rows.push(CsvRow { line, fields });
    }
    if rows.is_empty() {
        bail!("{} has no data rows", path.display());
    }
    Ok((header, rows))
}

/// Prints the row-by-row report and fails when any row has an error.
fn report<T>(
    rows: &[CsvRow],
    parsed: &[Result<T, String>],
    describe: impl Fn(&T) -> String,
) -> anyhow::Result<()> {
    let bad = parsed.iter().filter(|p| p.is_err()).count();
    for (row, result) in rows.iter().zip(parsed) {
        match result {
            Ok(v) => println!("line {}: ok    {}", row.line, describe(v)),
            Err(e) => println!("line {}: ERROR {e}", row.line),
        }
    }
    if bad > 0 {
        bail!("import refused: {bad} of {} rows have errors; nothing was imported", rows.len());
    }
    Ok(())
}

/// Maps the store's per-row refusal (1-based data row numbers) back to file lines.
fn store_refusal(rows: &[CsvRow], err: StoreError) -> anyhow::Error {
    match err {
        StoreError::Import(errors) => {
            for e in &errors {
                match e.row.checked_sub(1).and_then(|i| rows.get(i)) {
                    Some(row) => println!("line {}: ERROR {}", row.line, e.message),
                    None => println!("ERROR {}", e.message),
                }
            }
            anyhow::anyhow!("import refused: {} problem(s); nothing was imported", errors.len())
        }
        e => anyhow::Error::new(e).context("import failed; nothing was imported"),
    }
}

fn err_text(e: impl Display) -> String {
    e.to_string()
}

fn parse_gateway_row(row: &CsvRow) -> Result<(Mac, GatewayFields), String> {
    let mac = Mac::parse(row.required(0, "mac").map_err(err_text)?).map_err(err_text)?;
    let code = GatewayCode::parse(row.required(1, "code").map_err(err_text)?).map_err(err_text)?;
    let name = Name::parse("name", row.required(2, "name").map_err(err_text)?).map_err(err_text)?;
    if row.fields.len() > 6 {
        return Err(format!(
            "{} columns; expected mac,code,name[,model,serial_number,device_id]",
            row.fields.len()
        ));
    }
    let mut fields = GatewayFields::new(code, name);
    fields.model = row.optional(3).map(str::to_owned);
    fields.serial_number = row.optional(4).map(str::to_owned);
    fields.device_id = row.optional(5).map(str::to_owned);
    Ok((mac, fields))
}

/// A row of a factory manifest (`mac,serial_number,cert_serial,expires_at`, written by
/// `tds cert batch`): the gateway is pre-registered with its serial number as code and name, and
/// the row must name the factory certificate issued for that MAC.
async fn parse_manifest_row(
    store: &Store,
    row: &CsvRow,
) -> anyhow::Result<Result<(Mac, GatewayFields), String>> {
    let mac = match row.required(0, "mac").map_err(err_text).and_then(|m| Mac::parse(m).map_err(err_text)) {
        Ok(mac) => mac,
        Err(e) => return Ok(Err(e)),
    };
    let serial_number = match row.required(1, "serial_number") {
        Ok(s) => s.to_owned(),
        Err(e) => return Ok(Err(e.to_string())),
    };
    let cert_serial = match row.required(2, "cert_serial") {
        Ok(s) => s.to_ascii_lowercase(),
        Err(e) => return Ok(Err(e.to_string())),
    };
    match store.certificates().staff_by_serial(&cert_serial).await {
        Ok(c) if c.mac == mac.to_string() => {}
        Ok(_) | Err(StoreError::NotFound) => {
            return Ok(Err(format!("certificate {cert_serial} was not issued for {mac} by a factory batch")));
        }
        Err(e) => return Err(e.into()),
    }
    // The serial number is the code people find on the label; fall back to the MAC when it
    // does not make a valid code.
    let code = GatewayCode::parse(&serial_number)
        .or_else(|_| GatewayCode::parse(&format!("GW-{}", mac.to_string().replace(':', ""))))
        .map_err(err_text);
    let code = match code {
        Ok(c) => c,
        Err(e) => return Ok(Err(e)),
    };
    let name = match Name::parse("name", &format!("Gateway {serial_number}")) {
        Ok(n) => n,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let mut fields = GatewayFields::new(code, name);
    fields.serial_number = Some(serial_number);
    Ok(Ok((mac, fields)))
}

pub async fn gateway(store: &Store, command: GatewayCommand) -> anyhow::Result<()> {
    let GatewayCommand::Import(ImportArgs { tenant, file }) = command;
    let tenant = find_tenant(store, &tenant).await?;
    let (header, rows) = read_csv_with_header(&file, "mac")?;
    let is_manifest = header.as_ref().is_some_and(|h| h.get(1).is_some_and(|c| c == "serial_number"));
    let parsed: Vec<_> = if is_manifest {
        let mut parsed = Vec::with_capacity(rows.len());
        for row in &rows {
            parsed.push(parse_manifest_row(store, row).await?);
        }
        parsed
    } else {
        rows.iter().map(parse_gateway_row).collect()
    };
    report(&rows, &parsed, |(mac, f)| format!("{mac} {} {:?}", f.code, f.name.as_str()))?;
    let gateways: Vec<_> = parsed.into_iter().filter_map(Result::ok).collect();
    let created =
        store.gateways().import(tenant, &gateways, None).await.map_err(|e| store_refusal(&rows, e))?;
    audit(
        store,
        Some(tenant),
        None,
        "gateway.import",
        "gateway",
        format!("{} gateways from {}", created.len(), file.display()),
    )
    .await?;
    println!("imported {} gateways (pre-registered)", created.len());
    Ok(())
}

fn parse_device_row(row: &CsvRow) -> Result<(Mac, DeviceFields), String> {
    let field = |i, name| row.required(i, name).map_err(err_text);
    if row.fields.len() > 9 {
        return Err(format!(
            "{} columns; expected gateway_mac,code,name,type,medium,kind,unit[,slave_id,register]",
            row.fields.len()
        ));
    }
    let gateway_mac = Mac::parse(field(0, "gateway_mac")?).map_err(err_text)?;
    let fields = DeviceFields {
        code: DeviceCode::parse(field(1, "code")?).map_err(err_text)?,
        mac: None,
        name: Name::parse("name", field(2, "name")?).map_err(err_text)?,
        description: Description::default(),
        device_type: DeviceType::parse(field(3, "type")?).map_err(err_text)?,
        medium: Medium::parse(field(4, "medium")?).map_err(err_text)?,
        kind: MeasurementKind::parse(field(5, "kind")?).map_err(err_text)?,
        unit: Unit::parse(field(6, "unit")?).map_err(err_text)?,
        scale_factor: ScaleFactor::default(),
        rollover_value: None,
        slave_id: row.optional(7).map(SlaveId::parse).transpose().map_err(err_text)?,
        register: row.optional(8).map(ModbusRegister::parse).transpose().map_err(err_text)?,
        mode: DeviceMode::Auto,
        status: DeviceStatus::Active,
        alarm_daily: None,
        alarm_monthly: None,
    };
    fields.check().map_err(err_text)?;
    Ok((gateway_mac, fields))
}

pub async fn device(store: &Store, command: DeviceCommand) -> anyhow::Result<()> {
    let DeviceCommand::Import(ImportArgs { tenant, file }) = command;
    let tenant = find_tenant(store, &tenant).await?;
    let rows = read_csv(&file, "gateway_mac")?;
    let mut parsed: Vec<Result<(GatewayId, DeviceFields), String>> = Vec::with_capacity(rows.len());
    for row in &rows {
        parsed.push(match parse_device_row(row) {
            Ok((mac, fields)) => match store.gateways().by_mac(tenant, mac).await {
                Ok(g) => Ok((g.id, fields)),
                Err(StoreError::NotFound) => Err(format!("no gateway with MAC {mac} in this tenant")),
                Err(e) => return Err(e.into()),
            },
            Err(e) => Err(e),
        });
    }
    report(&rows, &parsed, |(_, f)| {
        format!("{} {:?} {} {} {}", f.code, f.name.as_str(), f.medium, f.kind, f.unit)
    })?;
    let devices: Vec<_> = parsed.into_iter().filter_map(Result::ok).collect();
    let created =
        store.devices().import(tenant, &devices, None).await.map_err(|e| store_refusal(&rows, e))?;
    audit(
        store,
        Some(tenant),
        None,
        "device.import",
        "device",
        format!("{} devices from {}", created.len(), file.display()),
    )
    .await?;
    println!("imported {} devices", created.len());
    Ok(())
}

/// The id of the tenant named `name` (case-insensitive), or an error pointing at `tds tenant list`.
pub(crate) async fn find_tenant(store: &Store, name: &str) -> anyhow::Result<TenantId> {
    match store.tenants().staff_by_name(name).await {
        Ok(t) => Ok(t.id),
        Err(StoreError::NotFound) => bail!("no tenant named {name:?} (see `tds tenant list`)"),
        Err(e) => Err(e.into()),
    }
}
