//! TDS persistence. One store per aggregate (tenants, users, memberships, gateways, devices,
//! readings, rejected messages, alert rules, alerts, notification channels, outbox and
//! preferences, audit log, jobs, web sessions, login failures, invitation and reset tokens) over
//! one [`Db`], which is SQLite or PostgreSQL chosen at run time from the URL.
//!
//! Tenant isolation lives here: every method on tenant-owned rows takes a [`TenantId`] and every
//! such query filters by it, so a caller cannot read or change another tenant's rows by passing
//! a guessed id. Methods that deliberately cross tenants are named `staff_*`.
//!
//! [`TenantId`]: tds_domain::TenantId

#[macro_use]
mod macros;

pub mod alarm_defaults;
pub mod alert_rules;
pub mod alerts;
pub mod api_tokens;
pub mod archive;
pub mod audit;
mod bulk;
pub mod certificates;
mod checkpoint;
pub mod db;
pub mod devices;
pub mod error;
pub mod gateway_events;
pub mod gateways;
pub mod jobs;
pub mod login_failures;
pub mod memberships;
pub mod notifications;
pub mod notify;
pub mod page;
mod purge;
pub mod readings;
pub mod rejected;
pub mod renewals;
pub mod report_defs;
pub mod rollups;
pub mod sessions;
pub mod staff_tokens;
pub mod tenants;
pub mod timescale;
pub mod transfer;
pub mod ts;
pub mod user_tokens;
pub mod users;

pub use db::{Db, DbOptions, redact_url};
pub use error::{RowError, StoreError};
pub use page::{Page, Paged};
pub use ts::Ts;

/// Entry point to every store; cheap to clone (the pools are reference-counted).
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
    /// The readings this store's commits stored, until the rollup refresh takes them.
    feed: std::sync::Arc<rollups::feed::Feed>,
    /// The transaction begun for the device endpoint's next group commit (PostgreSQL).
    ahead: std::sync::Arc<readings::Ahead>,
}

impl Store {
    pub fn new(db: Db) -> Self {
        Self { db, feed: std::sync::Arc::default(), ahead: std::sync::Arc::default() }
    }

    /// Connects and brings the schema up to date.
    pub async fn open(url: &str, opts: &DbOptions) -> Result<Self, StoreError> {
        let db = Db::connect(url, opts).await?;
        db.migrate().await?;
        Ok(Self::new(db))
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// How many devices this store's rollup refreshes took their new readings for from memory,
    /// and how many they read back (`tds bench ingest`, tests).
    pub fn rollup_feed_counts(&self) -> rollups::FeedCounts {
        self.feed.counts()
    }

    pub fn tenants(&self) -> tenants::TenantStore<'_> {
        tenants::TenantStore::new(&self.db)
    }
    pub fn renewals(&self) -> renewals::RenewalStore<'_> {
        renewals::RenewalStore::new(&self.db)
    }
    pub fn users(&self) -> users::UserStore<'_> {
        users::UserStore::new(&self.db)
    }
    pub fn memberships(&self) -> memberships::MembershipStore<'_> {
        memberships::MembershipStore::new(&self.db)
    }
    pub fn gateway_events(&self) -> gateway_events::GatewayEventStore<'_> {
        gateway_events::GatewayEventStore::new(&self.db)
    }
    pub fn gateways(&self) -> gateways::GatewayStore<'_> {
        gateways::GatewayStore::new(&self.db)
    }
    pub fn devices(&self) -> devices::DeviceStore<'_> {
        devices::DeviceStore::new(&self.db)
    }
    pub fn readings(&self) -> readings::ReadingStore<'_> {
        readings::ReadingStore::new(&self.db, &self.feed, &self.ahead)
    }
    pub fn notify(&self) -> notify::NotifyStore<'_> {
        notify::NotifyStore::new(&self.db)
    }
    pub fn rollups(&self) -> rollups::RollupStore<'_> {
        rollups::RollupStore::new(&self.db, &self.feed)
    }
    pub fn rejected(&self) -> rejected::RejectedStore<'_> {
        rejected::RejectedStore::new(&self.db)
    }
    pub fn api_tokens(&self) -> api_tokens::ApiTokenStore<'_> {
        api_tokens::ApiTokenStore::new(&self.db)
    }
    pub fn report_definitions(&self) -> report_defs::ReportDefinitionStore<'_> {
        report_defs::ReportDefinitionStore::new(&self.db)
    }
    pub fn report_runs(&self) -> report_defs::ReportRunStore<'_> {
        report_defs::ReportRunStore::new(&self.db)
    }
    pub fn alarm_defaults(&self) -> alarm_defaults::AlarmDefaultStore<'_> {
        alarm_defaults::AlarmDefaultStore::new(&self.db)
    }
    pub fn alert_rules(&self) -> alert_rules::AlertRuleStore<'_> {
        alert_rules::AlertRuleStore::new(&self.db)
    }
    pub fn alerts(&self) -> alerts::AlertStore<'_> {
        alerts::AlertStore::new(&self.db)
    }
    pub fn notification_channels(&self) -> notifications::ChannelStore<'_> {
        notifications::ChannelStore::new(&self.db)
    }
    pub fn outbox(&self) -> notifications::OutboxStore<'_> {
        notifications::OutboxStore::new(&self.db)
    }
    pub fn alert_prefs(&self) -> notifications::AlertPrefsStore<'_> {
        notifications::AlertPrefsStore::new(&self.db)
    }

    pub fn staff_tokens(&self) -> staff_tokens::StaffTokenStore<'_> {
        staff_tokens::StaffTokenStore::new(&self.db)
    }

    pub fn archive(&self) -> archive::ArchiveStore<'_> {
        archive::ArchiveStore::new(&self.db)
    }

    pub fn audit(&self) -> audit::AuditStore<'_> {
        audit::AuditStore::new(&self.db)
    }
    pub fn certificates(&self) -> certificates::CertificateStore<'_> {
        certificates::CertificateStore::new(&self.db)
    }
    pub fn jobs(&self) -> jobs::JobStore<'_> {
        jobs::JobStore::new(&self.db)
    }
    pub fn sessions(&self) -> sessions::SessionStore<'_> {
        sessions::SessionStore::new(&self.db)
    }
    pub fn login_failures(&self) -> login_failures::LoginFailureStore<'_> {
        login_failures::LoginFailureStore::new(&self.db)
    }
    pub fn user_tokens(&self) -> user_tokens::UserTokenStore<'_> {
        user_tokens::UserTokenStore::new(&self.db)
    }
}

/// A fresh, migrated SQLite store in a temporary directory, for unit tests that need the pools
/// themselves (the integration suite's `TestDb` cannot reach them).
#[cfg(test)]
pub(crate) async fn sqlite_for_test() -> (tempfile::TempDir, Store) {
    #![allow(clippy::expect_used)]
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::open(&url, &DbOptions::default()).await.expect("open SQLite");
    (dir, store)
}
