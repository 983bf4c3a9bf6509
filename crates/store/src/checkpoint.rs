//! SQLite's WAL checkpoints, moved off the writer.
//!
//! In WAL mode a commit appends the pages it changed to the `-wal` file, and a checkpoint copies
//! them into the database file. By default the connection that commits runs the checkpoint
//! itself whenever the WAL holds 1,000 pages, so with the readings of a thousand meters (each
//! commit changes each meter's newest page) nearly every commit of the ingest writer paid for a
//! checkpoint: half of its COMMIT time and a third of its whole time (`tds bench ingest`, commit
//! phases; `perf`: `sqlite3WalDefaultHook`).
//!
//! Here a connection of its own checkpoints every [`EVERY`] in `PASSIVE` mode, beside the writer
//! (it never waits for it nor makes it wait), on the other core; a page changed by many commits
//! between two passes is copied once. The writer still checkpoints when the WAL reaches
//! [`WRITER_PAGES`], but by then the background passes have copied all but the last fraction of
//! a second, and its checkpoint is the one that lets the WAL start over from the beginning: SQLite
//! restarts the file only when a write begins with every frame copied, which a checkpoint
//! running beside a busy writer never sees.

use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How often the background connection checkpoints. The writer's own checkpoint (at
/// [`WRITER_PAGES`]) syncs and copies what the background passes left, which is what arrived
/// since the last of them: its commit is the writer's slowest. Every 50 ms instead of 200 ms,
/// side by side (`tds bench ingest --seconds 15`, 1,000 meters, three pairs): the commits' p99
/// 130–155 against 170–208 ms at full load, 107–129 against 148–182 ms at half load, the
/// throughput and CPU per reading alike within the runs' spread (and at 10,000 meters, `--gateways
/// 1000 --devices 10 --seconds 60 --rate 13000 --inflight 32`: 79,114 against 74,923 readings/s).
pub(crate) const EVERY: Duration = Duration::from_millis(50);

/// WAL size, in pages, at which the writer checkpoints itself (`wal_autocheckpoint`): 160 MiB
/// of 4 KiB pages. Up to this the background passes do the copying. Under a sustained load with
/// 10,000 meters a commit changes more than 10,000 pages (one or more per meter): at 10,000
/// pages (40 MiB) the writer checkpointed after nearly every commit, copying what the last one
/// wrote; at 40,000 the same run stored 105,000 readings a second instead of 84,000 (`tds bench
/// ingest --gateways 1000 --devices 10 --seconds 60 --rate 12000 --inflight 32`). With 1,000
/// meters (`tds bench ingest --seconds 15`) the two were alike within the runs' spread.
pub(crate) const WRITER_PAGES: u32 = 40_000;

/// Largest `-wal` file kept after it starts over (`journal_size_limit`, bytes): above what a
/// steady load makes it ([`WRITER_PAGES`] and the commit that crossed them), so that starting
/// over does not cut it back every time; a burst (an import, a long backlog) that grew it beyond
/// gives the space back. At 64 MiB the writer truncated the file at every start, about once a
/// second under load: `ftruncate` from 160 to 64 MiB took 34 ms of the writer's time each
/// (`strace -T` during `tds bench ingest --rate 6000`), and the next pass wrote the blocks again.
pub(crate) const KEEP_WAL_BYTES: u64 = 256 << 20;

/// Stops the checkpointer when the last handle to the database goes, or on [`Self::stop`].
#[derive(Debug)]
pub(crate) struct Checkpointer {
    stop: Mutex<Option<oneshot::Sender<()>>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    /// Opens the checkpointer's connection and starts it.
    pub(crate) async fn start(options: &SqliteConnectOptions) -> Result<Arc<Self>, sqlx::Error> {
        let conn = SqliteConnection::connect_with(options).await?;
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(run(conn, rx));
        Ok(Arc::new(Self { stop: Mutex::new(Some(tx)), task: Mutex::new(Some(task)) }))
    }

    /// Stops it and returns once its connection is closed (a pass under way finishes first), so
    /// that the writer, closed after it, is the last connection: SQLite's last connection to
    /// close checkpoints the whole WAL and removes it, which a backup that copies the file next
    /// relies on.
    pub(crate) async fn stop(&self) {
        if let Ok(mut stop) = self.stop.lock() {
            stop.take();
        }
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

async fn run(mut conn: SqliteConnection, mut stop: oneshot::Receiver<()>) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            // A sent value or a dropped sender: either way, stop.
            _ = &mut stop => break,
            _ = tick.tick() => {}
        }
        // Busy (the writer is checkpointing) is an answer, not an error: the next pass goes on.
        // A failure is logged when it starts and when it ends, not twenty times a second.
        match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&mut conn).await {
            Ok(_) if failing => {
                failing = false;
                tracing::info!("background WAL checkpoints work again");
            }
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "background WAL checkpoint failed; the writer checkpoints instead until it works again");
            }
            // Still working, or still failing.
            Ok(_) | Err(_) => {}
        }
    }
    let _ = conn.close().await;
}
