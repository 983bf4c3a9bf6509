//! TDS background work inside the server (SPEC §8): no separate worker processes.
//!
//! - [`runner`]: runs each periodic job on one instance at a time across every instance sharing
//!   the database (a lease in the `jobs` table), with metrics per job;
//! - [`rollups`]: keeps hourly, daily and monthly rollups current as readings are committed;
//! - [`alerts`]: evaluates every enabled alert rule and keeps the alerts' lifecycle;
//! - [`notify`]: the alert notifier: alert history to outbox rows, reminders, and the
//!   deliveries (email through `tds-mail`, signed webhooks) with retries;
//! - [`renewal`]: the certificate renewal campaign (daily budgets, oldest expiry first) and
//!   one renewal on demand;
//! - [`reports`]: scheduled reports made, mailed with their file attached and recorded, with
//!   retries;
//! - [`retention`]: removes what is past its horizon: raw readings (keeping rollups), dead
//!   letters, audit log, connection history, expired tokens, sessions.
//!
//! Must not: serve requests or read the environment; `bins/tds` builds the runner with these
//! jobs and its own (offline detection, CRL refresh), starts it and stops it.

pub mod alerts;
pub mod notify;
pub mod renewal;
pub mod reports;
pub mod retention;
pub mod rollups;
pub mod runner;

pub use notify::{Notifier, NotifierOptions};
pub use reports::Reporter;
pub use runner::{Next, Runner, RunnerOptions};
