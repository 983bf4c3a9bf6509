//! The campaign's side of the renewal store (SPEC §3): pausing a tenant, the day's budget used,
//! the certificates due, offers nobody answered, the figures of the certificates page, and a
//! gateway's renewal mode.
//!
//! Must not: decide the budget or the day (the job passes its clock and its limits).

use super::{COLUMNS, Renewal, RenewalRow, RenewalStore};
use crate::{StoreError, Ts};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::AssertSqlSafe;
use tds_domain::renewal::{RenewalMode, RenewalState};
use tds_domain::{GatewayId, TenantId, UserId};

/// A certificate the campaign may renew.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Candidate {
    pub tenant_id: i64,
    pub gateway_id: i64,
    pub mac: String,
    pub model: Option<String>,
    pub renewal_mode: Option<String>,
    pub certificate_id: i64,
    pub key_algorithm: String,
    pub expires_at: Ts,
    pub last_seen_at: Option<Ts>,
}

impl Candidate {
    pub fn mode(&self) -> RenewalMode {
        self.renewal_mode
            .as_deref()
            .and_then(RenewalMode::parse)
            .unwrap_or_else(|| RenewalMode::default_for_model(self.model.as_deref()))
    }
}

/// Figures of a tenant's (or the platform's) campaign for the certificates page.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Progress {
    /// Active certificates inside the renewal window with no open renewal.
    pub backlog: i64,
    /// Open renewals, all states…
    pub in_flight: i64,
    /// …and by state: waiting for a CSR, CSR received (being signed), certificate offered.
    pub offered: i64,
    pub csr_received: i64,
    pub issued: i64,
    pub started_today: i64,
    pub confirmed: i64,
    pub failed: i64,
    pub rolled_back: i64,
}

impl RenewalStore<'_> {
    /// Pauses (or resumes) the tenant's campaign; returns whether that changed anything.
    pub async fn set_paused(
        &self,
        tenant: TenantId,
        paused: bool,
        by: Option<UserId>,
    ) -> Result<bool, StoreError> {
        let done = if paused {
            on_db!(self.db, write |pool| sqlx::query(
                "INSERT INTO renewal_pauses (tenant_id, paused_at, paused_by) VALUES ($1, $2, $3) ON CONFLICT (tenant_id) DO NOTHING"
            )
            .bind(tenant.get())
            .bind(Ts::now())
            .bind(by.map(UserId::get))
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?
        } else {
            on_db!(
                self.db,
                write
                    | pool
                    | sqlx::query("DELETE FROM renewal_pauses WHERE tenant_id = $1")
                        .bind(tenant.get())
                        .execute(pool)
                        .await
                        .map(|r| r.rows_affected())
            )?
        };
        Ok(done > 0)
    }

    pub async fn is_paused(&self, tenant: TenantId) -> Result<bool, StoreError> {
        let n: i64 = on_db!(
            self.db,
            read | pool
                | sqlx::query_scalar("SELECT count(*) FROM renewal_pauses WHERE tenant_id = $1")
                    .bind(tenant.get())
                    .fetch_one(pool)
                    .await
        )?;
        Ok(n > 0)
    }

    /// Campaign renewals (not manual ones) started at or after `since`, in the tenant or (with
    /// `None`) on the whole platform: what today's budget has used.
    pub async fn started_since(
        &self,
        tenant: Option<TenantId>,
        since: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        Ok(on_db!(self.db, read |pool| sqlx::query_scalar(
            "SELECT count(*) FROM renewals WHERE NOT manual AND started_at >= $2 AND (CAST($1 AS BIGINT) IS NULL OR tenant_id = $1)"
        )
        .bind(tenant.map(TenantId::get))
        .bind(Ts::from(since))
        .fetch_one(pool)
        .await)?)
    }

    /// The tenant's certificates due for renewal (active, expiring before `window_end`, gateway
    /// in service and seen since `seen_since`, no open renewal, none ended since `retry_after`),
    /// oldest expiry first.
    pub async fn candidates(
        &self,
        tenant: TenantId,
        window_end: DateTime<Utc>,
        seen_since: DateTime<Utc>,
        retry_after: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Candidate>, StoreError> {
        Ok(on_db!(self.db, read |pool| sqlx::query_as(
            "SELECT c.tenant_id, c.gateway_id, g.mac, g.model, g.renewal_mode, c.id AS certificate_id, c.key_algorithm, c.expires_at, \
             g.last_seen_at FROM certificates c JOIN gateways g ON g.id = c.gateway_id AND g.tenant_id = c.tenant_id \
             WHERE c.tenant_id = $1 AND c.status = 'active' AND c.expires_at < $2 AND g.status <> 'decommissioned' \
             AND g.last_seen_at >= $3 \
             AND NOT EXISTS (SELECT 1 FROM renewals r WHERE r.gateway_id = g.id AND (r.finished_at IS NULL OR r.finished_at >= $4)) \
             ORDER BY c.expires_at, c.id LIMIT $5"
        )
        .bind(tenant.get())
        .bind(Ts::from(window_end))
        .bind(Ts::from(seen_since))
        .bind(Ts::from(retry_after))
        .bind(limit.max(0))
        .fetch_all(pool)
        .await)?)
    }

    /// Open renewals started before `before` (offers nobody answered), any tenant.
    pub async fn staff_stale(&self, before: DateTime<Utc>) -> Result<Vec<Renewal>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM renewals WHERE finished_at IS NULL AND started_at < $1 ORDER BY id LIMIT 1000"
        );
        let rows: Vec<RenewalRow> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str())).bind(Ts::from(before)).fetch_all(pool).await
        )?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// The campaign's figures for the tenant (or every tenant with `None`): backlog inside
    /// `window_end`, renewals in flight, started since `today`, and outcomes since `since`.
    pub async fn progress(
        &self,
        tenant: Option<TenantId>,
        window_end: DateTime<Utc>,
        today: DateTime<Utc>,
        since: DateTime<Utc>,
    ) -> Result<Progress, StoreError> {
        let t = tenant.map(TenantId::get);
        // Open renewals counted by state; outcomes since `since` (one scan of the tenant's
        // renewals each, both databases).
        let by_state: Vec<(String, bool, i64)> = on_db!(self.db, read |pool| sqlx::query_as(
            "SELECT state, finished_at IS NULL, count(*) FROM renewals \
             WHERE (CAST($1 AS BIGINT) IS NULL OR tenant_id = $1) AND (finished_at IS NULL OR updated_at >= $2) \
             GROUP BY state, finished_at IS NULL"
        )
        .bind(t)
        .bind(Ts::from(since))
        .fetch_all(pool)
        .await)?;
        let (backlog, started_today): (i64, i64) = on_db!(self.db, read |pool| sqlx::query_as(
            "SELECT \
             (SELECT count(*) FROM certificates c WHERE c.status = 'active' AND c.expires_at < $2 AND c.gateway_id IS NOT NULL \
                AND (CAST($1 AS BIGINT) IS NULL OR c.tenant_id = $1) \
                AND NOT EXISTS (SELECT 1 FROM renewals r WHERE r.gateway_id = c.gateway_id AND r.finished_at IS NULL)), \
             (SELECT count(*) FROM renewals WHERE started_at >= $3 AND (CAST($1 AS BIGINT) IS NULL OR tenant_id = $1))"
        )
        .bind(t)
        .bind(Ts::from(window_end))
        .bind(Ts::from(today))
        .fetch_one(pool)
        .await)?;
        let mut p = Progress { backlog, started_today, ..Progress::default() };
        for (state, open, n) in by_state {
            if open {
                p.in_flight += n;
            }
            match RenewalState::parse(&state) {
                Some(RenewalState::Offered) => p.offered += n,
                Some(RenewalState::CsrReceived) => p.csr_received += n,
                Some(RenewalState::Issued) => p.issued += n,
                Some(RenewalState::Confirmed) => p.confirmed += n,
                Some(RenewalState::Failed) => p.failed += n,
                Some(RenewalState::RolledBack) => p.rolled_back += n,
                None => return Err(StoreError::Corrupt(format!("renewals.state: {state:?}"))),
            }
        }
        Ok(p)
    }

    /// Sets a gateway's renewal mode (`None`: by its model).
    pub async fn set_mode(
        &self,
        tenant: TenantId,
        gateway: GatewayId,
        mode: Option<RenewalMode>,
    ) -> Result<(), StoreError> {
        let done = on_db!(
            self.db,
            write
                | pool
                | sqlx::query("UPDATE gateways SET renewal_mode = $3 WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.get())
                    .bind(gateway.get())
                    .bind(mode.map(RenewalMode::as_str))
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected())
        )?;
        crate::tenants::found(done)
    }

    /// The gateway's renewal mode: its setting, else its model's default.
    pub async fn mode(&self, tenant: TenantId, gateway: GatewayId) -> Result<RenewalMode, StoreError> {
        let row: Option<(Option<String>, Option<String>)> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as("SELECT renewal_mode, model FROM gateways WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.get())
                    .bind(gateway.get())
                    .fetch_optional(pool)
                    .await
        )?;
        let (mode, model) = row.ok_or(StoreError::NotFound)?;
        Ok(mode
            .as_deref()
            .and_then(RenewalMode::parse)
            .unwrap_or_else(|| RenewalMode::default_for_model(model.as_deref())))
    }
}
