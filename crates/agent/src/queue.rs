//! The crash-safe disk queue of batches waiting for their PUBACK.
//!
//! Design: one file per batch in one directory, named by a 20-digit sequence number
//! (`00000000000000000042.json`), so that the directory listing sorted by name is the sending
//! order and needs no index file that could itself be torn. A batch is written to a `.tmp` name,
//! fsynced, renamed to its final name and the directory fsynced: after a power cut a batch is
//! either whole under its final name or absent (a leftover `.tmp` is deleted at open). A PUBACK
//! removes one file. Appending never rewrites what is there, and acknowledging never rewrites
//! anything either, so no write can damage another batch — the reason for this design over one
//! append-only log (which needs compaction and a torn-tail check). Its cost, one small file and
//! two fsyncs per batch, is nothing at one batch per poll.
//!
//! The queue is bounded in bytes: pushing past the bound drops the oldest batches, counted.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("disk queue {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("a batch of {size} bytes is larger than the whole queue ({max} bytes)")]
    TooLarge { size: u64, max: u64 },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> QueueError + '_ {
    move |source| QueueError::Io { path: path.to_owned(), source }
}

/// The queue directory and what is in it (kept in memory; the directory is the truth at open).
#[derive(Debug)]
pub struct DiskQueue {
    dir: PathBuf,
    max_bytes: u64,
    /// (sequence, size in bytes), oldest first.
    entries: VecDeque<(u64, u64)>,
    bytes: u64,
    next_seq: u64,
    dropped: u64,
}

fn file_name(seq: u64) -> String {
    format!("{seq:020}.json")
}

impl DiskQueue {
    /// Opens (creating) the queue in `dir`, bounded to `max_bytes`.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, QueueError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let mut entries = Vec::new();
        for entry in fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if Path::new(&name).extension().is_some_and(|e| e == "tmp") {
                // A batch that was being written when the power went: it was never sent.
                let _ = fs::remove_file(entry.path());
                continue;
            }
            let Some(seq) = name.strip_suffix(".json").and_then(|s| s.parse::<u64>().ok()) else { continue };
            let size = entry.metadata().map_err(io(dir))?.len();
            entries.push((seq, size));
        }
        entries.sort_unstable();
        let bytes = entries.iter().map(|(_, s)| s).sum();
        let next_seq = entries.last().map_or(1, |(seq, _)| seq + 1);
        Ok(Self { dir: dir.to_owned(), max_bytes, entries: entries.into(), bytes, next_seq, dropped: 0 })
    }

    /// Writes `batch` durably and returns its sequence number; drops the oldest batches first if
    /// the queue would grow past its bound (see [`Self::dropped`]).
    pub fn push(&mut self, batch: &[u8]) -> Result<u64, QueueError> {
        let size = batch.len() as u64;
        if size > self.max_bytes {
            return Err(QueueError::TooLarge { size, max: self.max_bytes });
        }
        while self.bytes + size > self.max_bytes {
            let Some((oldest, _)) = self.entries.front().copied() else { break };
            self.remove(oldest)?;
            self.dropped += 1;
        }
        let seq = self.next_seq;
        let path = self.dir.join(file_name(seq));
        let tmp = self.dir.join(format!("{}.tmp", file_name(seq)));
        let mut file =
            OpenOptions::new().write(true).create(true).truncate(true).open(&tmp).map_err(io(&tmp))?;
        file.write_all(batch).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        drop(file);
        fs::rename(&tmp, &path).map_err(io(&path))?;
        self.sync_dir()?;
        self.next_seq += 1;
        self.entries.push_back((seq, size));
        self.bytes += size;
        Ok(seq)
    }

    fn sync_dir(&self) -> Result<(), QueueError> {
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io(&self.dir))
    }

    /// The batch `seq`, if it is still queued.
    pub fn read(&self, seq: u64) -> Result<Option<Vec<u8>>, QueueError> {
        let path = self.dir.join(file_name(seq));
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Forgets batch `seq` (its PUBACK came, or it was dropped). Removing an unknown batch is
    /// not an error: a dropped batch can still be acknowledged.
    pub fn remove(&mut self, seq: u64) -> Result<(), QueueError> {
        let Some(at) = self.entries.iter().position(|(s, _)| *s == seq) else { return Ok(()) };
        let path = self.dir.join(file_name(seq));
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path)(e)),
        }
        if let Some((_, size)) = self.entries.remove(at) {
            self.bytes -= size;
        }
        // No directory fsync here: a removal lost in a power cut only means one batch sent twice,
        // which the server's idempotency absorbs; a lost append would be a lost reading.
        Ok(())
    }

    /// The first queued batch after `seq` (or the oldest one), in sending order.
    pub fn next_after(&self, seq: Option<u64>) -> Option<u64> {
        self.entries.iter().map(|(s, _)| *s).find(|s| seq.is_none_or(|after| *s > after))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Batches dropped because the queue was full, since it was opened.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Sequence numbers queued, oldest first.
    pub fn sequences(&self) -> Vec<u64> {
        self.entries.iter().map(|(s, _)| *s).collect()
    }
}
