//! `tds bench queries`: the read side on a big data set. A tenant (in `America/Sao_Paulo`) gets
//! `--devices` meters of the simulator's mix on gateways of 32; `--days` of readings every
//! `--interval-minutes` are loaded through [`tds_store::readings::ReadingStore::insert_groups`]
//! (the ingest path, which also marks the rollups to refresh), time slice by time slice like a
//! fleet reporting, in large transactions; the rollups are then brought up to date the way the
//! rollup worker does it. Then, over `--samples` random devices, months and days, it times the
//! queries behind the telemetry page (a device-year of day rows, a month of hour rows, 24 h of raw
//! readings) and the home page (the tenant's consumption per medium today and this month, from the
//! day and month rows as `tds-web` reads them, and the same totals from a month of day rows and a
//! day of hour rows), one at a time, and prints p50/p95/p99.
//!
//! With `--reuse` a tenant loaded earlier with the same size is measured again without loading.

use crate::cli::QueryBenchArgs;
use crate::config::Config;
use anyhow::{Context, bail};
use chrono::{DateTime, Duration, TimeZone as _, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Instant;
use tds_domain::buckets::{bucket_start, next_bucket_start};
use tds_domain::limits::{MaxDevices, ReportInterval};
use tds_domain::{Bucket, DeviceId, GatewayCode, Mac, Name, TenantId, TimeZone};
use tds_gateway::sim::{Meter, MeterProfile};
use tds_store::Store;
use tds_store::readings::NewReading;
use tds_store::tenants::{NewTenant, TenantLimits};

/// The data set: which devices, over which local days.
#[derive(Debug)]
struct DataSet {
    tenant: TenantId,
    tz: TimeZone,
    /// Device id, profile and the index of its gateway, in creation order.
    devices: Vec<(DeviceId, MeterProfile, usize)>,
    /// Local midnight of the first day.
    start: DateTime<Utc>,
    /// Local midnight after the last day.
    end: DateTime<Utc>,
    interval: Duration,
}

pub async fn run(config: &Config, args: QueryBenchArgs) -> anyhow::Result<()> {
    if args.devices == 0 || args.days == 0 || args.samples == 0 || args.batch == 0 {
        bail!("--devices, --days, --samples and --batch must be at least 1");
    }
    let interval_s = i64::from(args.interval_minutes) * 60;
    let interval =
        ReportInterval::new(interval_s).context("--interval-minutes must be between 1 and 1440")?;
    let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let (store, url) = super::open_store(config, args.database_url.as_deref(), tmp.path()).await?;
    let tz = TimeZone::parse(TimeZone::DEFAULT_NAME)?;
    // Local midnight of 1 January 2025, and of the day after the last one.
    let start =
        bucket_start(tz, Bucket::Day, Utc.with_ymd_and_hms(2025, 1, 1, 12, 0, 0).single().context("start")?);
    let end =
        bucket_start(tz, Bucket::Day, start + Duration::days(i64::from(args.days)) + Duration::hours(12));
    let per_device = ((end - start).num_seconds() as u64).div_ceil(interval_s as u64);
    println!(
        "bench queries: {} devices x {} days, a reading every {} min ({} readings), on {} ({})",
        args.devices,
        args.days,
        args.interval_minutes,
        per_device * args.devices as u64,
        store.db().backend(),
        tds_store::redact_url(&url)
    );

    let name = format!("bench-queries-{}x{}d-{}min", args.devices, args.days, args.interval_minutes);
    let existing = store.tenants().staff_by_name(&name).await.ok();
    let (tenant, fresh) = match existing {
        Some(t) if args.reuse => {
            println!("reusing tenant {name} (no load)");
            (t.id, false)
        }
        Some(_) => {
            bail!("tenant {name} already exists: pass --reuse to measure it again, or use a new database")
        }
        None => (setup(&store, &name, tz, args.devices, interval).await?, true),
    };
    let mut devices = Vec::with_capacity(args.devices);
    let mut gateways = std::collections::HashMap::new();
    for d in store.devices().list(tenant).await? {
        // Codes D00..D31 follow the mix's order, as `setup` made them.
        let index: usize = d.code.as_str().trim_start_matches('D').parse().unwrap_or(0);
        let next = gateways.len();
        let g = *gateways.entry(d.gateway_id).or_insert(next);
        devices.push((d.id, MeterProfile::for_index(index), g));
    }
    let set = DataSet { tenant, tz, devices, start, end, interval: Duration::seconds(interval_s) };
    if fresh {
        load(&store, &set, args.batch).await?;
    }
    refresh(&store, &set).await?;
    if let tds_store::Db::Sqlite(s) = store.db() {
        let bytes = std::fs::metadata(s.path()).map_or(0, |m| m.len());
        println!("SQLite file: {:.1} GB", bytes as f64 / 1e9);
    }
    measure(&store, &set, args.samples).await?;
    store.db().close().await;
    Ok(())
}

/// A tenant named `name` with `devices` meters of the simulator's mix over gateways of 32.
async fn setup(
    store: &Store,
    name: &str,
    tz: TimeZone,
    devices: usize,
    interval: ReportInterval,
) -> anyhow::Result<TenantId> {
    let started = Instant::now();
    let tag = format!("{:08x}", rand::random::<u32>());
    let mut new = NewTenant::named(Name::parse("name", name)?);
    new.timezone = tz;
    new.limits = TenantLimits { max_gateways: 1_000_000, max_devices: 10_000_000, max_users: 10 };
    let tenant = store.tenants().staff_create(&new).await?;
    let count = devices.div_ceil(32);
    let mut rows = Vec::with_capacity(count);
    for g in 0..count {
        let n = rand::random::<u16>();
        let mac = Mac::from_bytes([0x02, (g >> 16) as u8, (g >> 8) as u8, g as u8, (n >> 8) as u8, n as u8]);
        let mut fields = tds_store::gateways::GatewayFields::new(
            GatewayCode::parse(&format!("Q{tag}-{g}"))?,
            Name::parse("name", &format!("bench gateway {g}"))?,
        );
        fields.max_devices = MaxDevices::new(32)?;
        fields.expected_interval = interval;
        rows.push((mac, fields));
    }
    let created = store.gateways().import(tenant.id, &rows, None).await?;
    let mut device_rows = Vec::with_capacity(devices);
    for i in 0..devices {
        let code = format!("D{:02}", i % 32);
        device_rows
            .push((created[i / 32].id, crate::simulate::meter_fields(&code, MeterProfile::for_index(i))?));
    }
    store.devices().import(tenant.id, &device_rows, None).await?;
    println!(
        "setup: tenant, {count} gateways and {devices} devices in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(tenant.id)
}

/// Loads the readings time slice by time slice (every device's next readings, as a reporting
/// fleet sends them), about `batch` per transaction. A generator thread prepares the next
/// transaction while the current one is written.
async fn load(store: &Store, set: &DataSet, batch: usize) -> anyhow::Result<()> {
    let steps_per_tx = (batch / set.devices.len()).max(1) as i64;
    let interval_s = set.interval.num_seconds();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<NewReading>>(2);
    let devices = set.devices.clone();
    let (start, end) = (set.start, set.end);
    let generator = tokio::task::spawn_blocking(move || {
        let mut rng = StdRng::seed_from_u64(1);
        let mut meters: Vec<Meter> = devices.iter().map(|(_, p, _)| Meter::new(*p, &mut rng)).collect();
        // Each gateway reports at its own second within the interval.
        let offsets: Vec<i64> = devices.iter().map(|(_, _, g)| (*g as i64 * 37) % interval_s).collect();
        let mut step = 0i64;
        while start + Duration::seconds(step * interval_s) < end {
            let mut rows = Vec::with_capacity(steps_per_tx as usize * devices.len());
            for s in step..step + steps_per_tx {
                for (i, (device, profile, _)) in devices.iter().enumerate() {
                    let at = start + Duration::seconds(s * interval_s + offsets[i]);
                    if at >= end {
                        continue;
                    }
                    let value = meters[i].read(at, 0.0, &mut rng).value;
                    rows.push(NewReading {
                        device_id: *device,
                        time: at,
                        value,
                        unit: profile.unit().into(),
                    });
                }
            }
            step += steps_per_tx;
            if rows.is_empty() || tx.blocking_send(rows).is_err() {
                break;
            }
        }
    });

    let total = {
        let per_device = ((end - start).num_seconds() as u64).div_ceil(interval_s as u64);
        per_device * set.devices.len() as u64
    };
    let started = Instant::now();
    let (mut done, mut transactions) = (0u64, 0u64);
    let mut tx_latencies = Vec::new();
    let mut last_report = (Instant::now(), 0u64);
    while let Some(rows) = rx.recv().await {
        let tx_started = Instant::now();
        let report = store.readings().insert_groups(&[(set.tenant, rows.as_slice())]).await?;
        tx_latencies.push(tx_started.elapsed().as_secs_f64());
        let inserted = report.first().map_or(0, |r| r.inserted);
        if inserted != rows.len() as u64 {
            bail!("expected {} new rows, the store reported {report:?}", rows.len());
        }
        done += inserted;
        transactions += 1;
        if last_report.0.elapsed().as_secs() >= 60 {
            let recent = (done - last_report.1) as f64 / last_report.0.elapsed().as_secs_f64();
            println!(
                "  load: {done} of ~{total} readings ({:.0}%) in {:.0} s: {:.0} rows/s overall, {recent:.0} rows/s \
                 over the last minute",
                done as f64 / total as f64 * 100.0,
                started.elapsed().as_secs_f64(),
                done as f64 / started.elapsed().as_secs_f64(),
            );
            last_report = (Instant::now(), done);
        }
    }
    generator.await.context("the reading generator panicked")?;
    let elapsed = started.elapsed().as_secs_f64();
    tx_latencies.sort_by(f64::total_cmp);
    println!(
        "load: {done} readings in {transactions} transactions in {elapsed:.0} s: {:.0} rows/s; per transaction \
         ({} readings) p50 {:.0} ms, p99 {:.0} ms",
        done as f64 / elapsed,
        steps_per_tx as usize * set.devices.len(),
        percentile(&tx_latencies, 0.5) * 1e3,
        percentile(&tx_latencies, 0.99) * 1e3,
    );
    Ok(())
}

/// Brings the rollups up to date with the store's refresh, as the rollup worker does, with
/// progress; then the planner's statistics (autovacuum's job, done at once here).
async fn refresh(store: &Store, set: &DataSet) -> anyhow::Result<()> {
    let pending = store.rollups().staff_pending().await?;
    if pending == 0 {
        println!("rollups: up to date");
        return analyze(store).await;
    }
    let started = Instant::now();
    let mut refreshed = 0usize;
    let mut last_report = Instant::now();
    loop {
        let n = store.rollups().staff_refresh_dirty(tds_jobs::rollups::BATCH).await?;
        if n == 0 {
            break;
        }
        refreshed += n;
        if last_report.elapsed().as_secs() >= 60 {
            println!(
                "  rollups: {refreshed} of {pending} devices in {:.0} s",
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let days = (set.end - set.start).num_days();
    let hours = (set.end - set.start).num_hours() * set.devices.len() as i64;
    let readings =
        (set.end - set.start).num_seconds() / set.interval.num_seconds() * set.devices.len() as i64;
    println!(
        "rollups: {refreshed} devices refreshed in {elapsed:.0} s ({:.1} devices/s): ~{hours} hour rows and \
         ~{} day and month rows from ~{readings} readings, {:.0} readings/s, {:.0} hour rows/s",
        refreshed as f64 / elapsed,
        (days + days / 30 + 1) * set.devices.len() as i64,
        readings as f64 / elapsed,
        hours as f64 / elapsed,
    );
    analyze(store).await
}

async fn analyze(store: &Store) -> anyhow::Result<()> {
    if let tds_store::Db::Postgres(_) = store.db() {
        let started = Instant::now();
        store.rollups().staff_analyze().await?;
        println!("ANALYZE readings, rollups: {:.1} s", started.elapsed().as_secs_f64());
    }
    Ok(())
}

/// The queries timed, in the order of the table.
const QUERIES: [&str; 7] = [
    "telemetry: device-year, day rows",
    "telemetry: device-month, hour rows",
    "telemetry: device 24 h, raw readings",
    "home: tenant today, day rows",
    "home: tenant this month, month rows",
    "tenant-month by medium, day rows",
    "tenant-day by medium, hour rows",
];

/// Times each query once per sample (random device, month and day; a few untimed rounds first)
/// and prints a table of p50/p95/p99 and the rows each returned on average.
async fn measure(store: &Store, set: &DataSet, samples: usize) -> anyhow::Result<()> {
    const WARM_UP: usize = 5;
    let mut rng = StdRng::seed_from_u64(2);
    let days = (set.end - set.start).num_days().max(1);
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(samples); QUERIES.len()];
    let mut rows = [0usize; QUERIES.len()];
    let (tenant, tz) = (set.tenant, set.tz);
    for round in 0..WARM_UP + samples {
        let (device, _, _) = set.devices[rng.random_range(0..set.devices.len())];
        let noon = set.start + Duration::days(rng.random_range(0..days)) + Duration::hours(12);
        let day = bucket_start(tz, Bucket::Day, noon);
        let day_end = next_bucket_start(tz, Bucket::Day, day);
        // The month of that day, within the data set.
        let month = bucket_start(tz, Bucket::Month, noon).max(set.start);
        let month_end = next_bucket_start(tz, Bucket::Month, noon).min(set.end);
        let rollups = store.rollups();
        let mut round_figures = [(0.0, 0usize); QUERIES.len()];
        let t = Instant::now();
        let n = rollups.for_device(tenant, device, Bucket::Day, set.start, set.end).await?.len();
        round_figures[0] = (t.elapsed().as_secs_f64(), n);
        let t = Instant::now();
        let n = rollups.for_device(tenant, device, Bucket::Hour, month, month_end).await?.len();
        round_figures[1] = (t.elapsed().as_secs_f64(), n);
        let t = Instant::now();
        // The telemetry page's limit of raw readings.
        let n =
            store.readings().for_device(tenant, device, day, day + Duration::hours(24), 20_000).await?.len();
        round_figures[2] = (t.elapsed().as_secs_f64(), n);
        // The home page at 15:00 of that day, as `tds-web` reads it: today's day rows and this
        // month's month rows.
        let now = day + Duration::hours(15);
        let t = Instant::now();
        let n = rollups.consumption_by_medium(tenant, Bucket::Day, day, now).await?.len();
        round_figures[3] = (t.elapsed().as_secs_f64(), n);
        let t = Instant::now();
        let n = rollups.consumption_by_medium(tenant, Bucket::Month, month, now).await?.len();
        round_figures[4] = (t.elapsed().as_secs_f64(), n);
        // The same totals from finer rows: a month of day rows, a day of hour rows.
        let t = Instant::now();
        let n = rollups.consumption_by_medium(tenant, Bucket::Day, month, month_end).await?.len();
        round_figures[5] = (t.elapsed().as_secs_f64(), n);
        let t = Instant::now();
        let n = rollups.consumption_by_medium(tenant, Bucket::Hour, day, day_end).await?.len();
        round_figures[6] = (t.elapsed().as_secs_f64(), n);
        if round >= WARM_UP {
            for (i, (secs, n)) in round_figures.into_iter().enumerate() {
                times[i].push(secs);
                rows[i] += n;
            }
        }
    }
    println!(
        "queries: {samples} samples each (random device, month and day; one query at a time, after {WARM_UP} \
         untimed rounds)"
    );
    println!(
        "  {:<40} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "query", "p50 ms", "p95 ms", "p99 ms", "max ms", "rows"
    );
    for (i, name) in QUERIES.iter().enumerate() {
        let t = &mut times[i];
        t.sort_by(f64::total_cmp);
        println!(
            "  {name:<40} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>7.0}",
            percentile(t, 0.5) * 1e3,
            percentile(t, 0.95) * 1e3,
            percentile(t, 0.99) * 1e3,
            percentile(t, 1.0) * 1e3,
            rows[i] as f64 / samples as f64,
        );
    }
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}
