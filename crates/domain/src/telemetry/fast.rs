//! The telemetry parser's fast path: a batch in the shape gateways send (the three fields and,
//! per reading, `dispositivo_codigo`, a numeric `valor` and optionally `unidade` and
//! `timestamp`, nothing else, every reading valid) read straight into typed fields in one pass,
//! each reading's element kept as its place in the message (read out of the message's text only
//! if the reading is refused later).
//!
//! Why: parsing every message into a `serde_json::Value` tree (a map, its keys and strings per
//! reading, then dropped) was a quarter of the endpoint's CPU at 10,000 meters (`perf` during
//! `tds bench ingest --gateways 1000 --devices 10`). Reading `leituras` first as raw elements,
//! each then copied and parsed again, went over every reading twice: 30 % more instructions a
//! message than this (`tds bench parse` under callgrind, README's twenty-fourth step).
//!
//! It only ever answers for a batch that the general path ([`super::TelemetryBatch::parse_as_values`])
//! would accept with every reading, and then with the same batch; anything else (an extra or
//! repeated field, a string with escapes, a numeric string, null, a refused reading, a wrong
//! MAC, too many readings) gives `None` and the general path parses the message, with its
//! precise reasons. Every token of such a batch is read by a typed field (unknown fields are
//! refused, not skipped), so a number out of range anywhere fails here as it fails there. The
//! two are compared on generated payloads (tests below `super`) and by the fuzz target.

use super::{BatchContext, ReadingInput, SentElement, SentMessage, TelemetryBatch, timestamp_text};
use crate::{DeviceCode, Mac, Unit};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch<'a> {
    #[serde(borrow)]
    gateway_mac: &'a str,
    #[serde(borrow)]
    timestamp: &'a str,
    #[serde(borrow)]
    leituras: Vec<Reading<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reading<'a> {
    #[serde(borrow)]
    dispositivo_codigo: &'a str,
    valor: f64,
    #[serde(borrow, default)]
    unidade: Option<&'a str>,
    #[serde(borrow, default)]
    timestamp: Option<&'a str>,
}

/// The batch, when `text` is one the fast path takes (see the module header).
pub(super) fn parse(text: &str, ctx: &BatchContext) -> Option<TelemetryBatch> {
    let batch: Batch<'_> = serde_json::from_str(text).ok()?;
    let gateway_mac = Mac::parse(batch.gateway_mac).ok().filter(|mac| *mac == ctx.expected_mac)?;
    let timestamp = timestamp_text(batch.timestamp, ctx).ok()?;
    if batch.leituras.len() > ctx.max_readings {
        return None;
    }
    let mut readings = Vec::with_capacity(batch.leituras.len());
    // One copy of the message for all of its readings' elements as sent.
    let message = SentMessage::new(text);
    for (index, r) in batch.leituras.into_iter().enumerate() {
        let device_code = DeviceCode::parse(r.dispositivo_codigo).ok()?;
        if !r.valor.is_finite() {
            return None;
        }
        let unit = match r.unidade {
            None => None,
            Some(s) if s.trim().is_empty() => None,
            Some(s) => Some(Unit::parse(s).ok()?),
        };
        let time = match r.timestamp {
            None => timestamp,
            Some(s) => timestamp_text(s, ctx).ok()?,
        };
        readings.push(Ok(ReadingInput {
            index,
            device_code,
            value: r.valor,
            unit,
            time,
            raw: SentElement::in_message(&message, index),
        }));
    }
    Some(TelemetryBatch { gateway_mac, timestamp, readings })
}
