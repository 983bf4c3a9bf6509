//! A gateway's connection history: connects, disconnects with their reason, refusals. Written
//! by the device endpoint, shown on the gateway page; stays with the tenant it happened in.

use crate::{Db, StoreError, Ts};
use chrono::{DateTime, Utc};
use serde::Serialize;
use tds_domain::{GatewayId, TenantId};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GatewayEvent {
    /// `connected`, `disconnected`, `refused`.
    pub kind: String,
    /// The reason or circumstances (`keep_alive_timeout`, `client id …`, peer address).
    pub detail: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy)]
pub struct GatewayEventStore<'a> {
    db: &'a Db,
}

impl<'a> GatewayEventStore<'a> {
    pub(crate) fn new(db: &'a Db) -> Self {
        Self { db }
    }

    pub async fn record(
        &self,
        tenant: TenantId,
        gateway: GatewayId,
        kind: &str,
        detail: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_db!(self.db, write |pool| sqlx::query(
            "INSERT INTO gateway_events (tenant_id, gateway_id, kind, detail, at) VALUES ($1, $2, $3, $4, $5)"
        )
        .bind(tenant.get())
        .bind(gateway.get())
        .bind(kind)
        .bind(detail)
        .bind(Ts::from(at))
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// The gateway's latest events, newest first.
    pub async fn recent(
        &self,
        tenant: TenantId,
        gateway: GatewayId,
        limit: i64,
    ) -> Result<Vec<GatewayEvent>, StoreError> {
        let rows: Vec<(String, String, Ts)> =
            on_db!(self.db, read |pool| sqlx::query_as(
            "SELECT kind, detail, at FROM gateway_events WHERE tenant_id = $1 AND gateway_id = $2 \
             ORDER BY at DESC, id DESC LIMIT $3"
        )
        .bind(tenant.get())
        .bind(gateway.get())
        .bind(limit)
        .fetch_all(pool)
        .await)?;
        Ok(rows.into_iter().map(|(kind, detail, at)| GatewayEvent { kind, detail, at: at.into() }).collect())
    }

    /// Retention: deletes every tenant's connection history older than `at`; returns how many.
    pub async fn staff_purge_before(&self, at: DateTime<Utc>) -> Result<u64, StoreError> {
        crate::purge::older_than(self.db, "gateway_events", "at", at).await
    }
}
