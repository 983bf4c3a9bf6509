//! A gateway's online/offline state written to the store at most once per `status_interval`
//! (SPEC §2 Limits): a gateway flapping its status topic, or reconnecting in a loop, costs one
//! write per interval, not one per packet. The latest state is never lost: a change within the
//! interval is written when it ends (and at shutdown, by [`StatusWrites::flush`]). The writes
//! go through the [`ConnectionLog`], which batches them and announces them on the live pages.
//!
//! Must not: decide the state (sessions and the pipeline do).

use crate::connlog::ConnectionLog;
use crate::directory::GatewayEntry;
use crate::seen::SeenBuffer;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tds_domain::{GatewayId, TenantId};
use tds_store::gateway_events::GatewayState;

#[derive(Debug)]
struct Slot {
    tenant: TenantId,
    written_at: Instant,
    /// The state to write when the interval ends.
    pending: Option<bool>,
    /// A task is waiting for the interval to end.
    scheduled: bool,
}

#[derive(Debug, Clone)]
pub struct StatusWrites {
    log: ConnectionLog,
    /// Telemetry instants not yet written: a gateway going offline writes its own first.
    seen: Arc<SeenBuffer>,
    interval: Duration,
    slots: Arc<Mutex<HashMap<GatewayId, Slot>>>,
}

impl StatusWrites {
    pub fn new(log: ConnectionLog, interval: Duration, seen: Arc<SeenBuffer>) -> Self {
        Self { log, seen, interval, slots: Arc::default() }
    }

    /// Records the gateway online or offline: at once if nothing was written for it within the
    /// interval, else when the interval ends (the latest state wins).
    pub async fn set(&self, gateway: &GatewayEntry, online: bool) {
        let now = Instant::now();
        let deferred_until = {
            let Ok(mut slots) = self.slots.lock() else {
                return self.write(gateway.tenant, gateway.id, online).await;
            };
            match slots.get_mut(&gateway.id) {
                Some(slot) if slot.scheduled => {
                    slot.pending = Some(online);
                    crate::metrics::throttled("status");
                    return;
                }
                Some(slot) if now.duration_since(slot.written_at) < self.interval => {
                    slot.pending = Some(online);
                    slot.scheduled = true;
                    crate::metrics::throttled("status");
                    Some(slot.written_at + self.interval)
                }
                Some(slot) => {
                    slot.written_at = now;
                    None
                }
                None => {
                    slots.insert(
                        gateway.id,
                        Slot { tenant: gateway.tenant, written_at: now, pending: None, scheduled: false },
                    );
                    None
                }
            }
        };
        match deferred_until {
            None => self.write(gateway.tenant, gateway.id, online).await,
            Some(at) => {
                let me = self.clone();
                let id = gateway.id;
                tokio::spawn(async move {
                    tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
                    me.write_pending(id).await;
                });
            }
        }
    }

    /// Writes the gateway's pending state, if any.
    async fn write_pending(&self, id: GatewayId) {
        let pending = self.slots.lock().ok().and_then(|mut slots| {
            let slot = slots.get_mut(&id)?;
            slot.scheduled = false;
            let online = slot.pending.take()?;
            slot.written_at = Instant::now();
            Some((slot.tenant, online))
        });
        if let Some((tenant, online)) = pending {
            self.write(tenant, id, online).await;
        }
    }

    /// Writes every pending state now, and waits for the log to have written them (at
    /// shutdown).
    pub async fn flush(&self) {
        let ids: Vec<GatewayId> = self
            .slots
            .lock()
            .map(|slots| slots.iter().filter(|(_, s)| s.pending.is_some()).map(|(id, _)| *id).collect())
            .unwrap_or_default();
        for id in ids {
            self.write_pending(id).await;
        }
        self.log.flush().await;
    }

    async fn write(&self, tenant: TenantId, gateway: GatewayId, online: bool) {
        // Telemetry noted before the goodbye is recorded without `online` (before it, in the
        // same transaction), so that the next flush of noted instants cannot make the gateway
        // online again.
        let last_seen = if online { None } else { self.seen.take(gateway) };
        self.log.state(GatewayState { tenant, gateway, online, last_seen }).await;
    }
}
