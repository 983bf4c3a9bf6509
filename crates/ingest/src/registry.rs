//! The live sessions, by gateway MAC: a second connection with the same identity replaces the
//! first, a revoked or retired certificate's session (or a decommissioned gateway's) is told to
//! close at once, and a session is nudged when a message for its gateway was stored or cleared.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use tds_domain::Mac;
use tokio::sync::watch;

/// Why the endpoint asks a session to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    Open,
    Replaced,
    Revoked,
    /// The certificate is no longer the gateway's (replaced, renewed, transferred) or the
    /// gateway was decommissioned.
    Retired,
    Shutdown,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    serial: String,
    close: watch::Sender<Close>,
    nudge: watch::Sender<u64>,
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
    pub close: watch::Receiver<Close>,
    /// Changes when a message for the gateway was stored or cleared.
    pub nudge: watch::Receiver<u64>,
}

impl Registry {
    /// Registers a session for `mac`, telling any previous one to close.
    pub fn register(&self, mac: Mac, serial: &str) -> Registration<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(Close::Open);
        let (nudge_tx, nudge) = watch::channel(0);
        if let Ok(mut sessions) = self.sessions.lock()
            && let Some(old) =
                sessions.insert(mac, Entry { id, serial: serial.to_owned(), close: tx, nudge: nudge_tx })
        {
            let _ = old.close.send(Close::Replaced);
        }
        Registration { registry: self, mac, id, close: rx, nudge }
    }

    /// Tells the sessions whose certificate serial is revoked to close; returns how many.
    pub fn close_revoked(&self, is_revoked: impl Fn(&str) -> bool) -> usize {
        let Ok(sessions) = self.sessions.lock() else { return 0 };
        let mut closed = 0;
        for e in sessions.values().filter(|e| is_revoked(&e.serial)) {
            let _ = e.close.send(Close::Revoked);
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
            if retired && *e.close.borrow() == Close::Open {
                let _ = e.close.send(Close::Retired);
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
            e.nudge.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    pub fn close_all(&self) {
        if let Ok(sessions) = self.sessions.lock() {
            for e in sessions.values() {
                let _ = e.close.send(Close::Shutdown);
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
