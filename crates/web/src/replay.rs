//! Replaying a dead letter after its cause is fixed (say, the device was registered): the
//! message, or the single reading, goes through the same rules as when it arrived (parsing, the
//! gateway's devices, units) and what now passes is stored; duplicates store nothing. The
//! outcome is recorded on the dead letter. A dead letter listing a batch's refused readings is a
//! batch itself (see `tds_domain::dead_letter`) and replays like a whole message; one that kept
//! only the beginning of its payload cannot be replayed and says so.

use chrono::Utc;
use serde_json::{Value, json};
use tds_domain::telemetry::{BatchContext, TelemetryBatch, Topic, match_devices};
use tds_domain::{Mac, TenantId};
use tds_store::readings::NewReading;
use tds_store::rejected::Rejected;
use tds_store::{Store, StoreError};

/// What a replay did, in a sentence kept with the dead letter.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayOutcome {
    pub stored: u64,
    pub duplicates: u64,
    pub refused: Vec<String>,
    pub summary: String,
}

/// How a fully successful replay's outcome starts; anything else may be replayed again (replay
/// all skips the dead letters whose outcome starts with it).
pub const DONE_PREFIX: &str = "replayed:";

fn refused(summary: impl Into<String>) -> ReplayOutcome {
    let summary = summary.into();
    ReplayOutcome { stored: 0, duplicates: 0, refused: vec![summary.clone()], summary }
}

/// Replays one of `tenant`'s dead letters and records the outcome on it.
pub async fn replay(store: &Store, tenant: TenantId, letter: &Rejected) -> Result<ReplayOutcome, StoreError> {
    let outcome = run(store, tenant, letter).await?;
    store.rejected().mark_replayed(tenant, letter.id, &outcome.summary).await?;
    Ok(outcome)
}

async fn run(store: &Store, tenant: TenantId, letter: &Rejected) -> Result<ReplayOutcome, StoreError> {
    if letter.truncated() {
        return Ok(refused(format!(
            "still refused: only the first {} of its {} bytes were kept, it cannot be replayed",
            letter.payload.len(),
            letter.payload_size
        )));
    }
    let Some(mac) = letter.mac.as_deref().and_then(|m| Mac::parse(m).ok()) else {
        return Ok(refused("still refused: no gateway MAC, cannot be replayed"));
    };
    if !Topic::parse(&letter.topic).is_ok_and(|t| t.is_telemetry() && t.may_publish(mac)) {
        return Ok(refused("still refused: not telemetry on the gateway's own topic"));
    }
    let gateway = match store.gateways().by_mac(tenant, mac).await {
        Ok(g) => g,
        Err(StoreError::NotFound) => {
            return Ok(refused(format!("still refused: gateway {mac} is not in this account")));
        }
        Err(e) => return Err(e),
    };
    let owner = store.tenants().get(tenant).await?;
    let zone = owner.timezone.tz();
    // A single refused reading is replayed inside a batch of its own; its raw element carries
    // the instant it was taken.
    let payload = if letter.reading_index.is_none() {
        letter.payload.clone()
    } else {
        let reading: Value = serde_json::from_slice(&letter.payload).unwrap_or(Value::Null);
        let time = reading
            .get("timestamp")
            .cloned()
            .unwrap_or_else(|| Value::String(letter.received_at.to_rfc3339()));
        json!({"gateway_mac": mac.to_string(), "timestamp": time, "leituras": [reading]})
            .to_string()
            .into_bytes()
    };
    // Under the retention the device endpoint applies: a reading past it would be deleted by the
    // next retention run, after spoiling its hour's rollup.
    let ctx = BatchContext::new(mac, zone, Utc::now()).with_retention(owner.retention());
    let batch = match TelemetryBatch::parse(&payload, &ctx) {
        Ok(b) => b,
        Err(e) => return Ok(refused(format!("still refused: {} ({})", e, e.code()))),
    };
    let devices = store.devices().list_for_gateway(tenant, gateway.id, false).await?;
    let (matched, refusals) = match_devices(batch.readings, |code| {
        devices.iter().find(|d| &d.code == code).map(|d| (d.id, d.unit.clone()))
    });
    let readings: Vec<NewReading> = matched
        .into_iter()
        .map(|m| NewReading { device_id: m.device, time: m.time, value: m.value, unit: m.unit.into_cow() })
        .collect();
    let report = if readings.is_empty() {
        tds_store::readings::InsertReport::default()
    } else {
        store.readings().insert(tenant, &readings).await?
    };
    let mut refused: Vec<String> =
        refusals.iter().map(|r| format!("{} ({})", r.reason, r.reason.code())).collect();
    refused.extend(
        report
            .conflicts
            .iter()
            .map(|c| format!("a different value is stored at {} ({})", c.time.to_rfc3339(), c.stored_value)),
    );
    let counts = format!("{} stored, {} already stored", report.inserted, report.duplicates);
    let summary = if refused.is_empty() {
        format!("{DONE_PREFIX} {counts}")
    } else {
        format!("still refused: {}; {counts}", refused.join("; "))
    };
    Ok(ReplayOutcome { stored: report.inserted, duplicates: report.duplicates, refused, summary })
}
