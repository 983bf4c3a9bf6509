//! What a simulated fleet saw, shared by all its gateways: connections, messages published and
//! acknowledged, readings in acknowledged batches, the faults it injected, and the time from each
//! PUBLISH leaving a gateway to its PUBACK arriving (which TDS sends only after the commit).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Stats {
    /// Gateways connected right now.
    pub connected: AtomicU64,
    pub connects: AtomicU64,
    /// Connection attempts refused or failed (TLS, CONNACK, network).
    pub connect_failures: AtomicU64,
    /// Connections lost after they were up.
    pub disconnects: AtomicU64,
    pub messages_sent: AtomicU64,
    pub messages_acked: AtomicU64,
    /// Readings in acknowledged telemetry (bad messages not counted).
    pub readings_acked: AtomicU64,
    pub bad_messages: AtomicU64,
    pub resets: AtomicU64,
    /// Backlog batches sent after a gap.
    pub late_batches: AtomicU64,
    /// Certificate renewals taken (connected with the new certificate).
    pub renewals: AtomicU64,
    /// New certificates given up because the connection with them failed.
    pub rollbacks: AtomicU64,
    latencies_us: Mutex<Vec<u32>>,
}

/// Counters at one moment, to compute rates between two of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub connected: u64,
    pub connects: u64,
    pub connect_failures: u64,
    pub disconnects: u64,
    pub messages_sent: u64,
    pub messages_acked: u64,
    pub readings_acked: u64,
    pub bad_messages: u64,
    pub resets: u64,
    pub late_batches: u64,
    pub renewals: u64,
    pub rollbacks: u64,
}

/// Latency percentiles of a window, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Stats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn ack(&self, readings: u64, took: Duration) {
        Self::add(&self.messages_acked, 1);
        Self::add(&self.readings_acked, readings);
        if let Ok(mut v) = self.latencies_us.lock() {
            v.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
        }
    }

    pub(crate) fn connected(&self, up: bool) {
        if up {
            Self::add(&self.connects, 1);
            self.connected.fetch_add(1, Ordering::Relaxed);
        } else {
            self.connected.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            connected: get(&self.connected),
            connects: get(&self.connects),
            connect_failures: get(&self.connect_failures),
            disconnects: get(&self.disconnects),
            messages_sent: get(&self.messages_sent),
            messages_acked: get(&self.messages_acked),
            readings_acked: get(&self.readings_acked),
            bad_messages: get(&self.bad_messages),
            resets: get(&self.resets),
            late_batches: get(&self.late_batches),
            renewals: get(&self.renewals),
            rollbacks: get(&self.rollbacks),
        }
    }

    /// The acknowledgement latencies (µs) recorded since the last call, which are cleared.
    pub fn take_samples(&self) -> Vec<u32> {
        self.latencies_us.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default()
    }
}

impl Latency {
    /// Percentiles of `samples` (µs), which are sorted in place; `None` when there are none.
    pub fn of(samples: &mut [u32]) -> Option<Latency> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let at = |p: f64| f64::from(samples[((samples.len() - 1) as f64 * p).round() as usize]) / 1e3;
        Some(Latency { samples: samples.len(), p50_ms: at(0.5), p99_ms: at(0.99), max_ms: at(1.0) })
    }
}

impl Snapshot {
    /// One line: the rates between `earlier` and `self`, `elapsed` apart, and the latency.
    pub fn report(&self, earlier: &Snapshot, elapsed: Duration, latency: Option<Latency>) -> String {
        let s = elapsed.as_secs_f64().max(1e-9);
        let rate = |now: u64, then: u64| now.saturating_sub(then) as f64 / s;
        let latency = latency.map_or_else(
            || "no acks".to_owned(),
            |l| format!("PUBACK p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms", l.p50_ms, l.p99_ms, l.max_ms),
        );
        format!(
            "{} connected; {:.0} messages/s, {:.0} readings/s acknowledged; {latency}; in all {} acked of {} sent, \
             {} bad, {} resets, {} late batches, {} connect failures, {} disconnects, {} renewals, {} rollbacks",
            self.connected,
            rate(self.messages_acked, earlier.messages_acked),
            rate(self.readings_acked, earlier.readings_acked),
            self.messages_acked,
            self.messages_sent,
            self.bad_messages,
            self.resets,
            self.late_batches,
            self.connect_failures,
            self.disconnects,
            self.renewals,
            self.rollbacks,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_percentiles_come_from_the_window_and_clear_it() {
        let stats = Stats::default();
        for ms in 1..=100u64 {
            stats.ack(2, Duration::from_millis(ms));
        }
        let l = Latency::of(&mut stats.take_samples()).unwrap();
        assert_eq!(l.samples, 100);
        assert!((l.p50_ms - 51.0).abs() < 1.01, "{l:?}");
        assert!((l.p99_ms - 99.0).abs() < 1.01, "{l:?}");
        assert_eq!(l.max_ms, 100.0);
        assert!(Latency::of(&mut stats.take_samples()).is_none());
        assert_eq!(stats.snapshot().readings_acked, 200);
    }

    #[test]
    fn a_report_gives_rates_over_the_elapsed_time() {
        let earlier = Snapshot::default();
        let now = Snapshot { messages_acked: 50, readings_acked: 500, connected: 3, ..Snapshot::default() };
        let line = now.report(&earlier, Duration::from_secs(10), None);
        assert!(line.starts_with("3 connected; 5 messages/s, 50 readings/s"), "{line}");
    }
}
