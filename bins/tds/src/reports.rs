//! `tds report` and `tds readings export` (SPEC §9): the reports crate's report and raw export
//! for operators' scripts, the same code as the web's. Both bring the rollups up to date first
//! (figures as of every committed reading, server running or not) and write an audit entry
//! (SPEC §1: exports are audited).

use crate::admin::audit_detail;
use crate::cli::{ReadingsExportArgs, ReportArgs};
use crate::import::find_tenant;
use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDate, Utc};
use std::io::Write as _;
use tds_domain::buckets::{day_start, end_of_day};
use tds_domain::{DeviceCode, Mac, Medium, TenantId};
use tds_reports::csv_out::CsvStyle;
use tds_reports::export::ReadingsQuery;
use tds_reports::{Compare, DayRange, Lang, ReportBucket, ReportRequest, Scope};
use tds_store::Store;

fn parse_date(flag: &str, value: &str) -> anyhow::Result<NaiveDate> {
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .with_context(|| format!("{flag} {value:?}: expected a date such as 2026-11-30"))
}

fn scope(args: &ReportArgs) -> anyhow::Result<Scope> {
    let gateway = || -> anyhow::Result<Mac> {
        let mac =
            args.gateway.as_deref().with_context(|| format!("--scope {} needs --gateway MAC", args.scope))?;
        Ok(Mac::parse(mac)?)
    };
    Ok(match args.scope.as_str() {
        "device" => {
            if args.device.is_empty() {
                bail!("--scope device needs --device CODE (repeat it to compare devices)");
            }
            let codes = args.device.iter().map(|c| DeviceCode::parse(c)).collect::<Result<Vec<_>, _>>()?;
            Scope::Devices { gateway: gateway()?, codes }
        }
        "gateway" => Scope::Gateway(gateway()?),
        "medium" => {
            let m = args.medium.as_deref().context("--scope medium needs --medium water|energy|gas|other")?;
            Scope::Medium(Medium::parse(m)?)
        }
        "tenant" => Scope::Tenant,
        other => bail!("--scope {other:?}: expected device, gateway, medium or tenant"),
    })
}

async fn audit(
    store: &Store,
    tenant: TenantId,
    action: &str,
    kind: &str,
    detail: &serde_json::Value,
) -> anyhow::Result<()> {
    audit_detail(store, Some(tenant), action, kind, None, detail.to_string()).await
}

pub async fn report(store: &Store, args: ReportArgs) -> anyhow::Result<()> {
    let tenant = find_tenant(store, &args.tenant).await?;
    let bucket = ReportBucket::parse(&args.bucket)
        .with_context(|| format!("--bucket {:?}: expected hour, day, week or month", args.bucket))?;
    let (from, to) = (parse_date("--from", &args.from)?, parse_date("--to", &args.to)?);
    if to < from {
        bail!("--to {to} is before --from {from}");
    }
    let range = DayRange::new(from, to, bucket)?;
    let compare = args
        .compare
        .iter()
        .map(|c| Compare::parse(c).with_context(|| format!("--compare {c:?}: expected previous or year")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let lang =
        Lang::parse(&args.lang).with_context(|| format!("--lang {:?}: expected pt-BR or en", args.lang))?;
    let style = CsvStyle::parse(Some(args.delimiter.as_str()), Some(args.bom))?;
    if !matches!(args.format.as_str(), "pdf" | "xlsx" | "csv") {
        bail!("--format {:?}: expected pdf, xlsx or csv", args.format);
    }
    let scope = scope(&args)?;
    tds_jobs::rollups::drain(store).await?;
    let req = ReportRequest { tenant, scope, range, bucket, compare, lang, now: Utc::now() };
    let report = tds_reports::build(store, &req).await?;
    let bytes = match args.format.as_str() {
        "pdf" => tds_reports::pdf::render(&report)?,
        "xlsx" => tds_reports::xlsx::render(&report)?,
        _ => {
            let mut buf = Vec::new();
            tds_reports::csv_out::write_report(&report, style, &mut buf)?;
            buf
        }
    };
    std::fs::write(&args.out, &bytes).with_context(|| format!("cannot write {}", args.out.display()))?;
    audit(
        store,
        tenant,
        "report.export",
        "report",
        &serde_json::json!({
            "format": args.format, "scope": report.scope, "from": from, "to": to, "bucket": bucket,
            "file": args.out.display().to_string(), "bytes": bytes.len(),
        }),
    )
    .await?;
    eprintln!(
        "wrote {} ({} bytes, {} sections, {} incomplete rows)",
        args.out.display(),
        bytes.len(),
        report.sections.len(),
        report.incomplete_rows()
    );
    Ok(())
}

/// A `--from`/`--to` of an export: an RFC 3339 instant, or a local day (its start for `--from`,
/// the start of the next day for `--to`: the day is included).
fn instant(flag: &str, value: &str, tz: tds_domain::TimeZone, end: bool) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    let day = NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .with_context(|| format!("{flag} {value:?}: expected 2026-11-30 or 2026-11-30T12:00:00Z"))?;
    if end { end_of_day(tz, day).context("date out of range") } else { Ok(day_start(tz, day)) }
}

pub async fn export(store: &Store, args: ReadingsExportArgs) -> anyhow::Result<()> {
    let tenant_id = find_tenant(store, &args.tenant).await?;
    let tz = store.tenants().get(tenant_id).await?.timezone;
    let q = ReadingsQuery {
        tenant: tenant_id,
        gateway: args.gateway.as_deref().map(Mac::parse).transpose()?,
        device: args.device.as_deref().map(DeviceCode::parse).transpose()?,
        from: instant("--from", &args.from, tz, false)?,
        to: instant("--to", &args.to, tz, true)?,
    };
    let style = CsvStyle::parse(Some(args.delimiter.as_str()), Some(args.bom))?;
    let rows = match (args.format.as_str(), &args.out) {
        ("csv", Some(path)) => {
            let file =
                std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
            let mut out = std::io::BufWriter::with_capacity(1 << 16, file);
            let rows = tds_reports::export::csv(store, &q, style, &mut out).await?;
            out.flush()?;
            rows
        }
        ("csv", None) => {
            let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
            let rows = tds_reports::export::csv(store, &q, style, &mut out).await?;
            out.flush()?;
            rows
        }
        ("xlsx", Some(path)) => tds_reports::export::xlsx(store, &q, path).await?,
        ("xlsx", None) => bail!("--format xlsx needs --out FILE.xlsx"),
        (other, _) => bail!("--format {other:?}: expected csv or xlsx"),
    };
    audit(
        store,
        tenant_id,
        "readings.export",
        "readings",
        &serde_json::json!({
            "format": args.format, "gateway": args.gateway, "device": args.device,
            "from": q.from, "to": q.to, "rows": rows,
            "file": args.out.as_ref().map(|p| p.display().to_string()),
        }),
    )
    .await?;
    eprintln!("exported {rows} readings");
    Ok(())
}
