//! Scale-out mode's messages to gateways (SPEC §2): the `cert_update` TDS keeps in its database
//! until the gateway confirms it is published retained on the external broker, where the gateway
//! finds it when it subscribes; once it is cleared (confirmed, failed, rolled back) an empty
//! retained message clears it there too.
//!
//! Every instance does this. A retained message published twice is the same message, so no
//! instance has to own the job, and the messages survive any one instance. On every connection
//! to the broker all pending messages are published again: a broker without persistence (as
//! `tds broker-config` sets it up) forgets retained messages when it restarts.
//!
//! Must not: decide what to send (the store keeps the messages).

use rumqttc::{AsyncClient, QoS};
use std::time::Duration;
use tds_domain::Mac;
use tds_domain::telemetry::Topic;
use tds_store::Store;
use tokio::sync::watch;

/// Publishes the messages kept for gateways, as they change, until the client is gone.
/// `connections` is bumped on every CONNACK.
pub async fn run(client: AsyncClient, store: Store, mut connections: watch::Receiver<u64>, poll: Duration) {
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut since = chrono::Utc::now();
    loop {
        tokio::select! {
            changed = connections.changed() => {
                if changed.is_err() {
                    return;
                }
                since = chrono::Utc::now() - chrono::Duration::seconds(2);
                if !publish_all(&client, &store).await {
                    return;
                }
            }
            _ = tick.tick() => {
                let started = chrono::Utc::now();
                match store.renewals().staff_messages_changed_since(since).await {
                    Ok(changed) => {
                        let mut macs: Vec<String> = changed.into_iter().map(|(mac, _)| mac).collect();
                        macs.sort_unstable();
                        macs.dedup();
                        for mac in macs {
                            if !publish_one(&client, &store, &mac).await {
                                return;
                            }
                        }
                        // Overlapping windows: a row written while this ran is seen next time.
                        since = started - chrono::Duration::seconds(2);
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot read the messages for gateways; will look again"),
                }
            }
        }
    }
}

/// Publishes every pending message; false when the client is gone.
async fn publish_all(client: &AsyncClient, store: &Store) -> bool {
    match store.renewals().staff_all_pending().await {
        Ok(pending) => {
            let count = pending.len();
            for m in pending {
                if client.publish(m.topic, QoS::AtLeastOnce, true, m.payload.into_bytes()).await.is_err() {
                    return false;
                }
            }
            if count > 0 {
                tracing::info!(messages = count, "published the messages waiting for gateways, retained");
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the messages for gateways; will publish them as they change");
        }
    }
    true
}

/// Publishes the gateway's pending `cert_update`, or clears it on the broker; false when the
/// client is gone.
async fn publish_one(client: &AsyncClient, store: &Store, mac: &str) -> bool {
    let Ok(mac) = Mac::parse(mac) else { return true };
    let topic = Topic::CertUpdate(mac).to_string();
    let payload = match store.renewals().staff_pending(mac, &topic).await {
        Ok(Some(m)) => m.payload.into_bytes(),
        // An empty retained message removes the retained one (MQTT 3.1.1 §3.3.1.3).
        Ok(None) => Vec::new(),
        Err(e) => {
            tracing::warn!(gateway.mac = %mac, error = %e, "cannot read the gateway's message; will look again");
            return true;
        }
    };
    let clearing = payload.is_empty();
    if client.publish(topic, QoS::AtLeastOnce, true, payload).await.is_err() {
        return false;
    }
    tracing::info!(gateway.mac = %mac, clearing, "cert_update published retained on the broker");
    true
}
