//! Fuzzes the telemetry batch parser (`TelemetryBatch::parse`, whose fast path must agree with
//! the general one), the device matching that follows it, and `Topic::parse`, with the
//! invariants ingest relies on.
//!
//! Input: byte 0 picks the tenant's zone and retention, the rest is the payload (and, as text,
//! a topic name).

#![no_main]

use chrono::{DateTime, TimeDelta, Utc};
use libfuzzer_sys::fuzz_target;
use tds_domain::telemetry::{MAX_FUTURE_SKEW, match_devices};
use tds_domain::{BatchContext, BatchRejection, DeviceCode, DeviceId, Mac, TelemetryBatch, Topic, Unit};

const ZONES: [chrono_tz::Tz; 4] =
    [chrono_tz::America::Sao_Paulo, chrono_tz::UTC, chrono_tz::Asia::Kolkata, chrono_tz::Pacific::Chatham];

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-02-15T14:30:00Z").unwrap().to_utc()
}

/// The number of elements of `leituras`, read independently of the parser.
fn elements(payload: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(payload).ok()?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let json: serde_json::Value = serde_json::from_str(text).ok()?;
    json.get("leituras")?.as_array().map(Vec::len)
}

fuzz_target!(|data: &[u8]| {
    let Some((&knob, payload)) = data.split_first() else { return };
    let mac = Mac::parse("aa:bb:cc:dd:ee:ff").unwrap();
    let mut ctx = BatchContext::new(mac, ZONES[usize::from(knob & 3)], now());
    if knob & 4 != 0 {
        ctx = ctx.with_retention(Some(TimeDelta::days(30)));
    }
    if knob & 8 != 0 {
        ctx.max_bytes = 64;
    }

    // The fast path for ordinary batches gives exactly what the general path gives.
    let parsed = TelemetryBatch::parse(payload, &ctx);
    assert_eq!(parsed, TelemetryBatch::parse_as_values(payload, &ctx), "fast and general paths differ");

    match parsed {
        Ok(batch) => {
            assert!(payload.len() <= ctx.max_bytes);
            assert_eq!(batch.gateway_mac, mac, "a batch is only ever the certificate's gateway's");
            assert!(batch.timestamp <= ctx.now + MAX_FUTURE_SKEW);
            let n = batch.readings.len();
            assert_eq!(Some(n), elements(payload), "one outcome per element of leituras");
            assert_eq!(batch.accepted().count() + batch.rejected().count(), n);
            for (i, outcome) in batch.readings.iter().enumerate() {
                match outcome {
                    Ok(r) => {
                        assert_eq!(r.index, i);
                        assert!(r.value.is_finite(), "{r:?}");
                        assert!(r.time <= ctx.now + MAX_FUTURE_SKEW, "{r:?}");
                        if let Some(oldest) = ctx.oldest {
                            assert!(r.time >= oldest, "{r:?}");
                        }
                        assert_eq!(DeviceCode::parse(r.device_code.as_str()).as_ref(), Ok(&r.device_code));
                    }
                    Err(rejected) => {
                        assert_eq!(rejected.index, i);
                        assert!(!rejected.reason.code().is_empty());
                        let _ = rejected.reason.to_string();
                    }
                }
            }
            // Ingest's next step: every outcome ends up matched or refused, never lost.
            let d01 = DeviceCode::parse("D01").unwrap();
            let kwh = Unit::parse("kWh").unwrap();
            let (matched, refused) =
                match_devices(batch.readings, |code| (*code == d01).then(|| (DeviceId::new(1), kwh.clone())));
            assert_eq!(matched.len() + refused.len(), n);
            assert!(matched.iter().all(|m| m.unit == kwh));
        }
        Err(e) => {
            assert_eq!(matches!(e, BatchRejection::TooLarge { .. }), payload.len() > ctx.max_bytes);
            assert!(!e.code().is_empty());
            let _ = e.to_string();
        }
    }

    if let Ok(text) = std::str::from_utf8(payload) {
        match Topic::parse(text) {
            Ok(topic) => {
                // The canonical spelling names the same topic, and the ACL follows the MAC.
                assert_eq!(Topic::parse(&topic.to_string()), Ok(topic));
                assert_eq!(topic.may_publish(topic.mac()), !topic.to_string().ends_with("/cert_update"));
                let other = Mac::parse("00:00:00:00:00:01").unwrap();
                if topic.mac() != other {
                    assert!(!topic.may_publish(other));
                }
            }
            Err(e) => assert!(!e.code().is_empty()),
        }
        assert!(!Topic::may_subscribe(text, mac) || text == Topic::CertUpdate(mac).to_string());
    }
});
