//! Devices: meters, sensors and actuators behind a gateway. A gateway may not have more ACTIVE
//! (status ATIVO, not archived) devices than its maximum, nor a tenant more than its limit.
//! Deleting a device archives it: it disappears from lists and frees its code, but its readings
//! stay and remain reportable.

use crate::error::{RowError, stored};
use crate::tenants::found;
use crate::{Db, StoreError, Ts, bulk};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::AssertSqlSafe;
use std::collections::{HashMap, HashSet};
use tds_domain::limits::{Amount, ScaleFactor};
mod watched;

pub use watched::WatchedDevice;

use tds_domain::{
    Description, DeviceCode, DeviceId, DeviceMode, DeviceStatus, DeviceType, GatewayId, Mac, MeasurementKind,
    Medium, ModbusRegister, Name, SlaveId, TenantId, Unit, UserId, ValidationError,
};

#[derive(Debug, Clone, Serialize)]
pub struct Device {
    pub id: DeviceId,
    pub tenant_id: TenantId,
    pub gateway_id: GatewayId,
    pub code: DeviceCode,
    pub mac: Option<Mac>,
    pub name: Name,
    pub description: String,
    pub device_type: DeviceType,
    pub medium: Medium,
    pub kind: MeasurementKind,
    pub unit: Unit,
    pub scale_factor: f64,
    pub rollover_value: Option<f64>,
    pub slave_id: Option<SlaveId>,
    pub register: Option<ModbusRegister>,
    pub mode: DeviceMode,
    pub status: DeviceStatus,
    pub alarm_daily: Option<f64>,
    pub alarm_monthly: Option<f64>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub archived_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The editable attributes of a device (create and update).
#[derive(Debug, Clone)]
pub struct DeviceFields {
    pub code: DeviceCode,
    pub mac: Option<Mac>,
    pub name: Name,
    pub description: Description,
    pub device_type: DeviceType,
    pub medium: Medium,
    pub kind: MeasurementKind,
    pub unit: Unit,
    pub scale_factor: ScaleFactor,
    pub rollover_value: Option<Amount>,
    pub slave_id: Option<SlaveId>,
    pub register: Option<ModbusRegister>,
    pub mode: DeviceMode,
    pub status: DeviceStatus,
    pub alarm_daily: Option<Amount>,
    pub alarm_monthly: Option<Amount>,
}

impl DeviceFields {
    /// The rules that tie fields together: a meter must have its Modbus address.
    pub fn check(&self) -> Result<(), ValidationError> {
        tds_domain::modbus::require_meter_address(self.device_type, self.slave_id, self.register)
    }
}

#[derive(sqlx::FromRow)]
struct DeviceRow {
    id: i64,
    tenant_id: i64,
    gateway_id: i64,
    code: String,
    mac: Option<String>,
    name: String,
    description: String,
    device_type: String,
    medium: String,
    kind: String,
    unit: String,
    scale_factor: f64,
    rollover_value: Option<f64>,
    slave_id: Option<i64>,
    register: Option<i64>,
    mode: String,
    status: String,
    alarm_daily: Option<f64>,
    alarm_monthly: Option<f64>,
    last_seen_at: Option<Ts>,
    archived_at: Option<Ts>,
    created_at: Ts,
    updated_at: Ts,
}

/// A device as a picker lists it: with its gateway's code.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceChoice {
    pub device: Device,
    pub gateway_code: String,
}

#[derive(sqlx::FromRow)]
struct ChoiceRow {
    #[sqlx(flatten)]
    device: DeviceRow,
    gateway_code: Option<String>,
}

impl TryFrom<DeviceRow> for Device {
    type Error = StoreError;
    fn try_from(r: DeviceRow) -> Result<Self, StoreError> {
        let corrupt = |c: &str, e: ValidationError| StoreError::Corrupt(format!("{c}: {e}"));
        Ok(Device {
            id: DeviceId::new(r.id),
            tenant_id: TenantId::new(r.tenant_id),
            gateway_id: GatewayId::new(r.gateway_id),
            code: stored("devices.code", &r.code, DeviceCode::parse)?,
            mac: r.mac.as_deref().map(|m| stored("devices.mac", m, Mac::parse)).transpose()?,
            name: stored("devices.name", &r.name, |s| Name::parse("name", s))?,
            description: r.description,
            device_type: stored("devices.device_type", &r.device_type, DeviceType::parse)?,
            medium: stored("devices.medium", &r.medium, Medium::parse)?,
            kind: stored("devices.kind", &r.kind, MeasurementKind::parse)?,
            unit: stored("devices.unit", &r.unit, Unit::parse)?,
            scale_factor: r.scale_factor,
            rollover_value: r.rollover_value,
            slave_id: r.slave_id.map(SlaveId::new).transpose().map_err(|e| corrupt("devices.slave_id", e))?,
            register: r
                .register
                .map(ModbusRegister::new)
                .transpose()
                .map_err(|e| corrupt("devices.register", e))?,
            mode: stored("devices.mode", &r.mode, DeviceMode::parse)?,
            status: stored("devices.status", &r.status, DeviceStatus::parse)?,
            alarm_daily: r.alarm_daily,
            alarm_monthly: r.alarm_monthly,
            last_seen_at: r.last_seen_at.map(|t| t.0),
            archived_at: r.archived_at.map(|t| t.0),
            created_at: r.created_at.0,
            updated_at: r.updated_at.0,
        })
    }
}

const COLUMNS: &str = "id, tenant_id, gateway_id, code, mac, name, description, device_type, medium, \
    kind, unit, scale_factor, rollover_value, slave_id, register, mode, status, alarm_daily, \
    alarm_monthly, last_seen_at, archived_at, created_at, updated_at";

/// Binds a device's fields as $3..$18.
macro_rules! bind_fields {
    ($q:expr, $f:expr) => {
        $q.bind($f.code.as_str())
            .bind($f.mac.map(|m| m.to_string()))
            .bind($f.name.as_str())
            .bind($f.description.as_str())
            .bind($f.device_type.as_str())
            .bind($f.medium.as_str())
            .bind($f.kind.as_str())
            .bind($f.unit.as_str())
            .bind($f.scale_factor.get())
            .bind($f.rollover_value.map(Amount::get))
            .bind($f.slave_id.map(i64::from))
            .bind($f.register.map(i64::from))
            .bind($f.mode.as_str())
            .bind($f.status.as_str())
            .bind($f.alarm_daily.map(Amount::get))
            .bind($f.alarm_monthly.map(Amount::get))
    };
}

/// For a gateway of the tenant: its status, its maximum, its active devices; and the tenant's
/// active devices and limit. No row when the gateway is not the tenant's.
const CAPACITY: &str = "SELECT g.status, g.max_devices, \
    (SELECT count(*) FROM devices d WHERE d.gateway_id = g.id AND d.archived_at IS NULL AND d.status = 'ATIVO' AND d.id <> $3), \
    (SELECT count(*) FROM devices d WHERE d.tenant_id = $1 AND d.archived_at IS NULL AND d.status = 'ATIVO' AND d.id <> $3), \
    (SELECT max_devices FROM tenants WHERE id = $1) \
    FROM gateways g WHERE g.tenant_id = $1 AND g.id = $2";

type Capacity = (String, i64, i64, i64, i64);

/// For the tenant's gateways among a list (`IN (…)` from `$2`): id, status, maximum and active
/// devices.
const GATEWAY_CAPACITY: &str = "SELECT g.id, g.status, g.max_devices, \
    (SELECT count(*) FROM devices d WHERE d.gateway_id = g.id AND d.archived_at IS NULL AND d.status = 'ATIVO') \
    FROM gateways g WHERE g.tenant_id = $1 AND g.id IN";

type GatewayCapacity = (i64, String, i64, i64);

/// The head of a multi-row insert; each row's VALUES are `($1 tenant, gateway, fields…, $2 now,
/// $2, $3 by)`, see [`bulk::values`].
const INSERT_MANY: &str = "INSERT INTO devices (tenant_id, gateway_id, code, mac, name, description, \
    device_type, medium, kind, unit, scale_factor, rollover_value, slave_id, register, mode, status, \
    alarm_daily, alarm_monthly, created_at, updated_at, created_by) VALUES";

/// The capacity check of [`capacity_problem`] for a whole import at once, as the transaction
/// finds the counts: `None` when every row still fits.
fn capacity_recheck(
    rows: &[(GatewayId, DeviceFields)],
    tenant: Option<(i64, i64)>,
    gateways: &HashMap<i64, GatewayCapacity>,
) -> Option<String> {
    let Some((tenant_max, tenant_active)) = tenant else {
        return Some("the tenant does not exist".into());
    };
    let mut adding: HashMap<i64, i64> = HashMap::new();
    for (gateway, fields) in rows {
        let Some((_, status, _, _)) = gateways.get(&gateway.get()) else {
            return Some("a gateway of the import no longer exists in this tenant".into());
        };
        if status == "decommissioned" {
            return Some("a gateway of the import was decommissioned meanwhile".into());
        }
        if fields.status == DeviceStatus::Active {
            *adding.entry(gateway.get()).or_default() += 1;
        }
    }
    let total: i64 = adding.values().sum();
    for (gateway, n) in adding {
        let Some((_, status, max, active)) = gateways.get(&gateway) else { continue };
        let cap: Capacity = (status.clone(), *max, *active, tenant_active, tenant_max);
        if let Some(problem) = capacity_problem(&cap, n, total) {
            return Some(problem);
        }
    }
    None
}

/// A unique index refused a row that passed the checks: something was added meanwhile.
fn raced(err: StoreError) -> StoreError {
    match err {
        StoreError::Conflict(what) if what.contains("mac") => StoreError::Conflict(
            "a device MAC of the import was used meanwhile in this tenant; nothing was imported".into(),
        ),
        StoreError::Conflict(what) if what.contains("code") => StoreError::Conflict(
            "a device code of the import was used meanwhile on its gateway; nothing was imported".into(),
        ),
        e => e,
    }
}

/// Whether one more active device fits; `adding` is how many this operation adds to the gateway
/// and to the tenant beyond the counts.
fn capacity_problem(cap: &Capacity, adding_gateway: i64, adding_tenant: i64) -> Option<String> {
    let (status, max, active, tenant_active, tenant_max) = cap;
    if status == "decommissioned" {
        return Some("the gateway is decommissioned".into());
    }
    if active + adding_gateway > *max {
        // An import counts its own earlier rows: say so, or "already has 0" reads as nonsense.
        return Some(if adding_gateway > 1 {
            format!(
                "the gateway would have {} active devices with this import's, its maximum is {max}",
                active + adding_gateway
            )
        } else {
            format!("the gateway already has {active} active devices, its maximum is {max}")
        });
    }
    if tenant_active + adding_tenant > *tenant_max {
        return Some(format!("the tenant's limit of {tenant_max} active devices is reached"));
    }
    None
}

fn conflict_message(fields: &DeviceFields, err: StoreError) -> StoreError {
    match err {
        StoreError::Conflict(what) if what.contains("mac") => StoreError::Conflict(format!(
            "device MAC {} is already used in this tenant",
            fields.mac.map(|m| m.to_string()).unwrap_or_default()
        )),
        StoreError::Conflict(what) if what.contains("code") => {
            StoreError::Conflict(format!("device code {} is already used on this gateway", fields.code))
        }
        e => e,
    }
}

#[derive(Debug, Clone, Copy)]
pub struct DeviceStore<'a> {
    db: &'a Db,
}

impl<'a> DeviceStore<'a> {
    pub(crate) fn new(db: &'a Db) -> Self {
        Self { db }
    }

    /// Adds a device to one of the tenant's gateways, within the gateway's and tenant's capacity.
    pub async fn create(
        &self,
        tenant: TenantId,
        gateway: GatewayId,
        fields: &DeviceFields,
        by: Option<UserId>,
    ) -> Result<Device, StoreError> {
        fields.check()?;
        let mut out = self.import(tenant, &[(gateway, fields.clone())], by).await.map_err(|e| match e {
            // A row may break several rules at once: all of them are said.
            StoreError::Import(rows) if !rows.is_empty() => {
                let msg = rows.into_iter().map(|r| r.message).collect::<Vec<_>>().join("; ");
                if msg == "gateway not found" {
                    StoreError::NotFound
                } else if msg.contains("maximum") || msg.contains("limit") || msg.contains("decommissioned") {
                    StoreError::Limit(msg)
                } else {
                    StoreError::Conflict(msg)
                }
            }
            e => e,
        })?;
        out.pop().ok_or(StoreError::NotFound)
    }

    /// The rows with the tenant's threshold defaults for their medium where their own are blank
    /// (a device given 0 keeps none: see [`crate::alarm_defaults`]).
    async fn with_alarm_defaults(
        &self,
        tenant: TenantId,
        rows: &[(GatewayId, DeviceFields)],
    ) -> Result<Vec<(GatewayId, DeviceFields)>, StoreError> {
        let defaults = crate::alarm_defaults::AlarmDefaultStore::new(self.db).list(tenant).await?;
        let amount = |field: &'static str, v: Option<f64>| v.and_then(|v| Amount::new(field, v).ok());
        Ok(rows
            .iter()
            .map(|(g, f)| {
                let mut f = f.clone();
                if let Some(d) = defaults.iter().find(|d| d.medium == f.medium) {
                    if f.alarm_daily.is_none() {
                        f.alarm_daily = amount("alarm_daily", d.alarm_daily);
                    }
                    if f.alarm_monthly.is_none() {
                        f.alarm_monthly = amount("alarm_monthly", d.alarm_monthly);
                    }
                }
                (*g, f)
            })
            .collect())
    }

    /// Adds several devices at once, all or none, reporting every row's problems (gateway not the
    /// tenant's, code or MAC taken or repeated, capacity) with 1-based row numbers.
    ///
    /// Every check is made first, with O(n) work and a few set-based reads (chunked `IN (…)`
    /// lookups) outside any transaction: on SQLite not on the one writer connection, which
    /// ingest's commits need. The write transaction re-checks only the capacity (a few statements
    /// whatever the size) and inserts many rows per statement; a code or MAC taken meanwhile is
    /// caught by the unique indexes and refuses the whole import.
    pub async fn import(
        &self,
        tenant: TenantId,
        rows: &[(GatewayId, DeviceFields)],
        by: Option<UserId>,
    ) -> Result<Vec<Device>, StoreError> {
        let rows = self.with_alarm_defaults(tenant, rows).await?;
        let created = self.insert_rows(tenant, &rows, by).await?;
        // A device's thresholds are alert rules (SPEC §5): made with the device. The device is
        // stored by then; a failure here is reported, and saving the device again repairs it.
        for (gateway, fields) in
            rows.iter().filter(|(_, f)| f.alarm_daily.is_some() || f.alarm_monthly.is_some())
        {
            // Matched by gateway and code, not by position: RETURNING promises no order.
            if let Some(device) = created.iter().find(|d| d.gateway_id == *gateway && d.code == fields.code) {
                self.sync_thresholds(tenant, device.id, fields).await?;
            }
        }
        Ok(created)
    }

    async fn sync_thresholds(
        &self,
        tenant: TenantId,
        id: DeviceId,
        fields: &DeviceFields,
    ) -> Result<(), StoreError> {
        crate::alert_rules::AlertRuleStore::new(self.db)
            .sync_device_thresholds(tenant, id, fields.alarm_daily, fields.alarm_monthly)
            .await?;
        Ok(())
    }

    async fn insert_rows(
        &self,
        tenant: TenantId,
        rows: &[(GatewayId, DeviceFields)],
        by: Option<UserId>,
    ) -> Result<Vec<Device>, StoreError> {
        let errors = self.import_problems(tenant, rows).await?;
        if !errors.is_empty() {
            return Err(StoreError::Import(errors));
        }
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let now = Ts::now();
        let gateways: Vec<i64> =
            rows.iter().map(|(g, _)| g.get()).collect::<HashSet<_>>().into_iter().collect();
        let inserted: Vec<DeviceRow> = in_tx!(self.db, |tx| {
            // Capacity again, inside the transaction: another writer may have added devices
            // since the check. On PostgreSQL the tenant row is locked so that two imports into
            // one tenant cannot both pass.
            let tenant_sql = format!(
                "SELECT max_devices, (SELECT count(*) FROM devices WHERE tenant_id = $1 \
                 AND archived_at IS NULL AND status = 'ATIVO') FROM tenants WHERE id = $1 {}",
                self.db.row_lock()
            );
            let tenant_cap: Option<(i64, i64)> = sqlx::query_as(AssertSqlSafe(tenant_sql.as_str()))
                .bind(tenant.get())
                .fetch_optional(&mut *tx)
                .await?;
            let mut capacity = HashMap::with_capacity(gateways.len());
            for chunk in gateways.chunks(bulk::LOOKUP) {
                let sql = format!("{GATEWAY_CAPACITY} ({})", bulk::list(2, chunk.len()));
                let mut q = sqlx::query_as(AssertSqlSafe(sql.as_str())).bind(tenant.get());
                for g in chunk {
                    q = q.bind(*g);
                }
                let part: Vec<GatewayCapacity> = q.fetch_all(&mut *tx).await?;
                capacity.extend(part.into_iter().map(|c| (c.0, c)));
            }
            if let Some(message) = capacity_recheck(rows, tenant_cap, &capacity) {
                return Err(StoreError::Import(vec![RowError { row: 0, message }]));
            }
            let mut inserted = Vec::with_capacity(rows.len());
            for chunk in rows.chunks(bulk::INSERT_ROWS) {
                let sql = format!(
                    "{INSERT_MANY} {} RETURNING {COLUMNS}",
                    bulk::values(chunk.len(), 4, 17, "$1, ", ", $2, $2, $3")
                );
                let mut q = sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(tenant.get())
                    .bind(now)
                    .bind(by.map(UserId::get));
                for (gateway, fields) in chunk {
                    q = bind_fields!(q.bind(gateway.get()), fields);
                }
                let batch: Vec<DeviceRow> = q.fetch_all(&mut *tx).await.map_err(|e| raced(e.into()))?;
                inserted.extend(batch);
            }
            Ok(inserted)
        })?;
        // Multi-row RETURNING gives no order: put the devices back in the rows' order (a live
        // device is unique by gateway and code).
        let mut by_key: HashMap<(i64, String), DeviceRow> =
            inserted.into_iter().map(|r| ((r.gateway_id, r.code.clone()), r)).collect();
        rows.iter()
            .map(|(g, f)| {
                by_key
                    .remove(&(g.get(), f.code.as_str().to_owned()))
                    .ok_or(StoreError::NotFound)
                    .and_then(Device::try_from)
            })
            .collect()
    }

    /// Every problem of a device import, with its 1-based row.
    async fn import_problems(
        &self,
        tenant: TenantId,
        rows: &[(GatewayId, DeviceFields)],
    ) -> Result<Vec<RowError>, StoreError> {
        let gateways: Vec<i64> =
            rows.iter().map(|(g, _)| g.get()).collect::<HashSet<_>>().into_iter().collect();
        let (tenant_max, tenant_active): (i64, i64) = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(
                    "SELECT max_devices, (SELECT count(*) FROM devices WHERE tenant_id = $1 \
                     AND archived_at IS NULL AND status = 'ATIVO') FROM tenants WHERE id = $1"
                )
                .bind(tenant.get())
                .fetch_optional(pool)
                .await
        )?
        .ok_or(StoreError::NotFound)?;
        let mut capacity: HashMap<i64, GatewayCapacity> = HashMap::with_capacity(gateways.len());
        let mut codes_taken: HashSet<(i64, String)> = HashSet::new();
        for chunk in gateways.chunks(bulk::LOOKUP) {
            let cap_sql = format!("{GATEWAY_CAPACITY} ({})", bulk::list(2, chunk.len()));
            // The gateways are the tenant's (checked by the capacity query): their live devices
            // are too.
            let codes_sql = format!(
                "SELECT gateway_id, code FROM devices WHERE archived_at IS NULL AND gateway_id IN ({})",
                bulk::list(1, chunk.len())
            );
            let (caps, codes): (Vec<GatewayCapacity>, Vec<(i64, String)>) = on_db!(
                self.db,
                read | pool | {
                    let mut q = sqlx::query_as(AssertSqlSafe(cap_sql.as_str())).bind(tenant.get());
                    for g in chunk {
                        q = q.bind(*g);
                    }
                    let caps = q.fetch_all(pool).await?;
                    let mut q = sqlx::query_as(AssertSqlSafe(codes_sql.as_str()));
                    for g in chunk {
                        q = q.bind(*g);
                    }
                    Ok::<_, sqlx::Error>((caps, q.fetch_all(pool).await?))
                }
            )?;
            capacity.extend(caps.into_iter().map(|c| (c.0, c)));
            codes_taken.extend(codes.into_iter().filter(|(g, _)| capacity.contains_key(g)));
        }
        let macs: Vec<String> = rows.iter().filter_map(|(_, f)| f.mac.map(|m| m.to_string())).collect();
        let mut macs_taken: HashSet<String> = HashSet::new();
        for chunk in macs.chunks(bulk::LOOKUP) {
            let sql = format!(
                "SELECT mac FROM devices WHERE tenant_id = $1 AND archived_at IS NULL AND mac IN ({})",
                bulk::list(2, chunk.len())
            );
            let part: Vec<String> = on_db!(
                self.db,
                read | pool | {
                    let mut q = sqlx::query_scalar(AssertSqlSafe(sql.as_str())).bind(tenant.get());
                    for m in chunk {
                        q = q.bind(m);
                    }
                    q.fetch_all(pool).await
                }
            )?;
            macs_taken.extend(part);
        }

        let mut errors = Vec::new();
        let mut seen_codes: HashSet<(GatewayId, &DeviceCode)> = HashSet::with_capacity(rows.len());
        let mut seen_macs: HashSet<Mac> = HashSet::new();
        let mut gateway_new_active: HashMap<GatewayId, i64> = HashMap::new();
        let mut tenant_new_active = 0i64;
        for (i, (gateway, fields)) in rows.iter().enumerate() {
            let row = i + 1;
            if let Err(e) = fields.check() {
                errors.push(RowError { row, message: e.to_string() });
            }
            if !seen_codes.insert((*gateway, &fields.code)) {
                errors.push(RowError {
                    row,
                    message: format!("device code {} appears twice for one gateway", fields.code),
                });
            }
            if let Some(mac) = fields.mac
                && !seen_macs.insert(mac)
            {
                errors.push(RowError { row, message: "device MAC appears twice in the file".into() });
            }
            let Some(cap) = capacity.get(&gateway.get()) else {
                errors.push(RowError { row, message: "gateway not found".into() });
                continue;
            };
            if fields.status == DeviceStatus::Active {
                tenant_new_active += 1;
                let on_gateway = gateway_new_active.entry(*gateway).or_default();
                *on_gateway += 1;
                let cap: Capacity = (cap.1.clone(), cap.2, cap.3, tenant_active, tenant_max);
                if let Some(problem) = capacity_problem(&cap, *on_gateway, tenant_new_active) {
                    errors.push(RowError { row, message: problem });
                }
            } else if cap.1 == "decommissioned" {
                errors.push(RowError { row, message: "the gateway is decommissioned".into() });
            }
            if codes_taken.contains(&(gateway.get(), fields.code.as_str().to_owned())) {
                errors.push(RowError {
                    row,
                    message: format!("device code {} is already used on this gateway", fields.code),
                });
            }
            if fields.mac.is_some_and(|m| macs_taken.contains(&m.to_string())) {
                errors.push(RowError { row, message: "device MAC is already used in this tenant".into() });
            }
        }
        Ok(errors)
    }

    pub async fn get(&self, tenant: TenantId, id: DeviceId) -> Result<Device, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM devices WHERE tenant_id = $1 AND id = $2");
        let row: DeviceRow = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(tenant.get())
                    .bind(id.get())
                    .fetch_one(pool)
                    .await
        )?;
        row.try_into()
    }

    /// The live (not archived) device with that code on the gateway.
    pub async fn by_code(
        &self,
        tenant: TenantId,
        gateway: GatewayId,
        code: &DeviceCode,
    ) -> Result<Device, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM devices WHERE tenant_id = $1 AND gateway_id = $2 AND code = $3 \
             AND archived_at IS NULL"
        );
        let row: DeviceRow = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(tenant.get())
                    .bind(gateway.get())
                    .bind(code.as_str())
                    .fetch_one(pool)
                    .await
        )?;
        row.try_into()
    }

    pub async fn list_for_gateway(
        &self,
        tenant: TenantId,
        gateway: GatewayId,
        include_archived: bool,
    ) -> Result<Vec<Device>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM devices WHERE tenant_id = $1 AND gateway_id = $2 \
             AND ($3 OR archived_at IS NULL) ORDER BY code, id"
        );
        let rows: Vec<DeviceRow> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(tenant.get())
                    .bind(gateway.get())
                    .bind(include_archived)
                    .fetch_all(pool)
                    .await
        )?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Every device of the tenant, archived ones included (their readings stay reportable), by
    /// gateway and code.
    pub async fn list_with_archived(&self, tenant: TenantId) -> Result<Vec<Device>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM devices WHERE tenant_id = $1 ORDER BY gateway_id, code, id");
        let rows: Vec<DeviceRow> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str())).bind(tenant.get()).fetch_all(pool).await
        )?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Every live device of the tenant (for pickers and imports).
    pub async fn list(&self, tenant: TenantId) -> Result<Vec<Device>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM devices WHERE tenant_id = $1 AND archived_at IS NULL ORDER BY gateway_id, code"
        );
        let rows: Vec<DeviceRow> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str())).bind(tenant.get()).fetch_all(pool).await
        )?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// The telemetry picker's devices: the tenant's live devices whose code or name, or whose
    /// gateway's code, contains `search` (case-insensitive; every device when it is blank), with
    /// the devices `include` names (the current selection) first whatever the search, then by
    /// gateway code and device code; at most `limit`. Other tenants' ids in `include` are
    /// ignored.
    pub async fn picker(
        &self,
        tenant: TenantId,
        search: &str,
        include: &[DeviceId],
        limit: i64,
    ) -> Result<Vec<DeviceChoice>, StoreError> {
        let pattern = crate::page::contains_pattern(search);
        self.choices(tenant, pattern.is_none(), pattern.as_deref(), include, limit).await
    }

    /// How the API names the tenant's devices among `ids` (archived ones included, since their
    /// readings stay): their code and their gateway's MAC.
    pub async fn labels(
        &self,
        tenant: TenantId,
        ids: &[DeviceId],
    ) -> Result<HashMap<DeviceId, (DeviceCode, Mac)>, StoreError> {
        let mut found = HashMap::with_capacity(ids.len());
        for part in ids.chunks(500) {
            let list = (0..part.len()).map(|i| format!("${}", i + 2)).collect::<Vec<_>>().join(", ");
            let sql = format!(
                "SELECT d.id, d.code, g.mac FROM devices d JOIN gateways g ON g.id = d.gateway_id \
                 WHERE d.tenant_id = $1 AND d.id IN ({list})"
            );
            let rows: Vec<(i64, String, String)> = on_db!(
                self.db,
                read | pool | {
                    let mut q = sqlx::query_as(AssertSqlSafe(sql.as_str())).bind(tenant.get());
                    for id in part {
                        q = q.bind(id.get());
                    }
                    q.fetch_all(pool).await
                }
            )?;
            for (id, code, mac) in rows {
                found.insert(
                    DeviceId::new(id),
                    (
                        stored("devices.code", &code, DeviceCode::parse)?,
                        stored("gateways.mac", &mac, Mac::parse)?,
                    ),
                );
            }
        }
        Ok(found)
    }

    /// The tenant's live devices among `ids`, with their gateway's code, in the order of
    /// [`Self::picker`].
    pub async fn choices_by_id(
        &self,
        tenant: TenantId,
        ids: &[DeviceId],
    ) -> Result<Vec<DeviceChoice>, StoreError> {
        self.choices(tenant, false, None, ids, ids.len() as i64).await
    }

    async fn choices(
        &self,
        tenant: TenantId,
        everything: bool,
        pattern: Option<&str>,
        include: &[DeviceId],
        limit: i64,
    ) -> Result<Vec<DeviceChoice>, StoreError> {
        // `IN (NULL)` matches nothing, so that an empty selection needs no other statement.
        let ids = if include.is_empty() {
            "NULL".to_owned()
        } else {
            (0..include.len()).map(|i| format!("${}", i + 5)).collect::<Vec<_>>().join(", ")
        };
        let sql = format!(
            "SELECT {COLUMNS}, (SELECT g.code FROM gateways g WHERE g.id = devices.gateway_id) AS gateway_code \
             FROM devices WHERE tenant_id = $1 AND archived_at IS NULL AND ($2 OR id IN ({ids}) \
             OR (CAST($3 AS TEXT) IS NOT NULL AND (lower(code) LIKE $3 OR lower(name) LIKE $3 \
                 OR gateway_id IN (SELECT id FROM gateways WHERE tenant_id = $1 AND lower(code) LIKE $3)))) \
             ORDER BY CASE WHEN id IN ({ids}) THEN 0 ELSE 1 END, gateway_code, code, id LIMIT $4"
        );
        let rows: Vec<ChoiceRow> = on_db!(
            self.db,
            read | pool | {
                let mut q = sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(tenant.get())
                    .bind(everything)
                    .bind(pattern)
                    .bind(limit);
                for id in include {
                    q = q.bind(id.get());
                }
                q.fetch_all(pool).await
            }
        )?;
        rows.into_iter()
            .map(|r| {
                Ok(DeviceChoice {
                    gateway_code: r.gateway_code.unwrap_or_default(),
                    device: r.device.try_into()?,
                })
            })
            .collect()
    }

    pub async fn update(
        &self,
        tenant: TenantId,
        id: DeviceId,
        fields: &DeviceFields,
    ) -> Result<Device, StoreError> {
        fields.check()?;
        let sql = format!(
            "UPDATE devices SET code = $3, mac = $4, name = $5, description = $6, device_type = $7, \
             medium = $8, kind = $9, unit = $10, scale_factor = $11, rollover_value = $12, slave_id = $13, \
             register = $14, mode = $15, status = $16, alarm_daily = $17, alarm_monthly = $18, updated_at = $19 \
             WHERE tenant_id = $1 AND id = $2 AND archived_at IS NULL RETURNING {COLUMNS}"
        );
        let row: DeviceRow = in_tx!(self.db, |tx| {
            let gateway: Option<i64> = sqlx::query_scalar(
                "SELECT gateway_id FROM devices WHERE tenant_id = $1 AND id = $2 AND archived_at IS NULL",
            )
            .bind(tenant.get())
            .bind(id.get())
            .fetch_optional(&mut *tx)
            .await?;
            let gateway = gateway.ok_or(StoreError::NotFound)?;
            if fields.status == DeviceStatus::Active {
                let cap: Capacity = sqlx::query_as(CAPACITY)
                    .bind(tenant.get())
                    .bind(gateway)
                    .bind(id.get())
                    .fetch_one(&mut *tx)
                    .await?;
                if let Some(problem) = capacity_problem(&cap, 1, 1) {
                    return Err(StoreError::Limit(problem));
                }
            }
            let q = sqlx::query_as(AssertSqlSafe(sql.as_str())).bind(tenant.get()).bind(id.get());
            let row: DeviceRow = bind_fields!(q, fields)
                .bind(Ts::now())
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| conflict_message(fields, e.into()))?;
            // The next refresh recomputes the device's current hour from its readings instead of
            // going on from the stored row, which the old kind, scale or rollover made.
            sqlx::query(
                "UPDATE rollups SET last_time = NULL, last_value = NULL WHERE device_id = $1 \
                 AND granularity = 'hour' AND bucket_start = \
                 (SELECT MAX(bucket_start) FROM rollups WHERE device_id = $1 AND granularity = 'hour')",
            )
            .bind(id.get())
            .execute(&mut *tx)
            .await?;
            Ok(row)
        })?;
        let device: Device = row.try_into()?;
        self.sync_thresholds(tenant, device.id, fields).await?;
        Ok(device)
    }

    /// Archives a device: it leaves lists and capacity counts and frees its code; its readings
    /// stay, its threshold rules go (clearing their alerts). Archiving twice is `NotFound`.
    pub async fn archive(&self, tenant: TenantId, id: DeviceId) -> Result<(), StoreError> {
        let done = on_db!(
            self.db,
            write
                | pool
                | sqlx::query(
                    "UPDATE devices SET archived_at = $3, updated_at = $3 \
             WHERE tenant_id = $1 AND id = $2 AND archived_at IS NULL"
                )
                .bind(tenant.get())
                .bind(id.get())
                .bind(Ts::now())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        )?;
        found(done)?;
        crate::alert_rules::AlertRuleStore::new(self.db)
            .sync_device_thresholds(tenant, id, None, None)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::gateways::GatewayFields;
    use crate::tenants::{NewTenant, TenantLimits};
    use tds_domain::GatewayCode;
    use tds_domain::limits::MaxDevices;

    fn meter(code: &str) -> DeviceFields {
        DeviceFields {
            code: DeviceCode::parse(code).unwrap(),
            mac: None,
            name: Name::parse("name", "M").unwrap(),
            description: Description::default(),
            device_type: DeviceType::Sensor,
            medium: Medium::Energy,
            kind: MeasurementKind::Gauge,
            unit: Unit::parse("kWh").unwrap(),
            scale_factor: ScaleFactor::default(),
            rollover_value: None,
            slave_id: None,
            register: None,
            mode: DeviceMode::Auto,
            status: DeviceStatus::Active,
            alarm_daily: None,
            alarm_monthly: None,
        }
    }

    /// As for gateways: a refused 5,000-row device import is checked, and reported row by row,
    /// while another holder keeps SQLite's one writer connection; after it lets go, the same rows
    /// corrected are written, in their order.
    #[tokio::test]
    async fn a_large_device_import_is_checked_without_the_writer_connection() {
        let (_dir, store) = crate::sqlite_for_test().await;
        let mut new = NewTenant::named(Name::parse("name", "Acme").unwrap());
        new.limits = TenantLimits { max_gateways: 1_000, max_devices: 10_000, max_users: 5 };
        let tenant = store.tenants().staff_create(&new).await.unwrap().id;
        let gateways: Vec<(Mac, GatewayFields)> = (0..160)
            .map(|i| {
                let mut f = GatewayFields::new(
                    GatewayCode::parse(&format!("GW-{i:03}")).unwrap(),
                    Name::parse("name", "G").unwrap(),
                );
                f.max_devices = MaxDevices::new(32).unwrap();
                (Mac::parse(&format!("02:00:00:00:00:{i:02x}")).unwrap(), f)
            })
            .collect();
        let gateways = store.gateways().import(tenant, &gateways, None).await.unwrap();
        let mut rows: Vec<(GatewayId, DeviceFields)> =
            (0..5_000).map(|i| (gateways[i / 32].id, meter(&format!("D{:02}", i % 32)))).collect();
        rows[4_999].1.code = rows[4_998].1.code.clone();
        let Db::Sqlite(db) = store.db() else { panic!("SQLite") };
        let writer = db.write.acquire().await.unwrap();
        let outcome = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            store.devices().import(tenant, &rows, None),
        )
        .await
        .expect("the checks must not wait for the writer connection");
        let Err(StoreError::Import(errors)) = outcome else { panic!("refused: {outcome:?}") };
        assert_eq!(errors.iter().map(|e| e.row).collect::<Vec<_>>(), vec![5_000], "{errors:?}");
        drop(writer);
        rows[4_999].1.code = DeviceCode::parse("LAST").unwrap();
        let created = store.devices().import(tenant, &rows, None).await.unwrap();
        assert!(
            created.iter().zip(&rows).all(|(d, (g, f))| d.gateway_id == *g && d.code == f.code),
            "in the rows' order"
        );
        assert_eq!(created.len(), 5_000);
    }
}
