//! Factory batches: many device certificates at once. RSA key generation dominates the cost, so
//! the MACs are split over the machine's cores (`std::thread::scope`); the result keeps the input
//! order. A batch is all or nothing: the first failure is returned and nothing else is.

use crate::ca::Ca;
use crate::device::{DeviceKeyKind, IssuedCertificate};
use crate::error::{PkiError, Result};
use std::collections::HashSet;
use std::num::NonZeroUsize;
use tds_domain::Mac;

/// Issues one certificate (with a generated key of `kind`) per MAC, in the order given. Refuses a
/// batch that names a MAC twice.
pub fn issue_batch(
    ca: &Ca,
    macs: &[Mac],
    kind: DeviceKeyKind,
    validity_days: u32,
) -> Result<Vec<IssuedCertificate>> {
    let mut seen = HashSet::with_capacity(macs.len());
    if let Some(dup) = macs.iter().find(|mac| !seen.insert(**mac)) {
        return Err(PkiError::DuplicateMac(*dup));
    }
    if macs.is_empty() {
        return Ok(Vec::new());
    }
    let workers = std::thread::available_parallelism().map_or(1, NonZeroUsize::get).min(macs.len());
    let chunk = macs.len().div_ceil(workers);
    std::thread::scope(|scope| {
        let handles: Vec<_> = macs
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|mac| ca.issue_device(*mac, kind, validity_days))
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        let mut issued = Vec::with_capacity(macs.len());
        for handle in handles {
            issued.extend(handle.join().map_err(|_| PkiError::Worker)??);
        }
        Ok(issued)
    })
}
