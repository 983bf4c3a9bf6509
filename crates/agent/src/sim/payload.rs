//! The messages a virtual gateway publishes, in the wire format of SPEC §2: telemetry batches
//! (with per-reading timestamps when flushing a backlog), and the kinds of bad message that
//! real firmware has been seen to send, which TDS must keep as dead letters.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use tds_domain::Mac;

/// One reading of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub code: String,
    pub value: f64,
    pub unit: &'static str,
    /// Its own instant, when it differs from the batch's (a backlog).
    pub at: Option<DateTime<Utc>>,
}

fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A telemetry batch stamped `at`.
pub fn telemetry(mac: Mac, at: DateTime<Utc>, readings: &[Reading]) -> Vec<u8> {
    let leituras: Vec<Value> = readings
        .iter()
        .map(|r| {
            let mut v = json!({ "dispositivo_codigo": r.code, "valor": r.value, "unidade": r.unit });
            if let Some(at) = r.at {
                v["timestamp"] = Value::String(stamp(at));
            }
            v
        })
        .collect();
    json!({ "gateway_mac": mac.to_string(), "timestamp": stamp(at), "leituras": leituras })
        .to_string()
        .into_bytes()
}

/// Faulty messages, each of which TDS must dead-letter with its own reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadMessage {
    /// A reading for a device code the gateway does not have (a meter added in the field but
    /// not registered in TDS).
    UnknownDevice,
    /// A register read that failed and came out as text.
    NonNumeric,
    /// A payload cut short (a buffer overflow in the firmware).
    Truncated,
}

impl BadMessage {
    pub const ALL: &'static [BadMessage] = &[Self::UnknownDevice, Self::NonNumeric, Self::Truncated];

    /// The message, for a gateway whose first device code is `code`.
    pub fn payload(self, mac: Mac, at: DateTime<Utc>, code: &str) -> Vec<u8> {
        match self {
            Self::UnknownDevice => {
                telemetry(mac, at, &[Reading { code: "X99".into(), value: 1.0, unit: "kWh", at: None }])
            }
            Self::NonNumeric => json!({
                "gateway_mac": mac.to_string(),
                "timestamp": stamp(at),
                "leituras": [{ "dispositivo_codigo": code, "valor": "ERR_TIMEOUT", "unidade": "kWh" }],
            })
            .to_string()
            .into_bytes(),
            Self::Truncated => {
                let mut whole =
                    telemetry(mac, at, &[Reading { code: code.into(), value: 1.0, unit: "kWh", at: None }]);
                whole.truncate(whole.len() / 2);
                whole
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tds_domain::telemetry::{BatchContext, TelemetryBatch};

    fn ctx(mac: Mac) -> BatchContext {
        BatchContext::new(mac, chrono_tz::America::Sao_Paulo, "2026-05-01T12:00:00Z".parse().unwrap())
    }

    #[test]
    fn a_backlog_batch_parses_with_each_readings_own_instant() {
        let mac = Mac::parse("02:00:00:00:00:01").unwrap();
        let at: DateTime<Utc> = "2026-05-01T11:00:00Z".parse().unwrap();
        let early: DateTime<Utc> = "2026-05-01T10:00:00Z".parse().unwrap();
        let bytes = telemetry(
            mac,
            at,
            &[
                Reading { code: "D01".into(), value: 12.5, unit: "m³", at: Some(early) },
                Reading { code: "D01".into(), value: 13.0, unit: "m³", at: None },
            ],
        );
        let batch = TelemetryBatch::parse(&bytes, &ctx(mac)).unwrap();
        let times: Vec<_> = batch.accepted().map(|r| r.time).collect();
        assert_eq!(times, vec![early, at]);
        assert_eq!(batch.accepted().map(|r| r.value).collect::<Vec<_>>(), vec![12.5, 13.0]);
    }

    #[test]
    fn bad_messages_are_refused_by_the_domain_parser_as_intended() {
        let mac = Mac::parse("02:00:00:00:00:01").unwrap();
        let at: DateTime<Utc> = "2026-05-01T11:00:00Z".parse().unwrap();
        assert!(TelemetryBatch::parse(&BadMessage::Truncated.payload(mac, at, "D01"), &ctx(mac)).is_err());
        let batch =
            TelemetryBatch::parse(&BadMessage::NonNumeric.payload(mac, at, "D01"), &ctx(mac)).unwrap();
        let rejected: Vec<_> = batch.rejected().map(|r| r.reason.code()).collect();
        assert_eq!(rejected, vec!["invalid_value"]);
        let batch =
            TelemetryBatch::parse(&BadMessage::UnknownDevice.payload(mac, at, "D01"), &ctx(mac)).unwrap();
        // The parser accepts it; matching against the gateway's devices refuses it.
        assert_eq!(batch.accepted().map(|r| r.device_code.to_string()).collect::<Vec<_>>(), vec!["X99"]);
    }
}
