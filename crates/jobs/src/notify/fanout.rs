//! From alert history to outbox rows: the fan-out of raises, clears and acknowledgements, and
//! the reminders of critical alerts left active.
//!
//! Each row's idempotency key comes from the event (or alert, user and period) and the
//! recipient, and the outbox keeps one row per key: a fan-out interrupted after some rows (a
//! crash, a database error) and run again writes only what is missing, and only then marks the
//! event dispatched. Must not: send anything.

use super::Notifier;
use super::compose::{self, About};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use tds_domain::alerts::channel::ChannelConfig;
use tds_domain::alerts::delivery::first_email_attempt;
use tds_domain::alerts::notice::keys;
use tds_domain::alerts::{Notice, NoticeEvent};
use tds_domain::{Severity, TenantId};
use tds_store::alerts::{AlertEvent, AlertEventKind};
use tds_store::notifications::{ChannelKind, NewOutbox, OutboxEvent, Recipient};
use tds_store::{Store, StoreError};

/// What a fan-out did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FanOut {
    /// Alert events read (dispatched, or left for the next round after an error).
    pub events: i64,
    /// Outbox rows written for them.
    pub rows: usize,
    /// Reminder rows written.
    pub reminders: usize,
}

const fn outbox_event(event: NoticeEvent) -> OutboxEvent {
    match event {
        NoticeEvent::Raised => OutboxEvent::Raised,
        NoticeEvent::Cleared => OutboxEvent::Cleared,
        NoticeEvent::Acknowledged => OutboxEvent::Acknowledged,
        NoticeEvent::Reminder => OutboxEvent::Reminder,
        NoticeEvent::Test => OutboxEvent::Test,
    }
}

/// Fans out up to `fan_out_batch` undispatched alert events at `now`. One event that fails is
/// logged and tried again next round; the others go on.
pub async fn fan_out(store: &Store, notifier: &Notifier, now: DateTime<Utc>) -> Result<FanOut, StoreError> {
    let events = store.alerts().staff_undispatched(notifier.options().fan_out_batch).await?;
    let mut done = FanOut { events: events.len() as i64, ..FanOut::default() };
    for event in events {
        match dispatch(store, notifier, &event, now).await {
            Ok(rows) => done.rows += rows,
            Err(e) => {
                tracing::warn!(event = event.id, alert = event.alert_id.get(), error = %e, "alert event not fanned out; will retry");
            }
        }
    }
    Ok(done)
}

/// Queues every delivery of one history entry, then marks it dispatched.
async fn dispatch(
    store: &Store,
    notifier: &Notifier,
    event: &AlertEvent,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let tenant = event.tenant_id;
    let notice_event = match event.kind {
        AlertEventKind::Raised => NoticeEvent::Raised,
        AlertEventKind::Cleared => NoticeEvent::Cleared,
        AlertEventKind::Acknowledged => NoticeEvent::Acknowledged,
        // Nothing to tell (these are written dispatched; this is only a safeguard).
        AlertEventKind::Reminded | AlertEventKind::Updated => {
            store.alerts().mark_dispatched(tenant, event.id, now).await?;
            return Ok(0);
        }
    };
    let alert = match store.alerts().get(tenant, event.alert_id).await {
        Ok(alert) => alert,
        Err(StoreError::NotFound) => {
            store.alerts().mark_dispatched(tenant, event.id, now).await?;
            return Ok(0);
        }
        Err(e) => return Err(e),
    };
    let about =
        About { event: notice_event, occurred_at: event.at, severity: event.severity, value: event.value };
    let notice = compose::notice(store, &notifier.options().public_url, &alert, about, now).await?;
    let payload = notice.to_json();
    let mut rows = 0;
    for channel in store.notification_channels().list(tenant).await? {
        if !channel.enabled || !channel.severities.contains(event.severity) {
            continue;
        }
        // People see acknowledgements in the UI; systems behind webhooks may want them.
        if notice_event == NoticeEvent::Acknowledged && channel.kind != ChannelKind::Webhook {
            continue;
        }
        if let Err(e) = ChannelConfig::parse(channel.kind.as_str(), &channel.config) {
            let message = format!("invalid configuration: {e}");
            tracing::warn!(channel = channel.id.get(), error = %message, "channel skipped");
            store.notification_channels().record_failure(tenant, channel.id, &message, now).await?;
            continue;
        }
        let new = NewOutbox {
            alert_id: Some(alert.id),
            channel_id: Some(channel.id),
            user_id: None,
            event: outbox_event(notice_event),
            idempotency_key: keys::event_to_channel(event.id, channel.id.get()),
            payload: payload.clone(),
            next_attempt_at: now,
        };
        rows += usize::from(store.outbox().enqueue(tenant, &new).await?.is_some());
    }
    if notice_event != NoticeEvent::Acknowledged {
        let zone = store.tenants().get(tenant).await?.timezone.tz();
        for r in store.alert_prefs().recipients(tenant).await? {
            if !r.prefs.email.contains(event.severity) {
                continue;
            }
            let new = NewOutbox {
                alert_id: Some(alert.id),
                channel_id: None,
                user_id: Some(r.user_id),
                event: outbox_event(notice_event),
                idempotency_key: keys::event_to_user(event.id, r.user_id.get()),
                payload: payload.clone(),
                next_attempt_at: first_email_attempt(now, event.severity, r.prefs.quiet_hours, zone),
            };
            rows += usize::from(store.outbox().enqueue(tenant, &new).await?.is_some());
        }
    }
    store.alerts().mark_dispatched(tenant, event.id, now).await?;
    Ok(rows)
}

/// Queues the reminders due at `now`: for each active, unacknowledged CRITICAL alert and each
/// member with a reminder period whose email preferences include CRITICAL, one reminder per
/// elapsed period since the raise (after a long pause, one for the latest period, not one per
/// missed period). Returns how many were queued.
pub async fn remind(store: &Store, notifier: &Notifier, now: DateTime<Utc>) -> Result<usize, StoreError> {
    let alerts = store.alerts().staff_active_critical(1000).await?;
    let mut recipients: HashMap<TenantId, Vec<Recipient>> = HashMap::new();
    let mut queued = 0;
    for alert in alerts {
        if let std::collections::hash_map::Entry::Vacant(slot) = recipients.entry(alert.tenant_id) {
            slot.insert(store.alert_prefs().recipients(alert.tenant_id).await?);
        }
        let Some(members) = recipients.get(&alert.tenant_id) else { continue };
        let mut notice: Option<Notice> = None;
        for r in members {
            let Some(hours) = r.prefs.reminder_hours.filter(|h| *h > 0) else { continue };
            if !r.prefs.email.contains(Severity::Critical) {
                continue;
            }
            let period_secs = hours * 3600;
            let period = (now - alert.raised_at).num_seconds() / period_secs;
            if period < 1 {
                continue;
            }
            let key = keys::reminder(alert.id.get(), r.user_id.get(), period);
            // Read first: a reminder already queued costs no write (this runs every round).
            if store.outbox().has_key(&key).await? {
                continue;
            }
            if notice.is_none() {
                let due = alert.raised_at + chrono::Duration::seconds(period * period_secs);
                let about = About {
                    event: NoticeEvent::Reminder,
                    occurred_at: due,
                    severity: alert.severity,
                    value: alert.value,
                };
                notice =
                    Some(compose::notice(store, &notifier.options().public_url, &alert, about, now).await?);
            }
            let Some(n) = &notice else { continue };
            let new = NewOutbox {
                alert_id: Some(alert.id),
                channel_id: None,
                user_id: Some(r.user_id),
                event: OutboxEvent::Reminder,
                idempotency_key: key,
                payload: n.to_json(),
                next_attempt_at: now,
            };
            if store.outbox().enqueue(alert.tenant_id, &new).await?.is_some() {
                queued += 1;
                // The alert's history says a reminder went out; an alert acknowledged meanwhile
                // refuses it, which is fine.
                match store.alerts().note_reminder(alert.tenant_id, alert.id, now).await {
                    Ok(()) | Err(StoreError::Conflict(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(queued)
}
