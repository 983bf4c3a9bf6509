//! `tds consumption`: consumption per hour, day or month of the tenant's time zone for a
//! gateway's devices (or one of them), from the rollups, as CSV on standard output or as an XLSX
//! file, for operators' scripts. The rollups are brought up to date first, so the figures include
//! every committed reading even when no server is running.

use crate::cli::ConsumptionArgs;
use crate::import::find_tenant;
use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDate, Utc};
use tds_domain::buckets::{Bucket, day_start};
use tds_domain::{DeviceCode, Mac, TimeZone};
use tds_store::Store;
use tds_store::devices::Device;
use tds_store::rollups::RollupRow;

const HEADER: [&str; 14] = [
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

fn parse_date(flag: &str, value: &str) -> anyhow::Result<NaiveDate> {
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .with_context(|| format!("{flag} {value:?}: expected a date such as 2026-11-30"))
}

pub async fn run(store: &Store, args: ConsumptionArgs) -> anyhow::Result<()> {
    let bucket = Bucket::from_name(&args.bucket)
        .with_context(|| format!("--bucket {:?}: expected hour, day or month", args.bucket))?;
    let tenant_id = find_tenant(store, &args.tenant).await?;
    let tenant = store.tenants().get(tenant_id).await?;
    let tz = tenant.timezone;
    let (from, to) = (parse_date("--from", &args.from)?, parse_date("--to", &args.to)?);
    if to < from {
        bail!("--to {to} is before --from {from}");
    }
    // `--to` is the last day included.
    let start = day_start(tz, from);
    let end = tds_domain::buckets::end_of_day(tz, to).context("--to is out of range")?;
    let mac = Mac::parse(&args.gateway)?;
    let gateway = store
        .gateways()
        .by_mac(tenant_id, mac)
        .await
        .with_context(|| format!("no gateway {mac} in tenant {:?}", args.tenant))?;
    let mut devices: Vec<Device> = store.devices().list_for_gateway(tenant_id, gateway.id, true).await?;
    if let Some(code) = &args.device {
        let code = DeviceCode::parse(code)?;
        devices.retain(|d| d.code == code);
        if devices.is_empty() {
            bail!("gateway {mac} has no device {code}");
        }
    }
    // Figures as of every committed reading, server running or not.
    tds_jobs::rollups::drain(store).await?;
    let mut rows: Vec<(Device, RollupRow)> = Vec::new();
    for d in devices {
        for r in store.rollups().for_device(tenant_id, d.id, bucket, start, end).await? {
            rows.push((d.clone(), r));
        }
    }
    match args.format.as_str() {
        "csv" => write_csv(std::io::stdout().lock(), mac, tz, &rows),
        "xlsx" => {
            let out = args.out.as_ref().context("--format xlsx needs --out FILE.xlsx")?;
            write_xlsx(out, mac, tz, &rows)?;
            eprintln!("wrote {} rows to {}", rows.len(), out.display());
            Ok(())
        }
        other => bail!("--format {other:?}: expected csv or xlsx"),
    }
}

fn local(tz: TimeZone, t: DateTime<Utc>) -> String {
    t.with_timezone(&tz.tz()).to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

fn write_csv(
    out: impl std::io::Write,
    mac: Mac,
    tz: TimeZone,
    rows: &[(Device, RollupRow)],
) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(HEADER)?;
    let num = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    for (d, r) in rows {
        w.write_record([
            mac.to_string(),
            d.code.to_string(),
            d.name.to_string(),
            d.medium.to_string(),
            d.unit.to_string(),
            local(tz, r.start),
            num(r.consumption),
            num(r.min),
            num(r.avg),
            num(r.max),
            r.count.to_string(),
            r.expected.to_string(),
            num(r.completeness()),
            r.resets.to_string(),
        ])?;
    }
    w.flush()?;
    Ok(())
}

fn write_xlsx(
    path: &std::path::Path,
    mac: Mac,
    tz: TimeZone,
    rows: &[(Device, RollupRow)],
) -> anyhow::Result<()> {
    use rust_xlsxwriter::{Format, Workbook};
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    sheet.set_name("Consumo")?;
    let bold = Format::new().set_bold();
    for (c, h) in HEADER.iter().enumerate() {
        sheet.write_string_with_format(0, c as u16, *h, &bold)?;
    }
    for (i, (d, r)) in rows.iter().enumerate() {
        let row = i as u32 + 1;
        sheet.write_string(row, 0, mac.to_string())?;
        sheet.write_string(row, 1, d.code.to_string())?;
        sheet.write_string(row, 2, d.name.to_string())?;
        sheet.write_string(row, 3, d.medium.to_string())?;
        sheet.write_string(row, 4, d.unit.to_string())?;
        sheet.write_string(row, 5, local(tz, r.start))?;
        // Typed cells: numbers stay numbers for the spreadsheet's own sums.
        for (c, v) in [(6, r.consumption), (7, r.min), (8, r.avg), (9, r.max), (12, r.completeness())] {
            if let Some(v) = v {
                sheet.write_number(row, c, v)?;
            }
        }
        sheet.write_number(row, 10, f64::from(r.count))?;
        sheet.write_number(row, 11, f64::from(r.expected))?;
        sheet.write_number(row, 13, f64::from(r.resets))?;
    }
    sheet.autofit();
    book.save(path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
