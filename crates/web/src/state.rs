//! What every handler shares: the store, the settings, the mailer, the live-event bus. Cheap to
//! clone.

use crate::certs::Pki;
use crate::{Mailer, WebConfig};
use std::sync::Arc;
use tds_store::Store;

/// Events kept for a slow page before it skips ahead (it then reloads its data).
pub const EVENT_BUFFER: usize = 1024;

#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    config: WebConfig,
    mailer: Mailer,
    pki: Pki,
    events: tokio::sync::broadcast::Sender<tds_domain::LiveEvent>,
    /// Where the web's own events go: the instance's device-side bus, which forwards to every
    /// instance's pages; by default the pages' bus itself.
    publish: tokio::sync::broadcast::Sender<tds_domain::LiveEvent>,
    hashes: crate::password::HashLimiter,
    api_limiter: crate::api::rate::ApiLimiter,
    api_events: Arc<crate::api::events::Recorder>,
}

impl AppState {
    /// With a bus of its own (nothing publishes on it unless someone holds [`Self::events`]).
    pub fn new(store: Store, config: WebConfig, mailer: Mailer, pki: Pki) -> Self {
        Self::with_events(store, config, mailer, pki, tokio::sync::broadcast::channel(EVENT_BUFFER).0)
    }

    /// With the live-event bus the device endpoint publishes on (`tds serve` wires them).
    pub fn with_events(
        store: Store,
        config: WebConfig,
        mailer: Mailer,
        pki: Pki,
        events: tokio::sync::broadcast::Sender<tds_domain::LiveEvent>,
    ) -> Self {
        let publish = events.clone();
        Self::with_buses(store, config, mailer, pki, events, publish)
    }

    /// With the pages' bus (`events`) and the bus the web's own events are published on
    /// (`publish`: in `tds serve`, the one that also reaches the other instances).
    pub fn with_buses(
        store: Store,
        config: WebConfig,
        mailer: Mailer,
        pki: Pki,
        events: tokio::sync::broadcast::Sender<tds_domain::LiveEvent>,
        publish: tokio::sync::broadcast::Sender<tds_domain::LiveEvent>,
    ) -> Self {
        let hashes = crate::password::HashLimiter::new(config.max_concurrent_hashes, config.hash_wait);
        let api_limiter = crate::api::rate::ApiLimiter::new(config.api_rate_per_second, config.api_burst);
        let api_events = Arc::default();
        Self {
            inner: Arc::new(Inner {
                store,
                config,
                mailer,
                pki,
                events,
                publish,
                hashes,
                api_limiter,
                api_events,
            }),
        }
    }

    /// The live-event bus: subscribe to stream events to pages.
    pub fn events(&self) -> &tokio::sync::broadcast::Sender<tds_domain::LiveEvent> {
        &self.inner.events
    }

    /// Announces something the web changed (an alert acknowledged) to every open page.
    pub fn publish(&self, event: tds_domain::LiveEvent) {
        let _ = self.inner.publish.send(event);
    }

    pub fn pki(&self) -> &Pki {
        &self.inner.pki
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn config(&self) -> &WebConfig {
        &self.inner.config
    }

    /// Where every password hash and check runs (bounded; see [`crate::password::HashLimiter`]).
    pub fn hashes(&self) -> &crate::password::HashLimiter {
        &self.inner.hashes
    }

    /// The API's request rate per token.
    pub fn api_limiter(&self) -> &crate::api::rate::ApiLimiter {
        &self.inner.api_limiter
    }

    /// The API's window of recent live events (for `Last-Event-ID`).
    pub fn api_events(&self) -> &Arc<crate::api::events::Recorder> {
        &self.inner.api_events
    }

    pub fn mailer(&self) -> &Mailer {
        &self.inner.mailer
    }
}
