//! What every handler shares: the store, the settings, the mailer. Cheap to clone.

use crate::certs::Pki;
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
    pki: Pki,
}

impl AppState {
    pub fn new(store: Store, config: WebConfig, mailer: Mailer, pki: Pki) -> Self {
        Self { inner: Arc::new(Inner { store, config, mailer, pki }) }
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

    pub fn mailer(&self) -> &Mailer {
        &self.inner.mailer
    }
}
