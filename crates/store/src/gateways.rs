//! Gateways: the data concentrators. A gateway's MAC is unique across the platform (it is the
//! certificate's CN); its code is unique within the tenant. Every tenant-facing method filters by
//! tenant; `staff_connecting` is how the device endpoint finds a gateway from a certificate, and
//! `staff_transfer` moves a gateway (with or without its devices) to another tenant.

use crate::error::{RowError, stored};
use crate::tenants::found;
use crate::{Db, Page, Paged, StoreError, Ts, bulk};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::AssertSqlSafe;
use std::collections::{HashMap, HashSet};
use tds_domain::limits::{MaxDevices, Position, ReportInterval};
use tds_domain::{Description, GatewayCode, GatewayId, GatewayStatus, Mac, Name, TenantId, UserId};

mod connecting;

pub use connecting::{ConnectingDevice, ConnectingGateway};

/// Accepted telemetry: the gateway is seen and online, and a pre-registered one becomes active.
const MARK_SEEN: &str = "UPDATE gateways SET online = TRUE, \
    last_seen_at = CASE WHEN last_seen_at IS NULL OR last_seen_at < $3 THEN $3 ELSE last_seen_at END, \
    status = CASE WHEN status = 'pre_registered' THEN 'active' ELSE status END \
    WHERE tenant_id = $1 AND id = $2";

/// [`MARK_SEEN`] for arrays of tenants (`$1`), gateways (`$2`) and instants (`$3`).
const PG_MARK_SEEN_MANY: &str = "UPDATE gateways g SET online = TRUE, \
    last_seen_at = CASE WHEN g.last_seen_at IS NULL OR g.last_seen_at < x.at THEN x.at ELSE g.last_seen_at END, \
    status = CASE WHEN g.status = 'pre_registered' THEN 'active' ELSE g.status END \
    FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TIMESTAMPTZ[]) AS x(t, id, at) \
    WHERE g.tenant_id = x.t AND g.id = x.id";

/// [`MARK_SEEN`] for `rows` (tenant, gateway, instant) triples bound in that order, on SQLite.
fn sqlite_mark_seen_many(rows: usize) -> String {
    format!(
        "UPDATE gateways SET online = TRUE, \
         last_seen_at = CASE WHEN last_seen_at IS NULL OR last_seen_at < x.column3 THEN x.column3 ELSE last_seen_at END, \
         status = CASE WHEN status = 'pre_registered' THEN 'active' ELSE status END \
         FROM (VALUES {}) AS x WHERE gateways.tenant_id = x.column1 AND gateways.id = x.column2",
        vec!["(?,?,?)"; rows].join(",")
    )
}

/// Locks the gateways `$1` in id order, on PostgreSQL. Every transaction that updates several
/// gateways takes their row locks this way first (the seen buffer's flush, the connections'
/// bookkeeping, the sweep of silent gateways): an `UPDATE … FROM UNNEST` locks its rows in
/// whatever order its plan meets them, and two transactions meeting the same gateways in
/// different orders deadlock, one failing after PostgreSQL's `deadlock_timeout` (a second).
const PG_LOCK_IN_ORDER: &str = "SELECT g.id FROM gateways g JOIN UNNEST($1::BIGINT[]) AS x(id) ON g.id = x.id \
    ORDER BY g.id FOR NO KEY UPDATE OF g";

/// [`PG_LOCK_IN_ORDER`] on the open transaction `conn`.
pub(crate) async fn pg_lock_in_order(
    conn: &mut sqlx::PgConnection,
    ids: Vec<i64>,
) -> Result<(), sqlx::Error> {
    sqlx::query(PG_LOCK_IN_ORDER).bind(ids).execute(conn).await.map(|_| ())
}

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

/// The head of a multi-row insert; each row's VALUES are `($1 tenant, mac, fields…,
/// 'pre_registered', FALSE, $2 now, $2, $3 by)`, see [`bulk::values`].
const INSERT_MANY: &str = "INSERT INTO gateways (tenant_id, mac, code, name, description, latitude, \
    longitude, model, serial_number, device_id, hardware_version, firmware_version, max_devices, \
    expected_interval_s, status, online, created_at, updated_at, created_by) VALUES";

/// Which factory certificates an import links to its new gateways.
#[derive(Debug, Clone, Copy)]
enum FactoryLink<'a> {
    /// None: a tenant's own registration.
    Never,
    /// Those a manifest names, one per row.
    Named(&'a [&'a str]),
    /// Every unlinked one of the rows' MACs (staff).
    EveryUnlinked,
}

/// The tenant's gateway limit, when `adding` more gateways would exceed it.
fn limit_problem(count: i64, max: i64, adding: usize) -> Option<String> {
    (count + adding as i64 > max).then(|| {
        format!("the tenant's limit of {max} gateways would be exceeded ({count} registered, {adding} new)")
    })
}

/// A unique index refused a row that passed the checks: something was registered meanwhile.
fn raced(err: StoreError) -> StoreError {
    match err {
        StoreError::Conflict(what) if what.contains("mac") => {
            StoreError::Conflict("a MAC of the import was registered meanwhile; nothing was imported".into())
        }
        StoreError::Conflict(what) if what.contains("code") => StoreError::Conflict(
            "a gateway code of the import was used meanwhile in this tenant; nothing was imported".into(),
        ),
        e => e,
    }
}

/// Binds a gateway's fields in the order of the insert's and the update's columns (code to
/// expected interval).
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

#[derive(Debug, Clone, Copy)]
pub struct GatewayStore<'a> {
    db: &'a Db,
}

impl<'a> GatewayStore<'a> {
    pub(crate) fn new(db: &'a Db) -> Self {
        Self { db }
    }

    /// Registers a gateway as pre-registered, within the tenant's gateway limit. No factory
    /// certificate is linked (see [`Self::import`]).
    pub async fn create(
        &self,
        tenant: TenantId,
        mac: Mac,
        fields: &GatewayFields,
        by: Option<UserId>,
    ) -> Result<Gateway, StoreError> {
        // One row may break several rules at once (its MAC and its code both taken): all of
        // them are said, as a limit when one of them is the tenant's limit.
        let mut created = self.import(tenant, &[(mac, fields.clone())], by).await.map_err(|e| match e {
            StoreError::Import(rows) if !rows.is_empty() => {
                let msg = rows.into_iter().map(|r| r.message).collect::<Vec<_>>().join("; ");
                if msg.contains("limit") { StoreError::Limit(msg) } else { StoreError::Conflict(msg) }
            }
            e => e,
        })?;
        created.pop().ok_or(StoreError::NotFound)
    }

    /// Registers several gateways at once, all or none. Every row is checked (MAC free across the
    /// platform, code free in the tenant, no repeats inside the batch, the tenant's limit) and all
    /// problems are reported together with their 1-based row numbers.
    ///
    /// This is what a tenant's editor may do, so it links no certificate: a certificate that a
    /// factory batch issued for one of these MACs stays unlinked (knowing a MAC is no proof of
    /// holding its batch). [`Self::import_manifest`] links the certificates a manifest names;
    /// [`Self::staff_import`] links every unlinked one of the MACs.
    pub async fn import(
        &self,
        tenant: TenantId,
        rows: &[(Mac, GatewayFields)],
        by: Option<UserId>,
    ) -> Result<Vec<Gateway>, StoreError> {
        let rows: Vec<_> = rows.iter().map(|(m, f)| (*m, f)).collect();
        self.import_linking(tenant, &rows, FactoryLink::Never, by).await
    }

    /// [`Self::import`] for a factory manifest: each row names the certificate the batch issued
    /// for its MAC (`mac,serial_number,cert_serial,…`: having the manifest shows possession of
    /// the batch), and that certificate, and only it, is linked to the new gateway. A row whose
    /// certificate does not exist, names another MAC or already belongs to a gateway is refused.
    pub async fn import_manifest(
        &self,
        tenant: TenantId,
        rows: &[(Mac, GatewayFields, String)],
        by: Option<UserId>,
    ) -> Result<Vec<Gateway>, StoreError> {
        let gateways: Vec<_> = rows.iter().map(|(m, f, _)| (*m, f)).collect();
        // Serials are stored in lower-case hex.
        let serials: Vec<String> = rows.iter().map(|(_, _, s)| s.to_ascii_lowercase()).collect();
        let serials: Vec<&str> = serials.iter().map(String::as_str).collect();
        self.import_linking(tenant, &gateways, FactoryLink::Named(&serials), by).await
    }

    /// [`Self::import`] by platform staff (the operator's `tds gateway import`, a staff user's
    /// import): every factory certificate issued for one of these MACs and not yet linked now
    /// belongs to its new gateway.
    pub async fn staff_import(
        &self,
        tenant: TenantId,
        rows: &[(Mac, GatewayFields)],
        by: Option<UserId>,
    ) -> Result<Vec<Gateway>, StoreError> {
        let rows: Vec<_> = rows.iter().map(|(m, f)| (*m, f)).collect();
        self.import_linking(tenant, &rows, FactoryLink::EveryUnlinked, by).await
    }

    /// The import proper. Every check is made first, with a few set-based reads outside any
    /// transaction (on SQLite: not on the one writer connection, which ingest's commits need);
    /// only then is the write transaction opened, for the limit's re-check, multi-row inserts and
    /// the certificate links. What changed between the checks and the transaction (a MAC taken
    /// meanwhile) is caught by the unique indexes and refuses the whole import.
    async fn import_linking(
        &self,
        tenant: TenantId,
        rows: &[(Mac, &GatewayFields)],
        link: FactoryLink<'_>,
        by: Option<UserId>,
    ) -> Result<Vec<Gateway>, StoreError> {
        let errors = self.import_problems(tenant, rows, link).await?;
        if !errors.is_empty() {
            return Err(StoreError::Import(errors));
        }
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let now = Ts::now();
        let limit_sql = format!(
            "SELECT max_gateways, (SELECT count(*) FROM gateways WHERE tenant_id = $1 \
             AND status <> 'decommissioned') FROM tenants WHERE id = $1 {}",
            self.db.row_lock()
        );
        let inserted: Vec<GatewayRow> = in_tx!(self.db, |tx| {
            // Again, locked: another import may have taken the room since the check.
            let limits: Option<(i64, i64)> = sqlx::query_as(AssertSqlSafe(limit_sql.as_str()))
                .bind(tenant.get())
                .fetch_optional(&mut *tx)
                .await?;
            let (max, count) = limits.ok_or(StoreError::NotFound)?;
            if let Some(message) = limit_problem(count, max, rows.len()) {
                return Err(StoreError::Import(vec![RowError { row: 0, message }]));
            }
            let mut inserted = Vec::with_capacity(rows.len());
            for chunk in rows.chunks(bulk::INSERT_ROWS) {
                let sql = format!(
                    "{INSERT_MANY} {} RETURNING {COLUMNS}",
                    bulk::values(chunk.len(), 4, 13, "$1, ", ", 'pre_registered', FALSE, $2, $2, $3")
                );
                let mut q = sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(tenant.get())
                    .bind(now)
                    .bind(by.map(UserId::get));
                for (mac, fields) in chunk {
                    q = bind_fields!(q.bind(mac.to_string()), fields);
                }
                let batch: Vec<GatewayRow> = q.fetch_all(&mut *tx).await.map_err(|e| raced(e.into()))?;
                inserted.extend(batch);
            }
            match link {
                FactoryLink::Never => {}
                FactoryLink::EveryUnlinked => {
                    for chunk in rows.chunks(bulk::LOOKUP) {
                        let sql = format!(
                            "UPDATE certificates SET tenant_id = $1, gateway_id = \
                               (SELECT g.id FROM gateways g WHERE g.tenant_id = $1 AND g.mac = certificates.mac) \
                             WHERE gateway_id IS NULL AND mac IN ({})",
                            bulk::list(2, chunk.len())
                        );
                        let mut q = sqlx::query(AssertSqlSafe(sql.as_str())).bind(tenant.get());
                        for (mac, _) in chunk {
                            q = q.bind(mac.to_string());
                        }
                        q.execute(&mut *tx).await?;
                    }
                }
                FactoryLink::Named(serials) => {
                    for chunk in serials.chunks(bulk::LOOKUP) {
                        // The serials' MACs were checked against the rows; the gateway condition
                        // makes sure that a certificate is linked only to its own MAC's gateway.
                        let sql = format!(
                            "UPDATE certificates SET tenant_id = $1, gateway_id = \
                               (SELECT g.id FROM gateways g WHERE g.tenant_id = $1 AND g.mac = certificates.mac) \
                             WHERE gateway_id IS NULL AND serial IN ({}) AND EXISTS \
                               (SELECT 1 FROM gateways g WHERE g.tenant_id = $1 AND g.mac = certificates.mac)",
                            bulk::list(2, chunk.len())
                        );
                        let mut q = sqlx::query(AssertSqlSafe(sql.as_str())).bind(tenant.get());
                        for serial in chunk {
                            q = q.bind(*serial);
                        }
                        let linked = q.execute(&mut *tx).await?.rows_affected();
                        if linked != chunk.len() as u64 {
                            return Err(StoreError::Conflict(
                                "a certificate of the manifest was linked to a gateway meanwhile; nothing was imported"
                                    .into(),
                            ));
                        }
                    }
                }
            }
            Ok(inserted)
        })?;
        // Multi-row RETURNING gives no order: put the gateways back in the rows' order.
        let mut by_mac: HashMap<String, GatewayRow> =
            inserted.into_iter().map(|r| (r.mac.clone(), r)).collect();
        rows.iter()
            .map(|(mac, _)| {
                by_mac.remove(&mac.to_string()).ok_or(StoreError::NotFound).and_then(Gateway::try_from)
            })
            .collect()
    }

    /// Every problem of an import, each with its 1-based row (0: the whole file), found with
    /// O(n) work and a few set-based reads (chunked `IN (…)` lookups), none per row.
    async fn import_problems(
        &self,
        tenant: TenantId,
        rows: &[(Mac, &GatewayFields)],
        link: FactoryLink<'_>,
    ) -> Result<Vec<RowError>, StoreError> {
        let mut errors = Vec::new();
        let (max, count): (i64, i64) = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(
                    "SELECT max_gateways, (SELECT count(*) FROM gateways WHERE tenant_id = $1 \
                     AND status <> 'decommissioned') FROM tenants WHERE id = $1"
                )
                .bind(tenant.get())
                .fetch_optional(pool)
                .await
        )?
        .ok_or(StoreError::NotFound)?;
        if let Some(message) = limit_problem(count, max, rows.len()) {
            errors.push(RowError { row: 0, message });
        }
        let macs: Vec<String> = rows.iter().map(|(m, _)| m.to_string()).collect();
        let codes: Vec<&str> = rows.iter().map(|(_, f)| f.code.as_str()).collect();
        let macs_taken: HashSet<String> =
            self.existing("SELECT mac FROM gateways WHERE mac IN", None, &macs).await?;
        let codes_taken: HashSet<String> = self
            .existing("SELECT code FROM gateways WHERE tenant_id = $1 AND code IN", Some(tenant), &codes)
            .await?;
        let certificates = match link {
            FactoryLink::Named(serials) => self.factory_certificates(serials).await?,
            _ => HashMap::new(),
        };
        let mut seen_macs = HashSet::with_capacity(rows.len());
        let mut seen_codes = HashSet::with_capacity(rows.len());
        let mut seen_serials = HashSet::new();
        for (i, (mac, fields)) in rows.iter().enumerate() {
            let row = i + 1;
            if !seen_macs.insert(*mac) {
                errors.push(RowError { row, message: format!("MAC {mac} appears twice in the file") });
            }
            if !seen_codes.insert(&fields.code) {
                errors.push(RowError {
                    row,
                    message: format!("code {} appears twice in the file", fields.code),
                });
            }
            if macs_taken.contains(&macs[i]) {
                errors.push(RowError { row, message: format!("MAC {mac} is already registered") });
            }
            if codes_taken.contains(fields.code.as_str()) {
                errors.push(RowError {
                    row,
                    message: format!("gateway code {} is already used in this tenant", fields.code),
                });
            }
            if let FactoryLink::Named(serials) = link {
                let serial = serials.get(i).copied().unwrap_or_default();
                if !seen_serials.insert(serial) {
                    errors.push(RowError {
                        row,
                        message: format!("certificate {serial} appears twice in the file"),
                    });
                }
                match certificates.get(serial) {
                    Some((cert_mac, None)) if *cert_mac == macs[i] => {}
                    Some((cert_mac, Some(_))) if *cert_mac == macs[i] => errors.push(RowError {
                        row,
                        message: format!("certificate {serial} of {mac} already belongs to a gateway"),
                    }),
                    _ => errors.push(RowError {
                        row,
                        message: format!("certificate {serial} was not issued for {mac} by a factory batch"),
                    }),
                }
            }
        }
        Ok(errors)
    }

    /// Which of `values` a `SELECT column FROM … WHERE … IN` (`$1` the tenant when given)
    /// finds, read in chunks.
    async fn existing(
        &self,
        select_in: &str,
        tenant: Option<TenantId>,
        values: &[impl AsRef<str>],
    ) -> Result<HashSet<String>, StoreError> {
        let first = if tenant.is_some() { 2 } else { 1 };
        let mut found = HashSet::new();
        for chunk in values.chunks(bulk::LOOKUP) {
            let sql = format!("{select_in} ({})", bulk::list(first, chunk.len()));
            let part: Vec<String> = on_db!(
                self.db,
                read | pool | {
                    let mut q = sqlx::query_scalar(AssertSqlSafe(sql.as_str()));
                    if let Some(t) = tenant {
                        q = q.bind(t.get());
                    }
                    for v in chunk {
                        q = q.bind(v.as_ref());
                    }
                    q.fetch_all(pool).await
                }
            )?;
            found.extend(part);
        }
        Ok(found)
    }

    /// The certificates with these serials: their MAC and gateway (`None`: not linked yet).
    async fn factory_certificates(
        &self,
        serials: &[&str],
    ) -> Result<HashMap<String, (String, Option<i64>)>, StoreError> {
        let mut found = HashMap::with_capacity(serials.len());
        for chunk in serials.chunks(bulk::LOOKUP) {
            let sql = format!(
                "SELECT serial, mac, gateway_id FROM certificates WHERE serial IN ({})",
                bulk::list(1, chunk.len())
            );
            let part: Vec<(String, String, Option<i64>)> = on_db!(
                self.db,
                read | pool | {
                    let mut q = sqlx::query_as(AssertSqlSafe(sql.as_str()));
                    for serial in chunk {
                        q = q.bind(*serial);
                    }
                    q.fetch_all(pool).await
                }
            )?;
            found.extend(part.into_iter().map(|(serial, mac, gateway)| (serial, (mac, gateway))));
        }
        Ok(found)
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

    /// The ids of the tenant's gateways among `macs` (an import's lookups: a few statements
    /// whatever the number of MACs); MACs of other tenants or of no gateway are absent.
    pub async fn ids_by_mac(
        &self,
        tenant: TenantId,
        macs: &[Mac],
    ) -> Result<HashMap<Mac, GatewayId>, StoreError> {
        let distinct: Vec<String> =
            macs.iter().copied().collect::<HashSet<_>>().into_iter().map(|m| m.to_string()).collect();
        let mut found = HashMap::with_capacity(distinct.len());
        for chunk in distinct.chunks(bulk::LOOKUP) {
            let sql = format!(
                "SELECT mac, id FROM gateways WHERE tenant_id = $1 AND mac IN ({})",
                bulk::list(2, chunk.len())
            );
            let part: Vec<(String, i64)> = on_db!(
                self.db,
                read | pool | {
                    let mut q = sqlx::query_as(AssertSqlSafe(sql.as_str())).bind(tenant.get());
                    for m in chunk {
                        q = q.bind(m);
                    }
                    q.fetch_all(pool).await
                }
            )?;
            for (mac, id) in part {
                found.insert(stored("gateways.mac", &mac, Mac::parse)?, GatewayId::new(id));
            }
        }
        Ok(found)
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

    /// One page of the tenant's gateways in MAC order, after the MAC `after` (keyset paging for
    /// the API: stable while gateways are added, unlike page numbers).
    pub async fn page_by_mac(
        &self,
        tenant: TenantId,
        filter: &GatewayFilter,
        after: Option<Mac>,
        limit: i64,
    ) -> Result<Vec<Gateway>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM gateways WHERE tenant_id = $1 \
             AND (CAST($2 AS TEXT) IS NULL OR lower(code) LIKE $2 OR lower(name) LIKE $2 OR mac LIKE $2) \
             AND (CAST($3 AS TEXT) IS NULL OR status = $3) \
             AND (CAST($4 AS TEXT) IS NULL \
                  OR ($4 = 'online' AND online) \
                  OR ($4 = 'offline' AND NOT online AND last_seen_at IS NOT NULL) \
                  OR ($4 = 'never_connected' AND NOT online AND last_seen_at IS NULL)) \
             AND (CAST($5 AS TEXT) IS NULL OR mac > $5) ORDER BY mac LIMIT $6"
        );
        let search = filter.search.as_deref().and_then(crate::page::contains_pattern);
        let connection = filter.connection.map(|c| match c {
            Connection::Online => "online",
            Connection::Offline => "offline",
            Connection::NeverConnected => "never_connected",
        });
        let rows: Vec<GatewayRow> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(tenant.get())
                    .bind(search.as_deref())
                    .bind(filter.status.map(GatewayStatus::as_str))
                    .bind(connection)
                    .bind(after.map(|m| m.to_string()))
                    .bind(limit)
                    .fetch_all(pool)
                    .await
        )?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Every gateway of the tenant, in MAC order, read a thousand at a time (for work over the
    /// whole tenant: naming alerts' targets, a tenant-wide report).
    pub async fn all(&self, tenant: TenantId) -> Result<Vec<Gateway>, StoreError> {
        let mut found: Vec<Gateway> = Vec::new();
        loop {
            let after = found.last().map(|g| g.mac);
            let page = self.page_by_mac(tenant, &GatewayFilter::default(), after, 1000).await?;
            let done = page.len() < 1000;
            found.extend(page);
            if done {
                return Ok(found);
            }
        }
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
            // The certificates follow the gateway (its history), but the one it had is revoked:
            // the previous owner holds its key (SPEC §2). A renewal in flight ends with it.
            sqlx::query(
                "UPDATE renewals SET state = 'failed', detail = 'gateway transferred to another tenant', \
                 updated_at = $2, finished_at = $2 WHERE gateway_id = $1 AND finished_at IS NULL",
            )
            .bind(id.get())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE gateway_messages SET cleared_at = $2, payload = '' WHERE gateway_id = $1 AND cleared_at IS NULL",
            )
            .bind(id.get())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE certificates SET status = 'revoked', revocation_reason = 'affiliation_changed', \
                 revoked_at = $2, updated_at = $2 WHERE gateway_id = $1 AND status = 'active'",
            )
            .bind(id.get())
            .bind(now)
            .execute(&mut *tx)
            .await?;
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
        // On PostgreSQL the rows are locked in id order first (see [`PG_LOCK_IN_ORDER`]); a
        // gateway heard from meanwhile no longer matches once its lock is granted.
        let sql = match self.db {
            Db::Sqlite(_) => {
                format!(
                    "UPDATE gateways SET online = FALSE WHERE online AND last_seen_at IS NOT NULL AND {silent}"
                )
            }
            Db::Postgres(_) => format!(
                "UPDATE gateways SET online = FALSE WHERE id IN (SELECT id FROM gateways \
                 WHERE online AND last_seen_at IS NOT NULL AND {silent} ORDER BY id FOR NO KEY UPDATE)"
            ),
        };
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

    /// Records accepted telemetry: marks the gateway seen and online, and moves a pre-registered
    /// gateway to active.
    pub async fn mark_seen(
        &self,
        tenant: TenantId,
        id: GatewayId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let done = on_db!(
            self.db,
            write
                | pool
                | sqlx::query(MARK_SEEN)
                    .bind(tenant.get())
                    .bind(id.get())
                    .bind(Ts::from(at))
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected())
        )?;
        found(done)
    }

    /// [`Self::mark_seen`] for many gateways at once (the device endpoint's periodic flush):
    /// one statement, not one per gateway (the flush runs in the ingest writer's loop, where a
    /// thousand gateways' updates held the commits up for a fifth of a second every second).
    /// Gateways no longer in the tenant given are skipped.
    pub async fn mark_seen_many(
        &self,
        seen: &[(TenantId, GatewayId, DateTime<Utc>)],
    ) -> Result<(), StoreError> {
        match self.db {
            Db::Postgres(pg) => {
                let tenants: Vec<i64> = seen.iter().map(|s| s.0.get()).collect();
                let ids: Vec<i64> = seen.iter().map(|s| s.1.get()).collect();
                let ats: Vec<Ts> = seen.iter().map(|s| Ts::from(s.2)).collect();
                let mut tx = pg.begin().await?;
                pg_lock_in_order(&mut tx, ids.clone()).await?;
                sqlx::query(PG_MARK_SEEN_MANY).bind(tenants).bind(ids).bind(ats).execute(&mut *tx).await?;
                tx.commit().await?;
            }
            Db::Sqlite(s) => {
                let mut tx = s.write.begin_with("BEGIN IMMEDIATE").await?;
                for chunk in seen.chunks(bulk::LOOKUP) {
                    let mut q = sqlx::query(AssertSqlSafe(sqlite_mark_seen_many(chunk.len())));
                    for (tenant, id, at) in chunk {
                        q = q.bind(tenant.get()).bind(id.get()).bind(Ts::from(*at));
                    }
                    q.execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::tenants::{NewTenant, TenantLimits};

    fn rows(n: usize) -> Vec<(Mac, GatewayFields)> {
        (0..n)
            .map(|i| {
                let mac = Mac::parse(&format!("02:00:00:00:{:02x}:{:02x}", i / 256, i % 256)).unwrap();
                let code = GatewayCode::parse(&format!("GW-{i:05}")).unwrap();
                (mac, GatewayFields::new(code, Name::parse("name", "G").unwrap()))
            })
            .collect()
    }

    /// The issue: a large import ran its per-row checks inside the write transaction, holding
    /// SQLite's one writer connection (and with it every ingest commit) for the whole time. Now
    /// the checks read through the read pool: with the writer held by someone else, a refused
    /// 5,000-row import still answers with its full report, so the checks never touched it.
    /// (The timeout only stops a failing run from waiting for the pool's one-minute timeout.)
    #[tokio::test]
    async fn a_large_import_is_checked_without_the_writer_connection() {
        let (_dir, store) = crate::sqlite_for_test().await;
        let mut new = NewTenant::named(Name::parse("name", "Acme").unwrap());
        new.limits = TenantLimits { max_gateways: 10_000, ..TenantLimits::default() };
        let tenant = store.tenants().staff_create(&new).await.unwrap().id;
        let mut rows = rows(5_000);
        rows[4_999].1.code = rows[0].1.code.clone();
        let Db::Sqlite(db) = store.db() else { panic!("SQLite") };
        let writer = db.write.acquire().await.unwrap();
        let outcome = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            store.gateways().import(tenant, &rows, None),
        )
        .await
        .expect("the checks must not wait for the writer connection");
        let Err(StoreError::Import(errors)) = outcome else { panic!("refused: {outcome:?}") };
        assert_eq!(errors.iter().map(|e| e.row).collect::<Vec<_>>(), vec![5_000]);
        drop(writer);
        rows[4_999].1.code = GatewayCode::parse("GW-LAST").unwrap();
        let created = store.gateways().import(tenant, &rows, None).await.unwrap();
        assert_eq!(created.len(), 5_000);
        assert!(created.iter().zip(&rows).all(|(g, (mac, _))| g.mac == *mac), "in the rows' order");
    }
}
