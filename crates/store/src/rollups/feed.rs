//! The rollup feed: the readings this process's commits stored, kept in memory from their
//! `COMMIT` until the rollup refresh has used them, so that a device whose mark is made only of
//! this process's commits goes on from its stored hour without its new readings being read back.
//! That read was most of a refresh round: on PostgreSQL at half load, 150–290 ms of a backend
//! every round for ~235,000 readings, the PUBACK tail of `tds bench ingest`.
//!
//! It is only ever a shortcut for the read it replaces, and gives exactly what that read would:
//! - Every commit's `rollup_pending` row carries the writing store's token ([`Feed::token`]),
//!   and the readings it inserted are kept under the row's id just before its `COMMIT` (no fold
//!   sees the row before it commits; kept after, a fold could read the row first and find
//!   nothing) and forgotten if the `COMMIT` failed (SQLite may give the id to a later row). A
//!   fold uses them only for a row with this store's token.
//! - A device's mark in `rollup_dirty` carries the id of the fold that made it (`feed`) when
//!   every commit it merges was kept here: a mark that fold created, or one it went on from that
//!   still had the id this store kept it under (the upsert compares, in the same statement, the
//!   stored id with the one given as `feed_from`). Anything else (another instance's fold, a
//!   commit not kept, a mark changed meanwhile) sets it to 0, and 0 stays until the mark is
//!   cleared. What the upsert returns says which it was.
//! - A refresh uses a device's kept readings only when its mark has the id kept here (and the
//!   same `marked_at`, span and tenant), and only when the device goes on from its stored
//!   hour (a recomputation reads whole hours back, as before). They are then the readings of the
//!   mark's commits, each committed by its `marked_at`, all of the mark's tenant: what the read
//!   returns. A commit that became visible after the fold is left to its own mark, which rolls
//!   it up next round (going on, or recomputing if it is older than what this round adds); the
//!   read might have taken it now, with the same rows in the end.
//!
//! Bounded: at most [`MAX_READINGS`] readings are kept. Past that, folded marks are let go down
//! to [`AFTER_SHEDDING`] (their devices' next refresh reads them back, and keeps nothing for them
//! until then), the ones kept last first: the refresh takes the marks waiting longest first, so
//! the marks kept first are the next it uses, and those it keeps (see [`State::shed_marks`]).
//! Only when no folded mark is left to let go are the commits waiting for a fold let go too, and
//! nothing more is kept until this store folds again (an instance whose commits another instance
//! folds would otherwise hold readings no one takes).

use crate::Ts;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Readings kept at most (24 bytes each while their commit waits for the fold, with at most one
/// 32-byte mark each; 16 bytes after): a few rounds of 100,000 readings/s, ~50 MB.
pub const MAX_READINGS: usize = 2_000_000;

/// What is held after marks were let go to stay within [`MAX_READINGS`]: a quarter below it, so
/// that the next commits do not each let go of another mark. Letting go of every mark instead,
/// as at first, read every device back at once: with 10,000 meters at 70,000 readings/s on
/// PostgreSQL (`tds bench ingest --gateways 1000 --devices 10 --seconds 60 --rate 10500
/// --inflight 32`) the readings waiting for their refresh crossed the bound, 18,776 of 44,000
/// device refreshes read their readings back and a round took 1.5–3.4 s instead of 0.3–0.6 s.
pub const AFTER_SHEDDING: usize = MAX_READINGS / 4 * 3;

/// A folded mark kept longer than this was left by a refresh elsewhere (another instance took
/// the rollup job over and refreshed its device): it goes first when marks are let go. No
/// refresh cycle comes near it; one that did would have its oldest marks read back, as before.
const STALE: Duration = Duration::from_mins(5);

/// A reading a commit inserted: (device, µs, value).
pub(crate) type Kept = (i64, i64, f64);

/// What is kept of a commit: its marks (as in its `rollup_pending` row, which the fold then
/// need not read and decode) and the readings it inserted.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct KeptCommit {
    pub(crate) marks: Vec<super::pending::Mark>,
    pub(crate) readings: Vec<Kept>,
}

/// A device's mark as this store's fold left it, with the readings of the commits it merged.
#[derive(Debug)]
pub(crate) struct FedMark {
    /// The id of the fold that left it (the mark's `feed`).
    pub(crate) feed: i64,
    pub(crate) tenant: i64,
    pub(crate) from: i64,
    pub(crate) to: i64,
    pub(crate) marked_at: Ts,
    /// (µs, value), in no particular order.
    pub(crate) readings: Vec<(i64, f64)>,
}

impl FedMark {
    /// Whether this is the mark stored as (`feed`, tenant, from µs, to µs, `marked_at`).
    pub(crate) fn is(&self, feed: i64, tenant: i64, from: i64, to: i64, marked_at: Ts) -> bool {
        feed != 0
            && self.feed == feed
            && self.tenant == tenant
            && self.from == from
            && self.to == to
            && self.marked_at == marked_at
    }
}

/// A folded mark as kept, with when it was first kept (a mark going on from the kept one keeps
/// its predecessor's place).
#[derive(Debug)]
struct Held {
    mark: FedMark,
    /// The order in which marks were first kept.
    seq: u64,
    since: Instant,
}

#[derive(Debug, Default)]
struct State {
    /// Committed and not yet folded: `rollup_pending` id → the readings that commit inserted.
    commits: HashMap<i64, KeptCommit>,
    /// Folded: per device, its mark as this store's last fold of it left it.
    marks: HashMap<i64, Held>,
    /// The next mark's [`Held::seq`].
    next_seq: u64,
    /// Readings held in `commits` and `marks`.
    held: usize,
    /// Off once the bound was reached with no mark left to let go, until this store folds again.
    stopped: bool,
}

impl State {
    /// Lets go of folded marks until at most `target` readings are held (their devices' next
    /// refresh reads their readings back): stale ones first, then the ones kept last.
    ///
    /// The refresh takes the marks waiting longest first, which are the ones kept first, so
    /// letting those go (as this did at first, the largest first) let go of exactly the marks the
    /// next rounds were about to use: once a fleet's readings waited longer than the bound
    /// allows, no refresh took its readings from memory, each round read them all back and took
    /// several times as long, and the wait grew instead of shrinking (10,000 meters at 115,000
    /// readings/s on SQLite, rounds of 2,000 devices: 3–5 s each, every device read back, none
    /// from memory). Keeping the first-kept marks, the next rounds go on from memory, take a
    /// fraction of the time, and the wait comes back within the bound.
    fn shed_marks(&mut self, target: usize, now: Instant) {
        if self.held <= target {
            return;
        }
        // Stale marks first, the oldest first; then the others, the last kept first.
        let mut order: Vec<(bool, u64, i64)> = self
            .marks
            .iter()
            .map(|(&d, h)| {
                let stale = now.duration_since(h.since) >= STALE;
                (!stale, if stale { h.seq } else { u64::MAX - h.seq }, d)
            })
            .collect();
        order.sort_unstable();
        for (_, _, device) in order {
            if self.held <= target {
                break;
            }
            if let Some(h) = self.marks.remove(&device) {
                self.held -= h.mark.readings.len();
            }
        }
    }
}

/// How many devices the refresh rounds of this store took from memory and read back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedCounts {
    /// Devices that went on from their stored hour with their new readings from memory.
    pub fed: u64,
    /// Devices whose readings were read from the database.
    pub read: u64,
}

/// See the module documentation. One per [`crate::Store`] (shared by its clones).
#[derive(Debug)]
pub struct Feed {
    token: i64,
    state: Mutex<State>,
    fed: AtomicU64,
    read: AtomicU64,
}

impl Default for Feed {
    fn default() -> Self {
        Self::new()
    }
}

impl Feed {
    pub fn new() -> Self {
        Self {
            token: Self::new_id(),
            state: Mutex::new(State::default()),
            fed: AtomicU64::new(0),
            read: AtomicU64::new(0),
        }
    }

    /// A store's token or a fold's id: random and never 0 (0 is no one's), so another store's,
    /// in this process or another instance, is a different one.
    pub(crate) fn new_id() -> i64 {
        loop {
            let id: i64 = rand::random();
            if id != 0 {
                return id;
            }
        }
    }

    /// What this store writes in its commits' `feed` column.
    pub(crate) fn token(&self) -> i64 {
        self.token
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while the lock was held left nothing half-changed that matters: every entry
        // is checked against the database before it is used.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a commit starting now should collect its readings for [`Self::keep`].
    pub(crate) fn keeping(&self) -> bool {
        !self.state().stopped
    }

    /// A commit whose `rollup_pending` row is `id` committed these readings.
    pub(crate) fn keep(&self, id: i64, commit: KeptCommit) {
        let mut s = self.state();
        if let Some(old) = s.commits.remove(&id) {
            s.held -= old.readings.len();
        }
        if !s.stopped && s.held + commit.readings.len() > MAX_READINGS {
            s.shed_marks(AFTER_SHEDDING.saturating_sub(commit.readings.len()), Instant::now());
        }
        if s.stopped || s.held + commit.readings.len() > MAX_READINGS {
            // No mark left to let go: nothing folds here often enough (another instance runs
            // the rollup job, or it is far behind). What waits is let go too, and nothing is
            // kept until a fold here.
            let dropped: usize = s.commits.drain().map(|(_, c)| c.readings.len()).sum();
            s.held -= dropped;
            s.stopped = true;
            return;
        }
        s.held += commit.readings.len();
        s.commits.insert(id, commit);
    }

    /// The commit of row `id` failed (or may have): whatever is kept under that id goes.
    pub(crate) fn forget(&self, id: i64) {
        let mut s = self.state();
        if let Some(old) = s.commits.remove(&id) {
            s.held -= old.readings.len();
        }
    }

    /// For a fold: the kept readings of these rows (ids), taken out; entries of rows with a
    /// smaller id than the largest given that were not given were folded by someone else and
    /// are dropped. Keeping starts again.
    pub(crate) fn take_commits(&self, ids: &[i64]) -> HashMap<i64, KeptCommit> {
        let mut s = self.state();
        s.stopped = false;
        let mut out = HashMap::new();
        for id in ids {
            if let Some(c) = s.commits.remove(id) {
                s.held -= c.readings.len();
                out.insert(*id, c);
            }
        }
        if let Some(&max) = ids.iter().max() {
            let mut dropped = 0;
            s.commits.retain(|&id, c| {
                let keep = id > max;
                if !keep {
                    dropped += c.readings.len();
                }
                keep
            });
            s.held -= dropped;
        }
        out
    }

    /// The id under which this store keeps a device's mark of `tenant`, or 0: what a fold going
    /// on from it gives as `feed_from`.
    pub(crate) fn kept_id(&self, device: i64, tenant: i64) -> i64 {
        self.state().marks.get(&device).filter(|h| h.mark.tenant == tenant).map_or(0, |h| h.mark.feed)
    }

    /// After a fold's transaction committed: the marks it left with its id, each with the id of
    /// the kept mark it went on from if it did, and
    /// the devices whose marks it left without (whatever is kept for them goes). A mark that went
    /// on from one a refresh has taken meanwhile is not kept: its readings would be only the new
    /// ones.
    pub(crate) fn folded(&self, fed: Vec<(i64, FedMark, Option<i64>)>, unfed: &[i64]) {
        let mut s = self.state();
        for device in unfed {
            if let Some(old) = s.marks.remove(device) {
                s.held -= old.mark.readings.len();
            }
        }
        let now = Instant::now();
        for (device, mut mark, after) in fed {
            let old = s.marks.remove(&device);
            if let Some(old) = &old {
                s.held -= old.mark.readings.len();
            }
            let (seq, since) = match (after, old) {
                (None, _) => {
                    s.next_seq += 1;
                    (s.next_seq, now)
                }
                (Some(from), Some(old)) if old.mark.feed == from => {
                    let mut readings = old.mark.readings;
                    readings.append(&mut mark.readings);
                    mark.readings = readings;
                    (old.seq, old.since)
                }
                (Some(_), _) => continue,
            };
            s.held += mark.readings.len();
            s.marks.insert(device, Held { mark, seq, since });
        }
        if s.held > MAX_READINGS {
            // More waits for the refresh than the bound: some devices are read back rather than
            // memory growing.
            s.shed_marks(AFTER_SHEDDING, now);
        }
    }

    /// For a refresh: a device's kept mark, taken out.
    pub(crate) fn take_mark(&self, device: i64) -> Option<FedMark> {
        let mut s = self.state();
        let held = s.marks.remove(&device)?;
        s.held -= held.mark.readings.len();
        Some(held.mark)
    }

    /// Counts a round's refreshed devices: `fed` from memory, `read` back.
    pub(crate) fn count(&self, fed: usize, read: usize) {
        self.fed.fetch_add(fed as u64, Ordering::Relaxed);
        self.read.fetch_add(read as u64, Ordering::Relaxed);
    }

    /// Devices this store's refreshes took from memory and read back since it was opened.
    pub fn counts(&self) -> FeedCounts {
        FeedCounts { fed: self.fed.load(Ordering::Relaxed), read: self.read.load(Ordering::Relaxed) }
    }

    /// Readings held now.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.state().held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(readings: Vec<Kept>) -> KeptCommit {
        KeptCommit { marks: Vec::new(), readings }
    }

    #[test]
    fn kept_commits_are_taken_once_and_older_ones_dropped() {
        let feed = Feed::new();
        feed.keep(3, commit(vec![(1, 10, 1.0)]));
        feed.keep(5, commit(vec![(1, 20, 2.0), (2, 20, 3.0)]));
        feed.keep(9, commit(vec![(2, 30, 4.0)]));
        assert_eq!(feed.held(), 4);
        let taken = feed.take_commits(&[5]);
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[&5].readings.len(), 2);
        // 3 is older than 5 and was not given: folded elsewhere. 9 is newer and stays.
        assert_eq!(feed.held(), 1);
        assert!(feed.take_commits(&[5]).is_empty());
        assert_eq!(feed.take_commits(&[9])[&9], commit(vec![(2, 30, 4.0)]));
        assert_eq!(feed.held(), 0);
    }

    #[test]
    fn a_failed_commit_is_forgotten_and_the_bound_stops_keeping_until_a_fold() {
        let feed = Feed::new();
        feed.keep(1, commit(vec![(1, 1, 1.0)]));
        feed.forget(1);
        assert_eq!(feed.held(), 0);
        feed.keep(2, commit(vec![(1, 1, 1.0); MAX_READINGS]));
        assert!(feed.keeping());
        feed.keep(3, commit(vec![(1, 2, 1.0)]));
        assert!(!feed.keeping(), "past the bound");
        assert_eq!(feed.held(), 0, "what waited is let go");
        feed.keep(4, commit(vec![(1, 3, 1.0)]));
        assert!(feed.take_commits(&[2, 3, 4]).is_empty());
        assert!(feed.keeping(), "a fold starts keeping again");
        feed.keep(5, commit(vec![(1, 4, 1.0)]));
        assert_eq!(feed.take_commits(&[5]).len(), 1);
    }

    #[test]
    fn past_the_bound_the_marks_kept_last_go_first_and_commits_are_still_kept() {
        let feed = Feed::new();
        let at = Ts::from_micros(100);
        let mark = |id: i64, n: usize| FedMark {
            feed: id,
            tenant: 7,
            from: 1,
            to: 5,
            marked_at: at,
            readings: vec![(1, 1.0); n],
        };
        let (half, quarter, eighth) = (MAX_READINGS / 2, MAX_READINGS / 4, MAX_READINGS / 8);
        // Folded marks of three devices, kept in the order 1, 2, 3, hold 3/4 of the bound.
        for device in 1..=3 {
            feed.folded(vec![(device, mark(10 + device, quarter), None)], &[]);
        }
        assert_eq!(feed.held(), 3 * quarter);
        // A commit that would pass the bound lets the marks kept last go (the refresh takes the
        // first kept first), down to a quarter below the bound with the commit, and is kept.
        feed.keep(9, commit(vec![(2, 1, 1.0); half]));
        assert!(feed.keeping());
        assert!(feed.take_mark(3).is_none() && feed.take_mark(2).is_none(), "the last kept went");
        assert_eq!(feed.take_mark(1).unwrap().readings.len(), quarter, "the first kept stays");
        assert_eq!(feed.take_commits(&[9])[&9].readings.len(), half);
        assert_eq!(feed.held(), 0);
        // Past the bound after a fold, the mark kept last goes though it is not the largest.
        feed.folded(vec![(4, mark(40, half), None)], &[]);
        feed.folded(vec![(5, mark(50, quarter), None)], &[]);
        feed.folded(vec![(6, mark(60, half - 1), None)], &[]);
        assert!(feed.held() <= AFTER_SHEDDING);
        assert!(feed.take_mark(6).is_none());
        assert!(feed.take_mark(4).is_some() && feed.take_mark(5).is_some());
        // A mark that goes on from the kept one keeps its place: 7 was kept before 8, and goes
        // after it.
        feed.folded(vec![(7, mark(70, eighth), None)], &[]);
        feed.folded(vec![(8, mark(80, half), None)], &[]);
        feed.folded(vec![(7, mark(71, eighth), Some(70))], &[]);
        assert_eq!(feed.held(), quarter + half);
        feed.keep(10, commit(vec![(2, 1, 1.0); half]));
        assert!(feed.take_mark(8).is_none(), "kept last");
        assert_eq!(feed.take_mark(7).unwrap().readings.len(), quarter);
    }

    #[test]
    fn stale_marks_go_first_the_oldest_first() {
        let feed = Feed::new();
        let mark = |id: i64| FedMark {
            feed: id,
            tenant: 7,
            from: 1,
            to: 5,
            marked_at: Ts::from_micros(100),
            readings: vec![(1, 1.0); 10],
        };
        for device in 1..=3 {
            feed.folded(vec![(device, mark(device), None)], &[]);
        }
        // Long after, all three are stale (a refresh elsewhere took their devices): the oldest go.
        feed.state().shed_marks(10, Instant::now() + STALE);
        assert!(feed.take_mark(1).is_none() && feed.take_mark(2).is_none());
        assert!(feed.take_mark(3).is_some());
    }

    #[test]
    fn a_mark_goes_on_from_the_kept_one_and_is_taken_once() {
        let feed = Feed::new();
        let at = Ts::from_micros(100);
        let mark = |id, r: Vec<(i64, f64)>, at| FedMark {
            feed: id,
            tenant: 7,
            from: 1,
            to: 5,
            marked_at: at,
            readings: r,
        };
        feed.folded(vec![(4, mark(11, vec![(1, 1.0)], at), None)], &[]);
        assert_eq!(feed.kept_id(4, 7), 11);
        assert_eq!(feed.kept_id(4, 8), 0, "another tenant's");
        let later = Ts::from_micros(200);
        feed.folded(vec![(4, mark(12, vec![(5, 2.0)], later), Some(11))], &[]);
        let taken = feed.take_mark(4).unwrap();
        assert!(taken.is(12, 7, 1, 5, later));
        assert!(!taken.is(11, 7, 1, 5, later));
        assert_eq!(taken.readings, vec![(1, 1.0), (5, 2.0)]);
        assert!(feed.take_mark(4).is_none());
        // Going on from a mark a refresh took meanwhile: not kept.
        feed.folded(vec![(4, mark(13, vec![(6, 1.0)], later), Some(12))], &[]);
        assert!(feed.take_mark(4).is_none());
        // A mark made afresh replaces what was kept.
        feed.folded(vec![(4, mark(14, vec![(1, 1.0)], at), None)], &[]);
        feed.folded(vec![(4, mark(15, vec![(2, 1.0)], later), None)], &[]);
        assert_eq!(feed.take_mark(4).unwrap().readings, vec![(2, 1.0)]);
        feed.folded(vec![(4, mark(16, vec![(1, 1.0)], at), None)], &[]);
        feed.folded(Vec::new(), &[4]);
        assert!(feed.take_mark(4).is_none());
        assert_eq!(feed.held(), 0);
    }
}
