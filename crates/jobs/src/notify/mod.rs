//! The alert notifier (SPEC §5 "Notifications"): turns the alert history into deliveries through
//! the outbox, and makes them.
//!
//! One job, run every [`PERIOD`] by the runner on one instance at a time:
//! 1. [`fanout::fan_out`]: each undispatched raise, clear or acknowledgement becomes outbox rows
//!    (every enabled channel whose severities include the alert's; for raises and clears also
//!    every member whose email preferences include it; acknowledgements go to webhooks only),
//!    each with an idempotency key from the event and the recipient, then the event is marked
//!    dispatched. Interrupted and run again, it writes nothing twice.
//! 2. [`fanout::remind`]: one reminder per elapsed period for active, unacknowledged CRITICAL
//!    alerts, to members who asked for reminders.
//! 3. [`send::send_due`]: due rows are claimed with a lease (a sender that dies leaves them to
//!    be taken again when it runs out), grouped by destination, and sent in parallel up to a
//!    bound, each attempt with a timeout. A destination that fails stops its own group only
//!    (its other rows wait for its next retry), so a failing channel never delays another.
//!
//! Every function takes `now`: tests drive time instead of sleeping through back-offs.
//!
//! - [`compose`]: builds the [`Notice`](tds_domain::alerts::Notice) of an alert;
//! - [`catalog`]: the words of emails and chat messages in pt-BR and en;
//! - [`webhook`]: the HTTP client, signature and POST.
//!
//! Must not: decide back-off or quiet hours (the domain's `alerts::delivery` does), or read the
//! environment (`bins/tds` builds the [`Notifier`]).

pub mod catalog;
pub mod compose;
pub mod fanout;
pub mod send;
pub mod webhook;

use crate::runner::Next;
use chrono::Utc;
use std::sync::Arc;
use std::time::Duration;
use tds_mail::Mailer;
use tds_store::{Store, StoreError};

pub use fanout::{FanOut, fan_out, remind};
pub use send::{Sent, send_due};

/// How often the notifier runs.
pub const PERIOD: Duration = Duration::from_secs(2);

/// What can stop the notifier from being built.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
    #[error("public_url {0:?} must be an http:// or https:// URL")]
    PublicUrl(String),
}

/// The notifier's settings; the defaults suit production.
#[derive(Debug, Clone)]
pub struct NotifierOptions {
    /// The web UI's address, for links to alerts.
    pub public_url: String,
    /// Longest wait for one delivery (an SMTP transaction, a webhook's answer).
    pub send_timeout: Duration,
    /// Deliveries in flight at once, across destinations.
    pub parallel: usize,
    /// How long a claimed row is held by its sender before another may take it: more than
    /// `per_destination` timeouts in a row.
    pub lease: Duration,
    /// Rows claimed per round.
    pub batch: i64,
    /// Rows sent to one destination per round (one after another); the rest wait for the next.
    pub per_destination: usize,
    /// Alert events fanned out per round.
    pub fan_out_batch: i64,
}

impl NotifierOptions {
    pub fn new(public_url: impl Into<String>) -> Self {
        Self {
            public_url: public_url.into(),
            send_timeout: Duration::from_secs(10),
            parallel: 16,
            lease: Duration::from_mins(5),
            batch: 200,
            per_destination: 10,
            fan_out_batch: 200,
        }
    }
}

/// Everything the notifier needs besides the store: the mailer, an HTTP client and its
/// settings. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    mailer: Mailer,
    http: reqwest::Client,
    options: NotifierOptions,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("mailer", &self.inner.mailer)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// A notifier sending email through `mailer` and webhooks through its own HTTP client
    /// (rustls with the aws-lc-rs provider and the system's root certificates).
    pub fn new(mailer: Mailer, options: NotifierOptions) -> Result<Self, NotifyError> {
        let public = url::Url::parse(&options.public_url)
            .map_err(|_| NotifyError::PublicUrl(options.public_url.clone()))?;
        if !matches!(public.scheme(), "http" | "https") {
            return Err(NotifyError::PublicUrl(options.public_url.clone()));
        }
        let http = webhook::client(options.send_timeout)?;
        Ok(Self { inner: Arc::new(Inner { mailer, http, options }) })
    }

    pub fn options(&self) -> &NotifierOptions {
        &self.inner.options
    }

    pub(crate) fn mailer(&self) -> &Mailer {
        &self.inner.mailer
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// The job: fan out, remind, send, at `Utc::now()`. Runs again at once while a backlog is
    /// left.
    pub async fn job(self, store: Store) -> anyhow::Result<Next> {
        let (fanned, sent) = self.round(&store, Utc::now()).await?;
        if fanned.rows + fanned.reminders + sent.delivered + sent.failed > 0 {
            tracing::info!(
                events = fanned.events,
                queued = fanned.rows,
                reminders = fanned.reminders,
                delivered = sent.delivered,
                failed = sent.failed,
                gave_up = sent.gave_up,
                "alert notifications"
            );
        }
        let backlog = fanned.events >= self.options().fan_out_batch || sent.claimed >= self.options().batch;
        Ok(if backlog { Next::Soon } else { Next::Period })
    }

    /// One round at `now`: fan-out, reminders, then the due deliveries.
    pub async fn round(
        &self,
        store: &Store,
        now: chrono::DateTime<Utc>,
    ) -> Result<(FanOut, Sent), StoreError> {
        let mut fanned = fan_out(store, self, now).await?;
        fanned.reminders = remind(store, self, now).await?;
        let sent = send_due(store, self, now).await?;
        Ok((fanned, sent))
    }
}
