//! `tds gateway import` and `tds device import`: the CSV import of `tds_web::import` (shared with
//! the web page), with its row-by-row report printed. The operator runs these, so a plain gateway
//! file links the unlinked factory certificates of its MACs (`Importer::Staff`), as a factory
//! manifest links those it names.

use crate::admin::audit;
use crate::cli::{DeviceCommand, GatewayCommand, ImportArgs};
use anyhow::{Context, bail};
use std::io::Read;
use std::path::Path;
use tds_domain::TenantId;
use tds_domain::import_rows::{ImportLimits, ReadError};
use tds_store::{Store, StoreError};
use tds_web::import::{ImportError, ImportOutcome, Importer};

/// The file, read no further than one byte past the limit (enough to know it is too large).
fn read_file(path: &Path, limits: ImportLimits) -> anyhow::Result<Result<Vec<u8>, ImportError>> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(limits.max_bytes() as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(if bytes.len() > limits.max_bytes() {
        Err(ImportError::File(ReadError::TooLarge { max: limits.max_bytes() }))
    } else {
        Ok(bytes)
    })
}

/// Prints the row-by-row report; fails when nothing was imported.
fn report(path: &Path, outcome: Result<ImportOutcome, ImportError>) -> anyhow::Result<usize> {
    let outcome = outcome.with_context(|| format!("cannot import {}", path.display()))?;
    for row in &outcome.rows {
        match &row.outcome {
            Ok(what) => println!("line {}: ok    {what}", row.line),
            Err(e) => println!("line {}: ERROR {e}", row.line),
        }
    }
    if outcome.created == 0 {
        bail!(
            "import refused: {} of {} rows have errors; nothing was imported",
            outcome.refused().max(1),
            outcome.rows.len()
        );
    }
    Ok(outcome.created)
}

pub async fn gateway(store: &Store, command: GatewayCommand, limits: ImportLimits) -> anyhow::Result<()> {
    let GatewayCommand::Import(ImportArgs { tenant, file }) = command;
    let tenant = find_tenant(store, &tenant).await?;
    let outcome = match read_file(&file, limits)? {
        Ok(bytes) => tds_web::import::gateways(store, tenant, &bytes, None, limits, Importer::Staff).await,
        Err(e) => Err(e),
    };
    let created = report(&file, outcome)?;
    audit(
        store,
        Some(tenant),
        None,
        "gateway.import",
        "gateway",
        format!("{created} gateways from {}", file.display()),
    )
    .await?;
    println!("imported {created} gateways (pre-registered)");
    Ok(())
}

pub async fn device(store: &Store, command: DeviceCommand, limits: ImportLimits) -> anyhow::Result<()> {
    let DeviceCommand::Import(ImportArgs { tenant, file }) = command;
    let tenant = find_tenant(store, &tenant).await?;
    let outcome = match read_file(&file, limits)? {
        Ok(bytes) => tds_web::import::devices(store, tenant, &bytes, None, limits).await,
        Err(e) => Err(e),
    };
    let created = report(&file, outcome)?;
    audit(
        store,
        Some(tenant),
        None,
        "device.import",
        "device",
        format!("{created} devices from {}", file.display()),
    )
    .await?;
    println!("imported {created} devices");
    Ok(())
}

/// The id of the tenant named `name` (case-insensitive), or an error pointing at `tds tenant list`.
pub(crate) async fn find_tenant(store: &Store, name: &str) -> anyhow::Result<TenantId> {
    match store.tenants().staff_by_name(name).await {
        Ok(t) => Ok(t.id),
        Err(StoreError::NotFound) => bail!("no tenant named {name:?} (see `tds tenant list`)"),
        Err(e) => Err(e.into()),
    }
}
