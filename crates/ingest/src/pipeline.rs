//! A telemetry message turned into work for the writer: its readings, matched to the gateway's
//! registered devices, and a dead letter for everything that cannot be stored as a reading (the
//! whole message, or single readings), with the raw bytes and the reason.

use crate::directory::{Directory, GatewayEntry};
use crate::writer::{ReadingOrigin, Submission};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use tds_domain::Mac;
use tds_domain::telemetry::{BatchContext, ReadingRejection, TelemetryBatch, unit_conflict};
use tds_store::StoreError;
use tds_store::readings::NewReading;
use tds_store::rejected::NewRejected;

/// A dead letter for a message from `mac` on `topic`, to be completed with a reason.
pub fn dead_letter(
    gateway: Option<&GatewayEntry>,
    mac: Option<Mac>,
    topic: &str,
    payload: &[u8],
    now: DateTime<Utc>,
) -> NewRejected {
    NewRejected {
        tenant_id: gateway.map(|g| g.tenant),
        gateway_id: gateway.map(|g| g.id),
        mac,
        topic: topic.to_owned(),
        payload: payload.to_vec(),
        reading_index: None,
        reason_code: String::new(),
        reason: String::new(),
        received_at: now,
    }
}

/// Builds the submission for one telemetry message of `gateway`.
pub async fn telemetry(
    directory: &Directory,
    gateway: Arc<GatewayEntry>,
    topic: &str,
    payload: &[u8],
    max_bytes: usize,
    now: DateTime<Utc>,
) -> Result<Submission, StoreError> {
    let template = dead_letter(Some(&gateway), Some(gateway.mac), topic, payload, now);
    let mut ctx = BatchContext::new(gateway.mac, gateway.zone, now);
    ctx.max_bytes = max_bytes;
    let batch = match TelemetryBatch::parse(payload, &ctx) {
        Ok(b) => b,
        Err(rejection) => {
            tracing::info!(gateway.mac = %gateway.mac, reason = rejection.code(), "telemetry message refused");
            let letter = NewRejected {
                reason_code: rejection.code().into(),
                reason: rejection.to_string(),
                ..template
            };
            return Ok(Submission {
                tenant: Some(gateway.tenant),
                gateway: Some(gateway.id),
                readings: Vec::new(),
                origins: Vec::new(),
                rejected: vec![letter],
                seen_at: None,
                conflict_template: None,
            });
        }
    };
    let mut gateway = gateway;
    let mut reloaded = false;
    let mut readings = Vec::new();
    let mut origins = Vec::new();
    let mut rejected = Vec::new();
    let reading_letter = |index: usize, raw: &serde_json::Value, reason: &ReadingRejection| NewRejected {
        reading_index: Some(index as i64),
        // The reading as sent; the whole message is in the topic's other dead letters if any.
        payload: raw.to_string().into_bytes(),
        reason_code: reason.code().into(),
        reason: reason.to_string(),
        ..template.clone()
    };
    for outcome in batch.readings {
        let input = match outcome {
            Ok(input) => input,
            Err(refused) => {
                rejected.push(reading_letter(refused.index, &refused.raw, &refused.reason));
                continue;
            }
        };
        if !gateway.devices.contains_key(&input.device_code) && !reloaded {
            // Registered a moment ago? Read the gateway again, once per message.
            reloaded = true;
            if let Some(fresh) = directory.load(gateway.mac).await? {
                gateway = fresh;
            }
        }
        let Some(device) = gateway.devices.get(&input.device_code) else {
            let reason = ReadingRejection::UnknownDevice { code: input.device_code.clone() };
            rejected.push(reading_letter(input.index, &input.raw, &reason));
            continue;
        };
        if unit_conflict(&device.unit, input.unit.as_ref()) {
            let reason = ReadingRejection::UnitConflict {
                device_unit: device.unit.clone(),
                reading_unit: input.unit.clone().unwrap_or_else(|| device.unit.clone()),
            };
            rejected.push(reading_letter(input.index, &input.raw, &reason));
            continue;
        }
        readings.push(NewReading {
            device_id: device.id,
            time: input.time,
            value: input.value,
            unit: device.unit.to_string(),
        });
        origins.push(ReadingOrigin { index: input.index, raw: input.raw });
    }
    Ok(Submission {
        tenant: Some(gateway.tenant),
        gateway: Some(gateway.id),
        readings,
        origins,
        rejected,
        seen_at: Some(now),
        conflict_template: Some(template),
    })
}
