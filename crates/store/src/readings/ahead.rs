//! The transaction of the device endpoint's next group commit, begun on PostgreSQL while the
//! current one is written, so that the next batch's inserts start at once instead of after a
//! `BEGIN` round trip.
//!
//! Under a steady load the endpoint's writer prepares a batch while the one before it commits
//! (see [`super::ReadingStore::overlaps_commits`]); preparing was `BEGIN`, then the inserts, and
//! the `BEGIN` alone took 0.34 to 0.64 ms of a writer iteration of ~3 ms at half load (`tds bench
//! ingest`, commit phases), a round trip spent waiting on a loaded machine. Here, when a batch
//! takes its transaction, the next one's is begun in the background, on another connection
//! (`super::ReadingStore::prepare_groups_back_to_back`): 0.08–0.12 ms remain, the take.
//!
//! A transaction begun ahead holds no snapshot and no transaction id until its first statement
//! (so it holds back no vacuum), but it holds a connection and shows as `idle in transaction`:
//! one that is not taken within [`FRESH`] is rolled back, and one the server closed meanwhile
//! (`idle_in_transaction_session_timeout` shorter than that) makes the commit begin again
//! instead of failing (see `commit::prepare`). At most one is kept.

use sqlx::{PgPool, Postgres, Transaction};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a transaction begun ahead waits to be taken before it is rolled back: far longer
/// than a writer iteration under load, far shorter than any sensible idle-in-transaction limit.
pub(crate) const FRESH: Duration = Duration::from_secs(1);

/// The one transaction begun ahead, if any.
#[derive(Debug, Default)]
pub(crate) struct Ahead {
    slot: Mutex<Option<Begun>>,
    /// A `BEGIN` is on its way: no second one meanwhile.
    beginning: AtomicBool,
    /// How many times [`Ahead::release`] was called: a `BEGIN` on its way when it was rolls its
    /// transaction back instead of keeping it (released means none is left waiting).
    releases: AtomicU64,
}

#[derive(Debug)]
struct Begun {
    at: Instant,
    tx: Transaction<'static, Postgres>,
}

impl Ahead {
    /// The transaction begun ahead, unless there is none or it waited too long (then it is
    /// rolled back as it is dropped).
    pub(crate) fn take(&self) -> Option<Transaction<'static, Postgres>> {
        let begun = self.lock().take()?;
        (begun.at.elapsed() < FRESH).then_some(begun.tx)
    }

    /// Begins a transaction on `pool` in the background for the next group commit, unless one is
    /// kept or on its way. A failure only costs the next commit its own `BEGIN`.
    pub(crate) fn begin_soon(self: &Arc<Self>, pool: &PgPool) {
        if self.lock().is_some() || self.beginning.swap(true, Ordering::AcqRel) {
            return;
        }
        let (ahead, pool) = (Arc::clone(self), pool.clone());
        let releases = self.releases.load(Ordering::Acquire);
        tokio::spawn(async move {
            let begun = pool.begin().await;
            let tx = match begun {
                Ok(tx) => tx,
                Err(e) => {
                    ahead.beginning.store(false, Ordering::Release);
                    tracing::debug!(error = %e, "no transaction begun ahead");
                    return;
                }
            };
            let at = Instant::now();
            let (kept, unused) = {
                let mut slot = ahead.lock();
                // Checked under the lock `release` takes after counting itself: either this
                // transaction is in the slot when it looks, or it sees the count changed.
                if ahead.releases.load(Ordering::Acquire) == releases {
                    (true, slot.replace(Begun { at, tx }))
                } else {
                    (false, Some(Begun { at, tx }))
                }
            };
            ahead.beginning.store(false, Ordering::Release);
            drop(unused);
            if !kept {
                return;
            }
            // Rolled back unless taken meanwhile (the pool gets its connection back).
            tokio::time::sleep(FRESH).await;
            let stale = {
                let mut slot = ahead.lock();
                if slot.as_ref().is_some_and(|b| b.at == at) { slot.take() } else { None }
            };
            drop(stale);
        });
    }

    /// Rolls back the transaction kept, if any, and the one a `BEGIN` on its way brings back:
    /// before the pool closes, which waits for every connection.
    pub(crate) fn release(&self) {
        self.releases.fetch_add(1, Ordering::AcqRel);
        let kept = self.lock().take();
        drop(kept);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Begun>> {
        // A panic while the slot was held leaves it usable: it holds a whole value or none.
        self.slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Whether a statement failed because its connection is gone (closed by the server, as an
/// idle-in-transaction limit or an administrator does, or broken), not because of what it asked.
pub(crate) fn connection_lost(e: &crate::StoreError) -> bool {
    match e {
        crate::StoreError::Database(sqlx::Error::Io(_) | sqlx::Error::Protocol(_)) => true,
        crate::StoreError::Database(sqlx::Error::Database(db)) => db.code().is_some_and(|code| {
            // idle_in_transaction_session_timeout, operator intervention, connection exception.
            code == "25P03" || code.starts_with("57P") || code.starts_with("08")
        }),
        _ => false,
    }
}
