//! Certificate renewals (SPEC §3) and the messages TDS keeps for a gateway until it confirms
//! them (SPEC §2): one row per renewal with its state, the pending `cert_update` message, the
//! renewal log (every step), and the tenants whose campaign is paused.
//!
//! The transitions are here, each in one transaction, so that the endpoint, the daily job, the
//! web and the CLI move a renewal the same way: `offered` → (`csr_received` →) `issued` →
//! `confirmed`, `failed` or `rolled_back`. A successor certificate is recorded `active` beside the current one
//! (the hand-over: both may connect); confirming supersedes and revokes the old one, rolling
//! back revokes the new one.
//!
//! Must not: sign, generate keys or decide the budget (callers do).

use crate::{Db, StoreError, Ts};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::AssertSqlSafe;
use tds_domain::renewal::{RenewalMode, RenewalState};
use tds_domain::telemetry::Topic;
use tds_domain::{CertificateId, GatewayId, Mac, RenewalId, TenantId, UserId};

use crate::certificates::NewCertificate;

#[cfg(test)]
mod admission_tests;
mod campaign;
pub use campaign::{Candidate, Progress};

#[derive(Debug, Clone, Serialize)]
pub struct Renewal {
    pub id: RenewalId,
    pub tenant_id: TenantId,
    pub gateway_id: GatewayId,
    pub old_certificate_id: Option<CertificateId>,
    pub new_certificate_id: Option<CertificateId>,
    pub mode: RenewalMode,
    pub state: RenewalState,
    pub manual: bool,
    pub detail: String,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct RenewalRow {
    id: i64,
    tenant_id: i64,
    gateway_id: i64,
    old_certificate_id: Option<i64>,
    new_certificate_id: Option<i64>,
    mode: String,
    state: String,
    manual: bool,
    detail: String,
    started_at: Ts,
    updated_at: Ts,
}

impl TryFrom<RenewalRow> for Renewal {
    type Error = StoreError;
    fn try_from(r: RenewalRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: RenewalId::new(r.id),
            tenant_id: TenantId::new(r.tenant_id),
            gateway_id: GatewayId::new(r.gateway_id),
            old_certificate_id: r.old_certificate_id.map(CertificateId::new),
            new_certificate_id: r.new_certificate_id.map(CertificateId::new),
            mode: RenewalMode::parse(&r.mode)
                .ok_or_else(|| StoreError::Corrupt(format!("renewals.mode: {:?}", r.mode)))?,
            state: RenewalState::parse(&r.state)
                .ok_or_else(|| StoreError::Corrupt(format!("renewals.state: {:?}", r.state)))?,
            manual: r.manual,
            detail: r.detail,
            started_at: r.started_at.0,
            updated_at: r.updated_at.0,
        })
    }
}

/// A certificate as the allow-list reads it: id, MAC, gateway, status, tenant.
type CertRow = (i64, String, Option<i64>, String, Option<i64>);

const COLUMNS: &str = "id, tenant_id, gateway_id, old_certificate_id, new_certificate_id, mode, state, manual, \
    detail, started_at, updated_at";

/// One step of a gateway's renewal log.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LogEntry {
    pub step: String,
    pub detail: String,
    pub at: Ts,
}

/// A message waiting for its gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingMessage {
    pub id: i64,
    pub mac: String,
    pub topic: String,
    pub payload: String,
}

/// What a connection with a certificate means (SPEC §2 allow-list, SPEC §3 confirmation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// The gateway's current certificate (or its successor while the hand-over is open).
    Current,
    /// The successor's first connection: the renewal is confirmed, the old one superseded.
    Confirmed(RenewalId),
    /// The old certificate after the new one was received: the renewal is rolled back.
    RolledBack(RenewalId),
    /// Not a certificate this gateway may use; the reason for the log.
    Refused(String),
}

#[derive(Debug, Clone, Copy)]
pub struct RenewalStore<'a> {
    db: &'a Db,
}

/// Runs `$sql` with binds inside a transaction of either backend (the bodies are expanded once
/// per backend by `in_tx!`).
macro_rules! exec {
    ($tx:ident, $sql:expr $(, $bind:expr)* $(,)?) => {
        sqlx::query(AssertSqlSafe($sql))$(.bind($bind))*.execute(&mut *$tx).await?
    };
}

const LOG: &str = "INSERT INTO renewal_log (tenant_id, gateway_id, certificate_id, step, detail, at) \
    VALUES ($1, $2, $3, $4, $5, $6)";
const CLEAR: &str =
    "UPDATE gateway_messages SET cleared_at = $2, payload = '' WHERE renewal_id = $1 AND cleared_at IS NULL";
const MESSAGE: &str = "INSERT INTO gateway_messages (tenant_id, gateway_id, mac, topic, payload, renewal_id, created_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7)";
const NEW_CERT: &str = "INSERT INTO certificates (tenant_id, gateway_id, mac, serial, fingerprint_sha256, pem, \
    key_algorithm, issued_at, expires_at, status, renewal_state, created_at, updated_at, created_by) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'active', 'issued', $10, $10, $11) RETURNING id";
const FINISH: &str =
    "UPDATE renewals SET state = $2, detail = $3, updated_at = $4, finished_at = $4 WHERE id = $1";

impl<'a> RenewalStore<'a> {
    pub(crate) fn new(db: &'a Db) -> Self {
        Self { db }
    }

    /// Starts a renewal of one of the tenant's gateways. With `issued` (server-key mode, or a
    /// CSR the caller already signed) the successor is recorded and offered at once (`issued`);
    /// without, the gateway is asked for a CSR (`offered`). `Conflict` when a renewal of the
    /// gateway is already open or it has no active certificate to renew.
    pub async fn start(
        &self,
        tenant: TenantId,
        gateway: GatewayId,
        mode: RenewalMode,
        manual: bool,
        issued: Option<(&NewCertificate, &str)>,
        by: Option<UserId>,
    ) -> Result<Renewal, StoreError> {
        self.start_at(tenant, gateway, mode, manual, issued, by, Utc::now()).await
    }

    /// [`Self::start`] as of `at` (the campaign's clock, which its day budgets count in).
    #[allow(clippy::too_many_arguments)]
    pub async fn start_at(
        &self,
        tenant: TenantId,
        gateway: GatewayId,
        mode: RenewalMode,
        manual: bool,
        issued: Option<(&NewCertificate, &str)>,
        by: Option<UserId>,
        at: DateTime<Utc>,
    ) -> Result<Renewal, StoreError> {
        let now = Ts::from(at);
        let sql = format!(
            "INSERT INTO renewals (tenant_id, gateway_id, old_certificate_id, mode, state, manual, detail, \
             started_at, updated_at, created_by) VALUES ($1, $2, $3, $4, 'offered', $5, $6, $7, $7, $8) RETURNING {COLUMNS}"
        );
        let id: i64 = in_tx!(self.db, |tx| {
            let gw: Option<(String, String)> =
                sqlx::query_as("SELECT mac, status FROM gateways WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.get())
                    .bind(gateway.get())
                    .fetch_optional(&mut *tx)
                    .await?;
            let (mac, status) = gw.ok_or(StoreError::NotFound)?;
            if status == "decommissioned" {
                return Err(StoreError::Conflict(format!("gateway {mac} is decommissioned")));
            }
            let open: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM renewals WHERE gateway_id = $1 AND finished_at IS NULL",
            )
            .bind(gateway.get())
            .fetch_one(&mut *tx)
            .await?;
            if open > 0 {
                return Err(StoreError::Conflict(format!(
                    "a renewal of gateway {mac} is already in progress"
                )));
            }
            let old: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM certificates WHERE gateway_id = $1 AND tenant_id = $2 AND status = 'active' ORDER BY id DESC LIMIT 1",
            )
            .bind(gateway.get())
            .bind(tenant.get())
            .fetch_optional(&mut *tx)
            .await?;
            let old = old.ok_or_else(|| {
                StoreError::Conflict(format!("gateway {mac} has no active certificate to renew"))
            })?;
            let detail = if manual { "renewal started by hand" } else { "renewal started by the campaign" };
            let row: RenewalRow = sqlx::query_as(AssertSqlSafe(sql.as_str()))
                .bind(tenant.get())
                .bind(gateway.get())
                .bind(old)
                .bind(mode.as_str())
                .bind(manual)
                .bind(detail)
                .bind(now)
                .bind(by.map(UserId::get))
                .fetch_one(&mut *tx)
                .await?;
            exec!(
                tx,
                LOG,
                tenant.get(),
                gateway.get(),
                Some(old),
                "offered",
                format!("{detail} ({mode})"),
                now
            );
            if let Some((new, payload)) = issued {
                let new_id: i64 = bind_new_certificate!(
                    sqlx::query_scalar(NEW_CERT),
                    tenant.get(),
                    gateway.get(),
                    new,
                    now,
                    by.map(UserId::get)
                )
                .fetch_one(&mut *tx)
                .await?;
                exec!(
                    tx,
                    "UPDATE renewals SET state = 'issued', new_certificate_id = $2 WHERE id = $1",
                    row.id,
                    new_id
                );
                exec!(
                    tx,
                    MESSAGE,
                    tenant.get(),
                    gateway.get(),
                    &mac,
                    Topic::CertUpdate(new.mac).to_string(),
                    payload,
                    row.id,
                    now
                );
                exec!(
                    tx,
                    LOG,
                    tenant.get(),
                    gateway.get(),
                    Some(new_id),
                    "issued",
                    format!("certificate {} offered", new.serial),
                    now
                );
            } else {
                let mac_v = Mac::parse(&mac).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let payload = tds_domain::renewal::CertUpdate::CsrRequired { csr_required: true }.to_json();
                exec!(
                    tx,
                    MESSAGE,
                    tenant.get(),
                    gateway.get(),
                    &mac,
                    Topic::CertUpdate(mac_v).to_string(),
                    payload,
                    row.id,
                    now
                );
            }
            Ok(row.id)
        })?;
        self.get(tenant, RenewalId::new(id)).await
    }

    pub async fn get(&self, tenant: TenantId, id: RenewalId) -> Result<Renewal, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM renewals WHERE tenant_id = $1 AND id = $2");
        let row: RenewalRow = on_db!(
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

    /// The open renewal of the gateway with this MAC, whatever its tenant (device endpoint).
    pub async fn staff_open_for_mac(&self, mac: Mac) -> Result<Option<Renewal>, StoreError> {
        let sql = format!(
            "SELECT r.{} FROM renewals r JOIN gateways g ON g.id = r.gateway_id \
             WHERE g.mac = $1 AND r.finished_at IS NULL",
            COLUMNS.replace(", ", ", r.")
        );
        let row: Option<RenewalRow> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(mac.to_string())
                    .fetch_optional(pool)
                    .await
        )?;
        row.map(TryInto::try_into).transpose()
    }

    /// The gateway's renewals, newest first (its page).
    pub async fn for_gateway(
        &self,
        tenant: TenantId,
        gateway: GatewayId,
        limit: i64,
    ) -> Result<Vec<Renewal>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM renewals WHERE tenant_id = $1 AND gateway_id = $2 ORDER BY id DESC LIMIT $3"
        );
        let rows: Vec<RenewalRow> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(tenant.get())
                    .bind(gateway.get())
                    .bind(limit.clamp(1, 500))
                    .fetch_all(pool)
                    .await
        )?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// The gateway's renewal log, newest first.
    pub async fn log(
        &self,
        tenant: TenantId,
        gateway: GatewayId,
        limit: i64,
    ) -> Result<Vec<LogEntry>, StoreError> {
        Ok(on_db!(self.db, read |pool| sqlx::query_as(
            "SELECT step, detail, at FROM renewal_log WHERE tenant_id = $1 AND gateway_id = $2 ORDER BY at DESC, id DESC LIMIT $3"
        )
        .bind(tenant.get())
        .bind(gateway.get())
        .bind(limit.clamp(1, 500))
        .fetch_all(pool)
        .await)?)
    }

    /// A CSR arrived for a renewal waiting for one and was signed: the successor is recorded and
    /// offered in place of the CSR request.
    pub async fn csr_signed(
        &self,
        renewal: &Renewal,
        new: &NewCertificate,
        payload: &str,
    ) -> Result<(), StoreError> {
        let now = Ts::now();
        let (t, g) = (renewal.tenant_id.get(), renewal.gateway_id.get());
        in_tx!(self.db, |tx| {
            let state: Option<String> =
                sqlx::query_scalar("SELECT state FROM renewals WHERE id = $1 AND finished_at IS NULL")
                    .bind(renewal.id.get())
                    .fetch_optional(&mut *tx)
                    .await?;
            if state.as_deref() != Some("offered") && state.as_deref() != Some("csr_received") {
                return Err(StoreError::Conflict("the renewal is not waiting for a CSR".into()));
            }
            exec!(tx, LOG, t, g, None::<i64>, "csr_received", "CSR received from the gateway", now);
            let new_id: i64 =
                bind_new_certificate!(sqlx::query_scalar(NEW_CERT), t, g, new, now, None::<i64>)
                    .fetch_one(&mut *tx)
                    .await?;
            exec!(
                tx,
                "UPDATE renewals SET state = 'issued', new_certificate_id = $2, updated_at = $3 WHERE id = $1",
                renewal.id.get(),
                new_id,
                now
            );
            exec!(tx, CLEAR, renewal.id.get(), now);
            exec!(
                tx,
                MESSAGE,
                t,
                g,
                new.mac.to_string(),
                Topic::CertUpdate(new.mac).to_string(),
                payload,
                renewal.id.get(),
                now
            );
            exec!(
                tx,
                LOG,
                t,
                g,
                Some(new_id),
                "issued",
                format!("certificate {} signed from the gateway's CSR and offered", new.serial),
                now
            );
            Ok(())
        })
    }

    /// Ends an open renewal as `failed` (bad CSR, expired offer, replaced by hand): its message is
    /// cleared and an unconfirmed successor revoked. Retried on a later day by the campaign.
    pub async fn fail(&self, renewal: &Renewal, detail: &str) -> Result<(), StoreError> {
        let now = Ts::now();
        let (t, g) = (renewal.tenant_id.get(), renewal.gateway_id.get());
        in_tx!(self.db, |tx| {
            let done = exec!(
                tx,
                "UPDATE renewals SET state = 'failed', detail = $2, updated_at = $3, finished_at = $3 \
                WHERE id = $1 AND finished_at IS NULL",
                renewal.id.get(),
                detail,
                now
            );
            if done.rows_affected() == 0 {
                return Err(StoreError::Conflict("the renewal is already over".into()));
            }
            exec!(tx, CLEAR, renewal.id.get(), now);
            if let Some(new) = renewal.new_certificate_id {
                exec!(
                    tx,
                    "UPDATE certificates SET status = 'revoked', revocation_reason = 'cessation_of_operation', \
                    revoked_at = $2, updated_at = $2, renewal_state = 'failed' WHERE id = $1 AND status = 'active'",
                    new.get(),
                    now
                );
            }
            exec!(tx, LOG, t, g, renewal.new_certificate_id.map(CertificateId::get), "failed", detail, now);
            Ok(())
        })
    }

    /// The allow-list check of a connection with certificate `serial` as gateway `gateway`
    /// (`mac`), and what it means for an open renewal; records the certificate's first use.
    pub async fn staff_admit(
        &self,
        gateway: GatewayId,
        mac: Mac,
        serial: &str,
    ) -> Result<Admission, StoreError> {
        let now = Ts::now();
        let serial = serial.to_ascii_lowercase();
        // Read first, without the write lock: almost every connection is a gateway's current
        // certificate, used before, with no renewal waiting for it, and writes nothing. On SQLite
        // the transaction below takes the one write connection, so each of a thousand gateways
        // reconnecting after a restart, under load, would wait for an ingest commit to end.
        // What is read can change before the answer (a renewal issued, a certificate revoked)
        // just as it could right after a connection was admitted; the session then follows the
        // change as any connected gateway does.
        let seen: Option<(String, Option<i64>, String, bool, bool)> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(
                    "SELECT mac, gateway_id, status, first_used_at IS NOT NULL, EXISTS (SELECT 1 FROM renewals \
                     WHERE gateway_id = $2 AND finished_at IS NULL AND state = 'issued') \
                     FROM certificates WHERE serial = $1",
                )
                .bind(&serial)
                .bind(gateway.get())
                .fetch_optional(pool)
                .await
        )?;
        if let Some((cert_mac, cert_gw, status, used, renewing)) = seen
            && cert_mac == mac.to_string()
            && cert_gw == Some(gateway.get())
            && status == "active"
            && used
            && !renewing
        {
            return Ok(Admission::Current);
        }
        in_tx!(self.db, |tx| {
            let cert: Option<CertRow> = sqlx::query_as(
                "SELECT id, mac, gateway_id, status, tenant_id FROM certificates WHERE serial = $1",
            )
            .bind(&serial)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((cert_id, cert_mac, cert_gw, status, tenant)) = cert else {
                return Ok(Admission::Refused("certificate unknown to TDS".into()));
            };
            if cert_mac != mac.to_string() || cert_gw != Some(gateway.get()) {
                return Ok(Admission::Refused("certificate of another gateway".into()));
            }
            if status != "active" {
                return Ok(Admission::Refused(format!("certificate {status}")));
            }
            let t = tenant.unwrap_or_default();
            exec!(
                tx,
                "UPDATE certificates SET first_used_at = $2 WHERE id = $1 AND first_used_at IS NULL",
                cert_id,
                now
            );
            let open: Option<(i64, Option<i64>, Option<i64>, String)> = sqlx::query_as(
                "SELECT id, old_certificate_id, new_certificate_id, state FROM renewals WHERE gateway_id = $1 AND finished_at IS NULL",
            )
            .bind(gateway.get())
            .fetch_optional(&mut *tx)
            .await?;
            let Some((rid, old, new, state)) = open else { return Ok(Admission::Current) };
            if state != "issued" {
                return Ok(Admission::Current);
            }
            if new == Some(cert_id) {
                exec!(
                    tx,
                    "UPDATE certificates SET status = 'superseded', revocation_reason = 'superseded', revoked_at = $3, \
                    updated_at = $3, renewal_state = 'superseded' WHERE gateway_id = $1 AND id <> $2 AND status = 'active'",
                    gateway.get(),
                    cert_id,
                    now
                );
                exec!(
                    tx,
                    "UPDATE certificates SET renewal_state = 'confirmed', updated_at = $2 WHERE id = $1",
                    cert_id,
                    now
                );
                exec!(tx, FINISH, rid, "confirmed", "the gateway connected with its new certificate", now);
                exec!(tx, CLEAR, rid, now);
                exec!(
                    tx,
                    LOG,
                    t,
                    gateway.get(),
                    Some(cert_id),
                    "confirmed",
                    "the gateway connected with its new certificate; the old one is superseded and revoked",
                    now
                );
                return Ok(Admission::Confirmed(RenewalId::new(rid)));
            }
            let received: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM gateway_messages WHERE renewal_id = $1 AND cleared_at IS NULL AND delivered_at IS NOT NULL",
            )
            .bind(rid)
            .fetch_one(&mut *tx)
            .await?;
            if old == Some(cert_id) && received > 0 {
                if let Some(new) = new {
                    exec!(
                        tx,
                        "UPDATE certificates SET status = 'revoked', revocation_reason = 'cessation_of_operation', \
                        revoked_at = $2, updated_at = $2, renewal_state = 'rolled_back' WHERE id = $1 AND status = 'active'",
                        new,
                        now
                    );
                }
                exec!(
                    tx,
                    FINISH,
                    rid,
                    "rolled_back",
                    "the gateway came back with its old certificate after receiving the new one",
                    now
                );
                exec!(tx, CLEAR, rid, now);
                exec!(
                    tx,
                    LOG,
                    t,
                    gateway.get(),
                    new,
                    "rolled_back",
                    "the gateway came back with its old certificate after receiving the new one; the new one is revoked",
                    now
                );
                return Ok(Admission::RolledBack(RenewalId::new(rid)));
            }
            Ok(Admission::Current)
        })
    }

    /// Scale-out mode: the gateway reports it gave up certificate `refused_serial` (canonical
    /// hex). When that is the successor of its open renewal, the offer counts as received, so
    /// that its coming back on the old certificate is a rollback ([`Self::staff_admit`]).
    pub async fn staff_gave_up(&self, gateway: GatewayId, refused_serial: &str) -> Result<(), StoreError> {
        on_db!(
            self.db,
            write
                | pool
                | sqlx::query(
                    "UPDATE gateway_messages SET delivered_at = $3 WHERE cleared_at IS NULL AND delivered_at IS NULL \
                     AND renewal_id IN (SELECT r.id FROM renewals r JOIN certificates c ON c.id = r.new_certificate_id \
                     WHERE r.gateway_id = $1 AND r.finished_at IS NULL AND c.serial = $2)"
                )
                .bind(gateway.get())
                .bind(refused_serial.to_ascii_lowercase())
                .bind(Ts::now())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        )?;
        Ok(())
    }

    /// Every message waiting for its gateway (scale-out mode publishes them all retained on the
    /// broker at each connection: a broker without persistence forgot them when it restarted).
    pub async fn staff_all_pending(&self) -> Result<Vec<PendingMessage>, StoreError> {
        let rows: Vec<(i64, String, String, String)> = on_db!(self.db, read |pool| sqlx::query_as(
            "SELECT id, mac, topic, payload FROM gateway_messages WHERE cleared_at IS NULL ORDER BY id"
        )
        .fetch_all(pool)
        .await)?;
        Ok(rows
            .into_iter()
            .map(|(id, mac, topic, payload)| PendingMessage { id, mac, topic, payload })
            .collect())
    }

    /// The message waiting on `topic` for the gateway `mac`, if any.
    pub async fn staff_pending(&self, mac: Mac, topic: &str) -> Result<Option<PendingMessage>, StoreError> {
        let row: Option<(i64, String, String, String)> = on_db!(self.db, read |pool| sqlx::query_as(
            "SELECT id, mac, topic, payload FROM gateway_messages WHERE mac = $1 AND topic = $2 AND cleared_at IS NULL"
        )
        .bind(mac.to_string())
        .bind(topic)
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(|(id, mac, topic, payload)| PendingMessage { id, mac, topic, payload }))
    }

    /// The gateway acknowledged the message (PUBACK): it has received it.
    pub async fn staff_delivered(&self, id: i64) -> Result<(), StoreError> {
        on_db!(
            self.db,
            write
                | pool
                | sqlx::query(
                    "UPDATE gateway_messages SET delivered_at = $2 WHERE id = $1 AND cleared_at IS NULL"
                )
                .bind(id)
                .bind(Ts::now())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        )?;
        Ok(())
    }

    /// Gateways whose messages were created or cleared at or after `since` (the endpoint pushes
    /// new ones to live sessions; the broker mode publishes or clears them retained).
    pub async fn staff_messages_changed_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, bool)>, StoreError> {
        let rows: Vec<(String, Option<Ts>)> = on_db!(self.db, read |pool| sqlx::query_as(
            "SELECT mac, cleared_at FROM gateway_messages WHERE created_at >= $1 OR cleared_at >= $1 ORDER BY id"
        )
        .bind(Ts::from(since))
        .fetch_all(pool)
        .await)?;
        Ok(rows.into_iter().map(|(mac, cleared)| (mac, cleared.is_some())).collect())
    }
}
