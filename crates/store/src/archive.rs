//! Archived devices across tenants, for platform staff: the list, and the purge of an archived
//! device's readings (SPEC §1: archiving keeps the readings, reportable; purging them is a
//! separate, explicit staff action). Everything here is `staff_*`: it crosses tenants.

use crate::page::{Page, Paged};
use crate::{Db, StoreError, Ts};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::AssertSqlSafe;
use tds_domain::{DeviceId, TenantId};

/// An archived device with what a purge would delete.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArchivedDevice {
    pub id: DeviceId,
    pub tenant_id: TenantId,
    pub tenant_name: String,
    pub gateway_mac: String,
    pub gateway_code: String,
    pub code: String,
    pub name: String,
    pub archived_at: DateTime<Utc>,
    pub readings: i64,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    tenant_id: i64,
    tenant_name: String,
    gateway_mac: String,
    gateway_code: String,
    code: String,
    name: String,
    archived_at: Ts,
    readings: i64,
}

const SELECT: &str = "SELECT d.id, d.tenant_id, t.name AS tenant_name, g.mac AS gateway_mac, \
     g.code AS gateway_code, d.code, d.name, d.archived_at, \
     (SELECT COUNT(*) FROM readings r WHERE r.device_id = d.id) AS readings \
     FROM devices d JOIN gateways g ON g.id = d.gateway_id JOIN tenants t ON t.id = d.tenant_id \
     WHERE d.archived_at IS NOT NULL";

impl From<Row> for ArchivedDevice {
    fn from(r: Row) -> Self {
        Self {
            id: DeviceId::new(r.id),
            tenant_id: TenantId::new(r.tenant_id),
            tenant_name: r.tenant_name,
            gateway_mac: r.gateway_mac,
            gateway_code: r.gateway_code,
            code: r.code,
            name: r.name,
            archived_at: r.archived_at.0,
            readings: r.readings,
        }
    }
}

/// What a purge deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Purged {
    pub readings: u64,
    pub rollups: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct ArchiveStore<'a> {
    db: &'a Db,
}

impl<'a> ArchiveStore<'a> {
    pub(crate) fn new(db: &'a Db) -> Self {
        Self { db }
    }

    /// Every tenant's archived devices, most recently archived first, with their reading counts.
    pub async fn staff_archived(&self, page: Page) -> Result<Paged<ArchivedDevice>, StoreError> {
        let total: i64 = on_db!(
            self.db,
            read | pool
                | sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE archived_at IS NOT NULL")
                    .fetch_one(pool)
                    .await
        )?;
        let sql = format!("{SELECT} ORDER BY d.archived_at DESC, d.id DESC LIMIT $1 OFFSET $2");
        let rows: Vec<Row> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(page.limit())
                    .bind(page.offset())
                    .fetch_all(pool)
                    .await
        )?;
        Ok(Paged {
            items: rows.into_iter().map(Into::into).collect(),
            total,
            page: page.number,
            size: page.size,
        })
    }

    /// One archived device; `NotFound` for a live or unknown one.
    pub async fn staff_get(&self, device: DeviceId) -> Result<ArchivedDevice, StoreError> {
        let sql = format!("{SELECT} AND d.id = $1");
        let row: Row = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str())).bind(device.get()).fetch_one(pool).await
        )?;
        Ok(row.into())
    }

    /// Deletes every reading and rollup of an archived device (its rows stay, archived); a live
    /// device is refused with `Conflict`. One transaction.
    pub async fn staff_purge(&self, device: DeviceId) -> Result<Purged, StoreError> {
        in_tx!(self.db, |tx| {
            let archived: Option<Option<Ts>> =
                sqlx::query_scalar("SELECT archived_at FROM devices WHERE id = $1")
                    .bind(device.get())
                    .fetch_optional(&mut *tx)
                    .await?;
            match archived {
                None => return Err(StoreError::NotFound),
                Some(None) => {
                    return Err(StoreError::Conflict(
                        "only an archived device's readings can be purged".into(),
                    ));
                }
                Some(Some(_)) => {}
            }
            let readings = sqlx::query("DELETE FROM readings WHERE device_id = $1")
                .bind(device.get())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let rollups = sqlx::query("DELETE FROM rollups WHERE device_id = $1")
                .bind(device.get())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query("DELETE FROM rollup_dirty WHERE device_id = $1")
                .bind(device.get())
                .execute(&mut *tx)
                .await?;
            Ok(Purged { readings, rollups })
        })
    }
}
