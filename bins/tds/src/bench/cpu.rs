//! CPU time from `/proc` for the benchmarks: this process's, its load generator's threads'
//! (told apart by their name), the local PostgreSQL server's processes' and a broker process's
//! (`tds bench compare`'s Mosquitto). Linux only; where `/proc` cannot be read the figures are
//! absent, not zero.
//!
//! Times are in clock ticks of `USER_HZ`, which the kernel fixes at 100 per second for user
//! space on every architecture TDS builds for: a 15 s run at two busy cores counts ~3,000 ticks,
//! so the figures are good to a fraction of a per cent.

use std::fmt::Write as _;
use std::path::Path;

/// Clock ticks per second in `/proc/*/stat` (`USER_HZ`).
const TICKS_PER_SECOND: f64 = 100.0;

/// Name given to the load generator's threads, so that their CPU time is not counted as the
/// server's (they share the process).
pub const LOAD_THREADS: &str = "tds-bench-load";

/// CPU time consumed so far, in ticks.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// This whole process, threads that have exited included.
    process: u64,
    /// The load generator's threads.
    load: u64,
    /// Every `postgres` process of the machine (the backends, the WAL writer, the checkpointer…):
    /// `None` when none is visible (SQLite, or a server elsewhere).
    postgres: Option<u64>,
    /// The broker process given to [`Sample::now`].
    broker: Option<u64>,
}

/// CPU seconds used between two samples.
#[derive(Debug, Clone, Copy)]
pub struct Used {
    /// The endpoint, writer, rollup and alert tasks: the process minus the load generator.
    pub server: f64,
    pub load: f64,
    pub postgres: Option<f64>,
    pub broker: Option<f64>,
}

impl Sample {
    /// Now; with the local PostgreSQL server's CPU time when `postgres`, and process
    /// `broker_pid`'s when given.
    pub fn now(postgres: bool, broker_pid: Option<u32>) -> Option<Self> {
        let process = ticks(Path::new("/proc/self/stat"))?.1;
        let mut load = 0;
        for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
            if let Some((name, t)) = ticks(&task.path().join("stat"))
                && name.starts_with(LOAD_THREADS)
            {
                load += t;
            }
        }
        let broker = broker_pid.and_then(|pid| ticks(&Path::new("/proc").join(pid.to_string()).join("stat")));
        Some(Self {
            process,
            load,
            postgres: postgres.then(postgres_ticks).flatten(),
            broker: broker.map(|(_, t)| t),
        })
    }

    pub fn since(&self, earlier: &Self) -> Used {
        let s = |a: u64, b: u64| a.saturating_sub(b) as f64 / TICKS_PER_SECOND;
        Used {
            server: s(self.process.saturating_sub(self.load), earlier.process.saturating_sub(earlier.load)),
            load: s(self.load, earlier.load),
            postgres: self.postgres.zip(earlier.postgres).map(|(a, b)| s(a, b)),
            broker: self.broker.zip(earlier.broker).map(|(a, b)| s(a, b)),
        }
    }
}

impl Used {
    /// One line for a run of `seconds` that stored `readings`: cores busy and µs per reading.
    pub fn summary(&self, seconds: f64, readings: u64) -> String {
        let per = |cpu: f64| cpu * 1e6 / readings.max(1) as f64;
        let database = self.postgres.unwrap_or(0.0);
        let mut out = format!(
            "CPU per stored reading {:.1} µs (server {:.1} µs",
            per(self.server + database),
            per(self.server)
        );
        if let Some(pg) = self.postgres {
            let _ = write!(out, ", PostgreSQL {:.1} µs", per(pg));
        }
        let _ = write!(out, "); cores busy: server {:.2}", self.server / seconds);
        if let Some(pg) = self.postgres {
            let _ = write!(out, ", PostgreSQL {:.2}", pg / seconds);
        }
        let _ = write!(out, ", load generator {:.2}", self.load / seconds);
        out
    }

    /// A broker's line (`tds bench compare`): its CPU per message and cores busy.
    pub fn broker_summary(&self, seconds: f64, messages: u64) -> Option<String> {
        let broker = self.broker?;
        Some(format!(
            "CPU per message: broker {:.1} µs; cores busy: broker {:.2}, load generator {:.2}",
            broker * 1e6 / messages.max(1) as f64,
            broker / seconds,
            self.load / seconds
        ))
    }
}

/// A process's or thread's name and user + system ticks, from its `stat` file.
fn ticks(stat: &Path) -> Option<(String, u64)> {
    let text = std::fs::read_to_string(stat).ok()?;
    // The name is in parentheses and may itself hold spaces or parentheses: split at the last.
    let (head, rest) = text.rsplit_once(") ")?;
    let name = head.split_once(" (")?.1.to_owned();
    // After the name: state (field 3) … utime (14) and stime (15).
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some((name, user + system))
}

fn postgres_ticks() -> Option<u64> {
    let mut total = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let is_pid = entry.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        if !is_pid {
            continue;
        }
        if let Some((name, t)) = ticks(&entry.path().join("stat"))
            && name == "postgres"
        {
            *total.get_or_insert(0) += t;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_and_a_broker_process_are_read_and_their_time_grows() {
        let me = std::process::id();
        let a = Sample::now(false, Some(me)).unwrap();
        // Busy until the clock (10 ms ticks) has moved, within reason.
        let started = std::time::Instant::now();
        let mut x = 0u64;
        let mut b = a;
        while b.process == a.process && started.elapsed() < std::time::Duration::from_secs(10) {
            for i in 0..1_000_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            b = Sample::now(false, Some(me)).unwrap();
        }
        std::hint::black_box(x);
        let used = b.since(&a);
        assert!(used.server > 0.0, "{used:?}");
        assert!(used.broker.is_some_and(|t| t > 0.0), "the same process as the broker: {used:?}");
        assert!(used.load.abs() < f64::EPSILON, "no load threads here: {used:?}");
    }

    #[test]
    fn a_name_with_spaces_and_parentheses_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let stat = dir.path().join("stat");
        std::fs::write(&stat, "42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0").unwrap();
        assert_eq!(ticks(&stat), Some(("a (b) c".to_owned(), 300)));
    }
}
