//! `tds bench store`: loads readings through the same `ReadingStore::insert` the device endpoint
//! uses, on the database and with the durability settings of production (SQLite in WAL mode with
//! `synchronous=NORMAL`; PostgreSQL with its configured `synchronous_commit`, on by default), and
//! prints rows per second and per-transaction latency. `tds bench ingest` ([`ingest`]) measures
//! the device endpoint end to end: MQTT over mutual TLS, parsing, group commit, PUBACK;
//! `tds bench renewal` ([`renewal`]) a day of the certificate renewal campaign.

use crate::cli::BenchCommand;
use crate::config::Config;
use anyhow::{Context, bail};
use chrono::{Duration, TimeZone, Utc};
use std::time::Instant;
use tds_domain::limits::MaxDevices;
use tds_domain::{GatewayCode, Mac, Name};
use tds_store::readings::NewReading;
use tds_store::tenants::{NewTenant, TenantLimits};
use tds_store::{DbOptions, Store};

pub mod alerts;
mod compare;
mod cpu;
pub mod ingest;
mod load;
mod parse;
mod probe;
pub mod queries;
pub mod renewal;
pub mod report;

/// A benchmark's database: `database_url`, or a new SQLite file in `tmp`; and its URL.
pub(crate) async fn open_store(
    config: &Config,
    database_url: Option<&str>,
    tmp: &std::path::Path,
) -> anyhow::Result<(Store, String)> {
    let url =
        database_url.map_or_else(|| format!("sqlite://{}", tmp.join("bench.db").display()), str::to_owned);
    let store =
        Store::open(&url, &DbOptions { max_connections: config.db_max_connections, ..DbOptions::default() })
            .await
            .with_context(|| format!("cannot use database {}", tds_store::redact_url(&url)))?;
    Ok((store, url))
}

pub async fn run(config: &Config, command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Store { database_url, readings, devices, batch } => {
            store(config, database_url, readings, devices, batch).await
        }
        BenchCommand::Ingest(args) => ingest::run(config, args).await,
        BenchCommand::Queries(args) => queries::run(config, args).await,
        BenchCommand::Alerts { database_url, devices, rounds } => {
            alerts::run(config, database_url.as_deref(), devices, rounds).await
        }
        BenchCommand::Renewal { database_url, gateways, budget, key } => {
            let keys = match key.as_str() {
                "both" => vec![tds_pki::DeviceKeyKind::Rsa2048, tds_pki::DeviceKeyKind::EcdsaP256],
                k => vec![k.parse()?],
            };
            renewal::run(config, database_url.as_deref(), gateways, budget, &keys).await
        }
        BenchCommand::Parse { messages, devices } => parse::run(config, messages, devices).await,
        BenchCommand::Copy { to, readings, devices } => copy(config, &to, readings, devices).await,
        BenchCommand::ApiData { devices, days } => api_data(config, devices, days).await,
        BenchCommand::Report { database_url, devices, interval_minutes } => {
            report::run(config, database_url, devices, interval_minutes).await
        }
    }
}

/// `tds bench api-data`: what `scripts/bench.sh api` measures the API's reads on, in the
/// configured database (the one `tds serve` will use).
async fn api_data(config: &Config, devices: usize, days: i64) -> anyhow::Result<()> {
    if !(1..=32).contains(&devices) || !(1..=366).contains(&days) {
        bail!("--devices must be 1 to 32 (one gateway) and --days 1 to 366");
    }
    let store = crate::open_store(config).await?;
    let tenant = setup(&store, devices).await?;
    let gateway = store
        .gateways()
        .list(tenant, &tds_store::gateways::GatewayFilter::default(), tds_store::Page::new(1, 1))
        .await?;
    let gateway = gateway.items.first().context("the gateway")?;
    let ids: Vec<_> = store.devices().list(tenant).await?.into_iter().map(|d| d.id).collect();
    // Every 15 minutes, ending at the last instant of 2026-11-30 in UTC.
    let end = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).single().context("end")?;
    let steps = days * 96;
    let t0 = end - Duration::minutes(15 * steps);
    for chunk in (0..steps).collect::<Vec<_>>().chunks(250) {
        let rows: Vec<NewReading> = chunk
            .iter()
            .flat_map(|s| {
                ids.iter().map(move |d| NewReading {
                    device_id: *d,
                    time: t0 + Duration::minutes(15 * s),
                    value: *s as f64 * 0.25,
                    unit: "kWh".into(),
                })
            })
            .collect();
        store.readings().insert(tenant, &rows).await?;
    }
    tds_jobs::rollups::drain(&store).await?;
    let secret = tds_web::api_token::generate();
    store
        .api_tokens()
        .create(
            tenant,
            &tds_store::api_tokens::NewApiToken {
                name: Name::parse("name", "bench")?,
                role: tds_domain::Role::Admin,
                token_hash: secret.hash.clone(),
                prefix: secret.prefix.clone(),
                expires_at: None,
                created_by: None,
            },
        )
        .await?;
    let last_day = (end - Duration::days(1)).date_naive();
    println!("TOKEN={}", secret.secret);
    println!("MAC={}", gateway.mac);
    println!("FROM={}", t0.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    println!("TO={}", end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    println!("FIRST_DAY={}", (end - Duration::days(days)).date_naive());
    println!("LAST_DAY={last_day}");
    println!("READINGS={}", steps as usize * ids.len());
    store.db().close().await;
    Ok(())
}

/// `tds bench copy`: an embedded installation of `readings` readings (one a minute per device)
/// with their rollups, copied by `tds db copy` into `to`.
async fn copy(config: &Config, to: &str, readings: usize, devices: usize) -> anyhow::Result<()> {
    if devices == 0 || readings == 0 {
        bail!("--readings and --devices must be at least 1");
    }
    let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let (store, from) = open_store(config, None, tmp.path()).await?;
    let tenant = setup(&store, devices).await?;
    let ids: Vec<_> = store.devices().list(tenant).await?.into_iter().map(|d| d.id).collect();
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().context("start time")?;
    let loading = Instant::now();
    for start in (0..readings).step_by(10_000) {
        let rows: Vec<NewReading> = (start..(start + 10_000).min(readings))
            .map(|j| NewReading {
                device_id: ids[j % ids.len()],
                time: t0 + Duration::minutes((j / ids.len()) as i64),
                value: (j / ids.len()) as f64 * 0.25,
                unit: "kWh".into(),
            })
            .collect();
        store.readings().insert(tenant, &rows).await?;
    }
    tds_jobs::rollups::drain(&store).await?;
    store.db().close().await;
    println!(
        "bench copy: {readings} readings over {devices} devices and their rollups loaded into SQLite in {:.1} s",
        loading.elapsed().as_secs_f64()
    );
    crate::backup::db_copy(config, &from, to).await
}

async fn store(
    config: &Config,
    database_url: Option<String>,
    readings: usize,
    devices: usize,
    batch: usize,
) -> anyhow::Result<()> {
    if devices == 0 || batch == 0 || readings == 0 {
        bail!("--readings, --devices and --batch must be at least 1");
    }
    let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let (store, url) = open_store(config, database_url.as_deref(), tmp.path()).await?;
    let tenant = setup(&store, devices).await?;
    let device_ids: Vec<_> = store.devices().list(tenant).await?.into_iter().map(|d| d.id).collect();

    println!(
        "bench store: {readings} readings over {devices} devices, {batch} per transaction, on {} ({})",
        store.db().backend(),
        tds_store::redact_url(&url)
    );
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().context("start time")?;
    let mut latencies = Vec::with_capacity(readings / batch + 1);
    let started = Instant::now();
    let mut done = 0usize;
    while done < readings {
        let n = batch.min(readings - done);
        let rows: Vec<NewReading> = (done..done + n)
            .map(|j| NewReading {
                device_id: device_ids[j % device_ids.len()],
                time: t0 + Duration::minutes((j / device_ids.len()) as i64),
                value: (j / device_ids.len()) as f64 * 0.25,
                unit: "kWh".into(),
            })
            .collect();
        let tx_started = Instant::now();
        let report = store.readings().insert(tenant, &rows).await?;
        latencies.push(tx_started.elapsed());
        if report.inserted != n as u64 {
            bail!("expected {n} new rows, the store reported {report:?}");
        }
        done += n;
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    println!(
        "inserted {done} rows in {:.2} s: {:.0} rows/s; per transaction p50 {:.1} ms, p99 {:.1} ms",
        elapsed.as_secs_f64(),
        done as f64 / elapsed.as_secs_f64(),
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
    );
    store.db().close().await;
    Ok(())
}

/// A tenant named for this run with `devices` meters spread over gateways of 32.
async fn setup(store: &Store, devices: usize) -> anyhow::Result<tds_domain::TenantId> {
    let tag = format!("{:08x}", rand::random::<u32>());
    let mut new = NewTenant::named(Name::parse("name", &format!("bench-{tag}"))?);
    new.limits = TenantLimits { max_gateways: 1_000_000, max_devices: 10_000_000, max_users: 10 };
    let tenant = store.tenants().staff_create(&new).await?;
    let gateways = devices.div_ceil(32);
    let mut rows = Vec::with_capacity(gateways);
    for g in 0..gateways {
        let n = rand::random::<u32>();
        let mac = Mac::from_bytes([0x02, (g >> 16) as u8, (g >> 8) as u8, g as u8, (n >> 8) as u8, n as u8]);
        let mut fields = tds_store::gateways::GatewayFields::new(
            GatewayCode::parse(&format!("B{tag}-{g}"))?,
            Name::parse("name", &format!("bench gateway {g}"))?,
        );
        fields.max_devices = MaxDevices::new(32)?;
        rows.push((mac, fields));
    }
    let created = store.gateways().import(tenant.id, &rows, None).await?;
    let mut device_rows = Vec::with_capacity(devices);
    for i in 0..devices {
        let mut f = meter(i)?;
        f.code = tds_domain::DeviceCode::parse(&format!("D{:02}", i % 32))?;
        device_rows.push((created[i / 32].id, f));
    }
    store.devices().import(tenant.id, &device_rows, None).await?;
    Ok(tenant.id)
}

pub(crate) fn meter(i: usize) -> anyhow::Result<tds_store::devices::DeviceFields> {
    use tds_domain::{
        Description, DeviceCode, DeviceMode, DeviceStatus, DeviceType, MeasurementKind, Medium,
        ModbusRegister, Name, SlaveId, Unit, limits,
    };
    Ok(tds_store::devices::DeviceFields {
        code: DeviceCode::parse("D00")?,
        mac: None,
        name: Name::parse("name", &format!("bench meter {i}"))?,
        description: Description::default(),
        device_type: DeviceType::Meter,
        medium: Medium::Energy,
        kind: MeasurementKind::Counter,
        unit: Unit::parse("kWh")?,
        scale_factor: limits::ScaleFactor::default(),
        rollover_value: None,
        slave_id: Some(SlaveId::new(1)?),
        register: Some(ModbusRegister::new(1)?),
        mode: DeviceMode::Auto,
        status: DeviceStatus::Active,
        alarm_daily: None,
        alarm_monthly: None,
    })
}
