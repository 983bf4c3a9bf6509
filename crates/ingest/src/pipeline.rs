//! A message of a known gateway turned into work for the writer, the same whether it came through
//! the device endpoint or an external broker: telemetry becomes its readings, matched to the
//! gateway's registered devices, and a dead letter for everything that cannot be stored as a
//! reading (the whole message, or single readings), with the raw bytes and the reason; a status
//! message marks the gateway online or offline.
//!
//! Must not: decide who may publish on which topic (the session checks its ACL, the broker
//! enforces its own), or acknowledge anything (the caller does, once the returned [`Done`]
//! completes).

use crate::config::IngestConfig;
use crate::directory::{Directory, GatewayEntry};
use crate::writer::{Done, ReadingOrigin, Submission, Writer};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use tds_domain::Mac;
use tds_domain::telemetry::{BatchContext, TelemetryBatch, Topic, match_devices};
use tds_store::readings::NewReading;
use tds_store::rejected::NewRejected;
use tds_store::{Store, StoreError};

/// The store, the gateway cache and the group-commit writer, shared by every session of the
/// endpoint or by the broker consumer.
#[derive(Debug)]
pub struct Pipeline {
    pub store: Store,
    pub directory: Directory,
    pub writer: Writer,
    max_message_bytes: usize,
    events: Option<tokio::sync::broadcast::Sender<tds_domain::LiveEvent>>,
}

impl Pipeline {
    /// Starts the writer.
    pub fn start(store: Store, config: &IngestConfig) -> Self {
        let writer = Writer::spawn(
            store.clone(),
            config.queue_capacity,
            config.commit_max_readings,
            config.commit_max_delay,
            config.events.clone(),
        );
        Self {
            events: config.events.clone(),
            directory: Directory::new(store.clone(), config.cache_ttl),
            store,
            writer,
            max_message_bytes: config.max_message_bytes,
        }
    }

    /// Records the gateway online or offline and tells live pages.
    pub async fn set_online(&self, gateway: &GatewayEntry, online: bool) -> Result<(), StoreError> {
        self.store.gateways().set_online(gateway.tenant, gateway.id, online).await?;
        if let Some(events) = self.events.as_ref().filter(|e| e.receiver_count() > 0) {
            let _ = events.send(tds_domain::LiveEvent::GatewayStatus {
                tenant: gateway.tenant,
                gateway: gateway.id,
                online,
            });
        }
        Ok(())
    }

    /// Handles a message of `gateway` on `topic`, one of the gateway's own (the caller checked):
    /// telemetry is queued for the writer, a status message sets the gateway online or offline
    /// at once. The receiver completes once whatever the message gave is committed, in the order
    /// of the calls (a message that gives nothing to store queues an empty submission to keep
    /// that order). `Err` when the gateway's devices cannot be read: nothing was queued and the
    /// message must not be acknowledged.
    pub async fn accept(
        &self,
        gateway: &Arc<GatewayEntry>,
        topic: Topic,
        raw_topic: &str,
        payload: &[u8],
    ) -> Result<Done, StoreError> {
        let now = Utc::now();
        let mac = gateway.mac;
        let submission = if topic.is_telemetry() {
            telemetry(&self.directory, gateway.clone(), raw_topic, payload, self.max_message_bytes, now)
                .await?
        } else {
            match topic {
                Topic::Status(_) => {
                    let online = !payload.eq_ignore_ascii_case(b"offline");
                    if let Err(e) = self.set_online(gateway, online).await {
                        tracing::warn!(gateway.mac = %mac, error = %e, "cannot record the gateway status");
                    }
                }
                // Certificate renewal over MQTT is its own feature; until then a CSR is only logged.
                _ => {
                    tracing::info!(gateway.mac = %mac, topic = %topic, "message on a topic TDS does not process yet");
                }
            }
            Submission::dead_letters(gateway, Vec::new())
        };
        let done = self.writer.submit(submission).await;
        crate::metrics::message(if topic.is_telemetry() { "telemetry" } else { "other" });
        Ok(done)
    }

    /// Keeps a message that is not accepted at all as one dead letter with `code` and `reason`;
    /// `gateway` when it is known (the tenant then sees it), else only the `mac` it claimed.
    pub async fn refuse(
        &self,
        gateway: Option<&GatewayEntry>,
        mac: Option<Mac>,
        raw_topic: &str,
        payload: &[u8],
        (code, reason): (&str, String),
    ) -> Done {
        let letter = NewRejected {
            reason_code: code.to_owned(),
            reason,
            ..dead_letter(gateway, mac, raw_topic, payload, Utc::now())
        };
        let submission = Submission {
            tenant: gateway.map(|g| g.tenant),
            gateway: gateway.map(|g| g.id),
            readings: Vec::new(),
            origins: Vec::new(),
            rejected: vec![letter],
            seen_at: None,
            conflict_template: None,
        };
        self.writer.submit(submission).await
    }
}

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
    let mut ctx = BatchContext::new(gateway.mac, gateway.zone, now).with_retention(gateway.retention);
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
