//! `tds bench renewal`: a day of the certificate renewal campaign (SPEC §3, issue figures) over a
//! fleet of simulated gateways whose certificates all fall inside the 730-day window: the time
//! and the peak memory of the campaign job's run that starts the day's budget of renewals
//! (server-key mode: a new key and certificate each, the offer kept for the gateway), once with
//! RSA-2048 and once with P-256 device keys, each in a database of its own. Then the same day's
//! second run (what every later run of the 10-minute job costs once the budget is spent).
//!
//! Must not: touch the configured database unless --database-url names it.

use anyhow::{Context, bail};
use chrono::{Duration, Utc};
use std::sync::Arc;
use std::time::Instant;
use tds_domain::limits::MaxDevices;
use tds_domain::{GatewayCode, Mac, Name};
use tds_pki::{CaAlgorithm, CaFiles, CaSubject, DeviceKeyKind};
use tds_store::Store;
use tds_store::certificates::NewCertificate;
use tds_store::tenants::{NewTenant, TenantLimits};

pub async fn run(
    config: &crate::config::Config,
    database_url: Option<&str>,
    gateways: usize,
    budget: i64,
    keys: &[DeviceKeyKind],
) -> anyhow::Result<()> {
    if gateways == 0 || budget <= 0 {
        bail!("--gateways and --budget must be at least 1");
    }
    if database_url.is_some() && keys.len() > 1 {
        bail!("with --database-url, benchmark one --key at a time (each needs a database of its own)");
    }
    let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let ca = Arc::new(
        CaFiles::init(
            &tmp.path().join("pki"),
            &CaSubject::default(),
            CaAlgorithm::EcdsaP384,
            None,
            &["localhost".to_owned()],
        )
        .context("cannot create the benchmark's CA")?,
    );
    println!(
        "renewal campaign: {gateways} gateways, all expiring within 730 days, budget {budget} a day (platform and tenant)"
    );
    for (i, kind) in keys.iter().enumerate() {
        let dir = tmp.path().join(format!("db{i}"));
        std::fs::create_dir_all(&dir)?;
        let (store, url) = super::open_store(config, database_url, &dir).await?;
        let started = Instant::now();
        seed(&store, gateways, *kind).await?;
        println!(
            "{kind}: fleet of {gateways} recorded in {:.1} s ({})",
            started.elapsed().as_secs_f64(),
            tds_store::redact_url(&url)
        );
        let campaign = tds_jobs::renewal::Campaign {
            ca: ca.clone(),
            platform_per_day: budget,
            tenant_per_day: budget,
            device_cert_days: config.device_cert_days,
            hour: 0,
        };
        // The peak resident set of the run alone (Linux: `5` to clear_refs resets VmHWM).
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let before = rss_kib("VmRSS");
        let now = Utc::now();
        let t = Instant::now();
        let report = tds_jobs::renewal::run(&store, &campaign, now).await?;
        let day = t.elapsed();
        let peak = rss_kib("VmHWM");
        let t = Instant::now();
        let again = tds_jobs::renewal::run(&store, &campaign, now + Duration::minutes(10)).await?;
        let idle = t.elapsed();
        let progress = store
            .renewals()
            .progress(None, now + Duration::days(730), now - Duration::days(1), now - Duration::days(1))
            .await?;
        println!(
            "{kind}: day's run started {} renewals in {:.1} s ({:.1} ms each), peak RSS {} (was {} before the run); \
             backlog left {}; the next run the same day started {} in {:.0} ms",
            report.started,
            day.as_secs_f64(),
            day.as_secs_f64() * 1000.0 / report.started.max(1) as f64,
            mib(peak),
            mib(before),
            progress.backlog,
            again.started,
            idle.as_secs_f64() * 1000.0
        );
        store.db().close().await;
    }
    Ok(())
}

/// One tenant of `gateways` gateways, each seen an hour ago with an active certificate of `kind`
/// expiring in the next 700 days (spread evenly): factory certificates linked at import.
async fn seed(store: &Store, gateways: usize, kind: DeviceKeyKind) -> anyhow::Result<()> {
    let tag = format!("{:08x}", rand::random::<u32>());
    let mut new = NewTenant::named(Name::parse("name", &format!("bench-{tag}"))?);
    new.limits = TenantLimits { max_gateways: 1_000_000, max_devices: 10_000_000, max_users: 10 };
    let tenant = store.tenants().staff_create(&new).await?.id;
    let now = Utc::now();
    let mut rows = Vec::with_capacity(gateways);
    let mut certs = Vec::with_capacity(gateways);
    for g in 0..gateways {
        let mac = Mac::from_bytes([0x02, 0x7e, (g >> 24) as u8, (g >> 16) as u8, (g >> 8) as u8, g as u8]);
        let mut fields = tds_store::gateways::GatewayFields::new(
            GatewayCode::parse(&format!("R{tag}-{g}"))?,
            Name::parse("name", &format!("renewal bench gateway {g}"))?,
        );
        fields.max_devices = MaxDevices::new(1)?;
        rows.push((mac, fields));
        let expires = now + Duration::minutes(1 + (g as i64 * 700 * 24 * 60) / gateways.max(1) as i64);
        certs.push(NewCertificate {
            mac,
            serial: format!("{:032x}", rand::random::<u128>()),
            fingerprint_sha256: format!("{:064x}", rand::random::<u128>()),
            pem: String::new(),
            key_algorithm: kind.key_algorithm().to_owned(),
            issued_at: expires - Duration::days(3650),
            expires_at: expires,
        });
    }
    for chunk in certs.chunks(5_000) {
        store.certificates().staff_record_factory(chunk).await?;
    }
    let created = store.gateways().staff_import(tenant, &rows, None).await?;
    let seen = now - Duration::hours(1);
    for g in &created {
        store.gateways().mark_seen(tenant, g.id, seen).await?;
    }
    Ok(())
}

/// A field of /proc/self/status in KiB (0 where there is none).
fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(&format!("{field}:")))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}
