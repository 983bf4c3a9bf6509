//! The endpoint's Prometheus metrics (names `tds_ingest_*`). They are recorded through the
//! `metrics` facade; `bins/tds` installs the exporter and serves `/metrics`. Without an
//! exporter (tests) every call is a no-op.

use std::time::Duration;

pub const CONNECTIONS: &str = "tds_ingest_connections";
pub const CONNECTS: &str = "tds_ingest_connects_total";
pub const REFUSALS: &str = "tds_ingest_refusals_total";
pub const MESSAGES: &str = "tds_ingest_messages_total";
pub const READINGS: &str = "tds_ingest_readings_total";
pub const DEAD_LETTERS: &str = "tds_ingest_dead_letters_total";
pub const BATCH_READINGS: &str = "tds_ingest_commit_readings";
pub const COMMIT_SECONDS: &str = "tds_ingest_commit_seconds";
pub const COMMIT_PHASE_SECONDS: &str = "tds_ingest_commit_phase_seconds";
pub const ACK_SECONDS: &str = "tds_ingest_ack_seconds";
pub const ACCEPT_SECONDS: &str = "tds_ingest_accept_seconds";
pub const QUEUE_WAIT_SECONDS: &str = "tds_ingest_queue_wait_seconds";
pub const QUEUE_DEPTH: &str = "tds_ingest_queue_depth";
pub const THROTTLED: &str = "tds_ingest_throttled_total";
pub const THROTTLE_WAIT_SECONDS: &str = "tds_ingest_throttle_wait_seconds";
pub const HANDSHAKES: &str = "tds_ingest_handshakes_in_progress";
pub const TLS_HANDSHAKES: &str = "tds_ingest_tls_handshakes_total";
pub const DEAD_LETTER_TRUNCATED: &str = "tds_ingest_dead_letter_truncated_total";
pub const RENEWAL_EVENTS: &str = "tds_ingest_renewal_events_total";

/// A renewal event seen by the endpoint (`sent`, `cleared`, `confirmed`, `rolled_back`,
/// `csr_signed`, `csr_refused`).
pub fn renewal(event: &'static str) {
    metrics::counter!(RENEWAL_EVENTS, "event" => event).increment(1);
}

/// A refused connection, by reason (`tls`, `client_id`, `unknown_gateway`, `handshakes`,
/// `connect_rate`, `handshake_timeout`, `write_timeout`, …).
pub fn refused(reason: &'static str) {
    metrics::counter!(REFUSALS, "reason" => reason).increment(1);
}

/// A TLS handshake completed: `full` (the certificate verified) or `resumed` (a session ticket).
pub fn tls_handshake(resumed: bool) {
    metrics::counter!(TLS_HANDSHAKES, "kind" => if resumed { "resumed" } else { "full" }).increment(1);
}

pub fn connected(delta: f64) {
    metrics::gauge!(CONNECTIONS).increment(delta);
    if delta > 0.0 {
        metrics::counter!(CONNECTS).increment(1);
    }
}

pub fn message(kind: &'static str) {
    metrics::counter!(MESSAGES, "kind" => kind).increment(1);
}

pub fn commit(readings: usize, stored: u64, duplicates: u64, took: Duration) {
    metrics::histogram!(BATCH_READINGS).record(readings as f64);
    metrics::histogram!(COMMIT_SECONDS).record(took.as_secs_f64());
    metrics::counter!(READINGS, "outcome" => "stored").increment(stored);
    metrics::counter!(READINGS, "outcome" => "duplicate").increment(duplicates);
}

/// Where a commit's time went (`begin`, `insert`, `marks`, `commit`).
pub fn commit_phases(p: &tds_store::readings::CommitPhases) {
    for (phase, took) in [("begin", p.begin), ("insert", p.insert), ("marks", p.marks), ("commit", p.commit)]
    {
        metrics::histogram!(COMMIT_PHASE_SECONDS, "phase" => phase).record(took.as_secs_f64());
    }
}

pub fn dead_letter(reason: &str) {
    metrics::counter!(DEAD_LETTERS, "reason" => reason.to_owned()).increment(1);
}

pub fn acked(took: Duration) {
    metrics::histogram!(ACK_SECONDS).record(took.as_secs_f64());
}

/// A message read and checked, and queued for the writer (room in the queue included: a full
/// queue is back-pressure), from its PUBLISH read.
pub fn accepted(took: Duration) {
    metrics::histogram!(ACCEPT_SECONDS).record(took.as_secs_f64());
}

/// How long a message waited in the writer's queue before a batch took it.
pub fn queue_waited(took: Duration) {
    metrics::histogram!(QUEUE_WAIT_SECONDS).record(took.as_secs_f64());
}

pub fn queue_depth(depth: usize) {
    metrics::gauge!(QUEUE_DEPTH).set(depth as f64);
}

/// Something a client asked for that was delayed or coalesced rather than done at once, by what
/// (`messages`: a session waited before reading; `status`, `history`: a write coalesced).
pub fn throttled(what: &'static str) {
    metrics::counter!(THROTTLED, "what" => what).increment(1);
}

/// Time a session spent not reading its socket because of the message rate limit.
pub fn throttled_for(took: Duration) {
    metrics::histogram!(THROTTLE_WAIT_SECONDS).record(took.as_secs_f64());
}

pub fn handshakes(delta: f64) {
    metrics::gauge!(HANDSHAKES).increment(delta);
}

/// A refused payload of `size` bytes kept in a dead letter of at most `max`.
pub fn dead_letter_payload(size: usize, max: usize) {
    if size > max {
        metrics::counter!(DEAD_LETTER_TRUNCATED).increment(1);
    }
}
