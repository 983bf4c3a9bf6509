//! What the device endpoint reads of a gateway when it connects: its status, its tenant's time
//! zone and retention, and its live devices' codes and units, in one statement. Read as a whole
//! gateway, then its tenant, then its devices, that was three round trips for every connection;
//! when half of a fleet reconnected at once under load, those reads queued for the pool's
//! connections with the ingest writer (`tds bench ingest --storm`, README twenty-third step).

use super::GatewayStore;
use crate::error::stored;
use crate::{StoreError, tenants};
use tds_domain::{DeviceCode, DeviceId, GatewayId, GatewayStatus, Mac, TenantId, TimeZone, Unit};

/// A gateway as a connection needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectingGateway {
    pub id: GatewayId,
    pub tenant_id: TenantId,
    pub status: GatewayStatus,
    /// Its tenant's time zone.
    pub timezone: TimeZone,
    /// Its tenant's retention of raw readings, in days (0: kept for ever).
    pub retention_days: i64,
    /// Its live (not archived) devices, by code.
    pub devices: Vec<ConnectingDevice>,
}

impl ConnectingGateway {
    /// How long raw readings are kept; `None` keeps them for ever (as [`tenants::Tenant::retention`]).
    pub fn retention(&self) -> Option<chrono::TimeDelta> {
        tenants::retention_of(self.retention_days)
    }
}

/// A live device of a connecting gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectingDevice {
    pub id: DeviceId,
    pub code: DeviceCode,
    pub unit: Unit,
}

/// One row per live device (a gateway without any: one row of `NULL` device columns).
type ConnectingRow = (i64, i64, String, String, i64, Option<i64>, Option<String>, Option<String>);

/// The gateway with MAC `$1`, its tenant, and its live devices (a `LEFT JOIN`, so a gateway with
/// none is still found), each device's code and unit.
const CONNECTING: &str = "SELECT g.id, g.tenant_id, g.status, t.timezone, t.retention_days, d.id, d.code, d.unit \
    FROM gateways g JOIN tenants t ON t.id = g.tenant_id \
    LEFT JOIN devices d ON d.tenant_id = g.tenant_id AND d.gateway_id = g.id AND d.archived_at IS NULL \
    WHERE g.mac = $1 ORDER BY d.code, d.id";

impl GatewayStore<'_> {
    /// The gateway with this MAC as a connection needs it (staff: any tenant, as
    /// [`GatewayStore::staff_by_mac`]); `None` when no gateway has it.
    pub async fn staff_connecting(&self, mac: Mac) -> Result<Option<ConnectingGateway>, StoreError> {
        let rows: Vec<ConnectingRow> = on_db!(
            self.db,
            read | pool | sqlx::query_as(CONNECTING).bind(mac.to_string()).fetch_all(pool).await
        )?;
        let Some((id, tenant_id, status, timezone, retention_days, ..)) = rows.first() else {
            return Ok(None);
        };
        let mut gateway = ConnectingGateway {
            id: GatewayId::new(*id),
            tenant_id: TenantId::new(*tenant_id),
            status: stored("gateways.status", status, GatewayStatus::parse)?,
            timezone: stored("tenants.timezone", timezone, TimeZone::parse)?,
            retention_days: *retention_days,
            devices: Vec::with_capacity(rows.len()),
        };
        for (.., device, code, unit) in rows {
            let (Some(id), Some(code), Some(unit)) = (device, code, unit) else { continue };
            gateway.devices.push(ConnectingDevice {
                id: DeviceId::new(id),
                code: stored("devices.code", &code, DeviceCode::parse)?,
                unit: stored("devices.unit", &unit, Unit::parse)?,
            });
        }
        Ok(Some(gateway))
    }
}
