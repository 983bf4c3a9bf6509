//! The enabled alert rules of every tenant, kept between evaluations: a tenant's are read again
//! only when its rules version moved, which every write to its rules does in its own transaction
//! (`tds_store::alert_rules`). Reading and decoding a tenant's 20,000 rules (10,000 meters with a
//! daily and a monthly threshold each) took ~130 ms on SQLite with nothing else running, and over
//! a second once under load, on every rollup round and every periodic round; the versions are one
//! short read of the tenants table.
//!
//! Right across instances: the version is in the database, so a rule changed through another
//! instance is seen by the next evaluation as one changed through this one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tds_domain::TenantId;
use tds_store::alert_rules::AlertRule;
use tds_store::{Store, StoreError};
use tokio::sync::Mutex;

/// More tenants than this to read again (the first evaluation, say), and every tenant's rules are
/// read in one statement instead of one per tenant.
const FEW_TENANTS: usize = 8;

/// A tenant's enabled rules as they were at `version`.
#[derive(Debug)]
struct Kept {
    version: i64,
    rules: Arc<[AlertRule]>,
}

/// The rules kept between evaluations; one per process, shared by the jobs that evaluate.
#[derive(Debug, Default)]
pub struct RuleCache {
    kept: Mutex<HashMap<TenantId, Kept>>,
}

impl RuleCache {
    /// The enabled rules of the tenants in `only` (of every tenant for `None`), as they stand
    /// now; tenants without any are left out.
    pub async fn enabled(
        &self,
        store: &Store,
        only: Option<&HashSet<TenantId>>,
    ) -> Result<Vec<(TenantId, Arc<[AlertRule]>)>, StoreError> {
        // The versions before the rules: a write between the two reads leaves rules newer than
        // the version they are kept with, and only makes the next call read them again.
        let versions: HashMap<TenantId, i64> =
            store.alert_rules().staff_versions().await?.into_iter().collect();
        let wanted: Vec<(TenantId, i64)> = versions
            .iter()
            .filter(|(t, _)| only.is_none_or(|o| o.contains(t)))
            .map(|(t, v)| (*t, *v))
            .collect();
        // One lock for the reads too: the rollup job and the periodic round never read the same
        // rules twice.
        let mut kept = self.kept.lock().await;
        kept.retain(|t, _| versions.contains_key(t));
        let stale: Vec<(TenantId, i64)> =
            wanted.iter().filter(|(t, v)| kept.get(t).is_none_or(|k| k.version != *v)).copied().collect();
        if stale.len() > FEW_TENANTS {
            let mut by_tenant: HashMap<TenantId, Vec<AlertRule>> = HashMap::new();
            for rule in store.alert_rules().staff_enabled().await? {
                by_tenant.entry(rule.tenant_id).or_default().push(rule);
            }
            for (tenant, version) in stale {
                let rules = by_tenant.remove(&tenant).unwrap_or_default().into();
                kept.insert(tenant, Kept { version, rules });
            }
        } else {
            for (tenant, version) in stale {
                let rules = store.alert_rules().enabled(tenant).await?.into();
                kept.insert(tenant, Kept { version, rules });
            }
        }
        let mut found: Vec<(TenantId, Arc<[AlertRule]>)> = wanted
            .iter()
            .filter_map(|(t, _)| kept.get(t).filter(|k| !k.rules.is_empty()).map(|k| (*t, k.rules.clone())))
            .collect();
        found.sort_by_key(|(t, _)| *t);
        Ok(found)
    }
}
