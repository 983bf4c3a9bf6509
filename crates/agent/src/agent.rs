//! The agent as a whole: the poll loop (every bus read concurrently, one batch per poll pushed
//! to the disk queue), the uplink, and the status file writer; plus `scan` for installers.
//!
//! Meter failures are not sent to TDS: a meter that does not answer simply has no reading in
//! the batch (TDS sees it go quiet through `last_seen`), and the failure is logged, counted and
//! shown by `status`. Sending it would turn a silent meter into one dead letter per poll.

use crate::batch::{self, Reading};
use crate::cert::CertFiles;
use crate::config::{Config, MeterConfig};
use crate::modbus::{Bus, ReadError};
use crate::queue::{DiskQueue, QueueError};
use crate::status::{MeterStatus, Status};
use crate::uplink::{self, Shared, UplinkSettings};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("cannot create {path}: {source}")]
    DataDir { path: std::path::PathBuf, source: std::io::Error },
}

/// A bus with the meters on it.
#[derive(Debug)]
struct BusMeters {
    bus: Bus,
    meters: Vec<MeterConfig>,
}

fn group(config: &Config) -> Vec<BusMeters> {
    config
        .buses
        .iter()
        .map(|b| BusMeters {
            bus: Bus::new(b.clone()),
            meters: config.meters.iter().filter(|m| m.bus == b.name).cloned().collect(),
        })
        .filter(|g| !g.meters.is_empty())
        .collect()
}

/// One meter's outcome in one poll.
pub type Outcome = (MeterConfig, DateTime<Utc>, Result<f64, ReadError>);

/// Reads every meter once, the buses concurrently and the meters of a bus one after the other
/// (a serial line carries one request at a time).
async fn poll_all(groups: &mut [BusMeters]) -> Vec<Outcome> {
    let reads = groups.iter_mut().map(|g| async move {
        let mut out = Vec::with_capacity(g.meters.len());
        for meter in &g.meters {
            let result = g.bus.read(meter).await;
            out.push((meter.clone(), Utc::now(), result));
        }
        out
    });
    futures_util::future::join_all(reads).await.into_iter().flatten().collect()
}

/// `scan`: reads every configured register once.
pub async fn scan(config: &Config) -> Vec<Outcome> {
    let mut groups = group(config);
    poll_all(&mut groups).await
}

/// The paths of the gateway's certificate files.
pub fn cert_files(config: &Config) -> CertFiles {
    CertFiles {
        ca_file: config.resolve(&config.mqtt.ca_file),
        cert_file: config.resolve(&config.mqtt.cert_file),
        key_file: config.resolve(&config.mqtt.key_file),
    }
}

/// The queue directory under `data_dir`.
pub fn queue_dir(config: &Config) -> std::path::PathBuf {
    config.data_dir.join("queue")
}

/// Runs the agent until `stop` turns true.
pub async fn run(config: Config, stop: watch::Receiver<bool>) -> Result<(), AgentError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|source| AgentError::DataDir { path: config.data_dir.clone(), source })?;
    let queue = DiskQueue::open(&queue_dir(&config), config.queue.max_bytes)?;
    if !queue.is_empty() {
        tracing::info!(
            batches = queue.len(),
            bytes = queue.bytes(),
            "batches waiting from before; sending them first"
        );
    }
    let mut status = Status::load(&config.data_dir).unwrap_or_default();
    status.mac = config.mac().to_string();
    status.pid = std::process::id();
    status.connected = false;
    status.meters = config
        .meters
        .iter()
        .map(|m| {
            let old = status.meters.iter().find(|s| s.code == m.code).cloned();
            old.unwrap_or_else(|| MeterStatus { code: m.code.clone(), ..MeterStatus::default() })
        })
        .collect();
    let shared = Arc::new(Shared::new(queue, status));
    shared.refresh_queue_status();
    let settings = UplinkSettings {
        mac: config.mac(),
        host: config.mqtt.host.clone(),
        port: config.mqtt.port,
        keep_alive: Duration::from_secs(config.mqtt.keep_alive_seconds.max(5)),
        window: config.mqtt.window,
        swap_timeout: Duration::from_secs(config.mqtt.cert_swap_timeout_seconds.max(1)),
        backoff_min: Duration::from_secs(1),
        backoff_max: Duration::from_mins(1),
    };
    let uplink = tokio::spawn(uplink::run(settings, cert_files(&config), shared.clone(), stop.clone()));
    let writer = tokio::spawn(write_status(config.data_dir.clone(), shared.clone(), stop.clone()));
    poll_loop(&config, &shared, stop).await;
    let _ = uplink.await;
    let _ = writer.await;
    shared.refresh_queue_status();
    if let Ok(mut s) = shared.status.lock() {
        s.updated_at = Some(Utc::now());
        let _ = s.save(&config.data_dir);
    }
    Ok(())
}

async fn poll_loop(config: &Config, shared: &Shared, mut stop: watch::Receiver<bool>) {
    let mut groups = group(config);
    let mac = config.mac();
    let mut ticker = tokio::time::interval(config.poll_interval());
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = crate::sim::stopped(&mut stop) => return,
        }
        let started = Utc::now();
        let outcomes = poll_all(&mut groups).await;
        let readings = record(shared, outcomes);
        if readings.is_empty() {
            continue;
        }
        let payload = batch::encode(mac, started, &readings);
        let pushed = shared.queue.lock().map_err(|_| None).and_then(|mut q| {
            let before = q.dropped();
            q.push(&payload).map(|seq| (seq, q.dropped() - before)).map_err(Some)
        });
        match pushed {
            Ok((seq, dropped)) => {
                if dropped > 0 {
                    tracing::warn!(dropped, "disk queue full: the oldest batches were dropped");
                }
                tracing::debug!(seq, readings = readings.len(), "batch queued");
                shared.new_batch.notify_one();
            }
            Err(e) => tracing::error!(error = ?e, "cannot queue a batch; its readings are lost"),
        }
        shared.refresh_queue_status();
    }
}

/// Counts failures per meter (logging the first of a run and the recovery) and keeps the values.
fn record(shared: &Shared, outcomes: Vec<Outcome>) -> Vec<Reading> {
    let mut readings = Vec::with_capacity(outcomes.len());
    shared.with_status(|s| {
        for (meter, at, result) in outcomes {
            let entry = s.meters.iter_mut().find(|m| m.code == meter.code);
            match result {
                Ok(value) => {
                    if let Some(e) = entry {
                        if e.consecutive_failures > 0 {
                            tracing::info!(meter = %meter.code, after = e.consecutive_failures, "meter answers again");
                        }
                        e.consecutive_failures = 0;
                        e.last_value = Some(value);
                        e.last_read_at = Some(at);
                    }
                    readings.push(Reading { code: meter.code.clone(), value, unit: meter.unit.clone(), at });
                }
                Err(error) => {
                    if let Some(e) = entry {
                        e.consecutive_failures += 1;
                        e.total_failures += 1;
                        e.last_error = Some(error.to_string());
                        // Once when it starts, then every 10th poll: a dead meter must not flood the log.
                        if e.consecutive_failures == 1 || e.consecutive_failures % 10 == 0 {
                            tracing::warn!(meter = %meter.code, bus = %meter.bus, failures = e.consecutive_failures, error = %error, "meter did not answer");
                        }
                    }
                }
            }
        }
    });
    readings
}

/// Writes the status file when something changed (checked every 2 s) and at least once a minute
/// (so that `status` can tell a running agent from a stopped one): a gateway's SD card should not
/// be rewritten every 2 s for nothing.
async fn write_status(data_dir: std::path::PathBuf, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(Duration::from_secs(2));
    let mut last: Option<(Status, tokio::time::Instant)> = None;
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = crate::sim::stopped(&mut stop) => return,
        }
        shared.refresh_queue_status();
        let Ok(current) = shared.status.lock().map(|s| s.clone()) else { continue };
        let due = last
            .as_ref()
            .is_none_or(|(written, at)| *written != current || at.elapsed() >= Duration::from_mins(1));
        if !due {
            continue;
        }
        let mut stamped = current.clone();
        stamped.updated_at = Some(Utc::now());
        match stamped.save(&data_dir) {
            Ok(()) => last = Some((current, tokio::time::Instant::now())),
            Err(e) => tracing::warn!(error = %e, "cannot write the status file"),
        }
    }
}
