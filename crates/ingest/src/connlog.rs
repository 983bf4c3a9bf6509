//! The connections' bookkeeping (history entries, online/offline states) written by one task in
//! batches, off the sessions' path.
//!
//! Why: every connect and disconnect wrote its history entry and its state in transactions of
//! their own, awaited by the session (a new session did not read its first PUBLISH before them).
//! When half of a fleet lost its link at once, those thousands of small writes took the
//! database's connections (eight on PostgreSQL, the one write connection on SQLite) from the
//! ingest writer and the device lookups, and every gateway's PUBACKs waited for them: `tds bench
//! ingest --gateways 1000 --devices 10 --rate 2000 --storm 50` saw the PUBACK p99 of the whole
//! fleet above a second for three seconds. Now a session queues its notes and goes on; the task
//! writes what is queued in one transaction, then the next batch, and announces the states on the
//! live pages once they are written.
//!
//! Must not: decide what is written when (sessions, [`crate::status`] and the pipeline's history
//! bucket do); it writes what it is given, in order.

use chrono::Utc;
use std::time::Duration;
use tds_domain::{GatewayId, LiveEvent, TenantId};
use tds_store::gateway_events::{GatewayState, NewGatewayEvent};
use tds_store::{Store, StoreError};
use tokio::sync::{broadcast, mpsc, oneshot};

/// Notes queued at most; a session waits for room beyond them (SPEC §11: every input bounded).
const CAPACITY: usize = 16_384;

/// Notes per transaction at most.
const BATCH: usize = 4_096;

/// How many times a batch is tried before it is dropped.
const ATTEMPTS: u32 = 3;

#[derive(Debug)]
enum Note {
    Event(NewGatewayEvent),
    State(GatewayState),
    /// Answered once everything queued before it is written.
    Flushed(oneshot::Sender<()>),
}

/// Where sessions queue their bookkeeping. Cloning gives another handle on the same queue; the
/// task ends when the last handle is dropped, after writing what was queued.
#[derive(Debug, Clone)]
pub struct ConnectionLog {
    tx: mpsc::Sender<Note>,
}

impl ConnectionLog {
    /// Starts the writing task (on the current runtime); states are announced on `events`.
    pub fn start(store: Store, events: Option<broadcast::Sender<LiveEvent>>) -> Self {
        let (tx, rx) = mpsc::channel(CAPACITY);
        tokio::spawn(write_batches(store, events, rx));
        Self { tx }
    }

    /// Queues a history entry, stamped now.
    pub async fn event(&self, tenant: TenantId, gateway: GatewayId, kind: &str, detail: &str) {
        let event = NewGatewayEvent {
            tenant,
            gateway,
            kind: kind.to_owned(),
            detail: detail.to_owned(),
            at: Utc::now(),
        };
        let _ = self.tx.send(Note::Event(event)).await;
    }

    /// Queues a gateway's state (and, going offline, the instant of its telemetry not written
    /// yet, so that it is written first).
    pub async fn state(&self, state: GatewayState) {
        let _ = self.tx.send(Note::State(state)).await;
    }

    /// Waits until everything queued so far is written (or failed to be, which is logged).
    pub async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.tx.send(Note::Flushed(done)).await.is_ok() {
            let _ = written.await;
        }
    }
}

/// The task: what is queued, in one transaction, batch after batch. A failed batch is logged and
/// dropped, as a failed write of one entry was: the history and the state are not readings, and
/// the state is written again at the gateway's next change.
async fn write_batches(
    store: Store,
    events: Option<broadcast::Sender<LiveEvent>>,
    mut rx: mpsc::Receiver<Note>,
) {
    let mut notes = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut notes, BATCH).await > 0 {
        let mut history = Vec::new();
        let mut states = Vec::new();
        let mut flushed = Vec::new();
        for note in notes.drain(..) {
            match note {
                Note::Event(e) => history.push(e),
                Note::State(s) => states.push(s),
                Note::Flushed(done) => flushed.push(done),
            }
        }
        if !history.is_empty() || !states.is_empty() {
            match record(&store, &history, &states).await {
                Ok(()) => {
                    if let Some(events) = events.as_ref().filter(|e| e.receiver_count() > 0) {
                        for s in &states {
                            let _ = events.send(LiveEvent::GatewayStatus {
                                tenant: s.tenant,
                                gateway: s.gateway,
                                online: s.online,
                            });
                        }
                    }
                }
                Err(e) => tracing::warn!(
                    entries = history.len(),
                    states = states.len(),
                    error = %e,
                    "cannot record the gateways' connection history and states"
                ),
            }
        }
        for done in flushed {
            let _ = done.send(());
        }
    }
}

/// Writes a batch, again after a pause when it fails (a lost connection, a lock conflict with
/// another instance), at most [`ATTEMPTS`] times in all: past that it is logged and dropped, as
/// the endpoint's other bookkeeping is; the next state of each gateway corrects it.
async fn record(
    store: &Store,
    history: &[NewGatewayEvent],
    states: &[GatewayState],
) -> Result<(), StoreError> {
    let mut pause = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        match store.gateway_events().record_connections(history, states).await {
            Err(e) if attempt < ATTEMPTS => {
                tracing::debug!(attempt, error = %e, "the gateways' connection bookkeeping failed; trying again");
                tokio::time::sleep(pause).await;
                pause *= 4;
                attempt += 1;
            }
            done => return done,
        }
    }
}
