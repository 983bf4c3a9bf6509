//! The live sessions, by gateway MAC: a second connection with the same identity replaces the
//! first, a revoked or retired certificate's session (or a decommissioned gateway's) is told to
//! close at once, and a session is nudged when a message for its gateway was stored or cleared.
//!
//! Each session has one [`Signal`] for all of this (and for its own sender task's faults): a few
//! atomics and one `Notify`, about 100 bytes, where a watch channel each took 350; every
//! connected gateway keeps one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tds_domain::Mac;
use tokio::sync::Notify;

/// Why the endpoint asks a session to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Close {
    Open,
    Replaced,
    Revoked,
    /// The certificate is no longer the gateway's (replaced, renewed, transferred) or the
    /// gateway was decommissioned.
    Retired,
    Shutdown,
}

impl Close {
    const fn from_u8(n: u8) -> Self {
        match n {
            0 => Self::Open,
            1 => Self::Replaced,
            2 => Self::Revoked,
            3 => Self::Retired,
            _ => Self::Shutdown,
        }
    }
}

/// What one session is told while it waits for its gateway: close (and why), look at the
/// gateway's messages again (a nudge), or its sender task stopped (a fault code of the
/// session's own). The session waits on [`Signal::changed`] and then reads all three; a change
/// made while it was busy is not lost (`Notify` keeps one wake-up for it).
#[derive(Debug, Default)]
pub struct Signal {
    close: AtomicU8,
    nudged: AtomicBool,
    fault: AtomicU8,
    wake: Notify,
}

impl Signal {
    fn close(&self, why: Close) {
        self.close.store(why as u8, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Why the session is asked to close, if it is.
    pub fn closing(&self) -> Option<Close> {
        match Close::from_u8(self.close.load(Ordering::SeqCst)) {
            Close::Open => None,
            why => Some(why),
        }
    }

    fn nudge(&self) {
        self.nudged.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Whether the gateway's messages changed since the last call.
    pub fn take_nudge(&self) -> bool {
        self.nudged.swap(false, Ordering::SeqCst)
    }

    /// Records the session's own fault (a non-zero code) and wakes it; the first one stays.
    pub fn fault(&self, code: u8) {
        let _ = self.fault.compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// The fault code recorded, or 0.
    pub fn fault_code(&self) -> u8 {
        self.fault.load(Ordering::SeqCst)
    }

    /// Resolves at the next change (at once if one came since the last wait).
    pub async fn changed(&self) {
        self.wake.notified().await;
    }
}

#[derive(Debug)]
struct Entry {
    id: u64,
    serial: String,
    signal: Arc<Signal>,
}

#[derive(Debug, Default)]
pub struct Registry {
    next: AtomicU64,
    sessions: Mutex<HashMap<Mac, Entry>>,
}

/// A session's registration; dropping it removes the session (unless a newer one replaced it).
#[derive(Debug)]
pub struct Registration<'a> {
    registry: &'a Registry,
    mac: Mac,
    id: u64,
    pub signal: Arc<Signal>,
}

impl Registry {
    /// Registers a session for `mac`, telling any previous one to close.
    pub fn register(&self, mac: Mac, serial: &str) -> Registration<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let signal = Arc::new(Signal::default());
        if let Ok(mut sessions) = self.sessions.lock()
            && let Some(old) =
                sessions.insert(mac, Entry { id, serial: serial.to_owned(), signal: Arc::clone(&signal) })
        {
            old.signal.close(Close::Replaced);
        }
        Registration { registry: self, mac, id, signal }
    }

    /// Tells the sessions whose certificate serial is revoked to close; returns how many.
    pub fn close_revoked(&self, is_revoked: impl Fn(&str) -> bool) -> usize {
        let Ok(sessions) = self.sessions.lock() else { return 0 };
        let mut closed = 0;
        for e in sessions.values().filter(|e| is_revoked(&e.serial)) {
            e.signal.close(Close::Revoked);
            closed += 1;
        }
        closed
    }

    /// Tells the sessions using one of `serials`, or of a gateway in `macs`, to close (their
    /// certificate was retired, their gateway decommissioned); returns how many.
    pub fn close_retired(&self, serials: &[String], macs: &[Mac]) -> usize {
        let Ok(sessions) = self.sessions.lock() else { return 0 };
        let mut closed = 0;
        for (mac, e) in sessions.iter() {
            let retired = (!e.serial.is_empty() && serials.iter().any(|s| s.eq_ignore_ascii_case(&e.serial)))
                || macs.contains(mac);
            if retired && e.signal.closing().is_none() {
                e.signal.close(Close::Retired);
                closed += 1;
            }
        }
        closed
    }

    /// Tells the session of `mac`, if any, that its messages changed.
    pub fn nudge(&self, mac: Mac) {
        if let Ok(sessions) = self.sessions.lock()
            && let Some(e) = sessions.get(&mac)
        {
            e.signal.nudge();
        }
    }

    pub fn close_all(&self) {
        if let Ok(sessions) = self.sessions.lock() {
            for e in sessions.values() {
                e.signal.close(Close::Shutdown);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.sessions.lock().map_or(0, |s| s.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if let Ok(mut sessions) = self.registry.sessions.lock()
            && sessions.get(&self.mac).is_some_and(|e| e.id == self.id)
        {
            sessions.remove(&self.mac);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn woken(signal: &Signal) -> bool {
        tokio::time::timeout(Duration::from_secs(1), signal.changed()).await.is_ok()
    }

    #[tokio::test]
    async fn a_signal_given_while_the_session_was_busy_wakes_its_next_wait() {
        let registry = Registry::default();
        let mac = Mac::parse("aa:bb:cc:00:00:01").unwrap();
        let first = registry.register(mac, "01");
        // Nudged before the session waits: its next wait returns at once, and the nudge is
        // taken once.
        registry.nudge(mac);
        assert!(woken(&first.signal).await);
        assert!(first.signal.take_nudge());
        assert!(!first.signal.take_nudge());
        assert!(!woken(&first.signal).await, "nothing new: the wait goes on");
        // A second connection with the same MAC replaces the first.
        let second = registry.register(mac, "02");
        assert!(woken(&first.signal).await);
        assert_eq!(first.signal.closing(), Some(Close::Replaced));
        assert_eq!(second.signal.closing(), None);
        drop(first);
        assert_eq!(registry.len(), 1, "the replaced session does not take the new one with it");
        assert_eq!(registry.close_retired(&["02".to_owned()], &[]), 1);
        assert_eq!(second.signal.closing(), Some(Close::Retired));
        assert_eq!(registry.close_retired(&["02".to_owned()], &[]), 0, "told once");
        // The sender task's fault: the first one stays.
        second.signal.fault(2);
        second.signal.fault(1);
        assert_eq!(second.signal.fault_code(), 2);
    }
}
