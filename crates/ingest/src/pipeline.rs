//! A message of a known gateway turned into work for the writer, the same whether it came through
//! the device endpoint or an external broker: telemetry becomes its readings, matched to the
//! gateway's registered devices, and a dead letter for everything that cannot be stored as a
//! reading, with the raw bytes and the reason: the whole message (at most its first
//! `dead_letter_max_bytes`), or one dead letter listing the message's refused readings
//! ([`tds_domain::dead_letter`]), never one per reading; a status message marks the gateway
//! online or offline.
//!
//! Must not: decide who may publish on which topic (the session checks its ACL, the broker
//! enforces its own), or acknowledge anything (the caller does, once the returned [`Done`]
//! completes).

use crate::config::IngestConfig;
use crate::connlog::ConnectionLog;
use crate::directory::{Directory, GatewayEntry};
use crate::limits::{KeyedBuckets, RateLog};
use crate::seen::SeenBuffer;
use crate::status::StatusWrites;
use crate::writer::{Done, ReadingOrigin, Submission, Writer, WriterSettings};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use tds_domain::Mac;
use tds_domain::dead_letter::{RefusedEntry, refused_list};
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
    limits: Limits,
    status: StatusWrites,
    /// Where the connections' history and states are queued for writing in batches.
    log: ConnectionLog,
    /// Connection-history entries per gateway (a gateway reconnecting in a loop writes a few,
    /// then one per status interval).
    history: KeyedBuckets<tds_domain::GatewayId>,
    /// Refusals said once a minute each.
    pub refusals: RateLog,
    csr: crate::csr::CsrSigner,
    /// Scale-out mode: TDS does not see the gateways' certificates, so the one a gateway says it
    /// uses in its status message confirms or rolls back its renewal ([`crate::reported`]).
    pub certificate_reports: bool,
}

impl Pipeline {
    /// Starts the writer.
    pub fn start(store: Store, config: &IngestConfig) -> Self {
        let seen = Arc::new(SeenBuffer::default());
        let writer = Writer::spawn(
            store.clone(),
            WriterSettings {
                capacity: config.queue_capacity,
                capacity_readings: config.queue_readings,
                max_readings: config.commit_max_readings,
                max_delay: config.commit_max_delay,
                events: config.events.clone(),
                dead_letter_max_bytes: config.dead_letter_max_bytes,
            },
            seen.clone(),
        );
        let log = ConnectionLog::start(store.clone(), config.events.clone());
        Self {
            status: StatusWrites::new(log.clone(), config.status_interval, seen),
            log,
            history: KeyedBuckets::new(
                1.0 / config.status_interval.as_secs_f64().max(0.001),
                HISTORY_BURST,
                usize::MAX,
            ),
            refusals: RateLog::default(),
            directory: Directory::new(store.clone(), config.cache_ttl),
            store,
            writer,
            limits: Limits::of(config),
            csr: crate::csr::CsrSigner::new(config.csr_ca.clone(), config.device_cert_days),
            certificate_reports: false,
        }
    }

    /// Records the gateway online or offline and tells live pages, at most once per status
    /// interval per gateway (see [`StatusWrites`]), through the [`ConnectionLog`]: queued, not
    /// waited for.
    pub async fn set_online(&self, gateway: &GatewayEntry, online: bool) {
        self.status.set(gateway, online).await;
    }

    /// Writes the status changes still waiting for their interval (at shutdown).
    pub async fn flush_status(&self) {
        self.status.flush().await;
    }

    /// Adds to the gateway's connection history, unless it wrote its share of entries lately (a
    /// gateway reconnecting in a loop): queued for the [`ConnectionLog`], not waited for.
    pub async fn history(&self, gateway: &GatewayEntry, kind: &str, detail: &str) {
        if !self.history.allow(gateway.id) {
            crate::metrics::throttled("history");
            return;
        }
        self.log.event(gateway.tenant, gateway.id, kind, detail).await;
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
            telemetry(&self.directory, gateway.clone(), raw_topic, payload, self.limits, &self.refusals, now)
                .await?
        } else {
            match topic {
                Topic::Status(_) => {
                    let report = tds_domain::renewal::StatusReport::parse(payload);
                    self.set_online(gateway, report.online()).await;
                    if self.certificate_reports {
                        crate::reported::certificate_in_use(&self.store, gateway, &report).await;
                    }
                }
                Topic::CertCsr(_) => {
                    if let Err(refusal) = self.csr.answer(&self.store, gateway, payload).await {
                        crate::metrics::renewal("csr_refused");
                        tracing::info!(gateway.mac = %mac, reason = %refusal.1, "CSR refused");
                        return Ok(self.refuse(Some(gateway), Some(mac), raw_topic, payload, refusal).await);
                    }
                    crate::metrics::renewal("csr_signed");
                }
                _ => {
                    tracing::info!(gateway.mac = %mac, topic = %topic, "message on a topic TDS does not process");
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
        crate::metrics::dead_letter_payload(payload.len(), self.limits.dead_letter_max_bytes);
        let letter = NewRejected {
            reason_code: code.to_owned(),
            reason,
            ..dead_letter(gateway, mac, raw_topic, Utc::now())
        }
        .with_payload(payload, self.limits.dead_letter_max_bytes);
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

/// The bounds a message is checked against (SPEC §2 Limits).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub max_readings: usize,
    pub dead_letter_max_bytes: usize,
}

impl Limits {
    pub fn of(config: &IngestConfig) -> Self {
        Self {
            max_message_bytes: config.max_message_bytes,
            max_readings: config.max_readings,
            dead_letter_max_bytes: config.dead_letter_max_bytes,
        }
    }
}

/// Connection-history entries a gateway may write at once before it gets one per status
/// interval: a reconnect is two (connected, disconnected).
const HISTORY_BURST: u32 = 6;

/// Youngest cache entry re-read because of an unknown device code.
const RELOAD_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// A dead letter for a message from `mac` on `topic`, to be completed with a payload and a
/// reason (no payload yet: a template is cloned per dead letter, and a 256 KiB copy per clone
/// is what made a batch of many bad readings cost gigabytes of copying).
pub fn dead_letter(
    gateway: Option<&GatewayEntry>,
    mac: Option<Mac>,
    topic: &str,
    now: DateTime<Utc>,
) -> NewRejected {
    NewRejected {
        tenant_id: gateway.map(|g| g.tenant),
        gateway_id: gateway.map(|g| g.id),
        mac,
        topic: topic.to_owned(),
        payload: Vec::new(),
        payload_size: None,
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
    limits: Limits,
    refusals: &RateLog,
    now: DateTime<Utc>,
) -> Result<Submission, StoreError> {
    let template = dead_letter(Some(&gateway), Some(gateway.mac), topic, now);
    let mut ctx = BatchContext::new(gateway.mac, gateway.zone, now).with_retention(gateway.retention);
    ctx.max_bytes = limits.max_message_bytes;
    ctx.max_readings = limits.max_readings;
    let batch = match TelemetryBatch::parse(payload, &ctx) {
        Ok(b) => b,
        Err(rejection) => {
            refusals.note(rejection.code(), |suppressed| {
                tracing::info!(gateway.mac = %gateway.mac, reason = rejection.code(), error = %rejection, suppressed, "telemetry message refused");
            });
            crate::metrics::dead_letter_payload(payload.len(), limits.dead_letter_max_bytes);
            let letter = NewRejected {
                reason_code: rejection.code().into(),
                reason: rejection.to_string(),
                ..template
            }
            .with_payload(payload, limits.dead_letter_max_bytes);
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
    // One dead letter listing the refused readings as sent (with their instants); the message's
    // other readings are stored.
    let entries: Vec<RefusedEntry> = refused
        .into_iter()
        .map(|r| RefusedEntry {
            index: r.index,
            code: r.reason.code().into(),
            reason: r.reason.to_string(),
            raw: r.raw,
        })
        .collect();
    let rejected =
        list_letter(&template, batch.timestamp, &entries, limits.dead_letter_max_bytes).into_iter().collect();
    let (readings, origins) = matched
        .into_iter()
        .map(|m| {
            (
                NewReading { device_id: m.device, time: m.time, value: m.value, unit: m.unit.into_cow() },
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

/// One dead letter listing a message's refused readings (`None` when there are none), from the
/// message's `template`.
pub fn list_letter(
    template: &NewRejected,
    batch_time: DateTime<Utc>,
    entries: &[RefusedEntry],
    max_bytes: usize,
) -> Option<NewRejected> {
    let mac = template.mac?;
    if entries.is_empty() {
        return None;
    }
    let list = refused_list(mac, batch_time, entries, max_bytes);
    Some(NewRejected {
        payload: list.payload,
        reason_code: list.code,
        reason: list.reason,
        ..template.clone()
    })
}
