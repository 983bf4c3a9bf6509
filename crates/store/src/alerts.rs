//! Alerts and their history (SPEC §5): the life of each alert, **active** → **acknowledged** (who,
//! when, comment) → **cleared**, one open alert per rule and target, every transition kept in
//! `alert_events`.
//!
//! Owns: the `alerts` and `alert_events` tables. [`AlertStore::raise`] is idempotent: evaluating
//! a rule again while its alert is open finds that alert (a unique index on open alerts backs this
//! up against two evaluators racing) and never writes a second alert or a second `raised` entry.
//! A raise or a clear decided by evaluation, and an acknowledgement (told to webhooks), leave
//! their history entry undispatched until the notifier has turned it into outbox rows
//! ([`AlertStore::staff_undispatched`]); the other entries notify nobody. Must not: decide when to raise or clear (the domain's evaluation does), or send
//! anything (see [`crate::notifications`]).

use crate::alert_rules::{stored_target, target_columns, target_condition, target_key, text_enum};
use crate::tenants::found;
use crate::{Db, StoreError, Ts};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::AssertSqlSafe;
use tds_domain::{
    AlertCounts, AlertId, AlertRuleId, DeviceId, GatewayId, Severity, Target, TenantId, UserId,
};

text_enum!(
    /// Where an alert is in its life.
    AlertStatus {
        /// Open and not acknowledged: counted in the top bar.
        Active = "active",
        /// Open, and someone said they are on it.
        Acknowledged = "acknowledged",
        /// Its condition ended (or its rule was disabled, changed or deleted).
        Cleared = "cleared",
    }
);

text_enum!(
    /// A transition in an alert's history.
    AlertEventKind {
        Raised = "raised",
        Acknowledged = "acknowledged",
        Cleared = "cleared",
        /// A reminder went out for an alert left active.
        Reminded = "reminded",
        /// The open alert's severity changed (its rule was edited).
        Updated = "updated",
    }
);

/// What the Alertas page and the API filter a list by; `None` is everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlertFilter {
    pub status: Option<AlertStatus>,
    pub severity: Option<Severity>,
    /// Alerts about this device.
    pub device: Option<DeviceId>,
    /// Alerts about this gateway or one of its devices.
    pub gateway: Option<GatewayId>,
    /// Raised at or after.
    pub from: Option<DateTime<Utc>>,
    /// Raised before.
    pub to: Option<DateTime<Utc>>,
}

/// An alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub id: AlertId,
    pub tenant_id: TenantId,
    /// `None` once the rule has been deleted.
    pub rule_id: Option<AlertRuleId>,
    /// The rule's name and kind (as they were when the rule was deleted, if it was).
    pub rule_name: String,
    pub rule_kind: String,
    /// The member of the rule's target this alert is about (a device or gateway, usually).
    pub target: Target,
    pub severity: Severity,
    pub message: String,
    /// The value that raised it, refreshed while it stays open.
    pub value: Option<f64>,
    pub raised_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<UserId>,
    pub ack_comment: Option<String>,
    pub cleared_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl Alert {
    pub fn status(&self) -> AlertStatus {
        match (self.cleared_at, self.acknowledged_at) {
            (Some(_), _) => AlertStatus::Cleared,
            (None, Some(_)) => AlertStatus::Acknowledged,
            (None, None) => AlertStatus::Active,
        }
    }

    pub fn is_open(&self) -> bool {
        self.cleared_at.is_none()
    }
}

/// One entry of an alert's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertEvent {
    pub id: i64,
    pub tenant_id: TenantId,
    pub alert_id: AlertId,
    pub kind: AlertEventKind,
    pub at: DateTime<Utc>,
    /// Who acknowledged, or who disabled, changed or deleted the rule.
    pub user_id: Option<UserId>,
    /// The acknowledgement's comment, or why the alert was cleared when it was not by evaluation.
    pub comment: Option<String>,
    pub severity: Severity,
    pub value: Option<f64>,
    /// When the notifier fanned it out; `None` for a raise or clear still to notify.
    pub dispatched_at: Option<DateTime<Utc>>,
}

/// A raise decided by evaluating `rule` for `target`.
#[derive(Debug, Clone)]
pub struct NewAlert {
    pub rule: AlertRuleId,
    pub target: Target,
    pub severity: Severity,
    pub message: String,
    pub value: Option<f64>,
    pub at: DateTime<Utc>,
}

/// What [`AlertStore::raise`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Raised {
    pub alert: Alert,
    /// `true` when this call opened the alert; `false` when it was already open.
    pub new: bool,
}

#[derive(sqlx::FromRow)]
struct AlertRow {
    id: i64,
    tenant_id: i64,
    rule_id: Option<i64>,
    rule_name: String,
    rule_kind: String,
    target_kind: String,
    target_id: Option<i64>,
    target_medium: Option<String>,
    severity: String,
    message: String,
    value: Option<f64>,
    raised_at: Ts,
    acknowledged_at: Option<Ts>,
    acknowledged_by: Option<i64>,
    ack_comment: Option<String>,
    cleared_at: Option<Ts>,
    updated_at: Ts,
}

impl TryFrom<AlertRow> for Alert {
    type Error = StoreError;
    fn try_from(r: AlertRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: AlertId::new(r.id),
            tenant_id: TenantId::new(r.tenant_id),
            rule_id: r.rule_id.map(AlertRuleId::new),
            rule_name: r.rule_name,
            rule_kind: r.rule_kind,
            target: stored_target("alerts", &r.target_kind, r.target_id, r.target_medium.as_deref())?,
            severity: crate::error::stored("alerts.severity", &r.severity, Severity::parse)?,
            message: r.message,
            value: r.value,
            raised_at: r.raised_at.0,
            acknowledged_at: r.acknowledged_at.map(|t| t.0),
            acknowledged_by: r.acknowledged_by.map(UserId::new),
            ack_comment: r.ack_comment,
            cleared_at: r.cleared_at.map(|t| t.0),
            updated_at: r.updated_at.0,
        })
    }
}

const COLUMNS: &str = "id, tenant_id, rule_id, rule_name, rule_kind, target_kind, target_id, target_medium, \
    severity, message, value, raised_at, acknowledged_at, acknowledged_by, ack_comment, cleared_at, updated_at";

#[derive(sqlx::FromRow)]
struct EventRow {
    id: i64,
    tenant_id: i64,
    alert_id: i64,
    event: String,
    at: Ts,
    user_id: Option<i64>,
    comment: Option<String>,
    severity: String,
    value: Option<f64>,
    dispatched_at: Option<Ts>,
}

impl TryFrom<EventRow> for AlertEvent {
    type Error = StoreError;
    fn try_from(r: EventRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: r.id,
            tenant_id: TenantId::new(r.tenant_id),
            alert_id: AlertId::new(r.alert_id),
            kind: AlertEventKind::stored("alert_events.event", &r.event)?,
            at: r.at.0,
            user_id: r.user_id.map(UserId::new),
            comment: r.comment,
            severity: crate::error::stored("alert_events.severity", &r.severity, Severity::parse)?,
            value: r.value,
            dispatched_at: r.dispatched_at.map(|t| t.0),
        })
    }
}

const EVENT_COLUMNS: &str =
    "id, tenant_id, alert_id, event, at, user_id, comment, severity, value, dispatched_at";

/// Records an event of the alert `$2` of tenant `$1`: `$3` event, `$4` at, `$5` user, `$6`
/// comment, `$7` severity, `$8` value, `$9` dispatched at.
const INSERT_EVENT: &str = "INSERT INTO alert_events (tenant_id, alert_id, event, at, user_id, comment, severity, \
    value, dispatched_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// A `cleared` entry for each open alert of rule `$2` of tenant `$1`, at `$3`, by `$4`, because
/// `$5`; dispatched at once (a rule's change notifies nobody).
pub(crate) const CLEAR_RULE_EVENTS: &str = "INSERT INTO alert_events (tenant_id, alert_id, event, at, user_id, \
    comment, severity, value, dispatched_at) SELECT tenant_id, id, 'cleared', $3, $4, $5, severity, value, $3 \
    FROM alerts WHERE tenant_id = $1 AND rule_id = $2 AND cleared_at IS NULL";

/// Clears the open alerts of rule `$2` of tenant `$1` at `$3`.
pub(crate) const CLEAR_RULE_ALERTS: &str = "UPDATE alerts SET cleared_at = $3, updated_at = $3 \
    WHERE tenant_id = $1 AND rule_id = $2 AND cleared_at IS NULL";

/// Inside a write transaction `$tx`: clears every open alert of a rule because the rule changed,
/// with a history entry each (`$by` did it, `$comment` says why); evaluates to how many.
macro_rules! clear_rule_alerts {
    ($tx:ident, $tenant:expr, $rule:expr, $at:expr, $by:expr, $comment:expr) => {{
        let tenant: tds_domain::TenantId = $tenant;
        let rule: tds_domain::AlertRuleId = $rule;
        let at: $crate::Ts = $at;
        let by: Option<tds_domain::UserId> = $by;
        let comment: &str = $comment;
        sqlx::query($crate::alerts::CLEAR_RULE_EVENTS)
            .bind(tenant.get())
            .bind(rule.get())
            .bind(at)
            .bind(by.map(tds_domain::UserId::get))
            .bind(comment)
            .execute(&mut *$tx)
            .await?;
        sqlx::query($crate::alerts::CLEAR_RULE_ALERTS)
            .bind(tenant.get())
            .bind(rule.get())
            .bind(at)
            .execute(&mut *$tx)
            .await?
            .rows_affected()
    }};
}
pub(crate) use clear_rule_alerts;

/// An alert's severity, value, acknowledgement and clearing time.
type ReminderCheck = (String, Option<f64>, Option<Ts>, Option<Ts>);

/// A stored value: SQLite keeps NaN as NULL, so a value that is not a number is none on both.
fn finite(value: Option<f64>) -> Option<f64> {
    value.filter(|v| v.is_finite())
}

#[derive(Debug, Clone, Copy)]
pub struct AlertStore<'a> {
    db: &'a Db,
}

impl<'a> AlertStore<'a> {
    pub(crate) fn new(db: &'a Db) -> Self {
        Self { db }
    }

    /// Opens the alert of `new.rule` for `new.target`, or finds it open already: then its value,
    /// message and severity are refreshed (a severity change is an `updated` history entry) and
    /// no second alert or `raised` entry is written. After a clear, the next raise opens a new
    /// alert. The rule must be the tenant's (else `NotFound`) and enabled (else `Conflict`).
    pub async fn raise(&self, tenant: TenantId, new: &NewAlert) -> Result<Raised, StoreError> {
        // Raises share the rule's row; disabling, changing or deleting it waits for them (and
        // they for it), so no alert opens on a rule that is going away. SQLite's one writer
        // serialises them anyway.
        let share = match self.db {
            Db::Postgres(_) => "FOR SHARE",
            Db::Sqlite(_) => "",
        };
        let rule_sql =
            format!("SELECT name, kind, enabled FROM alert_rules WHERE tenant_id = $1 AND id = $2 {share}");
        let open_sql = format!(
            "SELECT {COLUMNS} FROM alerts WHERE tenant_id = $1 AND rule_id = $2 AND {} AND cleared_at IS NULL",
            target_condition(3)
        );
        let insert_sql = format!(
            "INSERT INTO alerts (tenant_id, rule_id, rule_name, rule_kind, target_kind, target_id, target_medium, \
             severity, message, value, raised_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) \
             ON CONFLICT DO NOTHING RETURNING {COLUMNS}"
        );
        let refresh_sql = format!(
            "UPDATE alerts SET severity = $3, message = $4, value = $5, updated_at = $6 \
             WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
        );
        let (key_kind, key_id, key_medium) = target_key(new.target);
        let (target_kind, target_id, target_medium) = target_columns(new.target);
        let value = finite(new.value);
        let at = Ts::from(new.at);
        let now = Ts::now();
        let (row, is_new): (AlertRow, bool) = in_tx!(self.db, |tx| {
            let rule: Option<(String, String, bool)> = sqlx::query_as(AssertSqlSafe(rule_sql.as_str()))
                .bind(tenant.get())
                .bind(new.rule.get())
                .fetch_optional(&mut *tx)
                .await?;
            let (rule_name, rule_kind, enabled) = rule.ok_or(StoreError::NotFound)?;
            if !enabled {
                return Err(StoreError::Conflict(format!("alert rule {} is disabled", new.rule)));
            }
            let mut open: Option<AlertRow> = sqlx::query_as(AssertSqlSafe(open_sql.as_str()))
                .bind(tenant.get())
                .bind(new.rule.get())
                .bind(key_kind)
                .bind(key_id)
                .bind(key_medium)
                .fetch_optional(&mut *tx)
                .await?;
            if open.is_none() {
                let inserted: Option<AlertRow> = sqlx::query_as(AssertSqlSafe(insert_sql.as_str()))
                    .bind(tenant.get())
                    .bind(new.rule.get())
                    .bind(&rule_name)
                    .bind(&rule_kind)
                    .bind(target_kind)
                    .bind(target_id)
                    .bind(target_medium)
                    .bind(new.severity.as_str())
                    .bind(&new.message)
                    .bind(value)
                    .bind(at)
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await?;
                if let Some(row) = inserted {
                    sqlx::query(INSERT_EVENT)
                        .bind(tenant.get())
                        .bind(row.id)
                        .bind(AlertEventKind::Raised.as_str())
                        .bind(at)
                        .bind(None::<i64>)
                        .bind(None::<String>)
                        .bind(new.severity.as_str())
                        .bind(value)
                        .bind(None::<Ts>)
                        .execute(&mut *tx)
                        .await?;
                    return Ok((row, true));
                }
                // Another evaluator opened it since we looked (PostgreSQL): it is open now.
                open = Some(
                    sqlx::query_as(AssertSqlSafe(open_sql.as_str()))
                        .bind(tenant.get())
                        .bind(new.rule.get())
                        .bind(key_kind)
                        .bind(key_id)
                        .bind(key_medium)
                        .fetch_one(&mut *tx)
                        .await?,
                );
            }
            let Some(row) = open else { return Err(StoreError::NotFound) };
            if row.severity == new.severity.as_str() && row.message == new.message && row.value == value {
                return Ok((row, false));
            }
            let severity_changed = row.severity != new.severity.as_str();
            let row: AlertRow = sqlx::query_as(AssertSqlSafe(refresh_sql.as_str()))
                .bind(tenant.get())
                .bind(row.id)
                .bind(new.severity.as_str())
                .bind(&new.message)
                .bind(value)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
            if severity_changed {
                sqlx::query(INSERT_EVENT)
                    .bind(tenant.get())
                    .bind(row.id)
                    .bind(AlertEventKind::Updated.as_str())
                    .bind(at)
                    .bind(None::<i64>)
                    .bind(None::<String>)
                    .bind(new.severity.as_str())
                    .bind(value)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
            }
            Ok((row, false))
        })?;
        Ok(Raised { alert: row.try_into()?, new: is_new })
    }

    /// Acknowledges an active alert: `by` (a user, or `None` for an API token, which the audit
    /// log names) is on it, with an optional comment (blank is none).
    /// An alert already acknowledged or cleared is `Conflict`; another tenant's is `NotFound`.
    pub async fn acknowledge(
        &self,
        tenant: TenantId,
        id: AlertId,
        by: Option<UserId>,
        comment: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<Alert, StoreError> {
        let comment = comment.map(str::trim).filter(|c| !c.is_empty());
        let sql = format!(
            "UPDATE alerts SET acknowledged_at = $3, acknowledged_by = $4, ack_comment = $5, updated_at = $6 \
             WHERE tenant_id = $1 AND id = $2 AND cleared_at IS NULL AND acknowledged_at IS NULL \
             RETURNING {COLUMNS}"
        );
        let at = Ts::from(at);
        let row: AlertRow = in_tx!(self.db, |tx| {
            let row: Option<AlertRow> = sqlx::query_as(AssertSqlSafe(sql.as_str()))
                .bind(tenant.get())
                .bind(id.get())
                .bind(at)
                .bind(by.map(UserId::get))
                .bind(comment)
                .bind(Ts::now())
                .fetch_optional(&mut *tx)
                .await?;
            let Some(row) = row else {
                let status: Option<(Option<Ts>, Option<Ts>)> = sqlx::query_as(
                    "SELECT acknowledged_at, cleared_at FROM alerts WHERE tenant_id = $1 AND id = $2",
                )
                .bind(tenant.get())
                .bind(id.get())
                .fetch_optional(&mut *tx)
                .await?;
                return Err(match status {
                    None => StoreError::NotFound,
                    Some((_, Some(_))) => StoreError::Conflict("the alert is cleared".into()),
                    Some(_) => StoreError::Conflict("the alert is already acknowledged".into()),
                });
            };
            sqlx::query(INSERT_EVENT)
                .bind(tenant.get())
                .bind(row.id)
                .bind(AlertEventKind::Acknowledged.as_str())
                .bind(at)
                .bind(by.map(UserId::get))
                .bind(comment)
                .bind(&row.severity)
                .bind(row.value)
                // The notifier tells the tenant's webhooks.
                .bind(None::<Ts>)
                .execute(&mut *tx)
                .await?;
            Ok(row)
        })?;
        row.try_into()
    }

    /// Clears the open alert of `rule` for `target`: its condition ended. `None` when none is
    /// open (clearing is as idempotent as raising).
    pub async fn clear(
        &self,
        tenant: TenantId,
        rule: AlertRuleId,
        target: Target,
        at: DateTime<Utc>,
    ) -> Result<Option<Alert>, StoreError> {
        let sql = format!(
            "UPDATE alerts SET cleared_at = $6, updated_at = $7 WHERE tenant_id = $1 AND rule_id = $2 AND {} \
             AND cleared_at IS NULL RETURNING {COLUMNS}",
            target_condition(3)
        );
        let (key_kind, key_id, key_medium) = target_key(target);
        let at = Ts::from(at);
        let row: Option<AlertRow> = in_tx!(self.db, |tx| {
            let row: Option<AlertRow> = sqlx::query_as(AssertSqlSafe(sql.as_str()))
                .bind(tenant.get())
                .bind(rule.get())
                .bind(key_kind)
                .bind(key_id)
                .bind(key_medium)
                .bind(at)
                .bind(Ts::now())
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(row) = &row {
                sqlx::query(INSERT_EVENT)
                    .bind(tenant.get())
                    .bind(row.id)
                    .bind(AlertEventKind::Cleared.as_str())
                    .bind(at)
                    .bind(None::<i64>)
                    .bind(None::<String>)
                    .bind(&row.severity)
                    .bind(row.value)
                    .bind(None::<Ts>)
                    .execute(&mut *tx)
                    .await?;
            }
            Ok(row)
        })?;
        row.map(TryInto::try_into).transpose()
    }

    /// Records that a reminder went out for an active alert (open, not acknowledged); else
    /// `Conflict`.
    pub async fn note_reminder(
        &self,
        tenant: TenantId,
        id: AlertId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let at = Ts::from(at);
        in_tx!(self.db, |tx| {
            let row: Option<ReminderCheck> = sqlx::query_as(
                "SELECT severity, value, acknowledged_at, cleared_at FROM alerts WHERE tenant_id = $1 AND id = $2",
            )
            .bind(tenant.get())
            .bind(id.get())
            .fetch_optional(&mut *tx)
            .await?;
            let (severity, value) = match row {
                None => return Err(StoreError::NotFound),
                Some((severity, value, None, None)) => (severity, value),
                Some(_) => return Err(StoreError::Conflict("the alert is no longer active".into())),
            };
            sqlx::query(INSERT_EVENT)
                .bind(tenant.get())
                .bind(id.get())
                .bind(AlertEventKind::Reminded.as_str())
                .bind(at)
                .bind(None::<i64>)
                .bind(None::<String>)
                .bind(severity)
                .bind(value)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            Ok(())
        })
    }

    pub async fn get(&self, tenant: TenantId, id: AlertId) -> Result<Alert, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM alerts WHERE tenant_id = $1 AND id = $2");
        let row: AlertRow = on_db!(
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

    /// Up to `limit` (1..=500) of the tenant's alerts, newest first, optionally in one status,
    /// after `before` (the last id of the previous page).
    pub async fn list(
        &self,
        tenant: TenantId,
        status: Option<AlertStatus>,
        before: Option<AlertId>,
        limit: i64,
    ) -> Result<Vec<Alert>, StoreError> {
        self.list_filtered(tenant, &AlertFilter { status, ..AlertFilter::default() }, before, limit).await
    }

    /// Like [`Self::list`], with every filter of the Alertas page.
    pub async fn list_filtered(
        &self,
        tenant: TenantId,
        filter: &AlertFilter,
        before: Option<AlertId>,
        limit: i64,
    ) -> Result<Vec<Alert>, StoreError> {
        let condition = match filter.status {
            None => "TRUE",
            Some(AlertStatus::Active) => "cleared_at IS NULL AND acknowledged_at IS NULL",
            Some(AlertStatus::Acknowledged) => "cleared_at IS NULL AND acknowledged_at IS NOT NULL",
            Some(AlertStatus::Cleared) => "cleared_at IS NOT NULL",
        };
        // Bound parameters throughout; a filter left out is `NULL` and matches everything.
        let sql = format!(
            "SELECT {COLUMNS} FROM alerts WHERE tenant_id = $1 AND {condition} \
             AND (CAST($2 AS BIGINT) IS NULL OR id < $2) \
             AND (CAST($4 AS TEXT) IS NULL OR severity = $4) \
             AND (CAST($5 AS BIGINT) IS NULL OR (target_kind = 'device' AND target_id = $5)) \
             AND (CAST($6 AS BIGINT) IS NULL OR (target_kind = 'gateway' AND target_id = $6) \
                  OR (target_kind = 'device' AND target_id IN \
                      (SELECT id FROM devices WHERE tenant_id = $1 AND gateway_id = $6))) \
             AND ($7 IS NULL OR raised_at >= $7) \
             AND ($8 IS NULL OR raised_at < $8) \
             ORDER BY id DESC LIMIT $3"
        );
        let rows: Vec<AlertRow> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(tenant.get())
                    .bind(before.map(AlertId::get))
                    .bind(limit.clamp(1, i64::from(crate::Page::MAX_SIZE)))
                    .bind(filter.severity.map(Severity::as_str))
                    .bind(filter.device.map(DeviceId::get))
                    .bind(filter.gateway.map(GatewayId::get))
                    .bind(filter.from.map(Ts::from))
                    .bind(filter.to.map(Ts::from))
                    .fetch_all(pool)
                    .await
        )?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Every open alert (active or acknowledged) of the tenant, oldest first: what one evaluation
    /// round starts from, read once instead of once per rule.
    pub async fn open(&self, tenant: TenantId) -> Result<Vec<Alert>, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM alerts WHERE tenant_id = $1 AND cleared_at IS NULL ORDER BY id");
        let rows: Vec<AlertRow> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str())).bind(tenant.get()).fetch_all(pool).await
        )?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// The tenant's active alerts (open, not acknowledged) by severity: the top bar's badge.
    pub async fn active_counts(&self, tenant: TenantId) -> Result<AlertCounts, StoreError> {
        let rows: Vec<(String, i64)> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(
                    "SELECT severity, count(*) FROM alerts WHERE tenant_id = $1 AND cleared_at IS NULL \
                     AND acknowledged_at IS NULL GROUP BY severity"
                )
                .bind(tenant.get())
                .fetch_all(pool)
                .await
        )?;
        let mut counts = AlertCounts::default();
        for (severity, n) in rows {
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            match crate::error::stored("alerts.severity", &severity, Severity::parse)? {
                Severity::Info => counts.info = n,
                Severity::Warning => counts.warning = n,
                Severity::Critical => counts.critical = n,
            }
        }
        Ok(counts)
    }

    /// The open alerts of a rule (active or acknowledged), for evaluating it: a target with one is
    /// in [`tds_domain::AlertState::Active`].
    pub async fn open_for_rule(&self, tenant: TenantId, rule: AlertRuleId) -> Result<Vec<Alert>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM alerts WHERE tenant_id = $1 AND rule_id = $2 AND cleared_at IS NULL ORDER BY id"
        );
        let rows: Vec<AlertRow> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(tenant.get())
                    .bind(rule.get())
                    .fetch_all(pool)
                    .await
        )?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// How many of the tenant's alerts are active (open and not acknowledged): the top bar's
    /// badge.
    pub async fn count_active(&self, tenant: TenantId) -> Result<i64, StoreError> {
        let n: i64 = on_db!(
            self.db,
            read | pool
                | sqlx::query_scalar(
                    "SELECT count(*) FROM alerts WHERE tenant_id = $1 AND cleared_at IS NULL \
                     AND acknowledged_at IS NULL"
                )
                .bind(tenant.get())
                .fetch_one(pool)
                .await
        )?;
        Ok(n)
    }

    /// The alert's history, oldest first.
    pub async fn history(&self, tenant: TenantId, id: AlertId) -> Result<Vec<AlertEvent>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM alert_events WHERE tenant_id = $1 AND alert_id = $2 ORDER BY at, id"
        );
        let rows: Vec<EventRow> = on_db!(
            self.db,
            read | pool | {
                let n: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM alerts WHERE tenant_id = $1 AND id = $2")
                        .bind(tenant.get())
                        .bind(id.get())
                        .fetch_one(pool)
                        .await?;
                if n == 0 {
                    return Err(StoreError::NotFound);
                }
                sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(tenant.get())
                    .bind(id.get())
                    .fetch_all(pool)
                    .await
            }
        )?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Every tenant's active CRITICAL alerts (open, not acknowledged), oldest first, at most
    /// `limit`: the notifier's reminders.
    pub async fn staff_active_critical(&self, limit: i64) -> Result<Vec<Alert>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM alerts WHERE cleared_at IS NULL AND acknowledged_at IS NULL \
             AND severity = 'CRITICAL' ORDER BY id LIMIT $1"
        );
        let rows: Vec<AlertRow> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str())).bind(limit.max(1)).fetch_all(pool).await
        )?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Every tenant's raises, clears and acknowledgements still to notify, oldest first: the notifier enqueues
    /// their deliveries (idempotency keys make a second pass harmless) and then marks each
    /// dispatched.
    pub async fn staff_undispatched(&self, limit: i64) -> Result<Vec<AlertEvent>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM alert_events WHERE dispatched_at IS NULL ORDER BY id LIMIT $1"
        );
        let rows: Vec<EventRow> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str())).bind(limit.max(1)).fetch_all(pool).await
        )?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// The history entry `event` has been fanned out to the outbox.
    pub async fn mark_dispatched(
        &self,
        tenant: TenantId,
        event: i64,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let done = on_db!(
            self.db,
            write
                | pool
                | sqlx::query(
                    "UPDATE alert_events SET dispatched_at = COALESCE(dispatched_at, $3) \
                     WHERE tenant_id = $1 AND id = $2"
                )
                .bind(tenant.get())
                .bind(event)
                .bind(Ts::from(at))
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        )?;
        found(done)
    }
}
