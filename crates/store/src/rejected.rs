//! Rejected messages (dead letters): everything a gateway sent that could not become a reading,
//! kept with its raw bytes and the reason, so that nothing is silently dropped and a message can
//! be replayed once its cause is fixed. Rows of unknown gateways have no tenant and are seen by
//! staff only.

use crate::tenants::found;
use crate::{Db, Page, Paged, StoreError, Ts};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::AssertSqlSafe;
use tds_domain::{GatewayId, Mac, RejectedId, TenantId};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewRejected {
    pub tenant_id: Option<TenantId>,
    pub gateway_id: Option<GatewayId>,
    pub mac: Option<Mac>,
    pub topic: String,
    pub payload: Vec<u8>,
    /// Position of the reading in the batch when one reading (not the whole message) was refused.
    pub reading_index: Option<i64>,
    /// A stable machine code (`unknown_device`, `invalid_json`, …).
    pub reason_code: String,
    /// The human explanation.
    pub reason: String,
    pub received_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejected {
    pub id: RejectedId,
    pub tenant_id: Option<TenantId>,
    pub gateway_id: Option<GatewayId>,
    pub mac: Option<String>,
    pub topic: String,
    pub payload: Vec<u8>,
    pub reading_index: Option<i64>,
    pub reason_code: String,
    pub reason: String,
    pub received_at: DateTime<Utc>,
    pub replayed_at: Option<DateTime<Utc>>,
    pub replay_outcome: Option<String>,
}

#[derive(sqlx::FromRow)]
struct RejectedRow {
    id: i64,
    tenant_id: Option<i64>,
    gateway_id: Option<i64>,
    mac: Option<String>,
    topic: String,
    payload: Vec<u8>,
    reading_index: Option<i64>,
    reason_code: String,
    reason: String,
    received_at: Ts,
    replayed_at: Option<Ts>,
    replay_outcome: Option<String>,
}

impl From<RejectedRow> for Rejected {
    fn from(r: RejectedRow) -> Self {
        Rejected {
            id: RejectedId::new(r.id),
            tenant_id: r.tenant_id.map(TenantId::new),
            gateway_id: r.gateway_id.map(GatewayId::new),
            mac: r.mac,
            topic: r.topic,
            payload: r.payload,
            reading_index: r.reading_index,
            reason_code: r.reason_code,
            reason: r.reason,
            received_at: r.received_at.0,
            replayed_at: r.replayed_at.map(|t| t.0),
            replay_outcome: r.replay_outcome,
        }
    }
}

const COLUMNS: &str = "id, tenant_id, gateway_id, mac, topic, payload, reading_index, reason_code, \
    reason, received_at, replayed_at, replay_outcome";

#[derive(Debug, Clone, Copy)]
pub struct RejectedStore<'a> {
    db: &'a Db,
}

impl<'a> RejectedStore<'a> {
    pub(crate) fn new(db: &'a Db) -> Self {
        Self { db }
    }

    /// Records dead letters in one transaction (a batch's refused readings arrive together).
    pub async fn record(&self, rows: &[NewRejected]) -> Result<Vec<RejectedId>, StoreError> {
        in_tx!(self.db, |tx| {
            let mut ids = Vec::with_capacity(rows.len());
            for r in rows {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO rejected_messages (tenant_id, gateway_id, mac, topic, payload, \
                     reading_index, reason_code, reason, received_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
                )
                .bind(r.tenant_id.map(TenantId::get))
                .bind(r.gateway_id.map(GatewayId::get))
                .bind(r.mac.map(|m| m.to_string()))
                .bind(&r.topic)
                .bind(&r.payload)
                .bind(r.reading_index)
                .bind(&r.reason_code)
                .bind(&r.reason)
                .bind(Ts::from(r.received_at))
                .fetch_one(&mut *tx)
                .await?;
                ids.push(RejectedId::new(id));
            }
            Ok(ids)
        })
    }

    pub async fn get(&self, tenant: TenantId, id: RejectedId) -> Result<Rejected, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM rejected_messages WHERE tenant_id = $1 AND id = $2");
        let row: RejectedRow = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(tenant.get())
                    .bind(id.get())
                    .fetch_one(pool)
                    .await
        )?;
        Ok(row.into())
    }

    /// The tenant's dead letters, newest first, optionally of one reason code.
    pub async fn list(
        &self,
        tenant: TenantId,
        reason_code: Option<&str>,
        page: Page,
    ) -> Result<Paged<Rejected>, StoreError> {
        self.list_where(Some(tenant), reason_code, page).await
    }

    /// Every dead letter, including those of unknown gateways (staff console).
    pub async fn staff_list(
        &self,
        reason_code: Option<&str>,
        page: Page,
    ) -> Result<Paged<Rejected>, StoreError> {
        self.list_where(None, reason_code, page).await
    }

    async fn list_where(
        &self,
        tenant: Option<TenantId>,
        reason_code: Option<&str>,
        page: Page,
    ) -> Result<Paged<Rejected>, StoreError> {
        let conditions = "(CAST($1 AS BIGINT) IS NULL OR tenant_id = $1) AND (CAST($2 AS TEXT) IS NULL OR reason_code = $2)";
        let list = format!(
            "SELECT {COLUMNS} FROM rejected_messages WHERE {conditions} ORDER BY received_at DESC, id DESC LIMIT $3 OFFSET $4"
        );
        let count = format!("SELECT count(*) FROM rejected_messages WHERE {conditions}");
        let tenant = tenant.map(TenantId::get);
        let (rows, total) =
            fetch_page!(self.db, RejectedRow, list.as_str(), count.as_str(), page, [tenant, reason_code])?;
        Ok(Paged {
            items: rows.into_iter().map(Into::into).collect(),
            total,
            page: page.number,
            size: page.size,
        })
    }

    /// How many dead letters the tenant got since `since`.
    pub async fn count_since(&self, tenant: TenantId, since: DateTime<Utc>) -> Result<i64, StoreError> {
        let n: i64 = on_db!(
            self.db,
            read | pool
                | sqlx::query_scalar(
                    "SELECT count(*) FROM rejected_messages WHERE tenant_id = $1 AND received_at >= $2"
                )
                .bind(tenant.get())
                .bind(Ts::from(since))
                .fetch_one(pool)
                .await
        )?;
        Ok(n)
    }

    /// Records the outcome of a replay.
    pub async fn mark_replayed(
        &self,
        tenant: TenantId,
        id: RejectedId,
        outcome: &str,
    ) -> Result<(), StoreError> {
        let done = on_db!(self.db, write |pool| sqlx::query(
            "UPDATE rejected_messages SET replayed_at = $3, replay_outcome = $4 WHERE tenant_id = $1 AND id = $2"
        )
        .bind(tenant.get())
        .bind(id.get())
        .bind(Ts::now())
        .bind(outcome)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        found(done)
    }
}
