//! CSV imports of gateways and devices, shared by the web page and `tds gateway|device import`.
//!
//! The file is bounded and parsed by [`tds_domain::import_rows`] (formats and rules there); if any
//! row is bad, the report names each bad row by its line and nothing is written. The store then
//! checks what needs the database (MACs, codes and certificate serials, capacity, limits) with a
//! few set-based reads, in the same all-or-nothing way, and its refusals are mapped back to lines.
//!
//! Who imports matters for factory certificates (SPEC §3): a tenant's editor links only the
//! certificates a factory manifest names (the manifest shows possession of the batch); platform
//! staff (the operator's `tds gateway import`, a staff user on the page) also link, with a plain
//! gateway file, the unlinked factory certificates of its MACs.

use tds_domain::import_rows::{DeviceRow, GatewayFile, GatewayRow, ManifestRow, ParsedRow, ReadError};
use tds_domain::limits::ScaleFactor;
use tds_domain::{Description, DeviceMode, DeviceStatus, GatewayId, Mac, TenantId, UserId};
use tds_store::devices::DeviceFields;
use tds_store::gateways::GatewayFields;
use tds_store::{Store, StoreError};

pub use tds_domain::import_rows::{ImportLimits, RowProblem};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    File(#[from] ReadError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who runs an import: what it may link (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Importer {
    /// A member of the tenant (editor or admin).
    Tenant,
    /// Platform staff or the operator's command line.
    Staff,
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

/// The report of parsed rows, and their values when every row parsed.
fn finish<T>(parsed: Vec<ParsedRow<T>>, describe: impl Fn(&T) -> String) -> (Vec<RowReport>, Option<Vec<T>>) {
    let all_ok = parsed.iter().all(|r| r.parsed.is_ok());
    let report = parsed
        .iter()
        .map(|r| RowReport { line: r.line, outcome: r.parsed.as_ref().map(&describe).map_err(Clone::clone) })
        .collect();
    let good = all_ok.then(|| parsed.into_iter().filter_map(|r| r.parsed.ok()).collect());
    (report, good)
}

/// Maps the store's per-row refusals (1-based data rows; 0 for the whole file) onto the report.
fn store_refusal(mut report: Vec<RowReport>, err: StoreError) -> Result<ImportOutcome, ImportError> {
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
            Ok(ImportOutcome { rows: report, created: 0 })
        }
        e => Err(e.into()),
    }
}

fn gateway_fields(row: GatewayRow) -> (Mac, GatewayFields) {
    let mut fields = GatewayFields::new(row.code, row.name);
    fields.model = row.model;
    fields.serial_number = row.serial_number;
    fields.device_id = row.device_id;
    (row.mac, fields)
}

/// Imports gateways (or a factory manifest) into `tenant`, all or none.
pub async fn gateways(
    store: &Store,
    tenant: TenantId,
    bytes: &[u8],
    by: Option<UserId>,
    limits: ImportLimits,
    importer: Importer,
) -> Result<ImportOutcome, ImportError> {
    match GatewayFile::parse(bytes, limits)? {
        GatewayFile::Gateways(rows) => {
            let (report, good) =
                finish(rows, |r: &GatewayRow| format!("{} {} {:?}", r.mac, r.code, r.name.as_str()));
            let Some(good) = good else { return Ok(ImportOutcome { rows: report, created: 0 }) };
            let rows: Vec<(Mac, GatewayFields)> = good.into_iter().map(gateway_fields).collect();
            let done = match importer {
                Importer::Tenant => store.gateways().import(tenant, &rows, by).await,
                Importer::Staff => store.gateways().staff_import(tenant, &rows, by).await,
            };
            match done {
                Ok(created) => Ok(ImportOutcome { rows: report, created: created.len() }),
                Err(e) => store_refusal(report, e),
            }
        }
        GatewayFile::Manifest(rows) => {
            let (report, good) =
                finish(rows, |r: &ManifestRow| format!("{} {} {:?}", r.mac, r.code, r.name.as_str()));
            let Some(good) = good else { return Ok(ImportOutcome { rows: report, created: 0 }) };
            let rows: Vec<(Mac, GatewayFields, String)> = good
                .into_iter()
                .map(|r| {
                    let mut fields = GatewayFields::new(r.code, r.name);
                    fields.serial_number = Some(r.serial_number);
                    (r.mac, fields, r.cert_serial)
                })
                .collect();
            match store.gateways().import_manifest(tenant, &rows, by).await {
                Ok(created) => Ok(ImportOutcome { rows: report, created: created.len() }),
                Err(e) => store_refusal(report, e),
            }
        }
    }
}

fn device_fields(row: DeviceRow) -> DeviceFields {
    DeviceFields {
        code: row.code,
        mac: None,
        name: row.name,
        description: Description::default(),
        device_type: row.device_type,
        medium: row.medium,
        kind: row.kind,
        unit: row.unit,
        scale_factor: ScaleFactor::default(),
        rollover_value: None,
        slave_id: row.slave_id,
        register: row.register,
        mode: DeviceMode::Auto,
        status: DeviceStatus::Active,
        alarm_daily: None,
        alarm_monthly: None,
    }
}

/// Imports devices into `tenant`'s gateways, all or none.
pub async fn devices(
    store: &Store,
    tenant: TenantId,
    bytes: &[u8],
    by: Option<UserId>,
    limits: ImportLimits,
) -> Result<ImportOutcome, ImportError> {
    let mut rows = DeviceRow::parse_file(bytes, limits)?;
    // The gateways by MAC, in one set-based lookup: a row naming no gateway of the tenant is
    // refused like a row that does not parse.
    let macs: Vec<Mac> = rows.iter().filter_map(|r| r.parsed.as_ref().ok().map(|d| d.gateway_mac)).collect();
    let gateways = store.gateways().ids_by_mac(tenant, &macs).await?;
    for row in &mut rows {
        if let Ok(d) = &row.parsed
            && !gateways.contains_key(&d.gateway_mac)
        {
            row.parsed =
                Err(RowProblem::Other(format!("no gateway with MAC {} in this tenant", d.gateway_mac)));
        }
    }
    let (report, good) = finish(rows, |d: &DeviceRow| {
        format!("{} {:?} {} {} {}", d.code, d.name.as_str(), d.medium, d.kind, d.unit)
    });
    let Some(good) = good else { return Ok(ImportOutcome { rows: report, created: 0 }) };
    let rows: Vec<(GatewayId, DeviceFields)> = good
        .into_iter()
        .filter_map(|d| gateways.get(&d.gateway_mac).map(|g| (*g, device_fields(d))))
        .collect();
    match store.devices().import(tenant, &rows, by).await {
        Ok(created) => Ok(ImportOutcome { rows: report, created: created.len() }),
        Err(e) => store_refusal(report, e),
    }
}
