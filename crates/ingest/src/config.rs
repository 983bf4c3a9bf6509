//! Settings of the device endpoint (and of the pipeline the broker consumer shares with it), with
//! defaults for a small server.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Where committed readings and gateway status changes are announced to live pages (SSE);
    /// `None` announces nothing.
    pub events: Option<tokio::sync::broadcast::Sender<tds_domain::LiveEvent>>,
    /// The MQTT-over-mutual-TLS listener (not used by the broker consumer).
    pub addr: SocketAddr,
    /// A plain MQTT listener for development, off unless set (SPEC §2).
    pub plain: Option<PlainListener>,
    /// Largest MQTT packet read; a bigger one closes the connection (its bytes are never read).
    pub max_packet_bytes: usize,
    /// Largest telemetry payload parsed; bigger ones (up to `max_packet_bytes`) are dead letters.
    pub max_message_bytes: usize,
    /// Most readings in one telemetry batch; a larger batch is refused whole as one dead letter.
    pub max_readings: usize,
    /// Most bytes of a refused payload a dead letter keeps (its size as received is recorded).
    pub dead_letter_max_bytes: usize,
    /// Time allowed for the TLS handshake, and again for the CONNECT packet.
    pub connect_timeout: Duration,
    /// TLS handshakes (and CONNECTs awaited) in progress at once; a new TCP connection beyond
    /// them is closed at once.
    pub max_handshakes: usize,
    /// New connections per second from one source address (token bucket, refilled at this
    /// rate)…
    pub connects_per_second_per_ip: f64,
    /// …with this many at once; beyond them a new connection is closed at once.
    pub connect_burst_per_ip: u32,
    /// Source addresses tracked for the limit above; the idlest are forgotten beyond it.
    pub tracked_addresses: usize,
    /// The keep-alive of a gateway that asks for none (0), and the most any may ask for.
    pub max_keep_alive: Duration,
    /// A session whose socket takes longer than this to take a packet is closed.
    pub write_timeout: Duration,
    /// Messages per second read from one gateway (token bucket)…
    pub messages_per_second: f64,
    /// …with this many at once; beyond them the session stops reading its socket until a
    /// token is back (back-pressure: nothing is dropped).
    pub message_burst: u32,
    /// Status changes (status topic, connects and disconnects) of one gateway are written at most
    /// once per this interval; the latest state is written when it ends. Connection history
    /// entries beyond one per interval (after a small burst) are counted, not written.
    pub status_interval: Duration,
    /// A commit takes at most this many readings…
    pub commit_max_readings: usize,
    /// …and, when not zero, waits at most this long for more messages after the first. Zero
    /// (the default) takes what is waiting: under load that is what arrived during the previous
    /// commit, and a lone message is not kept waiting for company. On PostgreSQL, while a
    /// written batch waits for its `COMMIT`, the next one takes what is waiting without this
    /// delay (the writer never holds a commit back for company).
    pub commit_max_delay: Duration,
    /// Messages waiting for the writer; when full, sessions stop reading (back-pressure)…
    pub queue_capacity: usize,
    /// …and readings waiting for it (a message without readings counts as one).
    pub queue_readings: usize,
    /// Unacknowledged `QoS` 1 messages per session before it stops reading.
    pub inflight_per_session: usize,
    /// How long a gateway's cached devices are trusted before being read again.
    pub cache_ttl: Duration,
    /// How often the revocation set is refreshed from the store (and revoked sessions closed).
    pub revocation_poll: Duration,
    /// The CA that signs the CSRs gateways send on `cert_csr` during a renewal; `None`: such a
    /// message is a dead letter.
    pub csr_ca: Option<Arc<tds_pki::CaFiles>>,
    /// Validity of a certificate signed from a gateway's CSR, in days.
    pub device_cert_days: u32,
}

impl IngestConfig {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            events: None,
            addr,
            plain: None,
            max_packet_bytes: 1024 * 1024,
            max_message_bytes: tds_domain::telemetry::DEFAULT_MAX_MESSAGE_BYTES,
            max_readings: tds_domain::telemetry::DEFAULT_MAX_READINGS,
            dead_letter_max_bytes: tds_domain::dead_letter::DEFAULT_MAX_DEAD_LETTER_BYTES,
            connect_timeout: Duration::from_secs(10),
            max_handshakes: 256,
            // A site of gateways behind one NAT reconnecting after an outage gets through in a
            // few seconds; a single address opening connections in a loop does not.
            connects_per_second_per_ip: 5.0,
            connect_burst_per_ip: 20,
            tracked_addresses: 10_000,
            max_keep_alive: Duration::from_mins(20),
            write_timeout: Duration::from_secs(30),
            // Gateways send one batch per poll (a minute, typically) and a backlog after an
            // outage: 50 a second is far above either.
            messages_per_second: 50.0,
            message_burst: 200,
            status_interval: Duration::from_secs(5),
            // A commit takes what waits, so the cap matters only under a sustained load, where a
            // commit's cost is mostly per meter (a page per meter, whatever it carries). Measured
            // with `tds bench ingest --gateways 1000 --devices 10 --seconds 60` (10,000 meters):
            // commits of up to 100,000 readings with a queue of 100,000 against 10,000 with a
            // queue of 1,024 messages took PostgreSQL from 73,000 to 103,000 readings/s and
            // SQLite from 34,000 to 84,000 (105,000 with its checkpoints further apart).
            commit_max_readings: 100_000,
            commit_max_delay: Duration::ZERO,
            queue_capacity: 16_384,
            queue_readings: 100_000,
            inflight_per_session: 64,
            cache_ttl: Duration::from_secs(10),
            revocation_poll: Duration::from_millis(500),
            csr_ca: None,
            device_cert_days: 3650,
        }
    }
}

/// The development listener: MQTT without TLS, where the CONNECT's user name is the gateway MAC
/// and its password is the one development password. Everything after CONNECT is the TLS
/// endpoint's session (client id, ACL, pipeline).
#[derive(Debug, Clone)]
pub struct PlainListener {
    pub addr: SocketAddr,
    pub password: DevPassword,
}

/// The development password of the plain listener; `Debug` shows `***`.
#[derive(Clone)]
pub struct DevPassword(Arc<[u8]>);

impl DevPassword {
    pub fn new(password: &str) -> Self {
        Self(password.as_bytes().into())
    }

    /// Compares in time that does not depend on where the first difference is.
    pub fn matches(&self, given: &[u8]) -> bool {
        let mine: &[u8] = &self.0;
        let mut diff = u8::from(mine.len() != given.len());
        for (i, a) in mine.iter().enumerate() {
            diff |= a ^ given.get(i).copied().unwrap_or(!a);
        }
        diff == 0
    }
}

impl fmt::Debug for DevPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_development_password_matches_only_itself_and_never_shows() {
        let p = DevPassword::new("s3cret");
        assert!(p.matches(b"s3cret"));
        for wrong in [&b""[..], b"s3cre", b"s3crets", b"S3cret"] {
            assert!(!p.matches(wrong), "{wrong:?}");
        }
        assert_eq!(format!("{p:?}"), "***");
    }
}
