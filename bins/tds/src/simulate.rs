//! `tds simulate`: provisions a fleet of virtual gateways in a tenant (gateways, meters and
//! device certificates, created on the first run and reused afterwards) and runs them against
//! the TDS device endpoint over real MQTT with mutual TLS, printing what they see every few
//! seconds: connected gateways, messages and readings acknowledged per second, and the
//! publish→PUBACK latency (which TDS sends only after the commit).
//!
//! The gateways' keys are the gateways' own: they are written under `{data_dir}/simulator/`
//! (mode 0600), as a factory would flash them, and never stored in the database.

use crate::cli::SimulateArgs;
use crate::config::Config;
use anyhow::{Context, bail};
use futures_util::StreamExt as _;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tds_domain::limits::{Amount, MaxDevices, ReportInterval};
use tds_domain::{DeviceCode, GatewayCode, Mac, Name, TenantId};
use tds_gateway::cert::CertFiles;
use tds_gateway::sim::{self, Faults, GatewaySpec, Latency, MeterProfile, MeterSpec, Settings, Stats};
use tds_pki::DeviceKeyKind;
use tds_store::certificates::CertificateStatus;
use tds_store::gateways::{Gateway, GatewayFields, GatewayFilter};
use tds_store::tenants::{NewTenant, TenantLimits};
use tds_store::{Page, Store, StoreError};
use tokio::sync::watch;

/// What to provision.
#[derive(Debug, Clone)]
pub struct Plan {
    pub tenant: String,
    /// The simulated gateways' indexes: `first..first + gateways` (see [`simulated_mac`]).
    pub first: usize,
    pub gateways: usize,
    pub devices: usize,
    /// How often each gateway reports.
    pub interval: Duration,
    /// The reporting interval registered in TDS (at least 10 s): what completeness and offline
    /// detection go by.
    pub expected_interval: Duration,
    pub key: DeviceKeyKind,
}

/// The MAC of the `index`-th simulated gateway: locally administered (`02:…`), so it never
/// collides with a real device's.
pub fn simulated_mac(index: usize) -> Mac {
    Mac::from_bytes([0x02, 0x5d, 0x00, (index >> 16) as u8, (index >> 8) as u8, index as u8])
}

pub async fn run(config: &Config, args: SimulateArgs) -> anyhow::Result<()> {
    if args.gateways == 0 || args.first_gateway.saturating_add(args.gateways) > 1 << 24 {
        bail!("--gateways must be at least 1, and --first-gateway + --gateways at most 16777216");
    }
    if !(1..=32).contains(&args.devices) {
        bail!("--devices must be between 1 and 32 (a gateway has at most 32 devices)");
    }
    if args.interval == 0 {
        bail!("--interval must be at least 1 second");
    }
    let key: DeviceKeyKind = args.key.parse()?;
    let faults = Faults::named(&args.faults)
        .with_context(|| format!("--faults {:?}: expected none, field or heavy", args.faults))?;
    let plan = Plan {
        tenant: args.tenant.clone(),
        first: args.first_gateway,
        gateways: args.gateways,
        devices: args.devices,
        interval: Duration::from_secs(args.interval),
        expected_interval: Duration::from_secs(args.interval),
        key,
    };
    let store = crate::open_store(config).await?;
    let pki = crate::pki::service(Arc::new(crate::pki::ensure_ca(config)?), config);
    let started = std::time::Instant::now();
    let (tenant, fleet) = provision(&store, &pki, &simulator_dir(config), &plan).await?;
    println!(
        "simulate: {} gateways x {} devices in tenant {:?} (#{}) ready in {:.1} s",
        fleet.len(),
        plan.devices,
        plan.tenant,
        tenant.get(),
        started.elapsed().as_secs_f64()
    );
    // The endpoint may be busy with the fleet; the simulator needs no database connection.
    store.db().close().await;

    let port = match args.mqtt_port {
        Some(p) => p,
        None => config.mqtt_addr.parse::<std::net::SocketAddr>().map(|a| a.port()).with_context(|| {
            format!("mqtt_addr {:?} is not an address; pass --mqtt-port", config.mqtt_addr)
        })?,
    };
    let settings = Settings {
        host: args.mqtt_host.clone().unwrap_or_else(|| config.mqtt_public_host.clone()),
        port,
        interval: plan.interval,
        inflight: args.inflight,
        keep_alive: Duration::from_mins(1),
        faults,
        seed: args.seed,
    };
    println!(
        "simulate: connecting to mqtts://{}:{} at {} gateways/s, one batch every {} s each, {} faults",
        settings.host, settings.port, args.connect_rate, args.interval, args.faults
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let stats = Arc::new(Stats::default());
    let fleet_task = tokio::spawn(sim::run_fleet(fleet, settings, args.connect_rate, stats.clone(), stop_rx));
    let duration = args.duration.map(Duration::from_secs);
    let all = report_until(&stats, Duration::from_secs(args.report_every.max(1)), duration).await;
    let _ = stop_tx.send(true);
    let _ = fleet_task.await;
    summary(&stats, all, started.elapsed());
    Ok(())
}

/// Where the simulated gateways' certificates and keys are kept between runs.
pub fn simulator_dir(config: &Config) -> PathBuf {
    config.data_dir.join("simulator")
}

/// Prints a line every `every` until `duration` has passed (or Ctrl-C / SIGTERM); gives back
/// every latency sample of the run.
pub async fn report_until(stats: &Stats, every: Duration, duration: Option<Duration>) -> Vec<u32> {
    let begin = tokio::time::Instant::now();
    let end = duration.map(|d| begin + d);
    let mut all = Vec::new();
    let mut last = stats.snapshot();
    let mut last_at = begin;
    let mut tick = tokio::time::interval_at(begin + every, every);
    let stop = crate::serve::shutdown_signal();
    tokio::pin!(stop);
    loop {
        let done = tokio::select! {
            _ = tick.tick() => false,
            () = &mut stop => true,
            () = async { match end { Some(e) => tokio::time::sleep_until(e).await, None => std::future::pending().await } } => true,
        };
        let now = stats.snapshot();
        let mut window = stats.take_samples();
        all.extend_from_slice(&window);
        println!("  {}", now.report(&last, last_at.elapsed(), Latency::of(&mut window)));
        last = now;
        last_at = tokio::time::Instant::now();
        if done {
            return all;
        }
    }
}

fn summary(stats: &Stats, mut all: Vec<u32>, elapsed: Duration) {
    let s = stats.snapshot();
    let latency = Latency::of(&mut all).map_or_else(
        || "no acknowledgements".to_owned(),
        |l| {
            format!(
                "PUBACK p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} messages",
                l.p50_ms, l.p99_ms, l.max_ms, l.samples
            )
        },
    );
    println!(
        "simulate: done after {:.0} s: {} messages sent, {} acknowledged ({} readings); {latency}; {} bad messages, \
         {} resets, {} late batches; {} connects, {} connect failures, {} disconnects; {} renewals, {} rollbacks",
        elapsed.as_secs_f64(),
        s.messages_sent,
        s.messages_acked,
        s.readings_acked,
        s.bad_messages,
        s.resets,
        s.late_batches,
        s.connects,
        s.connect_failures,
        s.disconnects,
        s.renewals,
        s.rollbacks
    );
}

/// Creates what is missing of the plan (tenant, gateways, devices, certificates) and returns the
/// fleet ready to connect. Safe to run again: what exists is reused.
pub async fn provision(
    store: &Store,
    pki: &tds_web::certs::Pki,
    dir: &Path,
    plan: &Plan,
) -> anyhow::Result<(TenantId, Vec<GatewaySpec>)> {
    let tenant = ensure_tenant(
        store,
        &plan.tenant,
        plan.first + plan.gateways,
        (plan.first + plan.gateways) * plan.devices,
    )
    .await?;
    let gateways = ensure_gateways(store, tenant, plan).await?;
    ensure_devices(store, tenant, &gateways, plan.devices).await?;
    let (registers, last_reported) = registers(store, tenant).await?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // The gateways' trust anchor, beside their certificates: a renewal checks the new
    // certificate's chain against it, as a gateway in the field does with its bundle's CA.
    let ca_file = dir.join("ca.crt");
    std::fs::write(&ca_file, pki.files.ca.cert_pem())
        .with_context(|| format!("cannot write {}", ca_file.display()))?;
    let (registers, last_reported, ca_file) = (&registers, &last_reported, &ca_file);
    let fleet = futures_util::stream::iter(gateways.into_iter().map(|g| async move {
        ensure_certificate(store, pki, dir, &g, plan.key).await?;
        let (cert_file, key_file) = cert_paths(dir, g.mac);
        let files = CertFiles { ca_file: ca_file.clone(), cert_file, key_file };
        let meters = (0..plan.devices)
            .map(|d| MeterSpec {
                code: device_code(d),
                profile: MeterProfile::for_index(d),
                start: registers.get(&(g.id.get(), device_code(d))).copied(),
            })
            .collect();
        anyhow::Ok(GatewaySpec {
            mac: g.mac,
            meters,
            last_reported: last_reported.get(&g.id.get()).copied(),
            files,
        })
    }))
    // Key generation runs on the blocking pool: keep both cores busy.
    .buffered(4)
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((tenant, fleet))
}

/// Where the tenant's meters stand: the last stored reading of each counter by (gateway, code),
/// for simulated registers to go on from, and the last reading instant of each gateway.
async fn registers(
    store: &Store,
    tenant: TenantId,
) -> anyhow::Result<(HashMap<(i64, String), f64>, HashMap<i64, chrono::DateTime<chrono::Utc>>)> {
    let (mut values, mut times) = (HashMap::new(), HashMap::<i64, chrono::DateTime<chrono::Utc>>::new());
    for d in store.devices().list(tenant).await? {
        if let Some(last) = store.readings().latest(tenant, d.id, 1).await?.first() {
            if d.kind == tds_domain::MeasurementKind::Counter {
                values.insert((d.gateway_id.get(), d.code.to_string()), last.value);
            }
            let at = times.entry(d.gateway_id.get()).or_insert(last.time);
            *at = (*at).max(last.time);
        }
    }
    Ok((values, times))
}

fn device_code(index: usize) -> String {
    format!("D{:02}", index + 1)
}

async fn ensure_tenant(
    store: &Store,
    name: &str,
    gateways: usize,
    devices: usize,
) -> anyhow::Result<TenantId> {
    let needed = |have: i64, want: usize| have.max(i64::try_from(want).unwrap_or(i64::MAX));
    match store.tenants().staff_by_name(name).await {
        Ok(t) => {
            let limits = t.limits;
            let wanted = TenantLimits {
                max_gateways: needed(limits.max_gateways, gateways),
                max_devices: needed(limits.max_devices, devices),
                max_users: limits.max_users,
            };
            if wanted != limits {
                store.tenants().staff_set_limits(t.id, wanted).await?;
            }
            Ok(t.id)
        }
        Err(StoreError::NotFound) => {
            let mut new = NewTenant::named(Name::parse("name", name)?);
            new.limits.max_gateways = needed(new.limits.max_gateways, gateways);
            new.limits.max_devices = needed(new.limits.max_devices, devices);
            Ok(store.tenants().staff_create(&new).await?.id)
        }
        Err(e) => Err(e.into()),
    }
}

/// Every gateway of the tenant, by MAC.
async fn gateways_by_mac(store: &Store, tenant: TenantId) -> anyhow::Result<HashMap<Mac, Gateway>> {
    let mut out = HashMap::new();
    let mut number = 1;
    loop {
        let page = store
            .gateways()
            .list(tenant, &GatewayFilter::default(), Page::new(number, Page::MAX_SIZE))
            .await?;
        let n = page.items.len();
        out.extend(page.items.into_iter().map(|g| (g.mac, g)));
        if n < Page::MAX_SIZE as usize {
            return Ok(out);
        }
        number += 1;
    }
}

async fn ensure_gateways(store: &Store, tenant: TenantId, plan: &Plan) -> anyhow::Result<Vec<Gateway>> {
    let existing = gateways_by_mac(store, tenant).await?;
    let interval = ReportInterval::new(
        i64::try_from(plan.expected_interval.as_secs()).unwrap_or(i64::MAX).clamp(10, 86_400),
    )?;
    let mut missing = Vec::new();
    let indexes = plan.first..plan.first + plan.gateways;
    for i in indexes.clone() {
        let mac = simulated_mac(i);
        if !existing.contains_key(&mac) {
            let mut fields = GatewayFields::new(
                GatewayCode::parse(&format!("SIM-{:05}", i + 1))?,
                Name::parse("name", &format!("Concentrador simulado {}", i + 1))?,
            );
            fields.model = Some("DCU-8210".into());
            fields.max_devices = MaxDevices::new(plan.devices.max(8) as i64)?;
            fields.expected_interval = interval;
            missing.push((mac, fields));
        }
    }
    for chunk in missing.chunks(5_000) {
        store.gateways().import(tenant, chunk, None).await.map_err(|e| match e {
            StoreError::Import(rows) => anyhow::anyhow!(
                "cannot register the simulated gateways: {}",
                rows.iter().take(3).map(|r| r.message.clone()).collect::<Vec<_>>().join("; ")
            ),
            e => e.into(),
        })?;
    }
    let all = if missing.is_empty() { existing } else { gateways_by_mac(store, tenant).await? };
    indexes
        .map(|i| {
            all.get(&simulated_mac(i)).cloned().context("a simulated gateway vanished while provisioning")
        })
        .collect()
}

async fn ensure_devices(
    store: &Store,
    tenant: TenantId,
    gateways: &[Gateway],
    devices: usize,
) -> anyhow::Result<()> {
    let have: HashSet<(i64, String)> = store
        .devices()
        .list(tenant)
        .await?
        .into_iter()
        .map(|d| (d.gateway_id.get(), d.code.to_string()))
        .collect();
    let mut rows = Vec::new();
    for g in gateways {
        for d in 0..devices {
            let code = device_code(d);
            if !have.contains(&(g.id.get(), code.clone())) {
                rows.push((g.id, meter_fields(&code, MeterProfile::for_index(d))?));
            }
        }
    }
    for chunk in rows.chunks(5_000) {
        store.devices().import(tenant, chunk, None).await?;
    }
    Ok(())
}

/// The registration of a simulated meter: what a field installer would type for it.
pub fn meter_fields(code: &str, profile: MeterProfile) -> anyhow::Result<tds_store::devices::DeviceFields> {
    use tds_domain::{
        Description, DeviceMode, DeviceStatus, DeviceType, ModbusRegister, SlaveId, Unit, limits,
    };
    let meter = profile.kind() != tds_domain::MeasurementKind::Gauge;
    let slave =
        u8::try_from(code.trim_start_matches('D').parse::<u32>().unwrap_or(1).clamp(1, 247)).unwrap_or(1);
    Ok(tds_store::devices::DeviceFields {
        code: DeviceCode::parse(code)?,
        mac: None,
        name: Name::parse("name", &format!("{} {code}", profile.label()))?,
        description: Description::default(),
        device_type: if meter { DeviceType::Meter } else { DeviceType::Sensor },
        medium: profile.medium(),
        kind: profile.kind(),
        unit: Unit::parse(profile.unit())?,
        scale_factor: limits::ScaleFactor::default(),
        rollover_value: profile.rollover().map(|r| Amount::new("rollover value", r)).transpose()?,
        slave_id: Some(SlaveId::new(i64::from(slave))?),
        register: Some(ModbusRegister::new(1)?),
        mode: DeviceMode::Auto,
        status: DeviceStatus::Active,
        alarm_daily: None,
        alarm_monthly: None,
    })
}

fn cert_paths(dir: &Path, mac: Mac) -> (PathBuf, PathBuf) {
    let stem = mac.to_string().replace(':', "-");
    (dir.join(format!("{stem}.crt")), dir.join(format!("{stem}.key")))
}

/// The gateway's certificate and key from an earlier run when the certificate is still the
/// gateway's active one (a renewal the simulator took has replaced the files); otherwise a new
/// one, issued and recorded like `tds cert issue --replace`.
async fn ensure_certificate(
    store: &Store,
    pki: &tds_web::certs::Pki,
    dir: &Path,
    gateway: &Gateway,
    key: DeviceKeyKind,
) -> anyhow::Result<()> {
    let (cert_path, key_path) = cert_paths(dir, gateway.mac);
    if let Ok(cert) = std::fs::read_to_string(&cert_path)
        && key_path.exists()
        && still_active(store, gateway.mac, &cert).await
    {
        return Ok(());
    }
    // A renewal left half-way belongs to the certificate being replaced.
    for stale in [".new", ".csr"] {
        for path in [&cert_path, &key_path] {
            let mut name = path.as_os_str().to_owned();
            name.push(stale);
            let _ = std::fs::remove_file(PathBuf::from(name));
        }
    }
    let bundle = pki.issue(store, gateway, key, true).await?;
    let issued = bundle.certificate;
    let key_pem = issued.key_pem.clone().context("an issued certificate comes with its key")?;
    std::fs::write(&cert_path, &issued.cert_pem)
        .with_context(|| format!("cannot write {}", cert_path.display()))?;
    tds_pki::files::write_secret(&key_path, &key_pem)?;
    Ok(())
}

async fn still_active(store: &Store, mac: Mac, cert_pem: &str) -> bool {
    let Some(Ok(der)) = rustls_pemfile::certs(&mut cert_pem.as_bytes()).next() else {
        return false;
    };
    let Ok(identity) = tds_pki::tls::device_identity(der.as_ref()) else {
        return false;
    };
    if identity.mac != mac {
        return false;
    }
    match store.certificates().staff_by_serial(&identity.serial_hex).await {
        Ok(c) => c.status == CertificateStatus::Active && c.expires_at > chrono::Utc::now(),
        Err(_) => false,
    }
}
