//! The disk queue: order, acknowledgement, the byte bound, and a real crash (SIGKILL of a
//! process that is writing batches as fast as it can).

use std::process::{Command, Stdio};
use std::time::Duration;
use tds_gateway::queue::DiskQueue;

fn batch(n: u64) -> Vec<u8> {
    format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(200)).into_bytes()
}

fn number(bytes: &[u8]) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    v["n"].as_u64().unwrap()
}

#[test]
fn batches_come_back_in_order_after_reopening_and_acknowledged_ones_are_gone() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = DiskQueue::open(dir.path(), 1 << 20).unwrap();
    let seqs: Vec<u64> = (0..10).map(|n| q.push(&batch(n)).unwrap()).collect();
    q.remove(seqs[0]).unwrap();
    q.remove(seqs[3]).unwrap();
    drop(q);
    let q = DiskQueue::open(dir.path(), 1 << 20).unwrap();
    let left: Vec<u64> = q.sequences().iter().map(|s| number(&q.read(*s).unwrap().unwrap())).collect();
    assert_eq!(left, vec![1, 2, 4, 5, 6, 7, 8, 9]);
    assert_eq!(q.next_after(None), Some(seqs[1]));
    assert_eq!(q.next_after(Some(seqs[2])), Some(seqs[4]));
    let mut q = q;
    assert!(q.push(&batch(10)).unwrap() > *seqs.last().unwrap(), "new batches go after the old ones");
}

#[test]
fn a_full_queue_drops_the_oldest_batches_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let size = batch(0).len() as u64;
    let mut q = DiskQueue::open(dir.path(), size * 5).unwrap();
    for n in 0..8 {
        q.push(&batch(n)).unwrap();
    }
    assert_eq!(q.len(), 5);
    assert_eq!(q.dropped(), 3);
    assert!(q.bytes() <= size * 5);
    let kept: Vec<u64> = q.sequences().iter().map(|s| number(&q.read(*s).unwrap().unwrap())).collect();
    assert_eq!(kept, vec![3, 4, 5, 6, 7]);
    assert!(q.push(&vec![b' '; (size * 6) as usize]).is_err(), "a batch larger than the queue is refused");
}

/// Run by [`a_process_killed_while_writing_leaves_only_whole_batches`] in a child process.
#[test]
#[ignore = "helper: runs in a child process that is killed"]
fn child_writes_batches_until_killed() {
    let Ok(dir) = std::env::var("TDS_QUEUE_CRASH_DIR") else { return };
    let mut q = DiskQueue::open(std::path::Path::new(&dir), 1 << 30).unwrap();
    for n in 0.. {
        q.push(&batch(n)).unwrap();
        // Acknowledge some, as the uplink does, so removals are cut too.
        if n % 3 == 0 {
            let oldest = q.next_after(None).unwrap();
            q.remove(oldest).unwrap();
        }
    }
}

#[test]
fn a_process_killed_while_writing_leaves_only_whole_batches() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["queue::child_writes_batches_until_killed", "--exact", "--ignored", "--nocapture"])
            .env("TDS_QUEUE_CRASH_DIR", dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300 + 100 * round));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let q = DiskQueue::open(dir.path(), 1 << 30).unwrap();
        assert!(!q.is_empty(), "the child wrote something");
        // Every batch left is whole and they are in the order written.
        let numbers: Vec<u64> = q.sequences().iter().map(|s| number(&q.read(*s).unwrap().unwrap())).collect();
        assert!(numbers.windows(2).all(|w| w[0] < w[1] || w[1] == 0), "{numbers:?}");
        let leftovers = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".tmp"))
            .count();
        assert_eq!(leftovers, 0, "a torn write is cleared at open");
    }
}
