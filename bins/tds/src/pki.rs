//! Certificates from the command line and for the server: `tds ca init`, `tds cert …`,
//! `tds broker-config`, the CA that `tds serve` creates on first start, and the CRL that is
//! re-issued on every revocation and before it runs out.

use crate::admin::audit;
use crate::broker;
use crate::cli::{CaCommand, CertCommand};
use crate::config::Config;
use crate::import::find_tenant;
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tds_domain::Mac;
use tds_pki::{BrokerInfo, CaAlgorithm, CaFiles, CaSubject, DeviceKeyKind, RevocationReason};
use tds_store::certificates::{CertificateFilter, CertificateStatus, NewCertificate, StoredCrl};
use tds_store::{Page, Store, StoreError};

fn passphrase(config: &Config) -> Option<&str> {
    config.ca_passphrase.as_ref().map(crate::config::Secret::expose)
}

/// The names the MQTT server certificate is issued for.
fn server_sans(config: &Config) -> Vec<String> {
    let mut sans = vec![config.mqtt_public_host.clone()];
    for default in tds_pki::DEFAULT_SERVER_SANS {
        if !sans.iter().any(|s| s == default) {
            sans.push(default.to_owned());
        }
    }
    sans
}

/// Loads the CA from `{data_dir}/pki`, creating it (RSA-4096) with the server certificate on
/// first use, and saying where.
pub fn ensure_ca(config: &Config) -> anyhow::Result<CaFiles> {
    let dir = config.pki_dir();
    if dir.join(tds_pki::files::CA_KEY_FILE).exists() {
        return CaFiles::load(&dir, passphrase(config))
            .with_context(|| format!("cannot load the CA from {}", dir.display()));
    }
    tracing::info!(dir = %dir.display(), "no CA yet: creating the platform CA (RSA-4096) and the MQTT server certificate");
    let files = CaFiles::init(
        &dir,
        &CaSubject::default(),
        CaAlgorithm::Rsa4096,
        passphrase(config),
        &server_sans(config),
    )
    .with_context(|| format!("cannot create the CA in {}", dir.display()))?;
    tracing::info!(ca = %files.ca_cert_path().display(), "platform CA created; keep ca.key safe and backed up");
    Ok(files)
}

pub fn ca(config: &Config, command: CaCommand) -> anyhow::Result<()> {
    let CaCommand::Init { algorithm, common_name, organization, san } = command;
    let algorithm: CaAlgorithm = algorithm.parse()?;
    let subject = CaSubject {
        common_name: common_name.unwrap_or_else(|| CaSubject::default().common_name),
        organization: organization.unwrap_or_else(|| CaSubject::default().organization),
    };
    let mut sans = server_sans(config);
    sans.extend(san);
    let dir = config.pki_dir();
    let files = CaFiles::init(&dir, &subject, algorithm, passphrase(config), &sans)
        .with_context(|| format!("cannot create the CA in {}", dir.display()))?;
    println!("created the platform CA ({}) in {}", files.ca.key_algorithm(), dir.display());
    println!("  CA certificate:     {}", files.ca_cert_path().display());
    println!(
        "  CA key:             {} (mode 0600{})",
        files.ca_key_path().display(),
        if passphrase(config).is_some() { ", encrypted" } else { "" }
    );
    println!("  MQTT server cert:   {} for {}", files.server_cert_path().display(), sans.join(", "));
    println!("  fingerprint SHA-256 {}", files.ca.fingerprint_sha256());
    Ok(())
}

fn broker_info(config: &Config) -> BrokerInfo {
    // mqtt_addr was validated at start; the default port is only a fallback for the type.
    let port =
        config.mqtt_addr.parse::<std::net::SocketAddr>().map_or(tds_pki::DEFAULT_MQTT_TLS_PORT, |a| a.port());
    BrokerInfo { host: config.mqtt_public_host.clone(), port }
}

/// Finds the gateway a certificate is for: it must be registered and in service.
async fn gateway_for(store: &Store, mac: Mac) -> anyhow::Result<tds_store::gateways::Gateway> {
    let gateway = match store.gateways().staff_by_mac(mac).await {
        Ok(g) => g,
        Err(StoreError::NotFound) => {
            bail!("no gateway with MAC {mac}: pre-register it first (tds gateway import)")
        }
        Err(e) => return Err(e.into()),
    };
    if gateway.status == tds_domain::GatewayStatus::Decommissioned {
        bail!("gateway {mac} is decommissioned");
    }
    Ok(gateway)
}

pub async fn cert(config: &Config, store: &Store, command: CertCommand) -> anyhow::Result<()> {
    match command {
        CertCommand::Issue { mac, out, key, replace } => {
            let mac = Mac::parse(&mac)?;
            let kind: DeviceKeyKind = key.parse()?;
            let gateway = gateway_for(store, mac).await?;
            if !replace && store.certificates().staff_has_active(mac).await? {
                bail!("gateway {mac} already has an active certificate: use --replace to supersede it");
            }
            let files = ensure_ca(config)?;
            let issued = files.ca.issue_device(mac, kind, config.device_cert_days)?;
            let zip = tds_pki::bundle_zip(&issued, files.ca.cert_pem(), &broker_info(config))?;
            std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
            let path = out.join(tds_pki::bundle_file_name(mac));
            store
                .certificates()
                .record_issued(gateway.tenant_id, gateway.id, &tds_web::certs::record(&issued), replace, None)
                .await?;
            write_new(&path, &zip)?;
            audit(
                store,
                Some(gateway.tenant_id),
                None,
                "cert.issue",
                "certificate",
                issued.serial_hex.clone(),
            )
            .await?;
            println!(
                "issued certificate {} for {mac} ({}, valid until {}) -> {}",
                issued.serial_hex,
                issued.key_algorithm,
                issued.not_after.format("%Y-%m-%d"),
                path.display()
            );
            Ok(())
        }
        CertCommand::SignCsr { mac, file, out, replace } => {
            let mac = Mac::parse(&mac)?;
            let gateway = gateway_for(store, mac).await?;
            let csr =
                std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let files = ensure_ca(config)?;
            let issued = files.ca.sign_csr(&csr, mac, config.device_cert_days)?;
            store
                .certificates()
                .record_issued(gateway.tenant_id, gateway.id, &tds_web::certs::record(&issued), replace, None)
                .await?;
            audit(
                store,
                Some(gateway.tenant_id),
                None,
                "cert.sign_csr",
                "certificate",
                issued.serial_hex.clone(),
            )
            .await?;
            match out {
                Some(path) => {
                    write_new(&path, issued.cert_pem.as_bytes())?;
                    println!("signed certificate {} for {mac} -> {}", issued.serial_hex, path.display());
                }
                None => print!("{}", issued.cert_pem),
            }
            Ok(())
        }
        CertCommand::Revoke { mac, reason, notes } => {
            let mac = Mac::parse(&mac)?;
            let reason = RevocationReason::parse_for_device(&reason)?;
            let gateway = match store.gateways().staff_by_mac(mac).await {
                Ok(g) => g,
                Err(StoreError::NotFound) => bail!("no gateway with MAC {mac}"),
                Err(e) => return Err(e.into()),
            };
            let active = store
                .certificates()
                .for_gateway(gateway.tenant_id, gateway.id)
                .await?
                .into_iter()
                .find(|c| c.status == CertificateStatus::Active)
                .with_context(|| format!("gateway {mac} has no active certificate"))?;
            store
                .certificates()
                .revoke(gateway.tenant_id, active.id, reason.as_str(), notes.as_deref())
                .await?;
            audit(store, Some(gateway.tenant_id), None, "cert.revoke", "certificate", active.serial.clone())
                .await?;
            let files = Arc::new(ensure_ca(config)?);
            let crl = refresh_crl(store, &files, config).await?;
            println!(
                "revoked certificate {} of {mac} ({}); CRL #{} issued",
                active.serial,
                reason.as_str(),
                crl.number
            );
            Ok(())
        }
        command @ (CertCommand::Renew { .. } | CertCommand::Campaign { .. }) => {
            crate::renewal::cert(config, store, command).await
        }
        CertCommand::List { tenant, status } => {
            let filter = CertificateFilter {
                status: status.as_deref().map(parse_status).transpose()?,
                ..Default::default()
            };
            let page = Page::new(1, Page::MAX_SIZE);
            let list = match tenant {
                Some(name) => {
                    let t = find_tenant(store, &name).await?;
                    store.certificates().list(t, &filter, page).await?
                }
                None => store.certificates().staff_list(&filter, page).await?,
            };
            println!(
                "{:<34} {:<18} {:<11} {:<11} {:<12} ALGORITHM",
                "SERIAL", "MAC", "STATUS", "EXPIRES", "REASON"
            );
            for c in &list.items {
                println!(
                    "{:<34} {:<18} {:<11} {:<11} {:<12} {}",
                    c.serial,
                    c.mac,
                    c.status.as_str(),
                    c.expires_at.format("%Y-%m-%d"),
                    c.revocation_reason.as_deref().unwrap_or("-"),
                    c.key_algorithm
                );
            }
            if list.total > i64::from(page.size) {
                println!("({} of {} shown)", list.items.len(), list.total);
            }
            Ok(())
        }
        CertCommand::Batch { file, out, key } => batch(config, store, &file, &out, &key).await,
    }
}

fn parse_status(s: &str) -> anyhow::Result<CertificateStatus> {
    Ok(match s.trim().to_ascii_lowercase().as_str() {
        "active" => CertificateStatus::Active,
        "superseded" => CertificateStatus::Superseded,
        "revoked" => CertificateStatus::Revoked,
        "expired" => CertificateStatus::Expired,
        other => bail!("unknown status {other:?}: expected active, superseded, revoked or expired"),
    })
}

/// Writes a file that must not exist yet (a bundle holds a private key: never overwrite one
/// silently, never leave it readable by others).
fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// `tds cert batch`: factory certificates for a CSV `mac,serial_number,model,device_id`, one bundle
/// per row plus `manifest.csv`. Every row is checked before any key is generated; nothing is
/// written or recorded unless all rows are good.
async fn batch(config: &Config, store: &Store, file: &Path, out: &Path, key: &str) -> anyhow::Result<()> {
    let kind: DeviceKeyKind = key.parse()?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_path(file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let mut rows: Vec<(u64, Mac, Vec<String>)> = Vec::new();
    let mut errors = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("{} is not valid CSV", file.display()))?;
        let line = record.position().map_or(i as u64 + 1, csv::Position::line);
        let fields: Vec<String> = record.iter().map(str::to_owned).collect();
        if i == 0 && fields.first().is_some_and(|f| f.eq_ignore_ascii_case("mac")) {
            continue;
        }
        match Mac::parse(fields.first().map_or("", String::as_str)) {
            Ok(mac) if rows.iter().any(|(_, m, _)| *m == mac) => {
                errors.push(format!("line {line}: MAC {mac} appears twice"));
            }
            Ok(mac) => {
                if store.certificates().staff_has_active(mac).await? {
                    errors.push(format!("line {line}: MAC {mac} already has an active certificate"));
                }
                rows.push((line, mac, fields));
            }
            Err(e) => errors.push(format!("line {line}: {e}")),
        }
    }
    if !errors.is_empty() {
        for e in &errors {
            println!("{e}");
        }
        bail!("batch refused: {} problem(s); nothing was issued", errors.len());
    }
    if rows.is_empty() {
        bail!("{} has no rows", file.display());
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    for (_, mac, _) in &rows {
        let path = out.join(tds_pki::bundle_file_name(*mac));
        if path.exists() {
            bail!("{} already exists; nothing was issued", path.display());
        }
    }
    let files = ensure_ca(config)?;
    let macs: Vec<Mac> = rows.iter().map(|(_, m, _)| *m).collect();
    let started = std::time::Instant::now();
    let issued = tds_pki::issue_batch(&files.ca, &macs, kind, config.device_cert_days)?;
    let broker = broker_info(config);
    let mut bundles = Vec::with_capacity(issued.len());
    for cert in &issued {
        bundles.push((
            out.join(tds_pki::bundle_file_name(cert.mac)),
            tds_pki::bundle_zip(cert, files.ca.cert_pem(), &broker)?,
        ));
    }
    let records: Vec<NewCertificate> = issued.iter().map(tds_web::certs::record).collect();
    store.certificates().staff_record_factory(&records).await?;
    let mut manifest = csv::Writer::from_writer(Vec::new());
    manifest.write_record(["mac", "serial_number", "cert_serial", "expires_at"])?;
    for ((_, _, fields), cert) in rows.iter().zip(&issued) {
        let serial_number = fields.get(1).map_or("", String::as_str);
        manifest.write_record([
            cert.mac.to_string().as_str(),
            serial_number,
            cert.serial_hex.as_str(),
            cert.not_after.to_rfc3339().as_str(),
        ])?;
    }
    for (path, zip) in &bundles {
        write_new(path, zip)?;
    }
    let manifest_path = out.join("manifest.csv");
    std::fs::write(&manifest_path, manifest.into_inner().context("manifest")?)
        .with_context(|| format!("cannot write {}", manifest_path.display()))?;
    audit(store, None, None, "cert.batch", "certificate", format!("{} certificates", issued.len())).await?;
    println!(
        "issued {} certificates ({}) in {:.1} s -> {} (+ manifest.csv)",
        issued.len(),
        kind.as_str(),
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

/// The certificate service over the CA in `files`, with this configuration's settings.
pub fn service(files: Arc<CaFiles>, config: &Config) -> tds_web::certs::Pki {
    tds_web::certs::Pki::new(files, config.device_cert_days, config.crl_days, broker_info(config))
}

/// Issues a new CRL with every revoked serial and stores it (number one above the stored one).
pub async fn refresh_crl(store: &Store, files: &Arc<CaFiles>, config: &Config) -> anyhow::Result<StoredCrl> {
    Ok(service(files.clone(), config).refresh_crl(store).await?)
}

/// The CRL in force, issued now when there is none or it is within a day of its next update.
pub async fn current_crl(store: &Store, files: &Arc<CaFiles>, config: &Config) -> anyhow::Result<StoredCrl> {
    Ok(service(files.clone(), config).current_crl(store).await?)
}

/// Writes a file that other programs (the broker, running as its own user) must read, whatever
/// the process's umask: certificates, the CRL, the broker's configuration.
pub fn write_public(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .with_context(|| format!("cannot make {} readable", path.display()))
}

/// `tds broker-config --out DIR`: Mosquitto's configuration, ACL, CA and server certificate, and
/// the current CRL.
pub async fn broker_config(
    config: &Config,
    store: &Store,
    out: &PathBuf,
    bind: &str,
    port: u16,
) -> anyhow::Result<()> {
    let files = Arc::new(ensure_ca(config)?);
    let crl = current_crl(store, &files, config).await?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let dir = std::fs::canonicalize(out).with_context(|| format!("cannot resolve {}", out.display()))?;
    // The broker runs as its own user: everything here but its key is public.
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .with_context(|| format!("cannot open {} to the broker", dir.display()))?;
    let write = |name: &str, text: &str| write_public(&dir.join(name), text.as_bytes());
    write("mosquitto.conf", &broker::mosquitto_conf(&dir, bind, port))?;
    write("acl", &broker::acl())?;
    write("ca.crt", files.ca.cert_pem())?;
    write("server.crt", &files.server_cert_pem)?;
    write("crl.pem", &crl.pem)?;
    tds_pki::files::write_secret(&dir.join("server.key"), &files.server_key_pem)?;
    println!(
        "wrote Mosquitto configuration to {} (CRL #{}): mosquitto -c {}/mosquitto.conf",
        dir.display(),
        crl.number,
        dir.display()
    );
    Ok(())
}
