//! Warnings that a flood would repeat thousands of times a second (a refused connection, a
//! locked-out login) are logged once per interval per kind, with how many were left out; the
//! metrics count every one.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// One line per kind at most this often.
const INTERVAL: Duration = Duration::from_mins(1);

/// Logs `message` at warning level unless a warning of `kind` was logged within the interval.
pub fn warn(kind: &'static str, message: &str) {
    static LAST: OnceLock<Mutex<HashMap<&'static str, (Instant, u64)>>> = OnceLock::new();
    let Ok(mut last) = LAST.get_or_init(Mutex::default).lock() else { return };
    let now = Instant::now();
    match last.get_mut(kind) {
        Some((at, skipped)) if now.duration_since(*at) < INTERVAL => *skipped += 1,
        Some((at, skipped)) => {
            tracing::warn!(kind, repeated = *skipped, "{message}");
            (*at, *skipped) = (now, 0);
        }
        None => {
            tracing::warn!(kind, "{message}");
            last.insert(kind, (now, 0));
        }
    }
}
