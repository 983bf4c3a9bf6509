//! The live-event bus of one `tds serve` (SPEC §4, §7, §9): the device side publishes on
//! [`LiveBus::local`], the pages listen on [`LiveBus::pages`]. In between, every local event goes
//! to this instance's pages and, on PostgreSQL, through `NOTIFY tds_live` to every other
//! instance's pages, so that a gateway connected to one instance shows live on a page served by
//! another (gathered over 250 ms: each device's latest reading, each gateway's latest status).
//! Events are not stored anywhere: one missed is simply not shown live.

use serde::{Deserialize, Serialize};
use tds_domain::LiveEvent;
use tds_store::Store;
use tokio::sync::broadcast;

/// The PostgreSQL channel the instances share.
pub const CHANNEL: &str = "tds_live";
/// Readings per notification: a reading is about 70 bytes of JSON, under `NOTIFY`'s 8000.
const READINGS_PER_NOTIFY: usize = 80;

#[derive(Debug, Clone)]
pub struct LiveBus {
    /// Where the device side publishes.
    pub local: broadcast::Sender<LiveEvent>,
    /// What the pages stream from.
    pub pages: broadcast::Sender<LiveEvent>,
    tasks: std::sync::Arc<Vec<tokio::task::AbortHandle>>,
}

impl LiveBus {
    /// Stops the bridge (the senders stay usable, only nothing is forwarded any more).
    pub fn stop(&self) {
        for t in self.tasks.iter() {
            t.abort();
        }
    }
}

/// What goes over `NOTIFY`: the event and which instance sent it (its own comes back to it).
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    origin: String,
    event: LiveEvent,
}

/// Splits an event so that each part fits one notification.
fn parts(event: &LiveEvent) -> Vec<LiveEvent> {
    match event {
        LiveEvent::Readings { tenant, gateway, readings } if readings.len() > READINGS_PER_NOTIFY => readings
            .chunks(READINGS_PER_NOTIFY)
            .map(|c| LiveEvent::Readings { tenant: *tenant, gateway: *gateway, readings: c.to_vec() })
            .collect(),
        other => vec![other.clone()],
    }
}

/// How long local events are gathered before they go to the other instances.
const NOTIFY_WINDOW: std::time::Duration = std::time::Duration::from_millis(250);

/// The events of one window (waits for the first), merged: per gateway the latest reading of
/// each device and the latest status. `None` when the bus is closed.
async fn collect_window(rx: &mut broadcast::Receiver<LiveEvent>) -> Option<Vec<LiveEvent>> {
    use std::collections::BTreeMap;
    let first = loop {
        match rx.recv().await {
            Ok(e) => break e,
            Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    };
    let deadline = tokio::time::Instant::now() + NOTIFY_WINDOW;
    let mut readings: BTreeMap<(i64, i64), BTreeMap<i64, tds_domain::LiveReading>> = BTreeMap::new();
    let mut status: BTreeMap<(i64, i64), bool> = BTreeMap::new();
    let mut alerts: BTreeMap<i64, tds_domain::AlertCounts> = BTreeMap::new();
    let mut add = |e: LiveEvent| match e {
        LiveEvent::Readings { tenant, gateway, readings: rs } => {
            let slot = readings.entry((tenant.get(), gateway.get())).or_default();
            for r in rs {
                let keep = slot.get(&r.device.get()).is_none_or(|old| old.time <= r.time);
                if keep {
                    slot.insert(r.device.get(), r);
                }
            }
        }
        LiveEvent::GatewayStatus { tenant, gateway, online } => {
            status.insert((tenant.get(), gateway.get()), online);
        }
        // Each count is the whole figure: the latest one of the window is all that matters.
        LiveEvent::Alerts { tenant, active } => {
            alerts.insert(tenant.get(), active);
        }
    };
    add(first);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(e)) => add(e),
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(broadcast::error::RecvError::Closed)) | Err(_) => break,
        }
    }
    let ids = |(t, g): (i64, i64)| (tds_domain::TenantId::new(t), tds_domain::GatewayId::new(g));
    let mut out: Vec<LiveEvent> = readings
        .into_iter()
        .map(|(key, rs)| {
            let (tenant, gateway) = ids(key);
            LiveEvent::Readings { tenant, gateway, readings: rs.into_values().collect() }
        })
        .collect();
    out.extend(status.into_iter().map(|(key, online)| {
        let (tenant, gateway) = ids(key);
        LiveEvent::GatewayStatus { tenant, gateway, online }
    }));
    out.extend(
        alerts
            .into_iter()
            .map(|(tenant, active)| LiveEvent::Alerts { tenant: tds_domain::TenantId::new(tenant), active }),
    );
    Some(out)
}

/// Creates the bus and starts its bridge.
pub async fn start(store: &Store) -> anyhow::Result<LiveBus> {
    let capacity = tds_web::state::EVENT_BUFFER;
    let (local, _) = broadcast::channel::<LiveEvent>(capacity);
    let (pages, _) = broadcast::channel::<LiveEvent>(capacity);
    let origin = format!("{:032x}", rand::random::<u128>());
    let mut tasks = Vec::new();

    // Local events: to this instance's pages at once.
    let mut from_device = local.subscribe();
    let to_pages = pages.clone();
    tasks.push(
        tokio::spawn(async move {
            loop {
                match from_device.recv().await {
                    Ok(event) => {
                        let _ = to_pages.send(event);
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!(skipped = n, "live events dropped: too many at once");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        })
        .abort_handle(),
    );

    // And, on PostgreSQL, to the other instances: coalesced over a short window so that a
    // fleet reporting thousands of messages a second costs a few notifications a second, each
    // device's latest reading and each gateway's latest status.
    if store.notify().shared() {
        let mut from_device = local.subscribe();
        let (shared_store, me) = (store.clone(), origin.clone());
        tasks.push(
            tokio::spawn(async move {
                loop {
                    let Some(window) = collect_window(&mut from_device).await else { return };
                    for part in window.iter().flat_map(parts) {
                        let envelope = Envelope { origin: me.clone(), event: part };
                        match serde_json::to_string(&envelope) {
                            Ok(json) if json.len() <= tds_store::notify::MAX_PAYLOAD => {
                                if let Err(e) = shared_store.notify().publish(CHANNEL, &json).await {
                                    tracing::debug!(error = %e, "cannot notify the other instances");
                                }
                            }
                            Ok(_) | Err(_) => tracing::debug!("live event too large to notify; local only"),
                        }
                    }
                }
            })
            .abort_handle(),
        );
    }

    // The other instances' events, to this instance's pages.
    if let Some(mut listener) = store.notify().listen(CHANNEL).await? {
        let to_pages = pages.clone();
        tasks.push(
            tokio::spawn(async move {
                loop {
                    match listener.recv().await {
                        Ok(payload) => match serde_json::from_str::<Envelope>(&payload) {
                            Ok(e) if e.origin != origin => {
                                let _ = to_pages.send(e.event);
                            }
                            Ok(_) => {}
                            Err(e) => tracing::debug!(error = %e, "ignoring a malformed live notification"),
                        },
                        Err(e) => {
                            tracing::warn!(error = %e, "live notifications interrupted; retrying");
                            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        }
                    }
                }
            })
            .abort_handle(),
        );
    }
    Ok(LiveBus { local, pages, tasks: std::sync::Arc::new(tasks) })
}
