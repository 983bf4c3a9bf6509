//! The rollup rows of a gateway's devices (or one of them) as a table: what `tds consumption`
//! prints for operators' scripts, one line per device and bucket that holds readings, with the
//! rollup's every figure (consumption, min/avg/max, readings, expected, completeness, resets),
//! as CSV or as an XLSX sheet of typed cells.
//!
//! Owns: that table's query and its two writers. Must not: bring the rollups up to date (the
//! caller drains them first) or parse command lines.

use crate::ReportError;
use crate::period::DayRange;
use chrono::{DateTime, Utc};
use std::io::Write;
use std::path::Path;
use tds_domain::{Bucket, DeviceCode, Mac, TenantId, TimeZone};
use tds_store::Store;
use tds_store::devices::Device;
use tds_store::rollups::RollupRow;

pub const HEADER: [&str; 14] = [
    "gateway_mac",
    "device_code",
    "device_name",
    "medium",
    "unit",
    "bucket_start",
    "consumption",
    "min",
    "avg",
    "max",
    "readings",
    "expected",
    "completeness",
    "resets",
];

/// The rows of one gateway, in device then time order.
#[derive(Debug, Clone)]
pub struct RollupTable {
    pub gateway: Mac,
    pub zone: TimeZone,
    pub rows: Vec<(Device, RollupRow)>,
}

/// The `bucket` rollups of the gateway's devices (or the one `device`) over local days `range`.
pub async fn query(
    store: &Store,
    tenant: TenantId,
    gateway: Mac,
    device: Option<&DeviceCode>,
    bucket: Bucket,
    range: DayRange,
) -> Result<RollupTable, ReportError> {
    let zone = store.tenants().get(tenant).await?.timezone;
    let (start, end) = range.instants(zone);
    let g = store
        .gateways()
        .by_mac(tenant, gateway)
        .await
        .map_err(|e| ReportError::not_found(e, format!("gateway {gateway}")))?;
    let mut devices: Vec<Device> = store.devices().list_for_gateway(tenant, g.id, true).await?;
    if let Some(code) = device {
        devices.retain(|d| &d.code == code);
        if devices.is_empty() {
            return Err(ReportError::NotFound(format!("gateway {gateway} has no device {code}")));
        }
    }
    let mut rows = Vec::new();
    for d in devices {
        for r in store.rollups().for_device(tenant, d.id, bucket, start, end).await? {
            rows.push((d.clone(), r));
        }
    }
    Ok(RollupTable { gateway: g.mac, zone, rows })
}

fn local(tz: TimeZone, t: DateTime<Utc>) -> String {
    t.with_timezone(&tz.tz()).to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

impl RollupTable {
    pub fn write_csv(&self, out: impl Write) -> Result<(), ReportError> {
        let fail = |e: csv::Error| ReportError::render("CSV", e);
        let mut w = csv::Writer::from_writer(out);
        w.write_record(HEADER).map_err(fail)?;
        let num = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        for (d, r) in &self.rows {
            w.write_record([
                self.gateway.to_string(),
                d.code.to_string(),
                d.name.to_string(),
                d.medium.to_string(),
                d.unit.to_string(),
                local(self.zone, r.start),
                num(r.consumption),
                num(r.min),
                num(r.avg),
                num(r.max),
                r.count.to_string(),
                r.expected.to_string(),
                num(r.completeness()),
                r.resets.to_string(),
            ])
            .map_err(fail)?;
        }
        w.flush()?;
        Ok(())
    }

    pub fn write_xlsx(&self, path: &Path) -> Result<(), ReportError> {
        use rust_xlsxwriter::{Format, Workbook, XlsxError};
        let fail = |e: XlsxError| ReportError::render("XLSX", e);
        let mut book = Workbook::new();
        let sheet = book.add_worksheet();
        sheet.set_name("Consumo").map_err(fail)?;
        let bold = Format::new().set_bold();
        for (c, h) in HEADER.iter().enumerate() {
            sheet.write_string_with_format(0, c as u16, *h, &bold).map_err(fail)?;
        }
        for (i, (d, r)) in self.rows.iter().enumerate() {
            let row = i as u32 + 1;
            sheet.write_string(row, 0, self.gateway.to_string()).map_err(fail)?;
            sheet.write_string(row, 1, d.code.to_string()).map_err(fail)?;
            sheet.write_string(row, 2, d.name.to_string()).map_err(fail)?;
            sheet.write_string(row, 3, d.medium.to_string()).map_err(fail)?;
            sheet.write_string(row, 4, d.unit.to_string()).map_err(fail)?;
            sheet.write_string(row, 5, local(self.zone, r.start)).map_err(fail)?;
            // Typed cells: numbers stay numbers for the spreadsheet's own sums.
            for (c, v) in [(6, r.consumption), (7, r.min), (8, r.avg), (9, r.max), (12, r.completeness())] {
                if let Some(v) = v {
                    sheet.write_number(row, c, v).map_err(fail)?;
                }
            }
            sheet.write_number(row, 10, f64::from(r.count)).map_err(fail)?;
            sheet.write_number(row, 11, f64::from(r.expected)).map_err(fail)?;
            sheet.write_number(row, 13, f64::from(r.resets)).map_err(fail)?;
        }
        sheet.set_freeze_panes(1, 0).map_err(fail)?;
        sheet.autofit();
        book.save(path).map_err(fail)
    }
}
