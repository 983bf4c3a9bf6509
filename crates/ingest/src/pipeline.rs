//! A telemetry message turned into work for the writer: its readings, matched to the gateway's
//! registered devices, and a dead letter for everything that cannot be stored as a reading (the
//! whole message, or single readings), with the raw bytes and the reason.

use crate::directory::{Directory, GatewayEntry};
use crate::writer::{ReadingOrigin, Submission};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use tds_domain::Mac;
use tds_domain::telemetry::{BatchContext, TelemetryBatch, match_devices};
use tds_store::StoreError;
use tds_store::readings::NewReading;
use tds_store::rejected::NewRejected;

/// Youngest cache entry re-read because of an unknown device code.
const RELOAD_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

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
    // The shared cache, not the entry the session read at CONNECT: devices registered since
    // then are seen, and one reload serves every session of the gateway.
    let mut gateway = directory.gateway(gateway.mac).await?.unwrap_or(gateway);
    // A device registered a moment ago: read the gateway again, but at most once a second, so a
    // gateway that keeps sending an unregistered code does not cost queries on every message.
    if batch.accepted().any(|r| !gateway.devices.contains_key(&r.device_code))
        && gateway.age() >= RELOAD_AFTER
        && let Some(fresh) = directory.load(gateway.mac).await?
    {
        gateway = fresh;
    }
    let (matched, refused) =
        match_devices(batch.readings, |code| gateway.devices.get(code).map(|d| (d.id, d.unit.clone())));
    let rejected = refused
        .into_iter()
        .map(|r| NewRejected {
            reading_index: Some(r.index as i64),
            // The reading as sent (with its instant); the message's other readings were stored.
            payload: r.raw.to_string().into_bytes(),
            reason_code: r.reason.code().into(),
            reason: r.reason.to_string(),
            ..template.clone()
        })
        .collect();
    let (readings, origins) = matched
        .into_iter()
        .map(|m| {
            (
                NewReading { device_id: m.device, time: m.time, value: m.value, unit: m.unit.to_string() },
                ReadingOrigin { index: m.index, raw: m.raw },
            )
        })
        .unzip();
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
