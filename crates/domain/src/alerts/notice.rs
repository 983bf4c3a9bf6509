//! What an alert notification says (SPEC §5): the webhook JSON body, schema `tds.alert.v1`,
//! documented in `docs/alerts.md`. Every delivery of a notification (webhook, chat preset or
//! email) starts from one [`Notice`], kept as JSON in the outbox row, so that every retry sends
//! the same bytes.
//!
//! Owns: the schema (field names, the event names, how a test message looks) and the
//! idempotency keys of outbox rows, which are part of the contract with receivers (the
//! `Idempotency-Key` header). Must not: read the store or a clock (the caller passes `sent_at`),
//! or word anything for people (the notifier's catalog does).
//!
//! Versioning: fields may be added to `tds.alert.v1`; renaming or removing one, or changing a
//! meaning, makes `tds.alert.v2`.

use super::Severity;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The `schema` of every notice this version writes.
pub const SCHEMA: &str = "tds.alert.v1";

/// Why a notice was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeEvent {
    Raised,
    Cleared,
    /// Someone said they are on it (sent to webhooks only: people see it in the UI).
    Acknowledged,
    /// A critical alert is still active and unacknowledged (email, per user).
    Reminder,
    /// A channel's "send a test" button.
    Test,
}

impl NoticeEvent {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Raised => "raised",
            Self::Cleared => "cleared",
            Self::Acknowledged => "acknowledged",
            Self::Reminder => "reminder",
            Self::Test => "test",
        }
    }
}

/// The alert as it was when the notice was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoticeAlert {
    /// 0 in a test message.
    pub id: i64,
    pub severity: Severity,
    /// `active`, `acknowledged` or `cleared`.
    pub status: String,
    pub message: String,
    pub value: Option<f64>,
    pub raised_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// Who acknowledged it (their name), or `null` (nobody yet, or an API token).
    pub acknowledged_by: Option<String>,
    /// The acknowledgement's comment.
    pub comment: Option<String>,
    pub cleared_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoticeRule {
    /// `null` once the rule has been deleted; 0 in a test message.
    pub id: Option<i64>,
    pub name: String,
    /// The rule kind (`daily_consumption`, `gateway_offline`, …; `test` in a test message).
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoticeGateway {
    pub mac: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoticeDevice {
    pub code: String,
    pub name: String,
}

/// What the alert is about: a device (with its gateway), a gateway, a medium or the tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoticeTarget {
    /// `device`, `gateway`, `medium` or `tenant`.
    pub kind: String,
    pub gateway: Option<NoticeGateway>,
    pub device: Option<NoticeDevice>,
    /// `water`, `energy`, `gas` or `other` when known.
    pub medium: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoticeTenant {
    pub id: i64,
    pub name: String,
    /// IANA zone in which people read the times (the JSON times are UTC).
    pub timezone: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoticeLinks {
    /// The alert in the web UI (`<public_url>/alerts/<id>`; the list in a test message).
    pub alert: String,
}

/// One notification: the JSON body of a generic webhook, and the source of every other
/// rendering (chat text, email).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// Always [`SCHEMA`] for this version.
    pub schema: String,
    pub event: NoticeEvent,
    /// When the notice was made (the same on every retry of it).
    pub sent_at: DateTime<Utc>,
    /// When what it tells happened (the raise, clear or acknowledgement; for a reminder, the
    /// time it became due).
    pub occurred_at: DateTime<Utc>,
    pub alert: NoticeAlert,
    pub rule: NoticeRule,
    pub target: NoticeTarget,
    pub tenant: NoticeTenant,
    pub links: NoticeLinks,
}

impl Notice {
    /// The JSON kept in the outbox and posted to generic webhooks.
    pub fn to_json(&self) -> String {
        // Serialising these plain fields cannot fail (no maps with non-string keys); a NaN value
        // becomes `null` like any other non-finite float.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a notice back from the outbox.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// The link to an alert: `<public_url>/alerts/<id>` (the URL's trailing slash is not doubled).
pub fn alert_link(public_url: &str, alert: i64) -> String {
    format!("{}/alerts/{alert}", public_url.trim_end_matches('/'))
}

/// The notice a channel's "send a test" button sends (web and notifier share it): an INFO alert
/// with id 0, a `test` rule, the tenant as its target and a link to the alert list.
pub fn test_notice(tenant: NoticeTenant, public_url: &str, now: DateTime<Utc>) -> Notice {
    Notice {
        schema: SCHEMA.to_owned(),
        event: NoticeEvent::Test,
        sent_at: now,
        occurred_at: now,
        alert: NoticeAlert {
            id: 0,
            severity: Severity::Info,
            status: "active".to_owned(),
            message: "TDS test message / Mensagem de teste do TDS".to_owned(),
            value: None,
            raised_at: now,
            acknowledged_at: None,
            acknowledged_by: None,
            comment: None,
            cleared_at: None,
        },
        rule: NoticeRule { id: Some(0), name: "test".to_owned(), kind: "test".to_owned() },
        target: NoticeTarget { kind: "tenant".to_owned(), gateway: None, device: None, medium: None },
        tenant,
        links: NoticeLinks { alert: format!("{}/alerts", public_url.trim_end_matches('/')) },
    }
}

/// Idempotency keys of outbox rows: stable for one message and one recipient, so that a fan-out
/// run twice keeps one row and every retry carries the same `Idempotency-Key`. Keys are unique
/// across tenants (the ids in them are).
pub mod keys {
    /// An alert history entry (raise, clear, acknowledgement) to a channel.
    pub fn event_to_channel(event: i64, channel: i64) -> String {
        format!("tds-ev{event}-ch{channel}")
    }

    /// An alert history entry to a user's email.
    pub fn event_to_user(event: i64, user: i64) -> String {
        format!("tds-ev{event}-u{user}")
    }

    /// The `period`-th reminder (1 after the first reminder interval) of an alert to a user.
    pub fn reminder(alert: i64, user: i64, period: i64) -> String {
        format!("tds-rem{alert}-u{user}-p{period}")
    }

    /// A test message to a channel; `nonce` tells two presses of the button apart (any short
    /// random text).
    pub fn test(channel: i64, nonce: &str) -> String {
        format!("tds-test{channel}-{nonce}")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::TimeZone as _;

    fn tenant() -> NoticeTenant {
        NoticeTenant { id: 3, name: "Acme".into(), timezone: "America/Sao_Paulo".into() }
    }

    #[test]
    fn a_test_notice_has_the_whole_schema_and_round_trips() {
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        let notice = test_notice(tenant(), "https://tds.example.com/", now);
        let json: serde_json::Value = serde_json::from_str(&notice.to_json()).unwrap();
        assert_eq!(json["schema"], "tds.alert.v1");
        assert_eq!(json["event"], "test");
        assert_eq!(json["sent_at"], "2026-03-01T12:00:00Z");
        assert_eq!(json["alert"]["severity"], "INFO");
        assert_eq!(json["alert"]["id"], 0);
        for key in ["id", "severity", "status", "message", "value", "raised_at", "acknowledged_at"] {
            assert!(json["alert"].get(key).is_some(), "alert.{key}");
        }
        for key in ["acknowledged_by", "comment", "cleared_at"] {
            assert!(json["alert"].get(key).is_some(), "alert.{key}");
        }
        assert_eq!(json["rule"]["kind"], "test");
        assert_eq!(json["target"]["kind"], "tenant");
        assert!(json["target"]["gateway"].is_null());
        assert_eq!(json["tenant"]["name"], "Acme");
        assert_eq!(json["links"]["alert"], "https://tds.example.com/alerts");
        assert_eq!(Notice::from_json(&notice.to_json()).unwrap(), notice);
    }

    #[test]
    fn event_names_are_the_documented_ones() {
        for (event, name) in [
            (NoticeEvent::Raised, "raised"),
            (NoticeEvent::Cleared, "cleared"),
            (NoticeEvent::Acknowledged, "acknowledged"),
            (NoticeEvent::Reminder, "reminder"),
            (NoticeEvent::Test, "test"),
        ] {
            assert_eq!(event.as_str(), name);
            assert_eq!(serde_json::to_value(event).unwrap(), name);
        }
    }

    #[test]
    fn links_and_keys() {
        assert_eq!(alert_link("https://x.example/", 42), "https://x.example/alerts/42");
        assert_eq!(alert_link("https://x.example/tds", 42), "https://x.example/tds/alerts/42");
        assert_eq!(keys::event_to_channel(7, 2), "tds-ev7-ch2");
        assert_eq!(keys::event_to_user(7, 2), "tds-ev7-u2");
        assert_eq!(keys::reminder(7, 2, 3), "tds-rem7-u2-p3");
        assert_eq!(keys::test(2, "ab12"), "tds-test2-ab12");
        // Different recipients of one event never share a key.
        assert_ne!(keys::event_to_channel(1, 23), keys::event_to_channel(12, 3));
    }
}
