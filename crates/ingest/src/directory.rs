//! Gateways and their devices as the endpoint needs them, by MAC and by device code, cached for
//! a short time. A device code not found in the cache is looked up again once before the reading
//! is refused, so a device registered a moment ago is recognised at once.

use chrono_tz::Tz;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tds_domain::{DeviceCode, DeviceId, GatewayId, GatewayStatus, Mac, TenantId, Unit};
use tds_store::{Store, StoreError};

#[derive(Debug, Clone)]
pub struct DeviceEntry {
    pub id: DeviceId,
    pub unit: Unit,
}

#[derive(Debug, Clone)]
pub struct GatewayEntry {
    pub id: GatewayId,
    pub tenant: TenantId,
    pub mac: Mac,
    pub status: GatewayStatus,
    pub zone: Tz,
    /// The tenant's retention of raw readings (`None`: kept for ever); older readings are
    /// refused as dead letters.
    pub retention: Option<chrono::TimeDelta>,
    pub devices: HashMap<DeviceCode, DeviceEntry>,
    loaded: Instant,
}

impl GatewayEntry {
    /// Time since the entry was read from the store.
    pub fn age(&self) -> Duration {
        self.loaded.elapsed()
    }
}

#[derive(Debug)]
pub struct Directory {
    store: Store,
    ttl: Duration,
    cache: Mutex<HashMap<Mac, Arc<GatewayEntry>>>,
}

impl Directory {
    pub fn new(store: Store, ttl: Duration) -> Self {
        Self { store, ttl, cache: Mutex::new(HashMap::new()) }
    }

    fn cached(&self, mac: Mac) -> Option<Arc<GatewayEntry>> {
        let cache = self.cache.lock().ok()?;
        cache.get(&mac).filter(|e| e.loaded.elapsed() < self.ttl).cloned()
    }

    /// The gateway with this MAC, or `None` when none is registered.
    pub async fn gateway(&self, mac: Mac) -> Result<Option<Arc<GatewayEntry>>, StoreError> {
        if let Some(entry) = self.cached(mac) {
            return Ok(Some(entry));
        }
        self.load(mac).await
    }

    /// Reads the gateway again (after a miss, or when told it changed): one statement for the
    /// gateway, its tenant's settings and its devices.
    pub async fn load(&self, mac: Mac) -> Result<Option<Arc<GatewayEntry>>, StoreError> {
        let Some(gateway) = self.store.gateways().staff_connecting(mac).await? else {
            self.forget(mac);
            return Ok(None);
        };
        let entry = Arc::new(GatewayEntry {
            id: gateway.id,
            tenant: gateway.tenant_id,
            mac,
            status: gateway.status,
            zone: gateway.timezone.tz(),
            retention: gateway.retention(),
            devices: gateway
                .devices
                .into_iter()
                .map(|d| (d.code, DeviceEntry { id: d.id, unit: d.unit }))
                .collect(),
            loaded: Instant::now(),
        });
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(mac, entry.clone());
        }
        Ok(Some(entry))
    }

    pub fn forget(&self, mac: Mac) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(&mac);
        }
    }
}
