//! Raw readings exports (SPEC §6 and §9 `tds readings export`): every stored reading of the
//! tenant, a gateway or a device over a time range, with the time in UTC and on the tenant's
//! clock, as CSV or XLSX, streamed.
//!
//! Owns: reading the range page by page ([`PAGE`] rows, device by device in id order and each
//! device's readings in time order: a range read of the readings' primary key, no sort) and
//! writing each page before the next is read, so that memory does not grow with the rows. XLSX
//! uses `rust_xlsxwriter`'s constant-memory mode (rows go to a temporary file as written) and
//! starts a new sheet every [`XLSX_SHEET_ROWS`] rows (a sheet holds at most 1,048,576).
//! Must not: build the export in memory.

use crate::ReportError;
use crate::csv_out::CsvStyle;
use crate::xlsx::excel_datetime;
use chrono::{DateTime, Duration, Utc};
use rust_xlsxwriter::{Format, Workbook, XlsxError};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use tds_domain::{DeviceCode, DeviceId, Mac, TenantId, TimeZone};
use tds_store::Store;
use tds_store::readings::Reading;

/// Rows read and written at a time.
pub const PAGE: i64 = 5000;
/// Data rows per XLSX sheet.
pub const XLSX_SHEET_ROWS: u32 = 1_000_000;
/// The longest range an export covers (SPEC §11), in days.
pub const MAX_EXPORT_DAYS: i64 = crate::period::MAX_RANGE_DAYS;

/// The columns of a readings export (the API's CSV has the same).
pub const HEADER: [&str; 6] = ["gateway_mac", "device_code", "time_utc", "time_local", "value", "unit"];

/// Which readings to export.
#[derive(Debug, Clone)]
pub struct ReadingsQuery {
    pub tenant: TenantId,
    pub gateway: Option<Mac>,
    /// A device of `gateway` (codes are per gateway).
    pub device: Option<DeviceCode>,
    /// `[from, to)`.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// The devices an export reads, in id order, with their labels, and the tenant's zone.
struct Plan {
    devices: Vec<DeviceId>,
    labels: HashMap<DeviceId, (String, String)>,
    zone: TimeZone,
}

async fn plan(store: &Store, q: &ReadingsQuery) -> Result<Plan, ReportError> {
    if q.from >= q.to {
        return Err(ReportError::Invalid("from must be before to".into()));
    }
    if q.to - q.from > Duration::days(MAX_EXPORT_DAYS) {
        return Err(ReportError::Invalid(format!("an export covers at most {MAX_EXPORT_DAYS} days")));
    }
    let zone = store.tenants().get(q.tenant).await?.timezone;
    let devices = match (q.gateway, &q.device) {
        (None, Some(_)) => {
            return Err(ReportError::Invalid("a device needs its gateway (codes are per gateway)".into()));
        }
        (None, None) => store.devices().list_with_archived(q.tenant).await?,
        (Some(mac), code) => {
            let g = store
                .gateways()
                .by_mac(q.tenant, mac)
                .await
                .map_err(|e| ReportError::not_found(e, format!("gateway {mac}")))?;
            let mut all = store.devices().list_for_gateway(q.tenant, g.id, true).await?;
            if let Some(code) = code {
                all.retain(|d| &d.code == code);
                if all.is_empty() {
                    return Err(ReportError::NotFound(format!("device {code} of gateway {mac}")));
                }
            }
            all
        }
    };
    let mut ids: Vec<DeviceId> = devices.iter().map(|d| d.id).collect();
    ids.sort_unstable();
    let labels = store
        .devices()
        .labels(q.tenant, &ids)
        .await?
        .into_iter()
        .map(|(id, (code, mac))| (id, (mac.to_string(), code.to_string())))
        .collect();
    Ok(Plan { devices: ids, labels, zone })
}

/// Calls `each` with every page of the export, in order; returns the rows seen.
async fn pages(
    store: &Store,
    q: &ReadingsQuery,
    plan: &Plan,
    mut each: impl FnMut(&[Reading]) -> Result<(), ReportError>,
) -> Result<u64, ReportError> {
    let mut rows = 0_u64;
    for &device in &plan.devices {
        let mut from = q.from;
        loop {
            let page = store.readings().for_device(q.tenant, device, from, q.to, PAGE).await?;
            rows += page.len() as u64;
            each(&page)?;
            match page.last() {
                Some(last) if page.len() as i64 == PAGE => from = last.time + Duration::microseconds(1),
                _ => break,
            }
        }
    }
    Ok(rows)
}

/// Writes the readings as CSV onto `out`; returns the rows written.
pub async fn csv(
    store: &Store,
    q: &ReadingsQuery,
    style: CsvStyle,
    out: impl Write,
) -> Result<u64, ReportError> {
    let plan = plan(store, q).await?;
    let zone = plan.zone.tz();
    let fail = |e: csv::Error| ReportError::render("CSV", e);
    let mut w = style.writer_on(out)?;
    w.write_record(HEADER).map_err(fail)?;
    let rows = pages(store, q, &plan, |page| {
        for r in page {
            let (mac, code) =
                plan.labels.get(&r.device_id).map_or(("", ""), |(m, c)| (m.as_str(), c.as_str()));
            w.write_record([
                mac,
                code,
                &r.time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                &r.time.with_timezone(&zone).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                &style.number(r.value),
                &r.unit,
            ])
            .map_err(fail)?;
        }
        // Each page leaves the process before the next is read.
        w.flush()?;
        Ok(())
    })
    .await?;
    w.flush()?;
    Ok(rows)
}

/// Writes the readings as an XLSX file at `path` (date cells for both times, numbers for the
/// values); returns the rows written.
pub async fn xlsx(store: &Store, q: &ReadingsQuery, path: &Path) -> Result<u64, ReportError> {
    let plan = plan(store, q).await?;
    let zone = plan.zone.tz();
    let fail = |e: XlsxError| ReportError::render("XLSX", e);
    let mut book = Workbook::new();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The sheets' temporary files beside the output: the same disk the result needs anyway.
        book.set_tempdir(dir).map_err(fail)?;
    }
    let header = Format::new().set_bold();
    let when = Format::new().set_num_format("yyyy-mm-dd hh:mm:ss");
    let mut sheets = 0_u32;
    let mut row_in_sheet = XLSX_SHEET_ROWS;
    let rows = pages(store, q, &plan, |page| {
        for r in page {
            if row_in_sheet >= XLSX_SHEET_ROWS {
                sheets += 1;
                let sheet = book.add_worksheet_with_constant_memory();
                sheet.set_name(format!("Leituras {sheets}")).map_err(fail)?;
                for (c, h) in HEADER.iter().enumerate() {
                    sheet.write_string_with_format(0, c as u16, *h, &header).map_err(fail)?;
                }
                sheet.set_column_width(2, 20).map_err(fail)?;
                sheet.set_column_width(3, 20).map_err(fail)?;
                sheet.set_freeze_panes(1, 0).map_err(fail)?;
                row_in_sheet = 0;
            }
            row_in_sheet += 1;
            let sheet = book.worksheet_from_index(sheets as usize - 1).map_err(fail)?;
            let (mac, code) =
                plan.labels.get(&r.device_id).map_or(("", ""), |(m, c)| (m.as_str(), c.as_str()));
            let local = r.time.with_timezone(&zone).naive_local();
            sheet.write_string(row_in_sheet, 0, mac).map_err(fail)?;
            sheet.write_string(row_in_sheet, 1, code).map_err(fail)?;
            sheet
                .write_datetime_with_format(
                    row_in_sheet,
                    2,
                    excel_datetime(r.time.naive_utc()).map_err(fail)?,
                    &when,
                )
                .map_err(fail)?;
            sheet
                .write_datetime_with_format(row_in_sheet, 3, excel_datetime(local).map_err(fail)?, &when)
                .map_err(fail)?;
            sheet.write_number(row_in_sheet, 4, r.value).map_err(fail)?;
            sheet.write_string(row_in_sheet, 5, &r.unit).map_err(fail)?;
        }
        Ok(())
    })
    .await?;
    if sheets == 0 {
        let sheet = book.add_worksheet();
        for (c, h) in HEADER.iter().enumerate() {
            sheet.write_string_with_format(0, c as u16, *h, &header).map_err(fail)?;
        }
    }
    book.save(path).map_err(fail)?;
    Ok(rows)
}
