//! Telemetry batches as the agent publishes them (SPEC §2): one per poll, `gateway_mac` from the
//! configuration, each reading with the instant it was read, values as JSON numbers exactly as
//! read and scaled (`serde_json` writes the shortest text that reads back to the same `f64`).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use tds_domain::Mac;

/// One meter's value from one poll.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub code: String,
    pub value: f64,
    pub unit: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Serialize)]
struct Wire<'a> {
    gateway_mac: String,
    timestamp: String,
    leituras: Vec<WireReading<'a>>,
}

#[derive(Serialize)]
struct WireReading<'a> {
    dispositivo_codigo: &'a str,
    valor: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    unidade: Option<&'a str>,
    timestamp: String,
}

fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The JSON payload of a batch stamped `at` (the poll's start).
pub fn encode(mac: Mac, at: DateTime<Utc>, readings: &[Reading]) -> Vec<u8> {
    let wire = Wire {
        gateway_mac: mac.to_string(),
        timestamp: stamp(at),
        leituras: readings
            .iter()
            .filter(|r| r.value.is_finite())
            .map(|r| WireReading {
                dispositivo_codigo: &r.code,
                valor: r.value,
                unidade: r.unit.as_deref(),
                timestamp: stamp(r.at),
            })
            .collect(),
    };
    serde_json::to_vec(&wire).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tds_domain::telemetry::{BatchContext, TelemetryBatch};

    #[test]
    fn a_batch_parses_with_the_servers_parser_values_and_instants_intact() {
        let mac = Mac::parse("02:00:00:00:00:07").unwrap();
        let at: DateTime<Utc> = "2026-05-01T11:00:00.250Z".parse().unwrap();
        let readings = vec![
            Reading { code: "D01".into(), value: 0.1 + 0.2, unit: Some("kWh".into()), at },
            Reading {
                code: "D02".into(),
                value: -12.5,
                unit: None,
                at: at + chrono::Duration::milliseconds(40),
            },
        ];
        let bytes = encode(mac, at, &readings);
        let ctx = BatchContext::new(mac, chrono_tz::UTC, "2026-05-01T12:00:00Z".parse().unwrap());
        let batch = TelemetryBatch::parse(&bytes, &ctx).unwrap();
        let got: Vec<_> = batch.accepted().map(|r| (r.value, r.time)).collect();
        assert_eq!(got, vec![(0.1 + 0.2, at), (-12.5, at + chrono::Duration::milliseconds(40))]);
    }
}
