//! A gateway's connection history: connects, disconnects with their reason, refusals. Written
//! by the device endpoint, shown on the gateway page; stays with the tenant it happened in.
//! [`GatewayEventStore::record_connections`] writes a batch of the endpoint's connection
//! bookkeeping (history entries and online states) in one transaction.

use crate::{Db, StoreError, Ts};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::HashMap;
use tds_domain::{GatewayId, TenantId};

/// A history entry to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGatewayEvent {
    pub tenant: TenantId,
    pub gateway: GatewayId,
    pub kind: String,
    pub detail: String,
    pub at: DateTime<Utc>,
}

/// A gateway's online state to write; with the instant of its last telemetry not yet written
/// (and that telemetry's tenant), when it goes offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayState {
    pub tenant: TenantId,
    pub gateway: GatewayId,
    pub online: bool,
    pub last_seen: Option<(TenantId, DateTime<Utc>)>,
}

const INSERT_EVENT: &str = "INSERT INTO gateway_events (tenant_id, gateway_id, kind, detail, at) SELECT $1, $2, $3, $4, $5 \
     WHERE EXISTS (SELECT 1 FROM gateways WHERE id = $2)";
const PG_INSERT_EVENTS: &str = "INSERT INTO gateway_events (tenant_id, gateway_id, kind, detail, at) \
     SELECT x.t, x.g, x.k, x.d, x.a FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], \
     $5::TIMESTAMPTZ[]) WITH ORDINALITY AS x(t, g, k, d, a, n) \
     WHERE EXISTS (SELECT 1 FROM gateways WHERE id = x.g) ORDER BY x.n";
/// A gateway's last telemetry instant (never moved backwards), without touching `online`: it
/// went offline, and the state follows in the same transaction.
const LAST_SEEN: &str = "UPDATE gateways SET \
     last_seen_at = CASE WHEN last_seen_at IS NULL OR last_seen_at < $3 THEN $3 ELSE last_seen_at END, \
     status = CASE WHEN status = 'pre_registered' THEN 'active' ELSE status END \
     WHERE tenant_id = $1 AND id = $2";
const PG_LAST_SEEN: &str = "UPDATE gateways g SET \
     last_seen_at = CASE WHEN g.last_seen_at IS NULL OR g.last_seen_at < x.at THEN x.at ELSE g.last_seen_at END, \
     status = CASE WHEN g.status = 'pre_registered' THEN 'active' ELSE g.status END \
     FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TIMESTAMPTZ[]) AS x(t, id, at) \
     WHERE g.tenant_id = x.t AND g.id = x.id";
const ONLINE: &str = "UPDATE gateways SET online = $3 WHERE tenant_id = $1 AND id = $2";
const PG_ONLINE: &str = "UPDATE gateways g SET online = x.o \
     FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::BOOL[]) AS x(t, id, o) WHERE g.tenant_id = x.t AND g.id = x.id";

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

    /// Writes a batch of connection bookkeeping in one transaction: the history entries in their
    /// order, then the instants of telemetry not yet written of gateways going offline, then
    /// the states (the last of a gateway's wins). What names a gateway that no longer exists is
    /// left out rather than failing the others.
    pub async fn record_connections(
        &self,
        events: &[NewGatewayEvent],
        states: &[GatewayState],
    ) -> Result<(), StoreError> {
        let seen: Vec<(TenantId, GatewayId, DateTime<Utc>)> =
            states.iter().filter_map(|s| s.last_seen.map(|(tenant, at)| (tenant, s.gateway, at))).collect();
        // One row per gateway (PostgreSQL's UPDATE … FROM takes any one of several matches).
        let mut last: HashMap<GatewayId, usize> = HashMap::new();
        for (i, s) in states.iter().enumerate() {
            last.insert(s.gateway, i);
        }
        let mut latest: Vec<&GatewayState> = last.into_values().map(|i| &states[i]).collect();
        latest.sort_by_key(|s| s.gateway.get());
        match self.db {
            Db::Postgres(pg) => {
                let mut tx = pg.begin().await?;
                let mut locked: Vec<i64> =
                    seen.iter().map(|s| s.1.get()).chain(latest.iter().map(|s| s.gateway.get())).collect();
                locked.sort_unstable();
                locked.dedup();
                if !locked.is_empty() {
                    crate::gateways::pg_lock_in_order(&mut tx, locked).await?;
                }
                if !events.is_empty() {
                    sqlx::query(PG_INSERT_EVENTS)
                        .bind(events.iter().map(|e| e.tenant.get()).collect::<Vec<_>>())
                        .bind(events.iter().map(|e| e.gateway.get()).collect::<Vec<_>>())
                        .bind(events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>())
                        .bind(events.iter().map(|e| e.detail.as_str()).collect::<Vec<_>>())
                        .bind(events.iter().map(|e| Ts::from(e.at)).collect::<Vec<_>>())
                        .execute(&mut *tx)
                        .await?;
                }
                if !seen.is_empty() {
                    sqlx::query(PG_LAST_SEEN)
                        .bind(seen.iter().map(|s| s.0.get()).collect::<Vec<_>>())
                        .bind(seen.iter().map(|s| s.1.get()).collect::<Vec<_>>())
                        .bind(seen.iter().map(|s| Ts::from(s.2)).collect::<Vec<_>>())
                        .execute(&mut *tx)
                        .await?;
                }
                if !latest.is_empty() {
                    sqlx::query(PG_ONLINE)
                        .bind(latest.iter().map(|s| s.tenant.get()).collect::<Vec<_>>())
                        .bind(latest.iter().map(|s| s.gateway.get()).collect::<Vec<_>>())
                        .bind(latest.iter().map(|s| s.online).collect::<Vec<_>>())
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }
            // In-process statements are cheap on SQLite: one per row, one transaction.
            Db::Sqlite(s) => {
                let mut tx = s.write.begin_with("BEGIN IMMEDIATE").await?;
                for e in events {
                    sqlx::query(INSERT_EVENT)
                        .bind(e.tenant.get())
                        .bind(e.gateway.get())
                        .bind(&e.kind)
                        .bind(&e.detail)
                        .bind(Ts::from(e.at))
                        .execute(&mut *tx)
                        .await?;
                }
                for (tenant, gateway, at) in &seen {
                    sqlx::query(LAST_SEEN)
                        .bind(tenant.get())
                        .bind(gateway.get())
                        .bind(Ts::from(*at))
                        .execute(&mut *tx)
                        .await?;
                }
                for s in &latest {
                    sqlx::query(ONLINE)
                        .bind(s.tenant.get())
                        .bind(s.gateway.get())
                        .bind(s.online)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// Retention: deletes every tenant's connection history older than `at`; returns how many.
    pub async fn staff_purge_before(&self, at: DateTime<Utc>) -> Result<u64, StoreError> {
        crate::purge::older_than(self.db, "gateway_events", "at", at).await
    }
}
