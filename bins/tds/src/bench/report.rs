//! `tds bench report`: the time to build and render a monthly consumption report for a tenant of
//! many devices (1,000 by default). It seeds a tenant of `--devices` energy counters (gateways of
//! 32) with a reading every `--interval-minutes` through November 2026 (São Paulo), brings the
//! rollups up to date, then times, for the whole tenant and for one gateway's 32 devices
//! compared side by side: the report's queries, the PDF and the XLSX.

use crate::config::Config;
use anyhow::bail;
use chrono::{Duration, NaiveDate, TimeZone, Utc};
use std::time::Instant;
use tds_reports::{Compare, DayRange, Lang, ReportBucket, ReportRequest, Scope};
use tds_store::readings::NewReading;

pub async fn run(
    config: &Config,
    database_url: Option<String>,
    devices: usize,
    interval_minutes: i64,
) -> anyhow::Result<()> {
    if devices == 0 || !(1..=1440).contains(&interval_minutes) {
        bail!("--devices must be at least 1 and --interval-minutes 1 to 1440");
    }
    let tmp = tempfile::tempdir()?;
    let (store, url) = super::open_store(config, database_url.as_deref(), tmp.path()).await?;
    let tenant = super::setup(&store, devices).await?;
    let all = store.devices().list(tenant).await?;
    let per_device = 30 * 24 * 60 / interval_minutes;
    println!(
        "bench report: {devices} devices x {per_device} readings (November 2026, every {interval_minutes} min) on {} ({})",
        store.db().backend(),
        tds_store::redact_url(&url)
    );
    let t0 = Utc.with_ymd_and_hms(2026, 11, 1, 3, 0, 0).single().unwrap_or_default();
    let started = Instant::now();
    let mut rows = Vec::with_capacity(20_000);
    for k in 0..per_device {
        for d in &all {
            rows.push(NewReading {
                device_id: d.id,
                time: t0 + Duration::minutes(k * interval_minutes),
                value: k as f64 * (1.0 + (d.id.get() % 7) as f64 * 0.1),
                unit: "kWh".into(),
            });
            if rows.len() == 20_000 {
                store.readings().insert(tenant, &rows).await?;
                rows.clear();
            }
        }
    }
    store.readings().insert(tenant, &rows).await?;
    let loaded = started.elapsed();
    let started = Instant::now();
    tds_jobs::rollups::drain(&store).await?;
    println!(
        "seeded {} readings in {:.1} s, rollups in {:.1} s",
        per_device * all.len() as i64,
        loaded.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    let range = DayRange::new(
        NaiveDate::from_ymd_opt(2026, 11, 1).unwrap_or_default(),
        NaiveDate::from_ymd_opt(2026, 11, 30).unwrap_or_default(),
        ReportBucket::Day,
    )?;
    let first_gateway = all.first().map(|d| d.gateway_id);
    let gateway = match first_gateway {
        Some(g) => store.gateways().get(tenant, g).await?.mac,
        None => bail!("no devices"),
    };
    let codes: Vec<_> =
        all.iter().filter(|d| Some(d.gateway_id) == first_gateway).map(|d| d.code.clone()).collect();
    for (name, scope) in [
        (format!("whole tenant ({devices} devices)"), Scope::Tenant),
        (format!("{} devices compared", codes.len()), Scope::Devices { gateway, codes: codes.clone() }),
    ] {
        let req = ReportRequest {
            tenant,
            scope,
            range,
            bucket: ReportBucket::Day,
            compare: vec![Compare::Previous],
            lang: Lang::PtBr,
            now: Utc::now(),
        };
        let t = Instant::now();
        let report = tds_reports::build(&store, &req).await?;
        let query = t.elapsed();
        let t = Instant::now();
        let pdf = tds_reports::pdf::render(&report)?;
        let pdf_time = t.elapsed();
        let t = Instant::now();
        let xlsx = tds_reports::xlsx::render(&report)?;
        let xlsx_time = t.elapsed();
        println!(
            "monthly report, {name}: queries {:.0} ms; PDF {:.0} ms ({} KiB); XLSX {:.0} ms ({} KiB)",
            query.as_secs_f64() * 1e3,
            pdf_time.as_secs_f64() * 1e3,
            pdf.len() / 1024,
            xlsx_time.as_secs_f64() * 1e3,
            xlsx.len() / 1024,
        );
    }
    store.db().close().await;
    Ok(())
}
