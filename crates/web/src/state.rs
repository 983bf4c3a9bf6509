//! What every handler shares: the store, the settings, the mailer. Cheap to clone.

use crate::{Mailer, WebConfig};
use std::sync::Arc;
use tds_store::Store;

#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    config: WebConfig,
    mailer: Mailer,
}

impl AppState {
    pub fn new(store: Store, config: WebConfig, mailer: Mailer) -> Self {
        Self { inner: Arc::new(Inner { store, config, mailer }) }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn config(&self) -> &WebConfig {
        &self.inner.config
    }

    pub fn mailer(&self) -> &Mailer {
        &self.inner.mailer
    }
}
