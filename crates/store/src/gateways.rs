//! Gateways: the data concentrators. A gateway's MAC is unique across the platform (it is the
//! certificate's CN); its code is unique within the tenant. Every tenant-facing method filters by
//! tenant; `staff_by_mac` is how the device endpoint finds a gateway from a certificate, and
//! `staff_transfer` moves a gateway (with or without its devices) to another tenant.

use crate::error::{RowError, stored};
use crate::tenants::found;
use crate::{Db, Page, Paged, StoreError, Ts};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::AssertSqlSafe;
use tds_domain::limits::{MaxDevices, Position, ReportInterval};
use tds_domain::{Description, GatewayCode, GatewayId, GatewayStatus, Mac, Name, TenantId, UserId};

#[derive(Debug, Clone, Serialize)]
pub struct Gateway {
    pub id: GatewayId,
    pub tenant_id: TenantId,
    pub code: GatewayCode,
    pub mac: Mac,
    pub name: Name,
    pub description: String,
    pub position: Option<Position>,
    pub model: Option<String>,
    pub serial_number: Option<String>,
    pub device_id: Option<String>,
    pub hardware_version: Option<String>,
    pub firmware_version: Option<String>,
    pub max_devices: i64,
    pub expected_interval_s: i64,
    pub status: GatewayStatus,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub online: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Connection status as shown to people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Connection {
    Online,
    Offline,
    NeverConnected,
}

impl Gateway {
    pub fn connection(&self) -> Connection {
        match (self.online, self.last_seen_at) {
            (true, _) => Connection::Online,
            (false, Some(_)) => Connection::Offline,
            (false, None) => Connection::NeverConnected,
        }
    }
}

/// The editable attributes of a gateway (create and update).
#[derive(Debug, Clone)]
pub struct GatewayFields {
    pub code: GatewayCode,
    pub name: Name,
    pub description: Description,
    pub position: Option<Position>,
    pub model: Option<String>,
    pub serial_number: Option<String>,
    pub device_id: Option<String>,
    pub hardware_version: Option<String>,
    pub firmware_version: Option<String>,
    pub max_devices: MaxDevices,
    pub expected_interval: ReportInterval,
}

impl GatewayFields {
    /// The minimum a pre-registration needs; everything else takes its default.
    pub fn new(code: GatewayCode, name: Name) -> Self {
        Self {
            code,
            name,
            description: Description::default(),
            position: None,
            model: None,
            serial_number: None,
            device_id: None,
            hardware_version: None,
            firmware_version: None,
            max_devices: MaxDevices::default(),
            expected_interval: ReportInterval::default(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct GatewayFilter {
    /// Matches code, name or MAC (case-insensitive substring).
    pub search: Option<String>,
    pub status: Option<GatewayStatus>,
    pub connection: Option<Connection>,
}

#[derive(sqlx::FromRow)]
struct GatewayRow {
    id: i64,
    tenant_id: i64,
    code: String,
    mac: String,
    name: String,
    description: String,
    latitude: Option<f64>,
    longitude: Option<f64>,
    model: Option<String>,
    serial_number: Option<String>,
    device_id: Option<String>,
    hardware_version: Option<String>,
    firmware_version: Option<String>,
    max_devices: i64,
    expected_interval_s: i64,
    status: String,
    last_seen_at: Option<Ts>,
    online: bool,
    created_at: Ts,
    updated_at: Ts,
}

impl TryFrom<GatewayRow> for Gateway {
    type Error = StoreError;
    fn try_from(r: GatewayRow) -> Result<Self, StoreError> {
        Ok(Gateway {
            id: GatewayId::new(r.id),
            tenant_id: TenantId::new(r.tenant_id),
            code: stored("gateways.code", &r.code, GatewayCode::parse)?,
            mac: stored("gateways.mac", &r.mac, Mac::parse)?,
            name: stored("gateways.name", &r.name, |s| Name::parse("name", s))?,
            description: r.description,
            position: match (r.latitude, r.longitude) {
                (Some(lat), Some(lon)) => Some(Position { latitude: lat, longitude: lon }),
                _ => None,
            },
            model: r.model,
            serial_number: r.serial_number,
            device_id: r.device_id,
            hardware_version: r.hardware_version,
            firmware_version: r.firmware_version,
            max_devices: r.max_devices,
            expected_interval_s: r.expected_interval_s,
            status: stored("gateways.status", &r.status, GatewayStatus::parse)?,
            last_seen_at: r.last_seen_at.map(|t| t.0),
            online: r.online,
            created_at: r.created_at.0,
            updated_at: r.updated_at.0,
        })
    }
}

const COLUMNS: &str = "id, tenant_id, code, mac, name, description, latitude, longitude, model, \
    serial_number, device_id, hardware_version, firmware_version, max_devices, expected_interval_s, \
    status, last_seen_at, online, created_at, updated_at";

const INSERT: &str = "INSERT INTO gateways (tenant_id, mac, code, name, description, latitude, \
    longitude, model, serial_number, device_id, hardware_version, firmware_version, max_devices, \
    expected_interval_s, status, online, created_at, updated_at, created_by) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 'pre_registered', FALSE, $15, $15, $16) \
    RETURNING id, tenant_id, code, mac, name, description, latitude, longitude, model, \
    serial_number, device_id, hardware_version, firmware_version, max_devices, expected_interval_s, \
    status, last_seen_at, online, created_at, updated_at";

/// Binds a gateway's fields in the order of [`INSERT`] ($3..$14).
macro_rules! bind_fields {
    ($q:expr, $f:expr) => {
        $q.bind($f.code.as_str())
            .bind($f.name.as_str())
            .bind($f.description.as_str())
            .bind($f.position.map(|p| p.latitude))
            .bind($f.position.map(|p| p.longitude))
            .bind($f.model.as_deref())
            .bind($f.serial_number.as_deref())
            .bind($f.device_id.as_deref())
            .bind($f.hardware_version.as_deref())
            .bind($f.firmware_version.as_deref())
            .bind($f.max_devices.get())
            .bind($f.expected_interval.seconds())
    };
}

const LIMIT_CHECK: &str = "SELECT \
    (SELECT count(*) FROM gateways WHERE tenant_id = $1 AND status <> 'decommissioned'), \
    (SELECT max_gateways FROM tenants WHERE id = $1)";

fn conflict_message(mac: Mac, code: &GatewayCode, err: StoreError) -> StoreError {
    match err {
        StoreError::Conflict(what) if what.contains("mac") => {
            StoreError::Conflict(format!("MAC {mac} is already registered"))
        }
        StoreError::Conflict(what) if what.contains("code") => {
            StoreError::Conflict(format!("gateway code {code} is already used in this tenant"))
        }
        e => e,
    }
}

#[derive(Debug, Clone, Copy)]
pub struct GatewayStore<'a> {
    db: &'a Db,
}

impl<'a> GatewayStore<'a> {
    pub(crate) fn new(db: &'a Db) -> Self {
        Self { db }
    }

    /// Registers a gateway as pre-registered, within the tenant's gateway limit.
    pub async fn create(
        &self,
        tenant: TenantId,
        mac: Mac,
        fields: &GatewayFields,
        by: Option<UserId>,
    ) -> Result<Gateway, StoreError> {
        let mut created = self.import(tenant, &[(mac, fields.clone())], by).await.map_err(|e| match e {
            StoreError::Import(mut rows) if rows.len() == 1 => {
                let msg = rows.remove(0).message;
                if msg.contains("limit") { StoreError::Limit(msg) } else { StoreError::Conflict(msg) }
            }
            e => e,
        })?;
        created.pop().ok_or(StoreError::NotFound)
    }

    /// Registers several gateways at once, all or none. Every row is checked (MAC free across the
    /// platform, code free in the tenant, no repeats inside the batch, the tenant's limit) and all
    /// problems are reported together with their 1-based row numbers.
    pub async fn import(
        &self,
        tenant: TenantId,
        rows: &[(Mac, GatewayFields)],
        by: Option<UserId>,
    ) -> Result<Vec<Gateway>, StoreError> {
        let now = Ts::now();
        in_tx!(self.db, |tx| {
            let mut errors = Vec::new();
            let (count, max): (i64, i64) =
                sqlx::query_as(LIMIT_CHECK).bind(tenant.get()).fetch_one(&mut *tx).await?;
            if count + rows.len() as i64 > max {
                errors.push(RowError {
                    row: 0,
                    message: format!(
                        "the tenant's limit of {max} gateways would be exceeded ({count} registered, {} new)",
                        rows.len()
                    ),
                });
            }
            for (i, (mac, fields)) in rows.iter().enumerate() {
                let row = i + 1;
                if rows[..i].iter().any(|(m, _)| m == mac) {
                    errors.push(RowError { row, message: format!("MAC {mac} appears twice in the file") });
                }
                if rows[..i].iter().any(|(_, f)| f.code == fields.code) {
                    errors.push(RowError {
                        row,
                        message: format!("code {} appears twice in the file", fields.code),
                    });
                }
                let (mac_taken, code_taken): (i64, i64) = sqlx::query_as(
                    "SELECT (SELECT count(*) FROM gateways WHERE mac = $1), \
                            (SELECT count(*) FROM gateways WHERE tenant_id = $2 AND code = $3)",
                )
                .bind(mac.to_string())
                .bind(tenant.get())
                .bind(fields.code.as_str())
                .fetch_one(&mut *tx)
                .await?;
                if mac_taken > 0 {
                    errors.push(RowError { row, message: format!("MAC {mac} is already registered") });
                }
                if code_taken > 0 {
                    errors.push(RowError {
                        row,
                        message: format!("gateway code {} is already used in this tenant", fields.code),
                    });
                }
            }
            if !errors.is_empty() {
                return Err(StoreError::Import(errors));
            }
            let mut out = Vec::with_capacity(rows.len());
            for (mac, fields) in rows {
                let q = sqlx::query_as(INSERT).bind(tenant.get()).bind(mac.to_string());
                let row: GatewayRow = bind_fields!(q, fields)
                    .bind(now)
                    .bind(by.map(UserId::get))
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| conflict_message(*mac, &fields.code, e.into()))?;
                // Certificates issued for this MAC by a factory batch now belong to the gateway.
                sqlx::query(
                    "UPDATE certificates SET tenant_id = $1, gateway_id = $2 WHERE mac = $3 AND gateway_id IS NULL",
                )
                .bind(tenant.get())
                .bind(row.id)
                .bind(mac.to_string())
                .execute(&mut *tx)
                .await?;
                out.push(Gateway::try_from(row)?);
            }
            Ok(out)
        })
    }

    pub async fn get(&self, tenant: TenantId, id: GatewayId) -> Result<Gateway, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM gateways WHERE tenant_id = $1 AND id = $2");
        let row: GatewayRow = on_db!(
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

    pub async fn by_code(&self, tenant: TenantId, code: &GatewayCode) -> Result<Gateway, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM gateways WHERE tenant_id = $1 AND code = $2");
        let row: GatewayRow = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(tenant.get())
                    .bind(code.as_str())
                    .fetch_one(pool)
                    .await
        )?;
        row.try_into()
    }

    pub async fn by_mac(&self, tenant: TenantId, mac: Mac) -> Result<Gateway, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM gateways WHERE tenant_id = $1 AND mac = $2");
        let row: GatewayRow = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(tenant.get())
                    .bind(mac.to_string())
                    .fetch_one(pool)
                    .await
        )?;
        row.try_into()
    }

    /// Finds a gateway by MAC whatever its tenant: the device endpoint's lookup from a
    /// certificate, and the staff console's.
    pub async fn staff_by_mac(&self, mac: Mac) -> Result<Gateway, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM gateways WHERE mac = $1");
        let row: GatewayRow = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str())).bind(mac.to_string()).fetch_one(pool).await
        )?;
        row.try_into()
    }

    pub async fn list(
        &self,
        tenant: TenantId,
        filter: &GatewayFilter,
        page: Page,
    ) -> Result<Paged<Gateway>, StoreError> {
        self.list_where(Some(tenant), filter, page).await
    }

    /// All gateways of all tenants (staff console).
    pub async fn staff_list(&self, filter: &GatewayFilter, page: Page) -> Result<Paged<Gateway>, StoreError> {
        self.list_where(None, filter, page).await
    }

    async fn list_where(
        &self,
        tenant: Option<TenantId>,
        filter: &GatewayFilter,
        page: Page,
    ) -> Result<Paged<Gateway>, StoreError> {
        // Optional filters as `(param IS NULL OR …)` so that one statement serves every
        // combination; CAST gives the NULL a type on PostgreSQL and is a no-op on SQLite.
        let conditions = "(CAST($1 AS BIGINT) IS NULL OR tenant_id = $1) \
            AND (CAST($2 AS TEXT) IS NULL OR lower(code) LIKE $2 OR lower(name) LIKE $2 OR mac LIKE $2) \
            AND (CAST($3 AS TEXT) IS NULL OR status = $3) \
            AND (CAST($4 AS TEXT) IS NULL \
                 OR ($4 = 'online' AND online) \
                 OR ($4 = 'offline' AND NOT online AND last_seen_at IS NOT NULL) \
                 OR ($4 = 'never_connected' AND NOT online AND last_seen_at IS NULL))";
        let search = filter.search.as_deref().and_then(crate::page::contains_pattern);
        let connection = filter.connection.map(|c| match c {
            Connection::Online => "online",
            Connection::Offline => "offline",
            Connection::NeverConnected => "never_connected",
        });
        let status = filter.status.map(GatewayStatus::as_str);
        let list_sql =
            format!("SELECT {COLUMNS} FROM gateways WHERE {conditions} ORDER BY code, id LIMIT $5 OFFSET $6");
        let count_sql = format!("SELECT count(*) FROM gateways WHERE {conditions}");
        let tenant = tenant.map(TenantId::get);
        let (rows, total) = fetch_page!(
            self.db,
            GatewayRow,
            list_sql.as_str(),
            count_sql.as_str(),
            page,
            [tenant, search.as_deref(), status, connection]
        )?;
        Ok(Paged {
            items: rows.into_iter().map(TryInto::try_into).collect::<Result<_, _>>()?,
            total,
            page: page.number,
            size: page.size,
        })
    }

    pub async fn update(
        &self,
        tenant: TenantId,
        id: GatewayId,
        fields: &GatewayFields,
    ) -> Result<Gateway, StoreError> {
        let sql = format!(
            "UPDATE gateways SET code = $3, name = $4, description = $5, latitude = $6, longitude = $7, \
             model = $8, serial_number = $9, device_id = $10, hardware_version = $11, \
             firmware_version = $12, max_devices = $13, expected_interval_s = $14, updated_at = $15 \
             WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
        );
        let row: GatewayRow = in_tx!(self.db, |tx| {
            let active: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM devices WHERE tenant_id = $1 AND gateway_id = $2 \
                 AND archived_at IS NULL AND status = 'ATIVO'",
            )
            .bind(tenant.get())
            .bind(id.get())
            .fetch_one(&mut *tx)
            .await?;
            let q = sqlx::query_as(AssertSqlSafe(sql.as_str())).bind(tenant.get()).bind(id.get());
            let row: GatewayRow =
                bind_fields!(q, fields).bind(Ts::now()).fetch_one(&mut *tx).await.map_err(|e| {
                    match StoreError::from(e) {
                        StoreError::Conflict(_) => StoreError::Conflict(format!(
                            "gateway code {} is already used in this tenant",
                            fields.code
                        )),
                        e => e,
                    }
                })?;
            if active > fields.max_devices.get() {
                return Err(StoreError::Limit(format!(
                    "the gateway has {active} active devices, more than the new maximum of {}",
                    fields.max_devices.get()
                )));
            }
            Ok(row)
        })?;
        row.try_into()
    }

    /// Takes a gateway out of service for good: it can no longer connect. Its devices, readings
    /// and history stay.
    pub async fn decommission(&self, tenant: TenantId, id: GatewayId) -> Result<(), StoreError> {
        let done = on_db!(
            self.db,
            write
                | pool
                | sqlx::query(
                    "UPDATE gateways SET status = 'decommissioned', online = FALSE, updated_at = $3 \
             WHERE tenant_id = $1 AND id = $2"
                )
                .bind(tenant.get())
                .bind(id.get())
                .bind(Ts::now())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        )?;
        found(done)
    }

    /// Moves a gateway to tenant `to` (staff), in one transaction, and returns it as it is there.
    ///
    /// Refused with `Conflict` when it already belongs to `to`, when its code is used in `to`,
    /// or (with devices) when one of its live devices' MACs is used by a live device in `to`;
    /// with `Limit` when `to` has no room for another gateway or (with devices) for its active
    /// devices. `NotFound` when the gateway or the tenant does not exist.
    ///
    /// With devices, all of the gateway's devices in its current tenant, archived ones included,
    /// move along. Without, they stay in the old tenant, archived, so that they and their
    /// readings remain in that tenant's reports, and the new owner starts with an empty gateway.
    /// Readings (and rollups) are never rewritten: what was measured before the move stays the
    /// old tenant's. The gateway's certificates follow it, since they identify the gateway,
    /// not the tenant. Connection history (gateway events, renewal log) stays with the old
    /// tenant, like readings.
    ///
    /// `_by` is not stored: no gateway column records who changed it, and the caller writes the
    /// audit entry.
    pub async fn staff_transfer(
        &self,
        id: GatewayId,
        to: TenantId,
        with_devices: bool,
        _by: Option<UserId>,
    ) -> Result<Gateway, StoreError> {
        let lock = self.db.row_lock();
        // Locked so that two transfers of one gateway, or two gateways (or devices) entering one
        // tenant, cannot both pass their checks against the same state.
        let gateway_sql = format!("SELECT tenant_id, code, status FROM gateways WHERE id = $1 {lock}");
        let tenant_sql = format!("SELECT max_gateways, max_devices FROM tenants WHERE id = $1 {lock}");
        let move_sql =
            format!("UPDATE gateways SET tenant_id = $2, updated_at = $3 WHERE id = $1 RETURNING {COLUMNS}");
        let now = Ts::now();
        let row: GatewayRow = in_tx!(self.db, |tx| {
            let current: Option<(i64, String, String)> = sqlx::query_as(AssertSqlSafe(gateway_sql.as_str()))
                .bind(id.get())
                .fetch_optional(&mut *tx)
                .await?;
            let (from, code, status) = current.ok_or(StoreError::NotFound)?;
            if from == to.get() {
                return Err(StoreError::Conflict("the gateway already belongs to this tenant".into()));
            }
            let limits: Option<(i64, i64)> = sqlx::query_as(AssertSqlSafe(tenant_sql.as_str()))
                .bind(to.get())
                .fetch_optional(&mut *tx)
                .await?;
            let (max_gateways, max_devices) = limits.ok_or(StoreError::NotFound)?;

            let (code_taken, gateways): (i64, i64) = sqlx::query_as(
                "SELECT (SELECT count(*) FROM gateways WHERE tenant_id = $1 AND code = $2), \
                        (SELECT count(*) FROM gateways WHERE tenant_id = $1 AND status <> 'decommissioned')",
            )
            .bind(to.get())
            .bind(&code)
            .fetch_one(&mut *tx)
            .await?;
            if code_taken > 0 {
                return Err(StoreError::Conflict(format!(
                    "gateway code {code} is already used in the target tenant"
                )));
            }
            let (mac_clashes, moving_active, target_active) = if with_devices {
                let clashes: Vec<String> = sqlx::query_scalar(
                    "SELECT DISTINCT d.mac FROM devices d WHERE d.gateway_id = $1 AND d.tenant_id = $2 \
                     AND d.archived_at IS NULL AND d.mac IS NOT NULL AND EXISTS (SELECT 1 FROM devices o \
                       WHERE o.tenant_id = $3 AND o.mac = d.mac AND o.archived_at IS NULL) \
                     ORDER BY d.mac",
                )
                .bind(id.get())
                .bind(from)
                .bind(to.get())
                .fetch_all(&mut *tx)
                .await?;
                let (moving, target): (i64, i64) = sqlx::query_as(
                    "SELECT (SELECT count(*) FROM devices WHERE gateway_id = $1 AND tenant_id = $2 \
                               AND archived_at IS NULL AND status = 'ATIVO'), \
                            (SELECT count(*) FROM devices WHERE tenant_id = $3 \
                               AND archived_at IS NULL AND status = 'ATIVO')",
                )
                .bind(id.get())
                .bind(from)
                .bind(to.get())
                .fetch_one(&mut *tx)
                .await?;
                (clashes, moving, target)
            } else {
                (Vec::new(), 0, 0)
            };
            if !mac_clashes.is_empty() {
                return Err(StoreError::Conflict(format!(
                    "device MAC {} already used in the target tenant",
                    mac_clashes.join(", ")
                )));
            }
            // A decommissioned gateway takes no slot (as in the tenant's usage count).
            if status != "decommissioned" && gateways >= max_gateways {
                return Err(StoreError::Limit(format!(
                    "the target tenant's limit of {max_gateways} gateways is reached"
                )));
            }
            if target_active + moving_active > max_devices {
                return Err(StoreError::Limit(format!(
                    "the target tenant's limit of {max_devices} active devices would be exceeded \
                     ({target_active} active there, {moving_active} on this gateway)"
                )));
            }

            if with_devices {
                sqlx::query(
                    "UPDATE devices SET tenant_id = $3, updated_at = $4 WHERE gateway_id = $1 AND tenant_id = $2",
                )
                .bind(id.get())
                .bind(from)
                .bind(to.get())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            } else {
                // Marked as `DeviceStore::archive` marks them: out of lists and counts, readings kept.
                sqlx::query(
                    "UPDATE devices SET archived_at = $3, updated_at = $3 \
                     WHERE gateway_id = $1 AND tenant_id = $2 AND archived_at IS NULL",
                )
                .bind(id.get())
                .bind(from)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query("UPDATE certificates SET tenant_id = $2, updated_at = $3 WHERE gateway_id = $1")
                .bind(id.get())
                .bind(to.get())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            let row: GatewayRow = sqlx::query_as(AssertSqlSafe(move_sql.as_str()))
                .bind(id.get())
                .bind(to.get())
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
            Ok(row)
        })?;
        row.try_into()
    }

    /// Marks offline every gateway, of every tenant, not heard from for three times its expected
    /// reporting interval (SPEC §2); returns how many changed.
    pub async fn staff_mark_silent_offline(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        // Time arithmetic differs: SQLite keeps microseconds, PostgreSQL a timestamp.
        let silent = match self.db {
            Db::Sqlite(_) => "last_seen_at < $1 - 3 * expected_interval_s * 1000000",
            Db::Postgres(_) => "last_seen_at < $1 - make_interval(secs => 3 * expected_interval_s)",
        };
        let sql = format!(
            "UPDATE gateways SET online = FALSE WHERE online AND last_seen_at IS NOT NULL AND {silent}"
        );
        let done = on_db!(
            self.db,
            write
                | pool
                | sqlx::query(AssertSqlSafe(sql.as_str()))
                    .bind(Ts::from(now))
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected())
        )?;
        Ok(done)
    }

    /// Sets the online flag (the device endpoint: connected / status message / will).
    pub async fn set_online(&self, tenant: TenantId, id: GatewayId, online: bool) -> Result<(), StoreError> {
        let done = on_db!(
            self.db,
            write
                | pool
                | sqlx::query("UPDATE gateways SET online = $3 WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.get())
                    .bind(id.get())
                    .bind(online)
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected())
        )?;
        found(done)
    }

    /// Records accepted telemetry: marks the gateway seen and online, and moves a pre-registered
    /// gateway to active.
    pub async fn mark_seen(
        &self,
        tenant: TenantId,
        id: GatewayId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let done = on_db!(self.db, write |pool| sqlx::query(
            "UPDATE gateways SET online = TRUE, \
               last_seen_at = CASE WHEN last_seen_at IS NULL OR last_seen_at < $3 THEN $3 ELSE last_seen_at END, \
               status = CASE WHEN status = 'pre_registered' THEN 'active' ELSE status END \
             WHERE tenant_id = $1 AND id = $2"
        )
        .bind(tenant.get())
        .bind(id.get())
        .bind(Ts::from(at))
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        found(done)
    }
}
