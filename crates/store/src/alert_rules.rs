//! Alert rules (SPEC §5): a tenant's named, checked [`Rule`]s, enabled or not, and the rules that
//! stand for each device's own daily and monthly thresholds.
//!
//! Owns: the `alert_rules` table, the column form of a [`Target`] that alerts share, and what
//! happens to a rule's open alerts when the rule changes: disabling or deleting a rule, or changing
//! what it watches (its kind or target), clears them in the same transaction, each with a
//! `cleared` history entry, because nothing would evaluate them again. Must not: evaluate rules
//! (the domain decides, the jobs crate runs it) or raise alerts (see [`crate::alerts`]).
//!
//! A device's `alarm_daily` / `alarm_monthly` thresholds are rules too (SPEC §5), marked
//! [`RuleSource::DeviceAlarm`]: [`AlertRuleStore::sync_device_thresholds`] makes, changes and
//! removes them to match the device, and they cannot be edited or deleted as rules (`Conflict`);
//! they can be disabled, which mutes the threshold without changing the device. A threshold of 0
//! counts as none (a rule at 0 would alert for ever).
//!
//! Every transaction that writes a tenant's rules also bumps the tenant's rules version
//! (`tenants.alert_rules_version`, [`AlertRuleStore::staff_versions`]), last, after the rows it
//! changed: the alert evaluation keeps the rules in memory between its rounds and reads a
//! tenant's again only when the version moved. A write that leaves the rules as they were (a
//! device saved with unchanged thresholds) leaves the version too.

use crate::alerts::clear_rule_alerts;
use crate::tenants::found;
use crate::{Db, StoreError, Ts};
use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;
use tds_domain::alerts::{ConsumptionPeriod, HoldTime, Hysteresis};
use tds_domain::limits::Amount;
use tds_domain::{
    AlertRuleId, DeviceId, Medium, Name, Rule, RuleKind, Severity, Target, TenantId, UserId, ValidationError,
};

/// Inside a write transaction `$tx` that changed the tenant's rules: bumps its rules version.
/// Every rule write takes the tenant's row last, after the rule rows, so that two of them for one
/// tenant on PostgreSQL wait for each other rather than deadlock.
macro_rules! bump_version {
    ($tx:ident, $tenant:expr) => {{
        let tenant: TenantId = $tenant;
        sqlx::query("UPDATE tenants SET alert_rules_version = alert_rules_version + 1 WHERE id = $1")
            .bind(tenant.get())
            .execute(&mut *$tx)
            .await?;
    }};
}

/// A closed set of words stored as text: `as_str` for writing, `parse` for reading back.
macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The stored spelling.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }

            /// The value whose stored spelling is `text` exactly.
            pub fn parse(text: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == text)
            }

            /// Reads a stored value back; anything else is a database changed by hand.
            #[allow(dead_code, reason = "not every enum is read back from a column")]
            pub(crate) fn stored(column: &'static str, text: &str) -> Result<Self, $crate::StoreError> {
                Self::parse(text)
                    .ok_or_else(|| $crate::StoreError::Corrupt(format!("{column}: unknown value {text:?}")))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use text_enum;

text_enum!(
    /// Where a rule comes from.
    RuleSource {
        /// Made in the rule editor; editable and deletable.
        User = "user",
        /// Stands for a device's daily or monthly threshold; follows the device.
        DeviceAlarm = "device_alarm",
    }
);

/// A stored rule.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    pub id: AlertRuleId,
    pub tenant_id: TenantId,
    pub name: String,
    pub rule: Rule,
    pub enabled: bool,
    pub source: RuleSource,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub created_by: Option<UserId>,
}

/// A rule to create in the rule editor (its settings were checked when `rule` was built).
#[derive(Debug, Clone)]
pub struct NewAlertRule {
    pub name: Name,
    pub rule: Rule,
    pub enabled: bool,
    pub created_by: Option<UserId>,
}

/// The editable part of a rule.
#[derive(Debug, Clone)]
pub struct AlertRuleFields {
    pub name: Name,
    pub rule: Rule,
}

/// A target as its three columns: kind, id (device or gateway), medium.
pub(crate) fn target_columns(target: Target) -> (&'static str, Option<i64>, Option<&'static str>) {
    match target {
        Target::Device(id) => ("device", Some(id.get()), None),
        Target::Gateway(id) => ("gateway", Some(id.get()), None),
        Target::Tenant => ("tenant", None, None),
        Target::Medium(medium) => ("medium", None, Some(medium.as_str())),
    }
}

/// A target as the key the unique index of open alerts compares (`COALESCE(target_id, 0)`,
/// `COALESCE(target_medium, '')`), for `WHERE target_kind = $a AND COALESCE(target_id, 0) = $b
/// AND COALESCE(target_medium, '') = $c`.
pub(crate) fn target_key(target: Target) -> (&'static str, i64, &'static str) {
    let (kind, id, medium) = target_columns(target);
    (kind, id.unwrap_or(0), medium.unwrap_or(""))
}

/// The `WHERE` condition matching [`target_key`] bound at `$n`, `$n+1`, `$n+2`.
pub(crate) fn target_condition(n: usize) -> String {
    format!(
        "target_kind = ${n} AND COALESCE(target_id, 0) = ${} AND COALESCE(target_medium, '') = ${}",
        n + 1,
        n + 2
    )
}

/// Reads a target back from its columns.
pub(crate) fn stored_target(
    table: &'static str,
    kind: &str,
    id: Option<i64>,
    medium: Option<&str>,
) -> Result<Target, StoreError> {
    match (kind, id, medium) {
        ("device", Some(id), None) => Ok(Target::Device(DeviceId::new(id))),
        ("gateway", Some(id), None) => Ok(Target::Gateway(tds_domain::GatewayId::new(id))),
        ("tenant", None, None) => Ok(Target::Tenant),
        ("medium", None, Some(m)) => {
            Ok(Target::Medium(crate::error::stored("target_medium", m, Medium::parse)?))
        }
        _ => {
            Err(StoreError::Corrupt(format!("{table}: target {kind:?} with id {id:?} and medium {medium:?}")))
        }
    }
}

#[derive(sqlx::FromRow)]
struct RuleRow {
    id: i64,
    tenant_id: i64,
    name: String,
    kind: String,
    params: String,
    severity: String,
    target_kind: String,
    target_id: Option<i64>,
    target_medium: Option<String>,
    hysteresis: Option<f64>,
    hold_secs: Option<i64>,
    enabled: bool,
    source: String,
    created_at: Ts,
    updated_at: Ts,
    created_by: Option<i64>,
}

impl TryFrom<RuleRow> for AlertRule {
    type Error = StoreError;
    fn try_from(r: RuleRow) -> Result<Self, StoreError> {
        let corrupt = |e: ValidationError| StoreError::Corrupt(format!("alert rule {}: {e}", r.id));
        let kind = RuleKind::from_parts(&r.kind, &r.params).map_err(corrupt)?;
        let severity = Severity::parse(&r.severity).map_err(corrupt)?;
        let target = stored_target("alert_rules", &r.target_kind, r.target_id, r.target_medium.as_deref())?;
        let hysteresis = r.hysteresis.map(Hysteresis::new).transpose().map_err(corrupt)?;
        let hold = r.hold_secs.map(HoldTime::new).transpose().map_err(corrupt)?;
        let rule = Rule::new(severity, target, kind, hysteresis, hold).map_err(corrupt)?;
        Ok(Self {
            id: AlertRuleId::new(r.id),
            tenant_id: TenantId::new(r.tenant_id),
            name: r.name,
            rule,
            enabled: r.enabled,
            source: RuleSource::stored("alert_rules.source", &r.source)?,
            created_at: r.created_at.0,
            updated_at: r.updated_at.0,
            created_by: r.created_by.map(UserId::new),
        })
    }
}

const COLUMNS: &str = "id, tenant_id, name, kind, params, severity, target_kind, target_id, target_medium, \
    hysteresis, hold_secs, enabled, source, created_at, updated_at, created_by";

/// Binds a rule's columns in the order `kind, params, severity, target_kind, target_id,
/// target_medium, hysteresis, hold_secs`.
macro_rules! bind_rule {
    ($q:expr, $rule:expr) => {{
        let rule: &Rule = $rule;
        let (target_kind, target_id, target_medium) = target_columns(rule.target());
        $q.bind(rule.kind().name())
            .bind(rule.kind().params_json())
            .bind(rule.severity().as_str())
            .bind(target_kind)
            .bind(target_id)
            .bind(target_medium)
            .bind(rule.hysteresis().map(Hysteresis::get))
            .bind(rule.hold().map(HoldTime::seconds))
    }};
}

/// The name of a device's threshold rule of `period`; the UI shows its own words for these
/// rules (it knows them by their source and kind), so this is a stable key, not a label.
const fn threshold_rule_name(period: ConsumptionPeriod) -> &'static str {
    match period {
        ConsumptionPeriod::Day => "alarm_daily",
        ConsumptionPeriod::Month => "alarm_monthly",
    }
}

const fn threshold_kind_name(period: ConsumptionPeriod) -> &'static str {
    match period {
        ConsumptionPeriod::Day => "daily_consumption",
        ConsumptionPeriod::Month => "monthly_consumption",
    }
}

/// Why a rule's open alerts were cleared by a change to the rule, kept as the `cleared` history
/// entry's comment.
pub const CLEARED_RULE_DELETED: &str = "rule deleted";
pub const CLEARED_RULE_DISABLED: &str = "rule disabled";
pub const CLEARED_RULE_CHANGED: &str = "rule changed";
pub const CLEARED_THRESHOLD_REMOVED: &str = "device threshold removed";

#[derive(Debug, Clone, Copy)]
pub struct AlertRuleStore<'a> {
    db: &'a Db,
}

impl<'a> AlertRuleStore<'a> {
    pub(crate) fn new(db: &'a Db) -> Self {
        Self { db }
    }

    /// Creates a rule made in the rule editor. A device or gateway target must be one of the
    /// tenant's (a live device, any gateway), or it is `Invalid`.
    pub async fn create(&self, tenant: TenantId, new: &NewAlertRule) -> Result<AlertRule, StoreError> {
        self.check_target(tenant, new.rule.target()).await?;
        let sql = format!(
            "INSERT INTO alert_rules (tenant_id, name, kind, params, severity, target_kind, target_id, \
             target_medium, hysteresis, hold_secs, enabled, source, created_at, updated_at, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'user', $12, $12, $13) RETURNING {COLUMNS}"
        );
        let row: RuleRow = in_tx!(self.db, |tx| {
            let q = sqlx::query_as(AssertSqlSafe(sql.as_str())).bind(tenant.get()).bind(new.name.as_str());
            let row: RuleRow = bind_rule!(q, &new.rule)
                .bind(new.enabled)
                .bind(Ts::now())
                .bind(new.created_by.map(UserId::get))
                .fetch_one(&mut *tx)
                .await?;
            bump_version!(tx, tenant);
            Ok(row)
        })?;
        row.try_into()
    }

    pub async fn get(&self, tenant: TenantId, id: AlertRuleId) -> Result<AlertRule, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM alert_rules WHERE tenant_id = $1 AND id = $2");
        let row: RuleRow = on_db!(
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

    /// The tenant's rules by name, optionally only those on exactly `target` (a device's page
    /// lists the rules on that device).
    pub async fn list(&self, tenant: TenantId, target: Option<Target>) -> Result<Vec<AlertRule>, StoreError> {
        let (kind, id, medium) = match target.map(target_key) {
            Some((kind, id, medium)) => (Some(kind), Some(id), Some(medium)),
            None => (None, None, None),
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM alert_rules WHERE tenant_id = $1 AND (CAST($2 AS TEXT) IS NULL OR \
             (target_kind = $2 AND COALESCE(target_id, 0) = $3 AND COALESCE(target_medium, '') = $4)) \
             ORDER BY name, id"
        );
        let rows: Vec<RuleRow> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(tenant.get())
                    .bind(kind)
                    .bind(id)
                    .bind(medium)
                    .fetch_all(pool)
                    .await
        )?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// The tenant's enabled rules, for evaluating them.
    pub async fn enabled(&self, tenant: TenantId) -> Result<Vec<AlertRule>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM alert_rules WHERE tenant_id = $1 AND enabled ORDER BY id");
        let rows: Vec<RuleRow> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str())).bind(tenant.get()).fetch_all(pool).await
        )?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Every tenant's enabled rules, by tenant, for the clock-driven evaluation.
    pub async fn staff_enabled(&self) -> Result<Vec<AlertRule>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM alert_rules WHERE enabled ORDER BY tenant_id, id");
        let rows: Vec<RuleRow> =
            on_db!(self.db, read | pool | sqlx::query_as(AssertSqlSafe(sql.as_str())).fetch_all(pool).await)?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Every tenant's rules version: it moves with every write to the tenant's rules (see the
    /// module's header). Read it before the rules it stands for, so that a write in between only
    /// makes the next comparison read them again.
    pub async fn staff_versions(&self) -> Result<Vec<(TenantId, i64)>, StoreError> {
        let rows: Vec<(i64, i64)> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as("SELECT id, alert_rules_version FROM tenants ORDER BY id")
                    .fetch_all(pool)
                    .await
        )?;
        Ok(rows.into_iter().map(|(id, version)| (TenantId::new(id), version)).collect())
    }

    /// Changes a rule made in the rule editor (a device's threshold rule is `Conflict`). Its open
    /// alerts stay when only the name, severity, parameters, hysteresis or hold time change (the
    /// next evaluation decides with the new settings); they are cleared when the kind or the
    /// target changes, since they were about something the rule no longer watches.
    pub async fn update(
        &self,
        tenant: TenantId,
        id: AlertRuleId,
        fields: &AlertRuleFields,
        by: Option<UserId>,
    ) -> Result<AlertRule, StoreError> {
        self.check_target(tenant, fields.rule.target()).await?;
        let lock = format!(
            "SELECT {COLUMNS} FROM alert_rules WHERE tenant_id = $1 AND id = $2 {}",
            self.db.row_lock()
        );
        let sql = format!(
            "UPDATE alert_rules SET name = $3, kind = $4, params = $5, severity = $6, target_kind = $7, \
             target_id = $8, target_medium = $9, hysteresis = $10, hold_secs = $11, updated_at = $12 \
             WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
        );
        let now = Ts::now();
        let row: RuleRow = in_tx!(self.db, |tx| {
            let before: RuleRow = sqlx::query_as(AssertSqlSafe(lock.as_str()))
                .bind(tenant.get())
                .bind(id.get())
                .fetch_one(&mut *tx)
                .await?;
            if before.source != RuleSource::User.as_str() {
                return Err(not_by_hand());
            }
            let (target_kind, target_id, target_medium) = target_columns(fields.rule.target());
            let watches_else = before.kind != fields.rule.kind().name()
                || before.target_kind != target_kind
                || before.target_id != target_id
                || before.target_medium.as_deref() != target_medium;
            if watches_else {
                clear_rule_alerts!(tx, tenant, id, now, by, CLEARED_RULE_CHANGED);
            }
            let q = sqlx::query_as(AssertSqlSafe(sql.as_str()))
                .bind(tenant.get())
                .bind(id.get())
                .bind(fields.name.as_str());
            let row: RuleRow = bind_rule!(q, &fields.rule).bind(now).fetch_one(&mut *tx).await?;
            // Alerts carry their rule's name and kind, which they keep once the rule is gone.
            sqlx::query(
                "UPDATE alerts SET rule_name = $3, rule_kind = $4 WHERE tenant_id = $1 AND rule_id = $2",
            )
            .bind(tenant.get())
            .bind(id.get())
            .bind(fields.name.as_str())
            .bind(fields.rule.kind().name())
            .execute(&mut *tx)
            .await?;
            bump_version!(tx, tenant);
            Ok(row)
        })?;
        row.try_into()
    }

    /// Enables or disables a rule (either source). Disabling clears its open alerts: a disabled
    /// rule is not evaluated, so nothing else would.
    pub async fn set_enabled(
        &self,
        tenant: TenantId,
        id: AlertRuleId,
        enabled: bool,
        by: Option<UserId>,
    ) -> Result<(), StoreError> {
        let now = Ts::now();
        in_tx!(self.db, |tx| {
            let done = sqlx::query(
                "UPDATE alert_rules SET enabled = $3, updated_at = $4 WHERE tenant_id = $1 AND id = $2",
            )
            .bind(tenant.get())
            .bind(id.get())
            .bind(enabled)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            found(done)?;
            if !enabled {
                clear_rule_alerts!(tx, tenant, id, now, by, CLEARED_RULE_DISABLED);
            }
            bump_version!(tx, tenant);
            Ok(())
        })
    }

    /// Deletes a rule made in the rule editor (a device's threshold rule is `Conflict`: change the
    /// device). Its open alerts are cleared first; all its alerts stay, with their history, no
    /// longer linked to a rule.
    pub async fn delete(
        &self,
        tenant: TenantId,
        id: AlertRuleId,
        by: Option<UserId>,
    ) -> Result<(), StoreError> {
        let lock =
            format!("SELECT source FROM alert_rules WHERE tenant_id = $1 AND id = $2 {}", self.db.row_lock());
        let now = Ts::now();
        in_tx!(self.db, |tx| {
            let source: String = sqlx::query_scalar(AssertSqlSafe(lock.as_str()))
                .bind(tenant.get())
                .bind(id.get())
                .fetch_one(&mut *tx)
                .await?;
            if source != RuleSource::User.as_str() {
                return Err(not_by_hand());
            }
            clear_rule_alerts!(tx, tenant, id, now, by, CLEARED_RULE_DELETED);
            sqlx::query("DELETE FROM alert_rules WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.get())
                .bind(id.get())
                .execute(&mut *tx)
                .await?;
            bump_version!(tx, tenant);
            Ok(())
        })
    }

    /// Makes the device's threshold rules match its thresholds: a WARNING daily or monthly
    /// consumption rule on the device for each threshold above 0, none for a threshold that is
    /// unset or 0. Idempotent: with unchanged thresholds nothing is written. A changed threshold
    /// keeps the rule (its id, enabled flag and open alert); a removed one deletes the rule,
    /// clearing its open alert. Works for an archived device too, so that archiving can remove
    /// them. Returns the device's threshold rules, daily first.
    pub async fn sync_device_thresholds(
        &self,
        tenant: TenantId,
        device: DeviceId,
        alarm_daily: Option<Amount>,
        alarm_monthly: Option<Amount>,
    ) -> Result<Vec<AlertRule>, StoreError> {
        let mut wanted = Vec::with_capacity(2);
        for (period, amount) in
            [(ConsumptionPeriod::Day, alarm_daily), (ConsumptionPeriod::Month, alarm_monthly)]
        {
            let rule = amount
                .filter(|a| a.get() > 0.0)
                .map(|a| Rule::device_alarm(device, period, a))
                .transpose()?;
            wanted.push((period, rule));
        }
        let existing_sql = format!(
            "SELECT {COLUMNS} FROM alert_rules WHERE tenant_id = $1 AND source = 'device_alarm' \
             AND target_kind = 'device' AND target_id = $2 AND kind = $3 {}",
            self.db.row_lock()
        );
        let insert_sql = format!(
            "INSERT INTO alert_rules (tenant_id, name, kind, params, severity, target_kind, target_id, \
             target_medium, hysteresis, hold_secs, enabled, source, created_at, updated_at, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, TRUE, 'device_alarm', $11, $11, NULL) \
             RETURNING {COLUMNS}"
        );
        let update_sql = format!(
            "UPDATE alert_rules SET params = $3, updated_at = $4 WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
        );
        let now = Ts::now();
        let rows: Vec<RuleRow> = in_tx!(self.db, |tx| {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM devices WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.get())
                .bind(device.get())
                .fetch_one(&mut *tx)
                .await?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            let mut rows = Vec::with_capacity(2);
            let mut changed = false;
            for (period, rule) in &wanted {
                let existing: Option<RuleRow> = sqlx::query_as(AssertSqlSafe(existing_sql.as_str()))
                    .bind(tenant.get())
                    .bind(device.get())
                    .bind(threshold_kind_name(*period))
                    .fetch_optional(&mut *tx)
                    .await?;
                match (rule, existing) {
                    (None, None) => {}
                    (Some(rule), None) => {
                        let q = sqlx::query_as(AssertSqlSafe(insert_sql.as_str()))
                            .bind(tenant.get())
                            .bind(threshold_rule_name(*period));
                        let row: RuleRow = bind_rule!(q, rule).bind(now).fetch_one(&mut *tx).await?;
                        rows.push(row);
                        changed = true;
                    }
                    (Some(rule), Some(row)) if row.params == rule.kind().params_json() => rows.push(row),
                    (Some(rule), Some(row)) => {
                        let row: RuleRow = sqlx::query_as(AssertSqlSafe(update_sql.as_str()))
                            .bind(tenant.get())
                            .bind(row.id)
                            .bind(rule.kind().params_json())
                            .bind(now)
                            .fetch_one(&mut *tx)
                            .await?;
                        rows.push(row);
                        changed = true;
                    }
                    (None, Some(row)) => {
                        let id = AlertRuleId::new(row.id);
                        clear_rule_alerts!(tx, tenant, id, now, None::<UserId>, CLEARED_THRESHOLD_REMOVED);
                        sqlx::query("DELETE FROM alert_rules WHERE tenant_id = $1 AND id = $2")
                            .bind(tenant.get())
                            .bind(row.id)
                            .execute(&mut *tx)
                            .await?;
                        changed = true;
                    }
                }
            }
            if changed {
                bump_version!(tx, tenant);
            }
            Ok(rows)
        })?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// A device or gateway target must be one of the tenant's.
    async fn check_target(&self, tenant: TenantId, target: Target) -> Result<(), StoreError> {
        let (sql, id) = match target {
            Target::Device(id) => (
                "SELECT count(*) FROM devices WHERE tenant_id = $1 AND id = $2 AND archived_at IS NULL",
                id.get(),
            ),
            Target::Gateway(id) => {
                ("SELECT count(*) FROM gateways WHERE tenant_id = $1 AND id = $2", id.get())
            }
            Target::Tenant | Target::Medium(_) => return Ok(()),
        };
        let n: i64 = on_db!(
            self.db,
            read | pool | sqlx::query_scalar(sql).bind(tenant.get()).bind(id).fetch_one(pool).await
        )?;
        if n == 0 {
            return Err(ValidationError::Rule {
                field: "target",
                value: target.to_string(),
                reason: format!("is not a {} of this account", target.kind_name()),
            }
            .into());
        }
        Ok(())
    }
}

fn not_by_hand() -> StoreError {
    StoreError::Conflict(
        "this rule is a device's daily or monthly threshold: change the device's thresholds instead".into(),
    )
}
