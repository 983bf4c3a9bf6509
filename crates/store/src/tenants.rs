//! Tenants ("contas"): profile, plan limits, licence and time zone. A tenant is its own scope, so
//! tenant-facing methods take the caller's `TenantId`; creating tenants and changing licences or
//! limits are staff actions (`staff_*`).

use crate::error::stored;
use crate::{Db, StoreError, Ts};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::AssertSqlSafe;
use tds_domain::{Cnpj, Licence, Name, TenantId, TimeZone, UserId};

/// Days a new tenant keeps raw readings (SPEC §8: two years); staff change it per tenant.
pub const DEFAULT_RETENTION_DAYS: i64 = 730;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TenantLimits {
    pub max_gateways: i64,
    pub max_devices: i64,
    pub max_users: i64,
}

impl Default for TenantLimits {
    fn default() -> Self {
        Self { max_gateways: 100, max_devices: 800, max_users: 25 }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Tenant {
    pub id: TenantId,
    pub name: Name,
    pub cnpj: Option<String>,
    pub active: bool,
    pub plan: String,
    pub limits: TenantLimits,
    pub licence_valid_until: Option<NaiveDate>,
    pub timezone: TimeZone,
    pub retention_days: i64,
    /// The day of the month (1..28) billing months start on; `None`: calendar months (SPEC §6).
    pub billing_day: Option<u8>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Tenant {
    pub fn licence(&self) -> Licence {
        Licence { active: self.active, valid_until: self.licence_valid_until }
    }

    /// How long raw readings are kept; `None` (a retention of 0 days) keeps them for ever.
    /// The retention job deletes older ones and ingest refuses them.
    pub fn retention(&self) -> Option<chrono::TimeDelta> {
        retention_of(self.retention_days)
    }
}

/// A retention of `days` (0: none, readings kept for ever).
pub(crate) fn retention_of(days: i64) -> Option<chrono::TimeDelta> {
    (days > 0).then(|| chrono::TimeDelta::days(days))
}

#[derive(Debug, Clone)]
pub struct NewTenant {
    pub name: Name,
    pub cnpj: Option<Cnpj>,
    pub timezone: TimeZone,
    pub plan: String,
    pub limits: TenantLimits,
    pub licence_valid_until: Option<NaiveDate>,
    pub created_by: Option<UserId>,
}

impl NewTenant {
    /// A tenant with default plan, limits and no licence end date.
    pub fn named(name: Name) -> Self {
        Self {
            name,
            cnpj: None,
            timezone: TimeZone::default(),
            plan: "standard".into(),
            limits: TenantLimits::default(),
            licence_valid_until: None,
            created_by: None,
        }
    }
}

/// Counts that the limits apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TenantUsage {
    pub gateways: i64,
    pub active_devices: i64,
    pub users: i64,
}

#[derive(sqlx::FromRow)]
struct TenantRow {
    id: i64,
    name: String,
    cnpj: Option<String>,
    active: bool,
    plan: String,
    max_gateways: i64,
    max_devices: i64,
    max_users: i64,
    licence_valid_until: Option<NaiveDate>,
    timezone: String,
    retention_days: i64,
    billing_day: Option<i64>,
    created_at: Ts,
    updated_at: Ts,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = StoreError;
    fn try_from(r: TenantRow) -> Result<Self, StoreError> {
        Ok(Tenant {
            id: TenantId::new(r.id),
            name: stored("tenants.name", &r.name, |s| Name::parse("name", s))?,
            cnpj: r.cnpj,
            active: r.active,
            plan: r.plan,
            limits: TenantLimits {
                max_gateways: r.max_gateways,
                max_devices: r.max_devices,
                max_users: r.max_users,
            },
            licence_valid_until: r.licence_valid_until,
            timezone: stored("tenants.timezone", &r.timezone, TimeZone::parse)?,
            retention_days: r.retention_days,
            billing_day: r.billing_day.and_then(|d| u8::try_from(d).ok()).filter(|d| (1..=28).contains(d)),
            created_at: r.created_at.0,
            updated_at: r.updated_at.0,
        })
    }
}

const COLUMNS: &str = "id, name, cnpj, active, plan, max_gateways, max_devices, max_users, \
    licence_valid_until, timezone, retention_days, billing_day, created_at, updated_at";

#[derive(Debug, Clone, Copy)]
pub struct TenantStore<'a> {
    db: &'a Db,
}

impl<'a> TenantStore<'a> {
    pub(crate) fn new(db: &'a Db) -> Self {
        Self { db }
    }

    pub async fn staff_create(&self, new: &NewTenant) -> Result<Tenant, StoreError> {
        let now = Ts::now();
        let sql = format!(
            "INSERT INTO tenants (name, name_key, cnpj, active, plan, max_gateways, max_devices, max_users, \
             licence_valid_until, timezone, retention_days, created_at, updated_at, created_by) \
             VALUES ($1, $11, $2, TRUE, $3, $4, $5, $6, $7, $8, {DEFAULT_RETENTION_DAYS}, $9, $9, $10) RETURNING {COLUMNS}"
        );
        let row: TenantRow = on_db!(
            self.db,
            write
                | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(new.name.as_str())
                    .bind(new.cnpj.as_ref().map(Cnpj::as_str))
                    .bind(&new.plan)
                    .bind(new.limits.max_gateways)
                    .bind(new.limits.max_devices)
                    .bind(new.limits.max_users)
                    .bind(new.licence_valid_until)
                    .bind(new.timezone.name())
                    .bind(now)
                    .bind(new.created_by.map(UserId::get))
                    .bind(name_key(&new.name))
                    .fetch_one(pool)
                    .await
        )?;
        row.try_into()
    }

    /// The caller's own tenant.
    pub async fn get(&self, tenant: TenantId) -> Result<Tenant, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM tenants WHERE id = $1");
        let row: TenantRow = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str())).bind(tenant.get()).fetch_one(pool).await
        )?;
        row.try_into()
    }

    /// Looks a tenant up by name (case-insensitive), for the CLI.
    pub async fn staff_by_name(&self, name: &str) -> Result<Tenant, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM tenants WHERE name_key = $1");
        let row: TenantRow = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(name.trim().to_lowercase())
                    .fetch_one(pool)
                    .await
        )?;
        row.try_into()
    }

    pub async fn staff_list(&self) -> Result<Vec<Tenant>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM tenants ORDER BY name_key");
        let rows: Vec<TenantRow> =
            on_db!(self.db, read | pool | sqlx::query_as(AssertSqlSafe(sql.as_str())).fetch_all(pool).await)?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// The tenant's own profile: name, CNPJ and time zone (tenant admins).
    pub async fn update_profile(
        &self,
        tenant: TenantId,
        name: &Name,
        cnpj: Option<&Cnpj>,
        timezone: TimeZone,
    ) -> Result<Tenant, StoreError> {
        let sql = format!(
            "UPDATE tenants SET name = $2, cnpj = $3, timezone = $4, updated_at = $5, name_key = $6 \
             WHERE id = $1 RETURNING {COLUMNS}"
        );
        let row: TenantRow = on_db!(
            self.db,
            write
                | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(tenant.get())
                    .bind(name.as_str())
                    .bind(cnpj.map(Cnpj::as_str))
                    .bind(timezone.name())
                    .bind(Ts::now())
                    .bind(name_key(name))
                    .fetch_one(pool)
                    .await
        )?;
        row.try_into()
    }

    pub async fn staff_set_active(&self, id: TenantId, active: bool) -> Result<(), StoreError> {
        let done = on_db!(
            self.db,
            write
                | pool
                | sqlx::query("UPDATE tenants SET active = $2, updated_at = $3 WHERE id = $1")
                    .bind(id.get())
                    .bind(active)
                    .bind(Ts::now())
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected())
        )?;
        found(done)
    }

    pub async fn staff_set_licence(
        &self,
        id: TenantId,
        valid_until: Option<NaiveDate>,
    ) -> Result<(), StoreError> {
        let done = on_db!(
            self.db,
            write
                | pool
                | sqlx::query("UPDATE tenants SET licence_valid_until = $2, updated_at = $3 WHERE id = $1")
                    .bind(id.get())
                    .bind(valid_until)
                    .bind(Ts::now())
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected())
        )?;
        found(done)
    }

    /// The day billing months start on (1..28), or `None` for calendar months (SPEC §6).
    pub async fn set_billing_day(&self, id: TenantId, day: Option<u8>) -> Result<(), StoreError> {
        if day.is_some_and(|d| !(1..=28).contains(&d)) {
            return Err(StoreError::Limit("the billing day must be 1 to 28".into()));
        }
        let done = on_db!(
            self.db,
            write
                | pool
                | sqlx::query("UPDATE tenants SET billing_day = $2, updated_at = $3 WHERE id = $1")
                    .bind(id.get())
                    .bind(day.map(i64::from))
                    .bind(Ts::now())
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected())
        )?;
        found(done)
    }

    /// Days raw readings are kept (0: for ever); rollups are kept regardless.
    pub async fn staff_set_retention(&self, id: TenantId, days: i64) -> Result<(), StoreError> {
        if days < 0 {
            return Err(StoreError::Limit("retention cannot be negative".into()));
        }
        let done = on_db!(
            self.db,
            write
                | pool
                | sqlx::query("UPDATE tenants SET retention_days = $2, updated_at = $3 WHERE id = $1")
                    .bind(id.get())
                    .bind(days)
                    .bind(Ts::now())
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected())
        )?;
        found(done)
    }

    pub async fn staff_set_limits(&self, id: TenantId, limits: TenantLimits) -> Result<(), StoreError> {
        if limits.max_gateways < 0 || limits.max_devices < 0 || limits.max_users < 0 {
            return Err(StoreError::Limit("limits cannot be negative".into()));
        }
        let done =
            on_db!(self.db, write |pool| sqlx::query(
            "UPDATE tenants SET max_gateways = $2, max_devices = $3, max_users = $4, updated_at = $5 \
             WHERE id = $1"
        )
        .bind(id.get())
        .bind(limits.max_gateways)
        .bind(limits.max_devices)
        .bind(limits.max_users)
        .bind(Ts::now())
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        found(done)
    }

    pub async fn usage(&self, tenant: TenantId) -> Result<TenantUsage, StoreError> {
        let (gateways, active_devices, users): (i64, i64, i64) = on_db!(self.db, read |pool| sqlx::query_as(
            "SELECT \
               (SELECT count(*) FROM gateways WHERE tenant_id = $1 AND status <> 'decommissioned'), \
               (SELECT count(*) FROM devices WHERE tenant_id = $1 AND archived_at IS NULL AND status = 'ATIVO'), \
               (SELECT count(*) FROM memberships WHERE tenant_id = $1)"
        )
        .bind(tenant.get())
        .fetch_one(pool)
        .await)?;
        Ok(TenantUsage { gateways, active_devices, users })
    }
}

/// The uniqueness key of a tenant name: "Águas" and "ÁGUAS" are the same tenant.
fn name_key(name: &Name) -> String {
    name.as_str().to_lowercase()
}

/// `NotFound` when an UPDATE or DELETE touched nothing.
pub(crate) fn found(rows: u64) -> Result<(), StoreError> {
    if rows == 0 { Err(StoreError::NotFound) } else { Ok(()) }
}
