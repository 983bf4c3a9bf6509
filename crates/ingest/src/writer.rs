//! Group commit: messages from every session wait in one bounded queue; the writer takes all that
//! are waiting (up to `max_readings`, and lingering up to `max_delay` for more when that is set),
//! stores all their readings in one transaction, then their dead letters, and only then tells
//! each session that its message is stored, so that the PUBACK never precedes the commit. Under
//! load the batch is what arrived during the previous commit; a lone message is committed at once
//! instead of waiting for company. On PostgreSQL the next batch is written on a second
//! connection while the one before it commits, and its own `COMMIT` follows (see `run`). When
//! gateways were last seen is noted in [`SeenBuffer`] and written about once a second, after the
//! acknowledgements.
//!
//! A full queue makes `submit` wait: sessions stop reading their sockets instead of holding
//! messages in memory while the database catches up. The queue is bounded in messages and in
//! readings: under a sustained load the batches grow to what waits (up to `max_readings`), and
//! large commits are what keeps SQLite's rate at 10,000 meters, where a commit writes one page
//! per meter whatever its size; the readings bound keeps the memory that takes in check.

use crate::pipeline::list_letter;
use crate::seen::SeenBuffer;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tds_domain::dead_letter::{RefusedEntry, with_time};
use tds_domain::telemetry::{ReadingRejection, SentElement};
use tds_domain::{GatewayId, TenantId};
use tds_domain::{LiveEvent, LiveReading};
use tds_store::readings::{NewReading, PreparedInsert, ReadingConflict};
use tds_store::rejected::NewRejected;
use tds_store::{Store, StoreError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc, oneshot};

/// Where a reading of a submission came from, to dead-letter it if the store finds a conflict.
#[derive(Debug, Clone)]
pub struct ReadingOrigin {
    pub index: usize,
    pub raw: SentElement,
}

/// One message's worth of work.
#[derive(Debug)]
pub struct Submission {
    pub tenant: Option<TenantId>,
    pub gateway: Option<GatewayId>,
    pub readings: Vec<NewReading>,
    /// Parallel to `readings`.
    pub origins: Vec<ReadingOrigin>,
    pub rejected: Vec<NewRejected>,
    /// The message that was accepted as telemetry (the gateway is then seen and active).
    pub seen_at: Option<DateTime<Utc>>,
    /// Template for dead letters the store adds (conflicting duplicates).
    pub conflict_template: Option<NewRejected>,
}

pub type Done = oneshot::Receiver<Result<(), String>>;

#[derive(Debug, Clone)]
pub struct Writer {
    tx: mpsc::Sender<Queued>,
    room: Room,
}

/// The queue's room for readings: one permit per reading waiting (one for a message without
/// any), given back when the writer takes the message into a batch.
#[derive(Debug, Clone)]
struct Room {
    permits: Arc<Semaphore>,
    /// The permits in all: a message with more readings than that waits for all of them.
    total: u32,
}

impl Room {
    fn new(readings: usize) -> Self {
        let total: u32 = readings.clamp(1, 1 << 30).try_into().unwrap_or(1 << 30);
        Self { permits: Arc::new(Semaphore::new(total as usize)), total }
    }

    /// Waits for room for a message of `readings`; `None` only if the semaphore was closed,
    /// which nothing does.
    async fn take(&self, readings: usize) -> Option<OwnedSemaphorePermit> {
        let wanted = u32::try_from(readings).unwrap_or(u32::MAX).clamp(1, self.total);
        Arc::clone(&self.permits).acquire_many_owned(wanted).await.ok()
    }
}

impl Writer {
    /// Starts the writer task. One, on PostgreSQL too: two independent writers were tried (issue
    /// 20) and lost. Two batches committing in either order put a gateway's consecutive messages
    /// out of order, so the rollup refresh saw late readings and recomputed whole hours instead
    /// of going on from them (PostgreSQL read 1 to 3 million readings a second back), and the
    /// second commit waited for the first's rollup marks. The one writer overlaps the next
    /// batch's inserts with the previous `COMMIT` instead, the `COMMIT`s in order.
    pub fn spawn(store: Store, settings: WriterSettings, seen: Arc<SeenBuffer>) -> Self {
        let (tx, rx) = mpsc::channel(settings.capacity.max(1));
        let room = Room::new(settings.capacity_readings);
        tokio::spawn(run(store, rx, settings, seen));
        Self { tx, room }
    }

    /// Queues a submission; waits while the queue is full. The receiver completes after the
    /// commit (`Err` when the database refused: the message must not be acknowledged).
    pub async fn submit(&self, submission: Submission) -> Done {
        let (done_tx, done_rx) = oneshot::channel();
        let Some(room) = self.room.take(submission.readings.len()).await else {
            let _ = done_tx.send(Err("the writer has stopped".into()));
            return done_rx;
        };
        let queued = Queued { item: (submission, done_tx), _room: room, at: std::time::Instant::now() };
        if let Err(mpsc::error::SendError(Queued { item: (_, done), .. })) = self.tx.send(queued).await {
            let _ = done.send(Err("the writer has stopped".into()));
        }
        done_rx
    }
}

/// How the writer batches.
#[derive(Debug, Clone)]
pub struct WriterSettings {
    /// Messages waiting for the writer before `submit` waits…
    pub capacity: usize,
    /// …and readings (a message without any counts as one).
    pub capacity_readings: usize,
    /// Most readings in one commit.
    pub max_readings: usize,
    /// How long to wait for more messages after the first of a batch (zero: take what is waiting).
    pub max_delay: Duration,
    pub events: Option<broadcast::Sender<LiveEvent>>,
    pub dead_letter_max_bytes: usize,
}

type Item = (Submission, oneshot::Sender<Result<(), String>>);

/// A message in the queue with its room, given back when the writer takes it, and when it was
/// queued.
struct Queued {
    item: Item,
    _room: OwnedSemaphorePermit,
    at: std::time::Instant,
}

impl Queued {
    /// The message, taken into a batch: its wait is recorded and its room given back.
    fn take(self) -> Item {
        crate::metrics::queue_waited(self.at.elapsed());
        self.item
    }
}

/// How often noted `last_seen` instants are written.
const SEEN_FLUSH: Duration = Duration::from_secs(1);

/// What a writer got from the queue.
enum Next {
    Batch(Vec<Item>, usize),
    /// Nothing waiting (only asked for while a prepared commit waits for its `COMMIT`).
    Empty,
    FlushSeen,
    Closed,
}

/// Takes the next batch: waits for a first message (or for the time to write `last_seen`), then
/// takes what is waiting, up to `max_readings`, lingering `max_delay` for more when that is set.
async fn next_batch(
    rx: &mut mpsc::Receiver<Queued>,
    settings: &WriterSettings,
    flush_at: Option<tokio::time::Instant>,
) -> Next {
    let first = tokio::select! {
        item = rx.recv() => match item {
            Some(queued) => queued.take(),
            None => return Next::Closed,
        },
        () = sleep_until_some(flush_at) => return Next::FlushSeen,
    };
    let (mut batch, mut readings) = take_waiting(rx, settings, first);
    if !settings.max_delay.is_zero() {
        let deadline = tokio::time::Instant::now() + settings.max_delay;
        while readings < settings.max_readings {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(queued)) => {
                    let item = queued.take();
                    readings += item.0.readings.len();
                    batch.push(item);
                }
                Ok(None) | Err(_) => break,
            }
        }
    }
    crate::metrics::queue_depth(rx.len());
    Next::Batch(batch, readings)
}

/// `first` and what is waiting behind it (under load, what arrived during the previous commit),
/// up to `max_readings`.
fn take_waiting(
    rx: &mut mpsc::Receiver<Queued>,
    settings: &WriterSettings,
    first: Item,
) -> (Vec<Item>, usize) {
    let mut readings = first.0.readings.len();
    let mut batch = vec![first];
    while readings < settings.max_readings {
        match rx.try_recv() {
            Ok(queued) => {
                let item = queued.take();
                readings += item.0.readings.len();
                batch.push(item);
            }
            Err(_) => break,
        }
    }
    (batch, readings)
}

/// What is waiting now, without waiting or lingering (`max_delay` applies only when the writer is
/// idle): the next batch while a prepared one waits for its `COMMIT`, which must not be held back
/// for company.
fn next_waiting(rx: &mut mpsc::Receiver<Queued>, settings: &WriterSettings) -> Next {
    match rx.try_recv() {
        Ok(first) => {
            let (batch, readings) = take_waiting(rx, settings, first.take());
            crate::metrics::queue_depth(rx.len());
            Next::Batch(batch, readings)
        }
        Err(mpsc::error::TryRecvError::Empty) => Next::Empty,
        Err(mpsc::error::TryRecvError::Disconnected) => Next::Closed,
    }
}

async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A batch taken from the queue, on its way to the database.
struct InFlight {
    batch: Vec<Item>,
    readings: usize,
    started: std::time::Instant,
    staged: Staged,
}

/// How far a batch got before its `COMMIT`.
enum Staged {
    /// Its readings and marks are written in an open transaction.
    Prepared {
        prepared: PreparedInsert,
        placed: Vec<Option<(usize, usize)>>,
    },
    /// A device left its tenant between the check and the commit: stored message by message
    /// when its turn comes, so that only the message naming it is refused.
    OneByOne,
    Failed(StoreError),
}

async fn run(store: Store, mut rx: mpsc::Receiver<Queued>, settings: WriterSettings, seen: Arc<SeenBuffer>) {
    // On PostgreSQL the next batch is written on a second connection while the one before it
    // commits (its WAL flush); the COMMITs stay in the batches' order, so readings become
    // visible in the order they arrived, as with one transaction at a time. Not while a batch
    // is stored message by message: those inserts could wait for the next batch's uncommitted
    // rows, which wait for them.
    let overlap = store.readings().overlaps_commits();
    let mut next_flush = tokio::time::Instant::now() + SEEN_FLUSH;
    let mut held: Option<InFlight> = None;
    loop {
        let next = if held.is_some() {
            next_waiting(&mut rx, &settings)
        } else {
            let flush_at = (!seen.is_empty()).then_some(next_flush);
            next_batch(&mut rx, &settings, flush_at).await
        };
        match next {
            Next::Batch(batch, readings) => {
                let started = std::time::Instant::now();
                match held.take() {
                    Some(before) if matches!(before.staged, Staged::Prepared { .. }) => {
                        let ((), staged) =
                            tokio::join!(settle(&store, before, &settings, &seen), prepare(&store, &batch));
                        held = Some(InFlight { batch, readings, started, staged });
                    }
                    before => {
                        if let Some(before) = before {
                            settle(&store, before, &settings, &seen).await;
                        }
                        let staged = prepare(&store, &batch).await;
                        let this = InFlight { batch, readings, started, staged };
                        if overlap {
                            held = Some(this);
                        } else {
                            settle(&store, this, &settings, &seen).await;
                        }
                    }
                }
            }
            Next::Empty => {
                if let Some(before) = held.take() {
                    settle(&store, before, &settings, &seen).await;
                }
            }
            Next::FlushSeen => {
                flush_seen(&store, &seen).await;
                next_flush = tokio::time::Instant::now() + SEEN_FLUSH;
                continue;
            }
            Next::Closed => break,
        }
        // After the acknowledgements, never before, and with no transaction held open: the
        // flush then never waits for a connection while the held one keeps its own (under a
        // steady load, once a second one batch commits without overlap).
        if tokio::time::Instant::now() >= next_flush {
            if let Some(before) = held.take() {
                settle(&store, before, &settings, &seen).await;
            }
            flush_seen(&store, &seen).await;
            next_flush = tokio::time::Instant::now() + SEEN_FLUSH;
        }
    }
    if let Some(before) = held.take() {
        settle(&store, before, &settings, &seen).await;
    }
    flush_seen(&store, &seen).await;
    store.readings().release_ahead();
}

/// Commits a batch (or stores it message by message), records its dead letters and tells its
/// sessions the outcome.
async fn settle(store: &Store, mut f: InFlight, settings: &WriterSettings, seen: &SeenBuffer) {
    let outcome = complete(store, &mut f.batch, f.staged, settings.dead_letter_max_bytes, seen)
        .await
        .map_err(|e| e.to_string());
    if let Ok((stored, duplicates)) = &outcome {
        crate::metrics::commit(f.readings, *stored, *duplicates, f.started.elapsed());
    }
    let outcome = outcome.map(|_| ());
    if let Err(e) = &outcome {
        tracing::error!(error = %e, messages = f.batch.len(), "commit failed; the messages are not acknowledged");
    } else if let Some(events) = settings.events.as_ref().filter(|e| e.receiver_count() > 0) {
        announce(events, &f.batch);
    }
    for (_, done) in f.batch {
        let _ = done.send(outcome.clone());
    }
}

async fn flush_seen(store: &Store, seen: &SeenBuffer) {
    if let Err(e) = seen.flush(store).await {
        tracing::warn!(error = %e, "cannot record when gateways were last seen; will try again");
    }
}

/// Tells live pages about the committed readings, one event per message. A resent reading is
/// announced again; a chart drawing the same point twice shows nothing new.
fn announce(events: &broadcast::Sender<LiveEvent>, batch: &[Item]) {
    for (s, _) in batch {
        if let (Some(tenant), Some(gateway), false) = (s.tenant, s.gateway, s.readings.is_empty()) {
            let readings = s
                .readings
                .iter()
                .map(|r| LiveReading { device: r.device_id, time: r.time, value: r.value })
                .collect();
            // No page listening is not an error.
            let _ = events.send(LiveEvent::Readings { tenant, gateway, readings });
        }
    }
}

/// Writes a batch's readings in an open transaction, not yet committed.
///
/// The readings of all the batch's messages of a tenant go to the store as one group, in arrival
/// order: the store then checks each device once per commit and inserts in a few multi-row
/// statements, instead of once per message (measured with `tds bench ingest`: per-message groups
/// made commits of 5000 readings take ~200 ms on SQLite, most of it in per-statement overhead).
async fn prepare(store: &Store, batch: &[Item]) -> Staged {
    let mut tenants: Vec<TenantId> = Vec::new();
    let mut merged: Vec<Vec<NewReading>> = Vec::new();
    // Per submission: its tenant's group and the position of its first reading there.
    let mut placed: Vec<Option<(usize, usize)>> = Vec::with_capacity(batch.len());
    for (s, _) in batch {
        let Some(tenant) = s.tenant.filter(|_| !s.readings.is_empty()) else {
            placed.push(None);
            continue;
        };
        let g = if let Some(g) = tenants.iter().position(|&t| t == tenant) {
            g
        } else {
            tenants.push(tenant);
            merged.push(Vec::new());
            tenants.len() - 1
        };
        placed.push(Some((g, merged[g].len())));
        merged[g].extend(s.readings.iter().cloned());
    }
    let groups: Vec<(TenantId, &[NewReading])> =
        tenants.iter().copied().zip(merged.iter().map(Vec::as_slice)).collect();
    match store.readings().prepare_groups_back_to_back(&groups).await {
        Ok(prepared) => Staged::Prepared { prepared, placed },
        Err(StoreError::NotFound) => Staged::OneByOne,
        Err(e) => Staged::Failed(e),
    }
}

/// Commits a prepared batch and records its dead letters; returns the readings stored and the
/// duplicates skipped.
async fn complete(
    store: &Store,
    batch: &mut [Item],
    staged: Staged,
    max_bytes: usize,
    seen: &SeenBuffer,
) -> Result<(u64, u64), StoreError> {
    let (prepared, placed) = match staged {
        Staged::Prepared { prepared, placed } => (prepared, placed),
        Staged::OneByOne => return commit_one_by_one(store, batch, max_bytes, seen).await,
        Staged::Failed(e) => return Err(e),
    };
    let (reports, phases) = prepared.commit().await?;
    crate::metrics::commit_phases(&phases);
    let stored = reports.iter().map(|r| r.inserted).sum();
    let duplicates = reports.iter().map(|r| r.duplicates).sum();
    let mut dead = Vec::new();
    for ((s, _), place) in batch.iter_mut().zip(placed) {
        if let Some((g, offset)) = place
            && let Some(report) = reports.get(g)
        {
            conflicts_to_dead_letters(s, &report.conflicts, offset, max_bytes, &mut dead);
        }
        dead.append(&mut s.rejected);
    }
    finish(store, batch, dead, seen).await?;
    Ok((stored, duplicates))
}

async fn commit_one_by_one(
    store: &Store,
    batch: &mut [Item],
    max_bytes: usize,
    seen: &SeenBuffer,
) -> Result<(u64, u64), StoreError> {
    let (mut stored, mut duplicates) = (0, 0);
    let mut dead = Vec::new();
    for (s, _) in batch.iter_mut() {
        let Some(tenant) = s.tenant.filter(|_| !s.readings.is_empty()) else {
            dead.append(&mut s.rejected);
            continue;
        };
        match store.readings().insert(tenant, &s.readings).await {
            Ok(report) => {
                stored += report.inserted;
                duplicates += report.duplicates;
                conflicts_to_dead_letters(s, &report.conflicts, 0, max_bytes, &mut dead);
            }
            Err(StoreError::NotFound) => {
                if let Some(template) = &s.conflict_template {
                    let entries: Vec<RefusedEntry> = s
                        .origins
                        .iter()
                        .zip(&s.readings)
                        .map(|(origin, r)| RefusedEntry {
                            index: origin.index,
                            code: "unknown_device".into(),
                            reason: "the device is no longer registered on this gateway".into(),
                            raw: with_time(origin.raw.to_value(), r.time),
                        })
                        .collect();
                    dead.extend(list_letter(template, template.received_at, &entries, max_bytes));
                }
                s.seen_at = None;
            }
            Err(e) => return Err(e),
        }
        dead.append(&mut s.rejected);
    }
    finish(store, batch, dead, seen).await?;
    Ok((stored, duplicates))
}

/// One dead letter listing the conflicts that concern `s`, whose readings start at `offset` of
/// the group the store reported on.
fn conflicts_to_dead_letters(
    s: &Submission,
    conflicts: &[ReadingConflict],
    offset: usize,
    max_bytes: usize,
    dead: &mut Vec<NewRejected>,
) {
    let Some(template) = &s.conflict_template else { return };
    let mine = offset..offset + s.readings.len();
    let entries: Vec<RefusedEntry> = conflicts
        .iter()
        .filter(|c| mine.contains(&c.index))
        .filter_map(|c| {
            let origin = s.origins.get(c.index - offset)?;
            let reason = ReadingRejection::DuplicateConflict {
                time: c.time,
                stored: c.stored_value,
                received: c.sent_value,
            };
            Some(RefusedEntry {
                index: origin.index,
                code: reason.code().into(),
                reason: reason.to_string(),
                raw: with_time(origin.raw.to_value(), c.time),
            })
        })
        .collect();
    dead.extend(list_letter(template, template.received_at, &entries, max_bytes));
}

async fn finish(
    store: &Store,
    batch: &[Item],
    dead: Vec<NewRejected>,
    seen_buffer: &SeenBuffer,
) -> Result<(), StoreError> {
    if !dead.is_empty() {
        store.rejected().record(&dead).await?;
        for d in &dead {
            crate::metrics::dead_letter(&d.reason_code);
        }
    }
    // One update per gateway, however many of its messages were in the batch.
    let mut seen: HashMap<(TenantId, GatewayId), DateTime<Utc>> = HashMap::new();
    for (s, _) in batch {
        if let (Some(t), Some(g), Some(at)) = (s.tenant, s.gateway, s.seen_at) {
            let e = seen.entry((t, g)).or_insert(at);
            *e = (*e).max(at);
        }
    }
    // At once only the first time (a pre-registered gateway is active before its PUBACK), all of
    // the batch's first-timers in one statement: after a restart every gateway reconnects, and
    // one write each held the first commits' acknowledgements for a round trip and a flush per
    // gateway (`tds bench ingest`'s first second). Later, noted for the next flush.
    let mut first: Vec<(TenantId, GatewayId, DateTime<Utc>)> = seen
        .into_iter()
        .filter(|&((t, g), at)| seen_buffer.note(t, g, at))
        .map(|((t, g), at)| (t, g, at))
        .collect();
    if !first.is_empty() {
        first.sort_unstable_by_key(|f| f.1);
        store.gateways().mark_seen_many(&first).await?;
        for (_, g, _) in first {
            seen_buffer.marked(g);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Room;
    use std::time::Duration;

    /// Whether `take` gets its room within a short while.
    async fn gets(room: &Room, readings: usize) -> Option<tokio::sync::OwnedSemaphorePermit> {
        tokio::time::timeout(Duration::from_millis(50), room.take(readings)).await.ok().flatten()
    }

    #[tokio::test]
    async fn a_message_waits_until_its_readings_fit_and_the_room_comes_back_when_taken() {
        let room = Room::new(100);
        let first = gets(&room, 60).await.expect("room for 60 of 100");
        assert!(gets(&room, 60).await.is_none(), "60 more do not fit while the first waits");
        let small = gets(&room, 40).await.expect("40 fit beside the first");
        drop(first);
        assert!(gets(&room, 60).await.is_some(), "the first taken by the writer: room again");
        drop(small);
    }

    #[tokio::test]
    async fn a_message_larger_than_the_room_waits_for_all_of_it_not_forever() {
        let room = Room::new(100);
        let one = gets(&room, 0).await.expect("a message without readings counts as one");
        assert!(gets(&room, 1_000).await.is_none(), "the whole room is needed, one permit is out");
        drop(one);
        let all = gets(&room, 1_000).await.expect("the whole room, once it is free");
        assert!(gets(&room, 0).await.is_none(), "and nothing else meanwhile");
        drop(all);
    }
}
