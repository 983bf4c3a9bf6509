//! Threshold defaults for new devices (SPEC §4 Configurações, §5): per tenant and medium, the
//! daily and monthly alarm a device is created with when its own are left blank (the device
//! store applies them; a device given 0 has none).
//!
//! Owns: the `alarm_defaults` table. Must not: change existing devices (a default is for the
//! devices made after it).

use crate::{Db, StoreError, Ts};
use serde::Serialize;
use tds_domain::limits::Amount;
use tds_domain::{Medium, TenantId};

/// The defaults of one medium.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AlarmDefault {
    pub medium: Medium,
    pub alarm_daily: Option<f64>,
    pub alarm_monthly: Option<f64>,
}

#[derive(Debug, Clone, Copy)]
pub struct AlarmDefaultStore<'a> {
    db: &'a Db,
}

impl<'a> AlarmDefaultStore<'a> {
    pub(crate) fn new(db: &'a Db) -> Self {
        Self { db }
    }

    /// The tenant's defaults, one per medium that has any, in medium order.
    pub async fn list(&self, tenant: TenantId) -> Result<Vec<AlarmDefault>, StoreError> {
        let rows: Vec<(String, Option<f64>, Option<f64>)> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(
                    "SELECT medium, alarm_daily, alarm_monthly FROM alarm_defaults WHERE tenant_id = $1 ORDER BY medium"
                )
                .bind(tenant.get())
                .fetch_all(pool)
                .await
        )?;
        rows.into_iter()
            .map(|(medium, alarm_daily, alarm_monthly)| {
                let medium = crate::error::stored("alarm_defaults.medium", &medium, Medium::parse)?;
                Ok(AlarmDefault { medium, alarm_daily, alarm_monthly })
            })
            .collect()
    }

    /// Sets (or, with both `None`, removes) the defaults of a medium.
    pub async fn set(
        &self,
        tenant: TenantId,
        medium: Medium,
        alarm_daily: Option<Amount>,
        alarm_monthly: Option<Amount>,
    ) -> Result<(), StoreError> {
        let (daily, monthly) = (alarm_daily.map(Amount::get), alarm_monthly.map(Amount::get));
        if daily.is_none() && monthly.is_none() {
            on_db!(
                self.db,
                write
                    | pool
                    | sqlx::query("DELETE FROM alarm_defaults WHERE tenant_id = $1 AND medium = $2")
                        .bind(tenant.get())
                        .bind(medium.as_str())
                        .execute(pool)
                        .await
                        .map(|r| r.rows_affected())
            )?;
            return Ok(());
        }
        on_db!(
            self.db,
            write
                | pool
                | sqlx::query(
                    "INSERT INTO alarm_defaults (tenant_id, medium, alarm_daily, alarm_monthly, updated_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, medium) DO UPDATE SET \
                     alarm_daily = excluded.alarm_daily, alarm_monthly = excluded.alarm_monthly, \
                     updated_at = excluded.updated_at"
                )
                .bind(tenant.get())
                .bind(medium.as_str())
                .bind(daily)
                .bind(monthly)
                .bind(Ts::now())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        )?;
        Ok(())
    }
}
