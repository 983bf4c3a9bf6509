//! Sending due outbox rows: claim with a lease, group by destination, deliver in parallel with a
//! bound, record the outcome on the row and on the channel.
//!
//! A destination is a channel, or a user's email. Its rows go one after another, at most
//! `per_destination` per round; the first failure stops the group and puts its other rows back
//! until the failed row's next attempt, so that a channel that is down costs one timeout per
//! round and never holds another channel's deliveries (groups run side by side).
//!
//! Counted in `/metrics`: `tds_notify_deliveries_total{kind="email|webhook",outcome="ok|failed|gave_up"}`.

use super::Notifier;
use super::catalog;
use super::webhook::{self, Failure};
use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use std::collections::BTreeMap;
use tds_domain::alerts::channel::{EmailConfig, Language, WebhookConfig};
use tds_domain::alerts::delivery::retry_at;
use tds_domain::alerts::{Notice, NoticeEvent};
use tds_domain::{TenantId, UserId};
use tds_store::notifications::{ChannelId, ChannelKind, OutboxItem};
use tds_store::{Store, StoreError};

/// What a round of sending did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Rows claimed.
    pub claimed: i64,
    pub delivered: usize,
    /// Failed attempts that will be retried.
    pub failed: usize,
    /// Failed attempts given up (24 h past, or a permanent error).
    pub gave_up: usize,
}

impl std::ops::AddAssign for Sent {
    fn add_assign(&mut self, o: Self) {
        self.claimed += o.claimed;
        self.delivered += o.delivered;
        self.failed += o.failed;
        self.gave_up += o.gave_up;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Destination {
    Channel(TenantId, ChannelId),
    User(TenantId, UserId),
}

fn destination(row: &OutboxItem) -> Destination {
    match (row.channel_id, row.user_id) {
        (Some(c), _) => Destination::Channel(row.tenant_id, c),
        (None, Some(u)) => Destination::User(row.tenant_id, u),
        // The store refuses such a row; put it with its tenant's channel 0, which never exists.
        (None, None) => Destination::Channel(row.tenant_id, ChannelId::new(0)),
    }
}

/// Why an attempt did not deliver.
enum Outcome {
    Delivered,
    /// Worth another attempt later.
    Failed(String),
    /// Never will work (the channel is gone, disabled or misconfigured; the user is gone).
    Permanent(String),
}

/// Claims the rows due at `now` and sends them; returns when every attempt of this round is
/// over (each bounded by the send timeout).
pub async fn send_due(store: &Store, notifier: &Notifier, now: DateTime<Utc>) -> Result<Sent, StoreError> {
    let options = notifier.options();
    let lease = chrono::Duration::from_std(options.lease).unwrap_or(chrono::Duration::minutes(5));
    // Look before claiming: the claim is a write, and an idle round should not take SQLite's
    // writer from ingestion every two seconds.
    if store.outbox().staff_due(now, 1).await?.is_empty() {
        return Ok(Sent::default());
    }
    let rows = store.outbox().staff_claim_due(now, lease, options.batch).await?;
    let mut groups: BTreeMap<Destination, Vec<OutboxItem>> = BTreeMap::new();
    let claimed = rows.len() as i64;
    for row in rows {
        groups.entry(destination(&row)).or_default().push(row);
    }
    let mut total = Sent { claimed, ..Sent::default() };
    let results: Vec<Result<Sent, StoreError>> = futures_util::stream::iter(groups.into_values())
        .map(|rows| send_group(store, notifier, rows, now))
        .buffer_unordered(options.parallel.max(1))
        .collect()
        .await;
    for r in results {
        total += r?;
    }
    Ok(total)
}

/// One destination's rows, in order, until one fails.
async fn send_group(
    store: &Store,
    notifier: &Notifier,
    rows: Vec<OutboxItem>,
    now: DateTime<Utc>,
) -> Result<Sent, StoreError> {
    let mut done = Sent::default();
    let per_destination = notifier.options().per_destination.max(1);
    let mut rows = rows.into_iter();
    let mut stopped_until: Option<DateTime<Utc>> = None;
    for (i, row) in rows.by_ref().enumerate() {
        let kind = if row.channel_id.is_some() {
            channel_kind(store, &row).await?
        } else {
            Some(ChannelKind::Email)
        };
        let kind_label = match kind {
            Some(ChannelKind::Webhook) => "webhook",
            _ => "email",
        };
        let outcome =
            match tokio::time::timeout(notifier.options().send_timeout, deliver(store, notifier, &row, now))
                .await
            {
                Ok(outcome) => outcome?,
                Err(_) => Outcome::Failed("no answer in time".to_owned()),
            };
        let (tenant, id) = (row.tenant_id, row.id);
        let failure = match outcome {
            Outcome::Delivered => None,
            Outcome::Failed(m) => Some((m, false)),
            Outcome::Permanent(m) => Some((m, true)),
        };
        let Some((message, permanent)) = failure else {
            record(store.outbox().mark_delivered(tenant, id, now).await)?;
            if let Some(channel) = row.channel_id {
                record(store.notification_channels().record_success(tenant, channel, now).await)?;
            }
            metrics::counter!("tds_notify_deliveries_total", "kind" => kind_label, "outcome" => "ok")
                .increment(1);
            done.delivered += 1;
            if i + 1 >= per_destination {
                stopped_until = Some(now);
                break;
            }
            continue;
        };
        let next = if permanent { None } else { retry_at(row.created_at, row.attempts + 1, now) };
        record(store.outbox().mark_failed(tenant, id, &message, now, next).await)?;
        if let Some(channel) = row.channel_id {
            record(store.notification_channels().record_failure(tenant, channel, &message, now).await)?;
        }
        let outcome = if next.is_some() { "failed" } else { "gave_up" };
        metrics::counter!("tds_notify_deliveries_total", "kind" => kind_label, "outcome" => outcome)
            .increment(1);
        tracing::info!(outbox = id.get(), key = %row.idempotency_key, error = %message, retry_at = ?next, "alert notification not delivered");
        if next.is_some() {
            done.failed += 1;
        } else {
            done.gave_up += 1;
        }
        // The destination is failing: its other rows wait with this one.
        stopped_until = Some(next.unwrap_or(now + chrono::Duration::seconds(30)));
        break;
    }
    if let Some(at) = stopped_until {
        for row in rows {
            record(store.outbox().release(row.tenant_id, row.id, at).await)?;
        }
    }
    Ok(done)
}

/// A channel deleted meanwhile (its rows went with it) or a row another sender delivered after
/// this one's lease ran out is no error here.
fn record(result: Result<(), StoreError>) -> Result<(), StoreError> {
    match result {
        Ok(()) | Err(StoreError::NotFound | StoreError::Conflict(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

async fn channel_kind(store: &Store, row: &OutboxItem) -> Result<Option<ChannelKind>, StoreError> {
    let Some(id) = row.channel_id else { return Ok(None) };
    match store.notification_channels().get(row.tenant_id, id).await {
        Ok(c) => Ok(Some(c.kind)),
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// One attempt of one row. Store errors are returned (the row stays claimed and is taken again
/// after its lease); delivery errors are outcomes.
async fn deliver(
    store: &Store,
    notifier: &Notifier,
    row: &OutboxItem,
    now: DateTime<Utc>,
) -> Result<Outcome, StoreError> {
    let notice = match Notice::from_json(&row.payload) {
        Ok(n) => n,
        Err(e) => return Ok(Outcome::Permanent(format!("unreadable message: {e}"))),
    };
    if let Some(channel_id) = row.channel_id {
        let channel = match store.notification_channels().get(row.tenant_id, channel_id).await {
            Ok(c) => c,
            Err(StoreError::NotFound) => return Ok(Outcome::Permanent("the channel was deleted".into())),
            Err(e) => return Err(e),
        };
        // A test is sent even to a disabled channel: checking it before enabling it is the point.
        if !channel.enabled && notice.event != NoticeEvent::Test {
            return Ok(Outcome::Permanent("the channel is disabled".into()));
        }
        return Ok(match channel.kind {
            ChannelKind::Webhook => {
                let config = match WebhookConfig::parse(&channel.config) {
                    Ok(c) => c,
                    Err(e) => return Ok(Outcome::Permanent(format!("invalid configuration: {e}"))),
                };
                let Some(secret) = channel.secret.as_ref() else {
                    return Ok(Outcome::Permanent("the webhook has no secret".into()));
                };
                let text = catalog::chat_text(config.language, &notice);
                let request = config.request(secret.expose(), &row.payload, &text);
                let event = notice.event.as_str();
                match webhook::post(
                    notifier.http(),
                    &request,
                    secret.expose(),
                    &row.idempotency_key,
                    event,
                    now,
                )
                .await
                {
                    Ok(_) => Outcome::Delivered,
                    Err(Failure(m)) => Outcome::Failed(m),
                }
            }
            ChannelKind::Email => {
                let config = match EmailConfig::parse(&channel.config) {
                    Ok(c) => c,
                    Err(e) => return Ok(Outcome::Permanent(format!("invalid configuration: {e}"))),
                };
                let to: Vec<&str> = config.addresses.iter().map(tds_domain::Email::as_str).collect();
                email(notifier, &to, config.language, &notice).await
            }
        });
    }
    let Some(user_id) = row.user_id else { return Ok(Outcome::Permanent("no recipient".into())) };
    let user = match store.users().get(user_id).await {
        Ok(u) if u.active => u,
        Ok(_) => return Ok(Outcome::Permanent("the user is deactivated".into())),
        Err(StoreError::NotFound) => return Ok(Outcome::Permanent("the user was deleted".into())),
        Err(e) => return Err(e),
    };
    let lang = Language::from_tag(&user.language);
    Ok(email(notifier, &[user.email.as_str()], lang, &notice).await)
}

async fn email(notifier: &Notifier, to: &[&str], lang: Language, notice: &Notice) -> Outcome {
    let subject = catalog::subject(lang, notice);
    match notifier.mailer().send_to_all(to, &subject, catalog::body(lang, notice)).await {
        Ok(()) => Outcome::Delivered,
        Err(tds_mail::MailError::Address(a)) => Outcome::Permanent(format!("invalid address {a:?}")),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}
