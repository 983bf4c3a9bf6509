//! The endpoint's side of `tds bench ingest`: a `metrics` recorder that keeps the values of
//! the endpoint's commit and acknowledgement histograms for each run's summary.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Values of one histogram of the endpoint, kept for the run's summary.
#[derive(Debug, Default)]
struct Values(std::sync::Mutex<Vec<f64>>);

impl metrics::HistogramFn for Values {
    fn record(&self, value: f64) {
        if let Ok(mut v) = self.0.lock() {
            v.push(value);
        }
    }
}

impl Probe {
    pub(super) fn reset(&self) {
        self.commit_seconds.take();
        self.commit_readings.take();
        self.ack_seconds.take();
        self.accept_seconds.take();
        self.queue_wait_seconds.take();
        for p in &self.phases {
            p.take();
        }
        for h in &self.handshakes {
            h.store(0, Ordering::Relaxed);
        }
    }
}

impl Values {
    fn take(&self) -> Vec<f64> {
        self.0.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default()
    }
}

/// The endpoint's own measurements (its `metrics` histograms), to tell where the time goes:
/// commits (size and duration) and the server-side time from a PUBLISH read to its PUBACK queued.
#[derive(Debug, Default)]
pub(super) struct Probe {
    commit_seconds: Arc<Values>,
    commit_readings: Arc<Values>,
    ack_seconds: Arc<Values>,
    /// From a PUBLISH read to its message queued for the writer.
    accept_seconds: Arc<Values>,
    /// From a message queued to a batch taking it.
    queue_wait_seconds: Arc<Values>,
    /// `tds_ingest_commit_phase_seconds` by phase, in [`PHASES`] order.
    phases: [Arc<Values>; 4],
    /// `tds_ingest_tls_handshakes_total`: full, resumed (a storm's reconnections).
    handshakes: [Arc<AtomicU64>; 2],
}

/// The phases of a commit, as the endpoint labels them.
const PHASES: [&str; 4] = ["begin", "insert", "marks", "commit"];

impl metrics::Recorder for Probe {
    fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        if key.name() != tds_ingest::metrics::TLS_HANDSHAKES {
            return metrics::Counter::noop();
        }
        let resumed = key.labels().any(|l| l.key() == "kind" && l.value() == "resumed");
        metrics::Counter::from_arc(self.handshakes[usize::from(resumed)].clone())
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
        let values = match key.name() {
            tds_ingest::metrics::COMMIT_SECONDS => &self.commit_seconds,
            tds_ingest::metrics::BATCH_READINGS => &self.commit_readings,
            tds_ingest::metrics::ACK_SECONDS => &self.ack_seconds,
            tds_ingest::metrics::ACCEPT_SECONDS => &self.accept_seconds,
            tds_ingest::metrics::QUEUE_WAIT_SECONDS => &self.queue_wait_seconds,
            tds_ingest::metrics::COMMIT_PHASE_SECONDS => {
                let phase = key.labels().find(|l| l.key() == "phase").map(metrics::Label::value);
                match PHASES.iter().position(|p| Some(*p) == phase) {
                    Some(i) => &self.phases[i],
                    None => return metrics::Histogram::noop(),
                }
            }
            _ => return metrics::Histogram::noop(),
        };
        metrics::Histogram::from_arc(values.clone())
    }
}

/// The probe of this process, installed on first use; `None` if another recorder is installed.
pub(super) fn probe() -> Option<&'static Probe> {
    static PROBE: std::sync::OnceLock<Option<&'static Probe>> = std::sync::OnceLock::new();
    *PROBE.get_or_init(|| {
        let probe: &'static Probe = Box::leak(Box::default());
        metrics::set_global_recorder(probe).ok().map(|()| probe)
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The endpoint's side of a run: how busy the writer was and with what commits. "Writer busy" adds
/// up the commits' durations (from their batch taken to their `COMMIT` done): on PostgreSQL two
/// overlap (the next batch is written while one commits), so it can pass 100 %.
pub(super) fn server_side(probe: &Probe, run_for: Duration) -> String {
    let mut commits = probe.commit_seconds.take();
    let readings = probe.commit_readings.take();
    let mut acks = probe.ack_seconds.take();
    let mut accepts = probe.accept_seconds.take();
    let mut waits = probe.queue_wait_seconds.take();
    if commits.is_empty() {
        return "endpoint: no commits".into();
    }
    let busy: f64 = commits.iter().sum();
    commits.sort_by(f64::total_cmp);
    acks.sort_by(f64::total_cmp);
    accepts.sort_by(f64::total_cmp);
    waits.sort_by(f64::total_cmp);
    // Each phase's mean share of a commit: where a commit's fixed cost is.
    let phases: Vec<String> = PHASES
        .iter()
        .zip(&probe.phases)
        .map(|(name, values)| {
            let v = values.take();
            format!("{name} {:.2}", v.iter().sum::<f64>() / v.len().max(1) as f64 * 1e3)
        })
        .collect();
    format!(
        "endpoint: {} commits of {:.0} readings on average, commit p50 {:.1} ms, p99 {:.1} ms, writer busy {:.0}% \
         of the run; PUBLISH read→PUBACK queued p50 {:.1} ms, p99 {:.1} ms\n  \
         of which read→queued for the writer p50 {:.2} ms, p99 {:.1} ms; waiting in its queue p50 {:.1} ms, p99 {:.1} ms\n  \
         commit phases, mean ms: {}",
        commits.len(),
        readings.iter().sum::<f64>() / readings.len().max(1) as f64,
        percentile(&commits, 0.5) * 1e3,
        percentile(&commits, 0.99) * 1e3,
        busy / run_for.as_secs_f64() * 100.0,
        percentile(&acks, 0.5) * 1e3,
        percentile(&acks, 0.99) * 1e3,
        percentile(&accepts, 0.5) * 1e3,
        percentile(&accepts, 0.99) * 1e3,
        percentile(&waits, 0.5) * 1e3,
        percentile(&waits, 0.99) * 1e3,
        phases.join(", "),
    ) + &handshakes(probe)
}

/// The TLS handshakes the run saw (none unless gateways connected during it), or nothing.
fn handshakes(probe: &Probe) -> String {
    let [full, resumed] = [0, 1].map(|i| probe.handshakes[i].swap(0, Ordering::Relaxed));
    if full + resumed == 0 {
        return String::new();
    }
    format!("\n  TLS handshakes during the run: {full} full, {resumed} resumed from a session ticket")
}
