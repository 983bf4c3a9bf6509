//! Rejected messages (dead letters): everything a gateway sent that could not become a reading,
//! kept with its raw bytes and the reason, so that nothing is silently dropped and a message can
//! be replayed once its cause is fixed. Rows of unknown gateways have no tenant and are seen by
//! staff only.
//!
//! A dead letter may keep only the beginning of a large payload (the caller cuts it, see
//! [`NewRejected::with_payload`]); `payload_size` then says how big it was. Dead letters are
//! written in bulk (multi-row inserts) and purged after a horizon by the retention job.

use crate::tenants::found;
use crate::{Db, Page, Paged, StoreError, Ts};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::AssertSqlSafe;
use std::fmt::Write as _;
use tds_domain::{GatewayId, Mac, RejectedId, TenantId};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewRejected {
    pub tenant_id: Option<TenantId>,
    pub gateway_id: Option<GatewayId>,
    pub mac: Option<Mac>,
    pub topic: String,
    pub payload: Vec<u8>,
    /// The payload's size as received when `payload` keeps only its beginning; `None` when it is
    /// whole.
    pub payload_size: Option<i64>,
    /// Position of the reading in the batch when one reading (not the whole message) was refused.
    pub reading_index: Option<i64>,
    /// A stable machine code (`unknown_device`, `invalid_json`, …).
    pub reason_code: String,
    /// The human explanation.
    pub reason: String,
    pub received_at: DateTime<Utc>,
}

impl NewRejected {
    /// The same dead letter keeping at most the first `max` bytes of `payload` (and its size
    /// when cut).
    #[must_use]
    pub fn with_payload(mut self, payload: &[u8], max: usize) -> Self {
        let kept = payload.get(..max).unwrap_or(payload);
        self.payload = kept.to_vec();
        self.payload_size =
            (kept.len() < payload.len()).then(|| i64::try_from(payload.len()).unwrap_or(i64::MAX));
        self
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejected {
    pub id: RejectedId,
    pub tenant_id: Option<TenantId>,
    pub gateway_id: Option<GatewayId>,
    pub mac: Option<String>,
    pub topic: String,
    pub payload: Vec<u8>,
    /// The payload's size as received (more than `payload.len()` when only its beginning was
    /// kept).
    pub payload_size: i64,
    pub reading_index: Option<i64>,
    pub reason_code: String,
    pub reason: String,
    pub received_at: DateTime<Utc>,
    pub replayed_at: Option<DateTime<Utc>>,
    pub replay_outcome: Option<String>,
}

impl Rejected {
    /// Whether only the beginning of the payload was kept.
    pub fn truncated(&self) -> bool {
        usize::try_from(self.payload_size).is_ok_and(|size| size > self.payload.len())
    }
}

/// A dead letter as lists show it: the first [`PREVIEW_BYTES`] of its payload and its size, so
/// that a page of fifty never loads fifty payloads of up to 64 KiB.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct RejectedSummary {
    #[sqlx(try_from = "i64")]
    pub id: RejectedId,
    pub mac: Option<String>,
    pub topic: String,
    /// The payload's first bytes.
    pub preview: Vec<u8>,
    /// The payload's size as received.
    pub payload_size: i64,
    pub reading_index: Option<i64>,
    pub reason_code: String,
    pub reason: String,
    #[sqlx(try_from = "Ts")]
    pub received_at: DateTime<Utc>,
    pub replay_outcome: Option<String>,
}

impl RejectedSummary {
    /// The preview as text (invalid UTF-8 replaced), for a list cell.
    pub fn preview_text(&self) -> String {
        String::from_utf8_lossy(&self.preview).into_owned()
    }
}

/// Bytes of a payload shown in lists.
pub const PREVIEW_BYTES: i64 = 200;

const SUMMARY_COLUMNS: &str = "id, mac, topic, substr(payload, 1, 200) AS preview, \
    COALESCE(payload_size, length(payload)) AS payload_size, reading_index, reason_code, reason, \
    received_at, replay_outcome";

#[derive(sqlx::FromRow)]
struct RejectedRow {
    id: i64,
    tenant_id: Option<i64>,
    gateway_id: Option<i64>,
    mac: Option<String>,
    topic: String,
    payload: Vec<u8>,
    payload_size: i64,
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
            payload_size: r.payload_size,
            reading_index: r.reading_index,
            reason_code: r.reason_code,
            reason: r.reason,
            received_at: r.received_at.0,
            replayed_at: r.replayed_at.map(|t| t.0),
            replay_outcome: r.replay_outcome,
        }
    }
}

const COLUMNS: &str = "id, tenant_id, gateway_id, mac, topic, payload, \
    COALESCE(payload_size, length(payload)) AS payload_size, reading_index, reason_code, \
    reason, received_at, replayed_at, replay_outcome";

/// Columns written per dead letter.
const INSERT_COLUMNS: usize = 10;

/// Dead letters per INSERT: far below SQLite's parameter limit, and at most a few MiB of
/// payloads (each at most the ingest bound, 64 KiB by default) per statement.
const INSERT_CHUNK: usize = 64;

/// Dead letters deleted per statement by the retention, so that no statement holds the writer
/// for long.
const PURGE_CHUNK: i64 = 5_000;

/// A multi-row INSERT of `rows` dead letters returning their ids: `$N` parameters on
/// PostgreSQL, anonymous ones on SQLite (see `readings::sqlite_insert_sql` for why).
fn insert_sql(rows: usize, numbered: bool) -> String {
    let mut sql = String::from(
        "INSERT INTO rejected_messages (tenant_id, gateway_id, mac, topic, payload, payload_size, \
         reading_index, reason_code, reason, received_at) VALUES ",
    );
    for row in 0..rows {
        sql.push_str(if row > 0 { ",(" } else { "(" });
        for col in 0..INSERT_COLUMNS {
            if col > 0 {
                sql.push(',');
            }
            if numbered {
                let _ = write!(sql, "${}", row * INSERT_COLUMNS + col + 1);
            } else {
                sql.push('?');
            }
        }
        sql.push(')');
    }
    sql.push_str(" RETURNING id");
    sql
}

#[derive(Debug, Clone, Copy)]
pub struct RejectedStore<'a> {
    db: &'a Db,
}

impl<'a> RejectedStore<'a> {
    pub(crate) fn new(db: &'a Db) -> Self {
        Self { db }
    }

    /// Records dead letters in one transaction, a few dozen rows per statement (a batch's
    /// dead letters arrive together); returns their ids in the order given.
    pub async fn record(&self, rows: &[NewRejected]) -> Result<Vec<RejectedId>, StoreError> {
        let numbered = matches!(self.db, Db::Postgres(_));
        in_tx!(self.db, |tx| {
            let mut ids = Vec::with_capacity(rows.len());
            for chunk in rows.chunks(INSERT_CHUNK) {
                let sql = insert_sql(chunk.len(), numbered);
                let mut q = sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql));
                for r in chunk {
                    q = q
                        .bind(r.tenant_id.map(TenantId::get))
                        .bind(r.gateway_id.map(GatewayId::get))
                        .bind(r.mac.map(|m| m.to_string()))
                        .bind(&r.topic)
                        .bind(&r.payload)
                        .bind(r.payload_size)
                        .bind(r.reading_index)
                        .bind(&r.reason_code)
                        .bind(&r.reason)
                        .bind(Ts::from(r.received_at));
                }
                // Ids grow in the order of the VALUES rows on both databases; RETURNING's own
                // order is not promised, so sort.
                let mut mine = q.fetch_all(&mut *tx).await?;
                mine.sort_unstable();
                ids.extend(mine.into_iter().map(RejectedId::new));
            }
            Ok(ids)
        })
    }

    /// Deletes every tenant's dead letters received before `before` (their retention), a few
    /// thousand per statement; returns how many.
    pub async fn staff_purge_before(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut deleted = 0;
        loop {
            let done = on_db!(
                self.db,
                write
                    | pool
                    | sqlx::query(
                        "DELETE FROM rejected_messages WHERE id IN \
                 (SELECT id FROM rejected_messages WHERE received_at < $1 LIMIT $2)"
                    )
                    .bind(Ts::from(before))
                    .bind(PURGE_CHUNK)
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected())
            )?;
            deleted += done;
            if done == 0 {
                return Ok(deleted);
            }
        }
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
    ) -> Result<Paged<RejectedSummary>, StoreError> {
        self.list_where(Some(tenant), reason_code, page).await
    }

    /// One page of the tenant's dead letters, newest first, before the id `before` (keyset
    /// paging for the API), optionally of one reason code.
    pub async fn page_newest(
        &self,
        tenant: TenantId,
        reason_code: Option<&str>,
        before: Option<RejectedId>,
        limit: i64,
    ) -> Result<Vec<RejectedSummary>, StoreError> {
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM rejected_messages WHERE tenant_id = $1 \
             AND (CAST($2 AS TEXT) IS NULL OR reason_code = $2) \
             AND (CAST($3 AS BIGINT) IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
        );
        let rows: Vec<RejectedSummary> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(tenant.get())
                    .bind(reason_code)
                    .bind(before.map(RejectedId::get))
                    .bind(limit)
                    .fetch_all(pool)
                    .await
        )?;
        Ok(rows)
    }

    /// Every dead letter, including those of unknown gateways (staff console).
    pub async fn staff_list(
        &self,
        reason_code: Option<&str>,
        page: Page,
    ) -> Result<Paged<RejectedSummary>, StoreError> {
        self.list_where(None, reason_code, page).await
    }

    async fn list_where(
        &self,
        tenant: Option<TenantId>,
        reason_code: Option<&str>,
        page: Page,
    ) -> Result<Paged<RejectedSummary>, StoreError> {
        let conditions = "(CAST($1 AS BIGINT) IS NULL OR tenant_id = $1) AND (CAST($2 AS TEXT) IS NULL OR reason_code = $2)";
        let list = format!(
            "SELECT {SUMMARY_COLUMNS} FROM rejected_messages WHERE {conditions} ORDER BY received_at DESC, id DESC LIMIT $3 OFFSET $4"
        );
        let count = format!("SELECT count(*) FROM rejected_messages WHERE {conditions}");
        let tenant = tenant.map(TenantId::get);
        let (rows, total) = fetch_page!(
            self.db,
            RejectedSummary,
            list.as_str(),
            count.as_str(),
            page,
            [tenant, reason_code]
        )?;
        Ok(Paged { items: rows, total, page: page.number, size: page.size })
    }

    /// The ids of up to `limit` of the tenant's dead letters (of one reason code, optionally)
    /// still to replay (never replayed, or whose last outcome does not start with
    /// `done_prefix`), newest first, after `before` (the last id of the previous page): replay
    /// all goes through them a page at a time, loading one payload at a time.
    pub async fn pending_ids(
        &self,
        tenant: TenantId,
        reason_code: Option<&str>,
        done_prefix: &str,
        before: Option<RejectedId>,
        limit: i64,
    ) -> Result<Vec<RejectedId>, StoreError> {
        let ids: Vec<i64> = on_db!(
            self.db,
            read | pool
                | sqlx::query_scalar(
                    "SELECT id FROM rejected_messages WHERE tenant_id = $1 \
                     AND (CAST($2 AS TEXT) IS NULL OR reason_code = $2) \
                     AND (replay_outcome IS NULL OR substr(replay_outcome, 1, length(CAST($3 AS TEXT))) <> CAST($3 AS TEXT)) \
                     AND (CAST($4 AS BIGINT) IS NULL OR id < $4) ORDER BY id DESC LIMIT $5"
                )
                .bind(tenant.get())
                .bind(reason_code)
                .bind(done_prefix)
                .bind(before.map(RejectedId::get))
                .bind(limit)
                .fetch_all(pool)
                .await
        )?;
        Ok(ids.into_iter().map(RejectedId::new).collect())
    }

    /// When each of the tenant's dead letters since `since` arrived, and from which gateway
    /// (the dead-letter rate rule counts them per gateway).
    pub async fn times_since(
        &self,
        tenant: TenantId,
        since: DateTime<Utc>,
    ) -> Result<Vec<(Option<GatewayId>, DateTime<Utc>)>, StoreError> {
        let rows: Vec<(Option<i64>, Ts)> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(
                    "SELECT gateway_id, received_at FROM rejected_messages WHERE tenant_id = $1 \
                     AND received_at >= $2 ORDER BY received_at LIMIT 100000"
                )
                .bind(tenant.get())
                .bind(Ts::from(since))
                .fetch_all(pool)
                .await
        )?;
        Ok(rows.into_iter().map(|(g, at)| (g.map(GatewayId::new), at.0)).collect())
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
