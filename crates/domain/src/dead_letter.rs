//! What a dead letter keeps of a refused message (SPEC §2 Limits): at most the first
//! [`DEFAULT_MAX_DEAD_LETTER_BYTES`] of a payload refused whole, and, for a batch whose readings
//! are refused one by one, a single dead letter that lists them instead of one per reading.
//!
//! The list is itself a telemetry batch (`gateway_mac`, `timestamp`, `leituras` with the refused
//! readings as sent, each with the instant it was taken) plus a `refused` array saying, for each
//! of them, its position in the original batch, the machine code and the reason. A replay can
//! therefore parse it like any batch (unknown fields are ignored) and store what now passes.
//! The list is bounded in bytes: readings that do not fit are counted in `omitted`.
//!
//! Must not: do I/O or decide which readings are refused (the parser, ingest and the store do).

use crate::Mac;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::fmt::Write as _;

/// Most bytes of a refused payload a dead letter keeps unless configured otherwise (64 KiB).
pub const DEFAULT_MAX_DEAD_LETTER_BYTES: usize = 64 * 1024;

/// The code of a list whose readings were refused for different reasons.
pub const MIXED_CODE: &str = "readings_refused";

/// Reasons quoted in a list letter's one-line reason before "and N more".
const REASONS_SHOWN: usize = 5;

/// One refused reading of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct RefusedEntry {
    /// Its 0-based position in the batch's `leituras`.
    pub index: usize,
    pub code: String,
    pub reason: String,
    /// The reading as sent (with its `timestamp` when known: see [`with_time`]).
    pub raw: Value,
}

/// A batch's refused readings made into the payload and reason of one dead letter.
#[derive(Debug, Clone, PartialEq)]
pub struct RefusedList {
    pub payload: Vec<u8>,
    /// The readings' common code, or [`MIXED_CODE`].
    pub code: String,
    pub reason: String,
    /// Readings listed in the payload; the others (over the size bound) are only counted.
    pub listed: usize,
}

/// The reading `raw` with `time` as its `timestamp` when it carries none, so that it can be
/// replayed outside its batch.
pub fn with_time(mut raw: Value, time: DateTime<Utc>) -> Value {
    if let Value::Object(map) = &mut raw {
        map.entry("timestamp").or_insert_with(|| Value::String(time.to_rfc3339()));
    }
    raw
}

/// Makes `entries` (not empty, in batch order) into one dead letter of at most `max_bytes`.
pub fn refused_list(
    mac: Mac,
    batch_time: DateTime<Utc>,
    entries: &[RefusedEntry],
    max_bytes: usize,
) -> RefusedList {
    let first_code = entries.first().map_or(MIXED_CODE, |e| e.code.as_str());
    let code = if entries.iter().all(|e| e.code == first_code) { first_code } else { MIXED_CODE }.to_owned();
    // Room for the envelope and the `omitted` count.
    let envelope = 200;
    let mut budget = max_bytes.saturating_sub(envelope);
    let mut readings = Vec::new();
    let mut refused = Vec::new();
    for e in entries {
        let why = json!({"index": e.index, "code": e.code, "reason": e.reason});
        let cost = e.raw.to_string().len() + why.to_string().len() + 2;
        if cost > budget {
            break;
        }
        budget -= cost;
        readings.push(e.raw.clone());
        refused.push(why);
    }
    let listed = readings.len();
    let omitted = entries.len() - listed;
    let mut doc = json!({
        "gateway_mac": mac.to_string(),
        "timestamp": batch_time.to_rfc3339(),
        "leituras": readings,
        "refused": refused,
    });
    if omitted > 0
        && let Value::Object(map) = &mut doc
    {
        map.insert("omitted".into(), json!(omitted));
    }
    let mut reason =
        format!("{} reading{} refused: ", entries.len(), if entries.len() == 1 { "" } else { "s" });
    let shown: Vec<String> =
        entries.iter().take(REASONS_SHOWN).map(|e| format!("#{} {}", e.index, e.reason)).collect();
    reason.push_str(&shown.join("; "));
    if entries.len() > REASONS_SHOWN {
        let _ = write!(reason, "; and {} more", entries.len() - REASONS_SHOWN);
    }
    if omitted > 0 {
        let _ = write!(reason, " ({omitted} not kept: over the {max_bytes}-byte bound)");
    }
    RefusedList { payload: doc.to_string().into_bytes(), code, reason, listed }
}

/// The first `max` bytes of a payload, and whether anything was cut.
pub fn truncated(payload: &[u8], max: usize) -> (&[u8], bool) {
    if payload.len() > max { (&payload[..max], true) } else { (payload, false) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{BatchContext, TelemetryBatch};

    fn mac() -> Mac {
        Mac::parse("aa:bb:cc:dd:ee:ff").unwrap()
    }

    fn entry(index: usize, code: &str, raw: Value) -> RefusedEntry {
        RefusedEntry { index, code: code.into(), reason: format!("reason of {index}"), raw }
    }

    #[test]
    fn a_list_is_a_batch_of_the_refused_readings_with_their_reasons() {
        let at = DateTime::parse_from_rfc3339("2026-02-15T14:30:00Z").unwrap().to_utc();
        let raw = with_time(json!({"dispositivo_codigo": "D07", "valor": 1}), at);
        let list = refused_list(
            mac(),
            at,
            &[entry(3, "unknown_device", raw), entry(9, "unknown_device", json!(0))],
            65_536,
        );
        assert_eq!((list.code.as_str(), list.listed), ("unknown_device", 2));
        assert!(list.reason.starts_with("2 readings refused: #3 reason of 3; #9"), "{}", list.reason);
        let doc: Value = serde_json::from_slice(&list.payload).unwrap();
        assert_eq!(doc["refused"][1], json!({"index": 9, "code": "unknown_device", "reason": "reason of 9"}));
        assert_eq!(doc["leituras"][0]["timestamp"], "2026-02-15T14:30:00+00:00");
        let batch =
            TelemetryBatch::parse(&list.payload, &BatchContext::new(mac(), chrono_tz::UTC, at)).unwrap();
        assert_eq!(batch.readings.len(), 2, "a replay parses the list like any batch");
    }

    #[test]
    fn a_list_is_bounded_and_says_how_many_it_left_out() {
        let at = Utc::now();
        let many: Vec<_> = (0..1_000)
            .map(|i| {
                entry(
                    i,
                    if i % 2 == 0 { "invalid_value" } else { "unknown_device" },
                    json!({"valor": "x".repeat(200)}),
                )
            })
            .collect();
        let list = refused_list(mac(), at, &many, 16 * 1024);
        assert!(list.payload.len() <= 16 * 1024, "{}", list.payload.len());
        assert!(list.listed > 10 && list.listed < 1_000);
        assert_eq!(list.code, MIXED_CODE);
        let doc: Value = serde_json::from_slice(&list.payload).unwrap();
        assert_eq!(doc["omitted"], json!(1_000 - list.listed));
        assert!(list.reason.contains("and 995 more"), "{}", list.reason);
        assert!(list.reason.len() < 2_000);
    }

    #[test]
    fn a_payload_is_cut_at_the_bound_only_when_over_it() {
        assert_eq!(truncated(b"abcdef", 4), (&b"abcd"[..], true));
        assert_eq!(truncated(b"abcd", 4), (&b"abcd"[..], false));
    }
}
