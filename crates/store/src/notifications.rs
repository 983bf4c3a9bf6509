//! What alert notifications need kept (SPEC §5): a tenant's channels (email, webhooks), the
//! outbox of deliveries, and each user's alert preferences.
//!
//! Owns: the `notification_channels`, `notification_outbox` and `user_alert_prefs` tables.
//! - [`ChannelStore`]: channels per tenant, with their last success and last failure, so that a
//!   failing channel is visible. A webhook's HMAC secret is kept as given (signing needs it back)
//!   and never shows in `Debug` or JSON.
//! - [`OutboxStore`]: one row per message and recipient; its idempotency key is unique, so
//!   enqueuing the same message twice (a fan-out interrupted and run again) keeps one row, and
//!   every retry carries the same key. The sender takes due rows, then marks each delivered or
//!   failed (with the next attempt, or none to give up).
//! - [`AlertPrefsStore`]: a user's choices in a tenant; no row means the defaults of SPEC §5
//!   ([`AlertPrefs::default_for`]).
//!
//! Must not: send anything, build payloads, or decide back-off (the notifier in the jobs crate
//! does).

use crate::alert_rules::text_enum;
use crate::tenants::found;
use crate::{Db, StoreError, Ts};
use chrono::{DateTime, Duration, NaiveTime, Timelike, Utc};
use serde::{Deserialize, Serialize};
use sqlx::AssertSqlSafe;
use std::fmt;
/// Quiet hours are the domain's (their arithmetic decides when an email is sent).
pub use tds_domain::alerts::QuietHours;
use tds_domain::{AlertId, Name, Role, Severity, TenantId, UserId, ValidationError};

macro_rules! local_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(i64);

        impl $name {
            pub const fn new(raw: i64) -> Self {
                Self(raw)
            }
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

local_id!(
    /// A notification channel.
    ChannelId
);
local_id!(
    /// A row of the outbox.
    OutboxId
);

text_enum!(
    /// How a channel delivers.
    ChannelKind {
        Email = "email",
        /// A JSON POST signed with the channel's secret (chat bots such as Telegram's are presets).
        Webhook = "webhook",
    }
);

text_enum!(
    /// What an outbox row tells its recipient.
    OutboxEvent {
        Raised = "raised",
        Cleared = "cleared",
        /// Told to webhooks only.
        Acknowledged = "acknowledged",
        Reminder = "reminder",
        /// A channel's "send a test" button.
        Test = "test",
    }
);

/// A set of severities, stored as bits (1 INFO, 2 WARNING, 4 CRITICAL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeveritySet(u8);

const fn severity_bit(severity: Severity) -> u8 {
    match severity {
        Severity::Info => 1,
        Severity::Warning => 2,
        Severity::Critical => 4,
    }
}

impl SeveritySet {
    pub const NONE: Self = Self(0);
    pub const ALL: Self = Self(7);

    pub fn of(severities: &[Severity]) -> Self {
        Self(severities.iter().fold(0, |bits, s| bits | severity_bit(*s)))
    }

    /// `min` and every severity above it.
    pub fn at_least(min: Severity) -> Self {
        Self::of(&Severity::ALL.iter().copied().filter(|s| *s >= min).collect::<Vec<_>>())
    }

    pub const fn contains(self, severity: Severity) -> bool {
        self.0 & severity_bit(severity) != 0
    }

    pub fn severities(self) -> Vec<Severity> {
        Severity::ALL.iter().copied().filter(|s| self.contains(*s)).collect()
    }

    pub fn bits(self) -> i64 {
        i64::from(self.0)
    }

    fn stored(column: &'static str, bits: i64) -> Result<Self, StoreError> {
        u8::try_from(bits)
            .ok()
            .filter(|b| *b <= 7)
            .map(Self)
            .ok_or_else(|| StoreError::Corrupt(format!("{column}: {bits} is not a set of severities")))
    }
}

impl Serialize for SeveritySet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.severities().serialize(s)
    }
}

/// A webhook's HMAC-SHA256 key. Shown as `***` by `Debug`; read it with [`ChannelSecret::expose`]
/// to sign.
#[derive(Clone, PartialEq, Eq)]
pub struct ChannelSecret(String);

impl ChannelSecret {
    /// Not blank.
    pub fn new(secret: String) -> Result<Self, ValidationError> {
        if secret.trim().is_empty() {
            return Err(ValidationError::Required { field: "secret" });
        }
        Ok(Self(secret))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ChannelSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChannelSecret(***)")
    }
}

/// A tenant's notification channel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Channel {
    pub id: ChannelId,
    pub tenant_id: TenantId,
    pub kind: ChannelKind,
    pub name: String,
    /// A JSON object: a webhook's URL, preset and body template; an email channel's addresses.
    pub config: serde_json::Value,
    /// A webhook's secret; `None` for email.
    #[serde(skip)]
    pub secret: Option<ChannelSecret>,
    /// Which severities reach the channel.
    pub severities: SeveritySet,
    pub enabled: bool,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub created_by: Option<UserId>,
}

impl Channel {
    /// Whether its last attempt failed (an error more recent than any success).
    pub fn is_failing(&self) -> bool {
        match (self.last_error_at, self.last_success_at) {
            (Some(error), Some(success)) => error > success,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

/// A channel to create. A webhook needs a secret; an email channel has none.
#[derive(Debug, Clone)]
pub struct NewChannel {
    pub kind: ChannelKind,
    pub name: Name,
    pub config: serde_json::Value,
    pub secret: Option<ChannelSecret>,
    pub severities: SeveritySet,
    pub enabled: bool,
    pub created_by: Option<UserId>,
}

/// The editable part of a channel (its kind is fixed; see [`ChannelStore::set_secret`]).
#[derive(Debug, Clone)]
pub struct ChannelFields {
    pub name: Name,
    pub config: serde_json::Value,
    pub severities: SeveritySet,
}

fn check_config(config: &serde_json::Value) -> Result<String, ValidationError> {
    if !config.is_object() {
        return Err(ValidationError::Rule {
            field: "config",
            value: config.to_string(),
            reason: "must be a JSON object".into(),
        });
    }
    Ok(config.to_string())
}

#[derive(sqlx::FromRow)]
struct ChannelRow {
    id: i64,
    tenant_id: i64,
    kind: String,
    name: String,
    config: String,
    secret: Option<String>,
    severities: i64,
    enabled: bool,
    last_error: Option<String>,
    last_error_at: Option<Ts>,
    last_success_at: Option<Ts>,
    created_at: Ts,
    updated_at: Ts,
    created_by: Option<i64>,
}

impl TryFrom<ChannelRow> for Channel {
    type Error = StoreError;
    fn try_from(r: ChannelRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: ChannelId::new(r.id),
            tenant_id: TenantId::new(r.tenant_id),
            kind: ChannelKind::stored("notification_channels.kind", &r.kind)?,
            name: r.name,
            config: serde_json::from_str(&r.config)
                .map_err(|e| StoreError::Corrupt(format!("notification_channels.config: {e}")))?,
            secret: r.secret.map(ChannelSecret),
            severities: SeveritySet::stored("notification_channels.severities", r.severities)?,
            enabled: r.enabled,
            last_error: r.last_error,
            last_error_at: r.last_error_at.map(|t| t.0),
            last_success_at: r.last_success_at.map(|t| t.0),
            created_at: r.created_at.0,
            updated_at: r.updated_at.0,
            created_by: r.created_by.map(UserId::new),
        })
    }
}

const CHANNEL_COLUMNS: &str = "id, tenant_id, kind, name, config, secret, severities, enabled, last_error, \
    last_error_at, last_success_at, created_at, updated_at, created_by";

fn duplicate_name(name: &Name) -> impl Fn(sqlx::Error) -> StoreError + '_ {
    move |e| match StoreError::from(e) {
        StoreError::Conflict(_) => StoreError::Conflict(format!("a channel named {name} already exists")),
        e => e,
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ChannelStore<'a> {
    db: &'a Db,
}

impl<'a> ChannelStore<'a> {
    pub(crate) fn new(db: &'a Db) -> Self {
        Self { db }
    }

    /// Creates a channel; its name is unique in the tenant (`Conflict`).
    pub async fn create(&self, tenant: TenantId, new: &NewChannel) -> Result<Channel, StoreError> {
        let config = check_config(&new.config)?;
        match (new.kind, &new.secret) {
            (ChannelKind::Webhook, None) => return Err(ValidationError::Required { field: "secret" }.into()),
            (ChannelKind::Email, Some(_)) => {
                return Err(ValidationError::Rule {
                    field: "secret",
                    value: "***".into(),
                    reason: "an email channel has no secret".into(),
                }
                .into());
            }
            _ => {}
        }
        let sql = format!(
            "INSERT INTO notification_channels (tenant_id, kind, name, config, secret, severities, enabled, \
             created_at, updated_at, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9) \
             RETURNING {CHANNEL_COLUMNS}"
        );
        let row: ChannelRow = on_db!(
            self.db,
            write
                | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(tenant.get())
                    .bind(new.kind.as_str())
                    .bind(new.name.as_str())
                    .bind(&config)
                    .bind(new.secret.as_ref().map(ChannelSecret::expose))
                    .bind(new.severities.bits())
                    .bind(new.enabled)
                    .bind(Ts::now())
                    .bind(new.created_by.map(UserId::get))
                    .fetch_one(pool)
                    .await
        )
        .map_err(duplicate_name(&new.name))?;
        row.try_into()
    }

    pub async fn get(&self, tenant: TenantId, id: ChannelId) -> Result<Channel, StoreError> {
        let sql =
            format!("SELECT {CHANNEL_COLUMNS} FROM notification_channels WHERE tenant_id = $1 AND id = $2");
        let row: ChannelRow = on_db!(
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

    /// The tenant's channels by name.
    pub async fn list(&self, tenant: TenantId) -> Result<Vec<Channel>, StoreError> {
        let sql = format!(
            "SELECT {CHANNEL_COLUMNS} FROM notification_channels WHERE tenant_id = $1 ORDER BY name, id"
        );
        let rows: Vec<ChannelRow> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str())).bind(tenant.get()).fetch_all(pool).await
        )?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    pub async fn update(
        &self,
        tenant: TenantId,
        id: ChannelId,
        fields: &ChannelFields,
    ) -> Result<Channel, StoreError> {
        let config = check_config(&fields.config)?;
        let sql = format!(
            "UPDATE notification_channels SET name = $3, config = $4, severities = $5, updated_at = $6 \
             WHERE tenant_id = $1 AND id = $2 RETURNING {CHANNEL_COLUMNS}"
        );
        let row: ChannelRow = on_db!(
            self.db,
            write
                | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(tenant.get())
                    .bind(id.get())
                    .bind(fields.name.as_str())
                    .bind(&config)
                    .bind(fields.severities.bits())
                    .bind(Ts::now())
                    .fetch_one(pool)
                    .await
        )
        .map_err(duplicate_name(&fields.name))?;
        row.try_into()
    }

    /// Replaces a webhook's secret (an email channel has none: `Invalid`).
    pub async fn set_secret(
        &self,
        tenant: TenantId,
        id: ChannelId,
        secret: &ChannelSecret,
    ) -> Result<(), StoreError> {
        if self.get(tenant, id).await?.kind != ChannelKind::Webhook {
            return Err(ValidationError::Rule {
                field: "secret",
                value: "***".into(),
                reason: "an email channel has no secret".into(),
            }
            .into());
        }
        let done = on_db!(
            self.db,
            write
                | pool
                | sqlx::query(
                    "UPDATE notification_channels SET secret = $3, updated_at = $4 \
                     WHERE tenant_id = $1 AND id = $2 AND kind = 'webhook'"
                )
                .bind(tenant.get())
                .bind(id.get())
                .bind(secret.expose())
                .bind(Ts::now())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        )?;
        found(done)
    }

    pub async fn set_enabled(
        &self,
        tenant: TenantId,
        id: ChannelId,
        enabled: bool,
    ) -> Result<(), StoreError> {
        let done = on_db!(
            self.db,
            write
                | pool
                | sqlx::query(
                    "UPDATE notification_channels SET enabled = $3, updated_at = $4 WHERE tenant_id = $1 AND id = $2"
                )
                .bind(tenant.get())
                .bind(id.get())
                .bind(enabled)
                .bind(Ts::now())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        )?;
        found(done)
    }

    /// Deletes a channel with its outbox rows (delivered or not: nothing is sent to a channel
    /// that is gone).
    pub async fn delete(&self, tenant: TenantId, id: ChannelId) -> Result<(), StoreError> {
        in_tx!(self.db, |tx| {
            sqlx::query("DELETE FROM notification_outbox WHERE tenant_id = $1 AND channel_id = $2")
                .bind(tenant.get())
                .bind(id.get())
                .execute(&mut *tx)
                .await?;
            let done = sqlx::query("DELETE FROM notification_channels WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.get())
                .bind(id.get())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            found(done)
        })
    }

    /// A delivery through the channel succeeded at `at`.
    pub async fn record_success(
        &self,
        tenant: TenantId,
        id: ChannelId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let done = on_db!(
            self.db,
            write
                | pool
                | sqlx::query(
                    "UPDATE notification_channels SET last_success_at = $3 WHERE tenant_id = $1 AND id = $2"
                )
                .bind(tenant.get())
                .bind(id.get())
                .bind(Ts::from(at))
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        )?;
        found(done)
    }

    /// A delivery through the channel failed at `at` with `error` (shown to the tenant).
    pub async fn record_failure(
        &self,
        tenant: TenantId,
        id: ChannelId,
        error: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let done = on_db!(
            self.db,
            write
                | pool
                | sqlx::query(
                    "UPDATE notification_channels SET last_error = $3, last_error_at = $4 \
                     WHERE tenant_id = $1 AND id = $2"
                )
                .bind(tenant.get())
                .bind(id.get())
                .bind(error)
                .bind(Ts::from(at))
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        )?;
        found(done)
    }
}

/// A delivery to make.
#[derive(Debug, Clone)]
pub struct NewOutbox {
    /// Required except for a test message.
    pub alert_id: Option<AlertId>,
    /// The channel (a webhook, or an email channel's addresses) or the user (email), or both.
    pub channel_id: Option<ChannelId>,
    pub user_id: Option<UserId>,
    pub event: OutboxEvent,
    /// Stable for this message and recipient (e.g. built from the alert event's id and the
    /// recipient), sent as the `Idempotency-Key` header.
    pub idempotency_key: String,
    /// The message as JSON.
    pub payload: String,
    /// The first attempt (later than now to wait for the end of quiet hours).
    pub next_attempt_at: DateTime<Utc>,
}

impl NewOutbox {
    /// A channel's test message (the "send a test" button), due at once: `notice` from
    /// [`tds_domain::alerts::notice::test_notice`], `nonce` any short random text that tells two
    /// presses of the button apart. The notifier sends it like any alert, even to a disabled
    /// channel.
    pub fn test(channel: ChannelId, notice: &tds_domain::alerts::Notice, nonce: &str) -> Self {
        Self {
            alert_id: None,
            channel_id: Some(channel),
            user_id: None,
            event: OutboxEvent::Test,
            idempotency_key: tds_domain::alerts::notice::keys::test(channel.get(), nonce),
            payload: notice.to_json(),
            next_attempt_at: notice.sent_at,
        }
    }
}

/// An outbox row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxItem {
    pub id: OutboxId,
    pub tenant_id: TenantId,
    pub alert_id: Option<AlertId>,
    pub channel_id: Option<ChannelId>,
    pub user_id: Option<UserId>,
    pub event: OutboxEvent,
    pub idempotency_key: String,
    pub payload: String,
    pub attempts: i64,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// When the sender gave up.
    pub failed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct OutboxRow {
    id: i64,
    tenant_id: i64,
    alert_id: Option<i64>,
    channel_id: Option<i64>,
    user_id: Option<i64>,
    event: String,
    idempotency_key: String,
    payload: String,
    attempts: i64,
    next_attempt_at: Ts,
    last_error: Option<String>,
    delivered_at: Option<Ts>,
    failed_at: Option<Ts>,
    created_at: Ts,
}

impl TryFrom<OutboxRow> for OutboxItem {
    type Error = StoreError;
    fn try_from(r: OutboxRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: OutboxId::new(r.id),
            tenant_id: TenantId::new(r.tenant_id),
            alert_id: r.alert_id.map(AlertId::new),
            channel_id: r.channel_id.map(ChannelId::new),
            user_id: r.user_id.map(UserId::new),
            event: OutboxEvent::stored("notification_outbox.event", &r.event)?,
            idempotency_key: r.idempotency_key,
            payload: r.payload,
            attempts: r.attempts,
            next_attempt_at: r.next_attempt_at.0,
            last_error: r.last_error,
            delivered_at: r.delivered_at.map(|t| t.0),
            failed_at: r.failed_at.map(|t| t.0),
            created_at: r.created_at.0,
        })
    }
}

const OUTBOX_COLUMNS: &str = "id, tenant_id, alert_id, channel_id, user_id, event, idempotency_key, payload, \
    attempts, next_attempt_at, last_error, delivered_at, failed_at, created_at";

/// Rows still to send: neither delivered nor given up.
const PENDING: &str = "delivered_at IS NULL AND failed_at IS NULL";

fn sorted(rows: Vec<OutboxRow>) -> Result<Vec<OutboxItem>, StoreError> {
    let mut items = rows.into_iter().map(OutboxItem::try_from).collect::<Result<Vec<_>, _>>()?;
    items.sort_by_key(|i| (i.next_attempt_at, i.id));
    Ok(items)
}

#[derive(Debug, Clone, Copy)]
pub struct OutboxStore<'a> {
    db: &'a Db,
}

impl<'a> OutboxStore<'a> {
    pub(crate) fn new(db: &'a Db) -> Self {
        Self { db }
    }

    /// Queues a delivery; `None` when a row with its idempotency key exists already (then
    /// nothing is written). The alert, the channel and the user (a member) must be the
    /// tenant's, else `NotFound`.
    pub async fn enqueue(&self, tenant: TenantId, new: &NewOutbox) -> Result<Option<OutboxId>, StoreError> {
        if new.channel_id.is_none() && new.user_id.is_none() {
            return Err(ValidationError::Required { field: "recipient (channel or user)" }.into());
        }
        if new.alert_id.is_none() && new.event != OutboxEvent::Test {
            return Err(ValidationError::Required { field: "alert" }.into());
        }
        let checks = [
            ("SELECT count(*) FROM alerts WHERE tenant_id = $1 AND id = $2", new.alert_id.map(AlertId::get)),
            (
                "SELECT count(*) FROM notification_channels WHERE tenant_id = $1 AND id = $2",
                new.channel_id.map(ChannelId::get),
            ),
            (
                "SELECT count(*) FROM memberships WHERE tenant_id = $1 AND user_id = $2",
                new.user_id.map(UserId::get),
            ),
        ];
        let id: Option<i64> = in_tx!(self.db, |tx| {
            for (sql, id) in checks {
                let Some(id) = id else { continue };
                let n: i64 = sqlx::query_scalar(sql).bind(tenant.get()).bind(id).fetch_one(&mut *tx).await?;
                if n == 0 {
                    return Err(StoreError::NotFound);
                }
            }
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO notification_outbox (tenant_id, alert_id, channel_id, user_id, event, idempotency_key, \
                 payload, attempts, next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9) \
                 ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
            )
            .bind(tenant.get())
            .bind(new.alert_id.map(AlertId::get))
            .bind(new.channel_id.map(ChannelId::get))
            .bind(new.user_id.map(UserId::get))
            .bind(new.event.as_str())
            .bind(&new.idempotency_key)
            .bind(&new.payload)
            .bind(Ts::from(new.next_attempt_at))
            .bind(Ts::now())
            .fetch_optional(&mut *tx)
            .await?;
            Ok(id)
        })?;
        Ok(id.map(OutboxId::new))
    }

    /// Every tenant's rows due at `now` (not delivered, not given up, next attempt reached),
    /// most overdue first, at most `limit`. Read only: for a single sender.
    pub async fn staff_due(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<OutboxItem>, StoreError> {
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM notification_outbox WHERE {PENDING} AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at, id LIMIT $2"
        );
        let rows: Vec<OutboxRow> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(Ts::from(now))
                    .bind(limit.max(1))
                    .fetch_all(pool)
                    .await
        )?;
        sorted(rows)
    }

    /// Like [`staff_due`](Self::staff_due), but takes the rows for `lease`: their next attempt
    /// moves to `now + lease`, so that another sender sharing the database skips them, and a
    /// sender that dies leaves them to be taken again when the lease runs out.
    pub async fn staff_claim_due(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: i64,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let skip_locked = match self.db {
            Db::Postgres(_) => "FOR UPDATE SKIP LOCKED",
            Db::Sqlite(_) => "",
        };
        let sql = format!(
            "UPDATE notification_outbox SET next_attempt_at = $2 \
             WHERE id IN (SELECT id FROM notification_outbox WHERE {PENDING} AND next_attempt_at <= $1 \
                          ORDER BY next_attempt_at, id LIMIT $3 {skip_locked}) \
             AND {PENDING} AND next_attempt_at <= $1 RETURNING {OUTBOX_COLUMNS}"
        );
        let rows: Vec<OutboxRow> = on_db!(
            self.db,
            write
                | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(Ts::from(now))
                    .bind(Ts::from(now + lease))
                    .bind(limit.max(1))
                    .fetch_all(pool)
                    .await
        )?;
        sorted(rows)
    }

    /// Whether a row with this idempotency key exists (any tenant): lets a caller skip building
    /// a message it queued before without taking the database's writer.
    pub async fn has_key(&self, idempotency_key: &str) -> Result<bool, StoreError> {
        let n: i64 = on_db!(
            self.db,
            read | pool
                | sqlx::query_scalar("SELECT count(*) FROM notification_outbox WHERE idempotency_key = $1")
                    .bind(idempotency_key)
                    .fetch_one(pool)
                    .await
        )?;
        Ok(n > 0)
    }

    /// Puts back a row taken by [`staff_claim_due`](Self::staff_claim_due) but not attempted
    /// (its destination failed just before): due again at `at`, no attempt counted.
    pub async fn release(&self, tenant: TenantId, id: OutboxId, at: DateTime<Utc>) -> Result<(), StoreError> {
        let sql = format!(
            "UPDATE notification_outbox SET next_attempt_at = $3 WHERE tenant_id = $1 AND id = $2 AND {PENDING}"
        );
        on_db!(
            self.db,
            write
                | pool
                | sqlx::query(AssertSqlSafe(sql.as_str()))
                    .bind(tenant.get())
                    .bind(id.get())
                    .bind(Ts::from(at))
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected())
        )?;
        Ok(())
    }

    /// The row was delivered at `at` (an attempt counted). Marking it again keeps the first time.
    pub async fn mark_delivered(
        &self,
        tenant: TenantId,
        id: OutboxId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let done = on_db!(
            self.db,
            write
                | pool
                | sqlx::query(
                    "UPDATE notification_outbox SET attempts = attempts + 1, delivered_at = $3 \
                     WHERE tenant_id = $1 AND id = $2 AND delivered_at IS NULL"
                )
                .bind(tenant.get())
                .bind(id.get())
                .bind(Ts::from(at))
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        )?;
        if done == 0 {
            // Already delivered is fine; another tenant's or no row is not.
            self.get(tenant, id).await?;
        }
        Ok(())
    }

    /// An attempt failed at `at` with `error`: try again at `next_attempt_at`, or give up when it
    /// is `None` (the row is then failed, never due again). A delivered row is `Conflict`.
    pub async fn mark_failed(
        &self,
        tenant: TenantId,
        id: OutboxId,
        error: &str,
        at: DateTime<Utc>,
        next_attempt_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let done = on_db!(
            self.db,
            write
                | pool
                | sqlx::query(
                    "UPDATE notification_outbox SET attempts = attempts + 1, last_error = $3, \
                     next_attempt_at = COALESCE($4, next_attempt_at), \
                     failed_at = CASE WHEN $4 IS NULL THEN $5 ELSE NULL END \
                     WHERE tenant_id = $1 AND id = $2 AND delivered_at IS NULL"
                )
                .bind(tenant.get())
                .bind(id.get())
                .bind(error)
                .bind(next_attempt_at.map(Ts::from))
                .bind(Ts::from(at))
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        )?;
        if done == 0 {
            self.get(tenant, id).await?;
            return Err(StoreError::Conflict("the message was delivered already".into()));
        }
        Ok(())
    }

    pub async fn get(&self, tenant: TenantId, id: OutboxId) -> Result<OutboxItem, StoreError> {
        let sql =
            format!("SELECT {OUTBOX_COLUMNS} FROM notification_outbox WHERE tenant_id = $1 AND id = $2");
        let row: OutboxRow = on_db!(
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

    /// The deliveries of an alert, oldest first (the alert's page shows who was told, and what
    /// failed).
    pub async fn list_for_alert(
        &self,
        tenant: TenantId,
        alert: AlertId,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM notification_outbox WHERE tenant_id = $1 AND alert_id = $2 ORDER BY id"
        );
        let rows: Vec<OutboxRow> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(tenant.get())
                    .bind(alert.get())
                    .fetch_all(pool)
                    .await
        )?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Deletes every tenant's rows delivered or given up before `before` (their retention);
    /// returns how many.
    pub async fn staff_purge_finished_before(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let delivered =
            crate::purge::older_than(self.db, "notification_outbox", "delivered_at", before).await?;
        let failed = crate::purge::older_than(self.db, "notification_outbox", "failed_at", before).await?;
        Ok(delivered + failed)
    }
}

fn minutes_of_day(t: NaiveTime) -> i64 {
    i64::from(t.hour() * 60 + t.minute())
}

fn stored_minute(column: &'static str, m: i64) -> Result<NaiveTime, StoreError> {
    u32::try_from(m)
        .ok()
        .and_then(|m| NaiveTime::from_hms_opt(m / 60, m % 60, 0))
        .ok_or_else(|| StoreError::Corrupt(format!("{column}: {m} is not a minute of the day")))
}

/// A user's alert preferences in a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AlertPrefs {
    /// Severities sent by email.
    pub email: SeveritySet,
    /// Severities shown in the UI's list and badge.
    pub in_app: SeveritySet,
    pub quiet_hours: Option<QuietHours>,
    /// Every how many hours (1..=168) a critical alert left active and unacknowledged is sent
    /// again; `None` for no reminders.
    pub reminder_hours: Option<i64>,
}

impl AlertPrefs {
    /// SPEC §5: admins and editors get WARNING and CRITICAL by email, everyone sees every alert
    /// in the UI; no quiet hours, no reminders.
    pub fn default_for(role: Role) -> Self {
        let email = match role {
            Role::Admin | Role::Editor => SeveritySet::at_least(Severity::Warning),
            Role::Viewer => SeveritySet::NONE,
        };
        Self { email, in_app: SeveritySet::ALL, quiet_hours: None, reminder_hours: None }
    }

    fn check(&self) -> Result<(), ValidationError> {
        match self.reminder_hours {
            Some(h) if !(1..=168).contains(&h) => {
                Err(ValidationError::out_of_range("reminder (hours)", h, 1, 168))
            }
            _ => Ok(()),
        }
    }
}

/// A member who may be told about the tenant's alerts, with the preferences that apply.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recipient {
    pub user_id: UserId,
    pub email: String,
    pub display_name: String,
    pub language: String,
    pub role: Role,
    pub prefs: AlertPrefs,
    /// Whether `prefs` are the user's own choice (else the defaults of the role).
    pub customised: bool,
}

#[derive(sqlx::FromRow)]
struct PrefsRow {
    email_severities: i64,
    in_app_severities: i64,
    quiet_start_min: Option<i64>,
    quiet_end_min: Option<i64>,
    reminder_hours: Option<i64>,
}

impl TryFrom<PrefsRow> for AlertPrefs {
    type Error = StoreError;
    fn try_from(r: PrefsRow) -> Result<Self, StoreError> {
        let quiet_hours = match (r.quiet_start_min, r.quiet_end_min) {
            (Some(s), Some(e)) => Some(
                QuietHours::new(
                    stored_minute("user_alert_prefs.quiet_start_min", s)?,
                    stored_minute("user_alert_prefs.quiet_end_min", e)?,
                )
                .map_err(|e| StoreError::Corrupt(format!("user_alert_prefs: {e}")))?,
            ),
            _ => None,
        };
        Ok(Self {
            email: SeveritySet::stored("user_alert_prefs.email_severities", r.email_severities)?,
            in_app: SeveritySet::stored("user_alert_prefs.in_app_severities", r.in_app_severities)?,
            quiet_hours,
            reminder_hours: r.reminder_hours,
        })
    }
}

const PREFS_COLUMNS: &str =
    "email_severities, in_app_severities, quiet_start_min, quiet_end_min, reminder_hours";

#[derive(Debug, Clone, Copy)]
pub struct AlertPrefsStore<'a> {
    db: &'a Db,
}

impl<'a> AlertPrefsStore<'a> {
    pub(crate) fn new(db: &'a Db) -> Self {
        Self { db }
    }

    /// The user's own preferences in the tenant; `None` when they kept the defaults.
    pub async fn get(&self, tenant: TenantId, user: UserId) -> Result<Option<AlertPrefs>, StoreError> {
        let sql =
            format!("SELECT {PREFS_COLUMNS} FROM user_alert_prefs WHERE tenant_id = $1 AND user_id = $2");
        let row: Option<PrefsRow> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(tenant.get())
                    .bind(user.get())
                    .fetch_optional(pool)
                    .await
        )?;
        row.map(TryInto::try_into).transpose()
    }

    /// The preferences that apply to a member: their own, or their role's defaults. `NotFound`
    /// for someone who is not a member of the tenant.
    pub async fn effective(&self, tenant: TenantId, user: UserId) -> Result<AlertPrefs, StoreError> {
        let role = crate::memberships::MembershipStore::new(self.db).role(tenant, user).await?;
        let role = role.ok_or(StoreError::NotFound)?;
        Ok(self.get(tenant, user).await?.unwrap_or_else(|| AlertPrefs::default_for(role)))
    }

    /// Keeps a member's own preferences (`NotFound` for someone who is not a member).
    pub async fn set(&self, tenant: TenantId, user: UserId, prefs: &AlertPrefs) -> Result<(), StoreError> {
        prefs.check()?;
        let (start, end) = match prefs.quiet_hours {
            Some(q) => (Some(minutes_of_day(q.start())), Some(minutes_of_day(q.end()))),
            None => (None, None),
        };
        in_tx!(self.db, |tx| {
            let n: i64 =
                sqlx::query_scalar("SELECT count(*) FROM memberships WHERE tenant_id = $1 AND user_id = $2")
                    .bind(tenant.get())
                    .bind(user.get())
                    .fetch_one(&mut *tx)
                    .await?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            sqlx::query(
                "INSERT INTO user_alert_prefs (tenant_id, user_id, email_severities, in_app_severities, \
                 quiet_start_min, quiet_end_min, reminder_hours, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (tenant_id, user_id) DO UPDATE SET email_severities = excluded.email_severities, \
                 in_app_severities = excluded.in_app_severities, quiet_start_min = excluded.quiet_start_min, \
                 quiet_end_min = excluded.quiet_end_min, reminder_hours = excluded.reminder_hours, \
                 updated_at = excluded.updated_at",
            )
            .bind(tenant.get())
            .bind(user.get())
            .bind(prefs.email.bits())
            .bind(prefs.in_app.bits())
            .bind(start)
            .bind(end)
            .bind(prefs.reminder_hours)
            .bind(Ts::now())
            .execute(&mut *tx)
            .await?;
            Ok(())
        })
    }

    /// Goes back to the defaults.
    pub async fn reset(&self, tenant: TenantId, user: UserId) -> Result<(), StoreError> {
        on_db!(
            self.db,
            write
                | pool
                | sqlx::query("DELETE FROM user_alert_prefs WHERE tenant_id = $1 AND user_id = $2")
                    .bind(tenant.get())
                    .bind(user.get())
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected())
        )?;
        Ok(())
    }

    /// The tenant's active members with the preferences that apply to each, by user id: whom the
    /// notifier tells about an alert.
    pub async fn recipients(&self, tenant: TenantId) -> Result<Vec<Recipient>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            id: i64,
            email: String,
            display_name: String,
            language: String,
            role: String,
            email_severities: Option<i64>,
            in_app_severities: Option<i64>,
            quiet_start_min: Option<i64>,
            quiet_end_min: Option<i64>,
            reminder_hours: Option<i64>,
        }
        let rows: Vec<Row> = on_db!(
            self.db,
            read | pool
                | sqlx::query_as(
                    "SELECT u.id, u.email, u.display_name, u.language, m.role, p.email_severities, \
                     p.in_app_severities, p.quiet_start_min, p.quiet_end_min, p.reminder_hours \
                     FROM memberships m JOIN users u ON u.id = m.user_id \
                     LEFT JOIN user_alert_prefs p ON p.tenant_id = m.tenant_id AND p.user_id = m.user_id \
                     WHERE m.tenant_id = $1 AND u.active ORDER BY u.id"
                )
                .bind(tenant.get())
                .fetch_all(pool)
                .await
        )?;
        rows.into_iter()
            .map(|r| {
                let role = crate::error::stored("memberships.role", &r.role, Role::parse)?;
                let own = match (r.email_severities, r.in_app_severities) {
                    (Some(email_severities), Some(in_app_severities)) => {
                        Some(AlertPrefs::try_from(PrefsRow {
                            email_severities,
                            in_app_severities,
                            quiet_start_min: r.quiet_start_min,
                            quiet_end_min: r.quiet_end_min,
                            reminder_hours: r.reminder_hours,
                        })?)
                    }
                    _ => None,
                };
                Ok(Recipient {
                    user_id: UserId::new(r.id),
                    email: r.email,
                    display_name: r.display_name,
                    language: r.language,
                    role,
                    customised: own.is_some(),
                    prefs: own.unwrap_or_else(|| AlertPrefs::default_for(role)),
                })
            })
            .collect()
    }
}
