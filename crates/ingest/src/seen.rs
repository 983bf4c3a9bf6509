//! When gateways were last heard from (`last_seen_at`), kept off the path of the PUBACK.
//!
//! Marking a gateway seen used to be one write per gateway after every commit, before its
//! messages were acknowledged: on PostgreSQL one round trip and one WAL flush per gateway of the
//! batch, whatever the batch's size. Now the writer marks a gateway at once only the first time
//! this process stores its telemetry (a pre-registered gateway becomes active before its first
//! PUBACK, SPEC §2); after that it notes the instant here, and [`SeenBuffer::flush`] writes every
//! noted gateway in one transaction about once a second. A crash loses at most that second of
//! `last_seen_at`; offline detection allows three expected intervals (minutes).
//!
//! A gateway that says `offline` takes its noted instant with it ([`SeenBuffer::take`]): the
//! status write records it without `online`, so a flush cannot make the gateway online again
//! with telemetry that came before its goodbye.
//!
//! Must not: decide online or offline (the status writes and the sessions do).

use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use tds_domain::{GatewayId, TenantId};
use tds_store::{Store, StoreError};

#[derive(Debug, Default)]
struct Inner {
    /// Gateways marked seen at least once by this process.
    marked: HashSet<GatewayId>,
    /// Noted and not yet written: the latest instant per gateway.
    pending: HashMap<GatewayId, (TenantId, DateTime<Utc>)>,
}

#[derive(Debug, Default)]
pub struct SeenBuffer {
    inner: Mutex<Inner>,
}

impl SeenBuffer {
    /// Notes accepted telemetry of `gateway` at `at`. True when the gateway must be marked now
    /// (the first time this process stores its telemetry); then the caller marks it and calls
    /// [`Self::marked`].
    pub fn note(&self, tenant: TenantId, gateway: GatewayId, at: DateTime<Utc>) -> bool {
        let Ok(mut inner) = self.inner.lock() else { return true };
        if !inner.marked.contains(&gateway) {
            return true;
        }
        let e = inner.pending.entry(gateway).or_insert((tenant, at));
        *e = (tenant, e.1.max(at));
        false
    }

    /// The gateway was marked seen: its later telemetry is noted, not written at once.
    pub fn marked(&self, gateway: GatewayId) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.marked.insert(gateway);
        }
    }

    /// Takes the gateway's noted instant (it is going offline).
    pub fn take(&self, gateway: GatewayId) -> Option<(TenantId, DateTime<Utc>)> {
        self.inner.lock().ok()?.pending.remove(&gateway)
    }

    pub fn is_empty(&self) -> bool {
        self.inner.lock().map_or(true, |i| i.pending.is_empty())
    }

    /// Writes every noted gateway in one transaction. On failure they are noted again, to be
    /// written with the next flush.
    pub async fn flush(&self, store: &Store) -> Result<(), StoreError> {
        let taken: Vec<(TenantId, GatewayId, DateTime<Utc>)> = match self.inner.lock() {
            Ok(mut inner) => inner.pending.drain().map(|(g, (t, at))| (t, g, at)).collect(),
            Err(_) => return Ok(()),
        };
        if taken.is_empty() {
            return Ok(());
        }
        if let Err(e) = store.gateways().mark_seen_many(&taken).await {
            for (t, g, at) in taken {
                if let Ok(mut inner) = self.inner.lock() {
                    let entry = inner.pending.entry(g).or_insert((t, at));
                    *entry = (t, entry.1.max(at));
                }
            }
            return Err(e);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_gateway_is_marked_at_once_the_first_time_then_noted_with_its_latest_instant() {
        let buffer = SeenBuffer::default();
        let (t, g) = (TenantId::new(1), GatewayId::new(7));
        let at = |s: i64| DateTime::from_timestamp(s, 0).unwrap();
        assert!(buffer.note(t, g, at(10)), "first: at once");
        buffer.marked(g);
        assert!(!buffer.note(t, g, at(30)));
        assert!(!buffer.note(t, g, at(20)), "an older instant does not move it back");
        assert_eq!(buffer.take(g), Some((t, at(30))));
        assert_eq!(buffer.take(g), None);
        assert!(buffer.is_empty());
    }
}
