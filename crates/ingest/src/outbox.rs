//! Messages from TDS to one connected gateway (SPEC §2): the `cert_update` kept in the database
//! until the gateway confirms it goes out `QoS` 1, retained, once the session subscribed to the
//! exact topic, and again when it changes (a CSR answered with a certificate); when it is cleared
//! while the gateway listens, an empty retained message says so. The gateway's PUBACK records
//! that it received it (what rollback detection needs).
//!
//! Must not: decide what to send (the store keeps the message) or retry within a session (a
//! gateway that does not acknowledge gets it again after its next subscription).

use crate::endpoint::Shared;
use crate::session::Outgoing;
use bytes::Bytes;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Packet, Publish};
use tds_domain::Mac;
use tds_domain::telemetry::Topic;

#[derive(Debug)]
pub struct Outbox {
    mac: Mac,
    topic: String,
    /// The session subscribed to its `cert_update` topic.
    pub subscribed: bool,
    /// The message last sent in this session (its id; `Some(0)` after an empty one), and the
    /// packet id it went with.
    pub sent: Option<(i64, u16)>,
    next_pkid: u16,
}

impl Outbox {
    pub fn new(mac: Mac) -> Self {
        Self { mac, topic: Topic::CertUpdate(mac).to_string(), subscribed: false, sent: None, next_pkid: 0 }
    }

    fn pkid(&mut self) -> u16 {
        // Packet ids 1..=65535; TDS has at most one message in flight per session.
        self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
        self.next_pkid
    }

    /// Sends the pending message if the session listens and has not been sent it yet, or an
    /// empty retained message when the one it was sent is cleared.
    pub async fn deliver(&mut self, shared: &Shared, out: &flume::Sender<Outgoing>) {
        if !self.subscribed {
            return;
        }
        let pending = match shared.pipeline.store.renewals().staff_pending(self.mac, &self.topic).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(gateway.mac = %self.mac, error = %e, "cannot read the gateway's pending messages");
                return;
            }
        };
        let (id, payload) = match pending {
            Some(p) if self.sent.map(|(id, _)| id) != Some(p.id) => (p.id, Bytes::from(p.payload)),
            None if self.sent.is_some_and(|(id, _)| id != 0) => (0, Bytes::new()),
            _ => return,
        };
        let pkid = self.pkid();
        let mut publish = Publish::new(&self.topic, QoS::AtLeastOnce, payload);
        publish.retain = true;
        publish.pkid = pkid;
        let mut bytes = bytes::BytesMut::with_capacity(publish.size() + 4);
        if Packet::Publish(publish).write(&mut bytes, usize::MAX).is_err() {
            return;
        }
        if out.send_async(Outgoing::Packet(bytes.freeze())).await.is_ok() {
            tracing::info!(gateway.mac = %self.mac, message = id, "cert_update sent to the gateway");
            crate::metrics::renewal(if id == 0 { "cleared" } else { "sent" });
            self.sent = Some((id, pkid));
        }
    }

    /// The gateway acknowledged packet `pkid`: if it was a stored message, it is received.
    pub async fn acknowledged(&mut self, shared: &Shared, pkid: u16) {
        if let Some((id, sent)) = self.sent
            && sent == pkid
            && id != 0
            && let Err(e) = shared.pipeline.store.renewals().staff_delivered(id).await
        {
            tracing::warn!(gateway.mac = %self.mac, error = %e, "cannot record that the gateway received its message");
        }
    }
}
