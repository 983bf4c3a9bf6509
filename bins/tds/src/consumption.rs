//! `tds consumption`: a gateway's rollup rows per hour, day or month of the tenant's time zone
//! (or one device's), as CSV on standard output or as an XLSX file, for operators' scripts. The
//! table and its writers are the reports crate's ([`tds_reports::rollup_table`]); this brings the
//! rollups up to date first, so the figures include every committed reading even when no server
//! is running.

use crate::cli::ConsumptionArgs;
use crate::import::find_tenant;
use anyhow::{Context, bail};
use chrono::NaiveDate;
use tds_domain::buckets::Bucket;
use tds_domain::{DeviceCode, Mac};
use tds_reports::{DayRange, ReportBucket};
use tds_store::Store;

fn parse_date(flag: &str, value: &str) -> anyhow::Result<NaiveDate> {
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .with_context(|| format!("{flag} {value:?}: expected a date such as 2026-11-30"))
}

pub async fn run(store: &Store, args: ConsumptionArgs) -> anyhow::Result<()> {
    let bucket = Bucket::from_name(&args.bucket)
        .with_context(|| format!("--bucket {:?}: expected hour, day or month", args.bucket))?;
    let tenant = find_tenant(store, &args.tenant).await?;
    let (from, to) = (parse_date("--from", &args.from)?, parse_date("--to", &args.to)?);
    if to < from {
        bail!("--to {to} is before --from {from}");
    }
    let range_bucket = if bucket == Bucket::Hour { ReportBucket::Hour } else { ReportBucket::Day };
    let range = DayRange::new(from, to, range_bucket)?;
    let mac = Mac::parse(&args.gateway)?;
    let device = args.device.as_deref().map(DeviceCode::parse).transpose()?;
    // Figures as of every committed reading, server running or not.
    tds_jobs::rollups::drain(store).await?;
    let table = tds_reports::rollup_table::query(store, tenant, mac, device.as_ref(), bucket, range)
        .await
        .with_context(|| format!("tenant {:?}", args.tenant))?;
    match args.format.as_str() {
        "csv" => Ok(table.write_csv(std::io::stdout().lock())?),
        "xlsx" => {
            let out = args.out.as_ref().context("--format xlsx needs --out FILE.xlsx")?;
            table.write_xlsx(out)?;
            eprintln!("wrote {} rows to {}", table.rows.len(), out.display());
            Ok(())
        }
        other => bail!("--format {other:?}: expected csv or xlsx"),
    }
}
