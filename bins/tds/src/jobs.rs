//! The server's periodic jobs, handed to the job runner of `tds-jobs`, which runs each on one
//! instance at a time however many share the database. Periods:
//!
//! | job | every | does |
//! |---|---|---|
//! | `rollups` | 3 s (while a backlog lasts, after a pause as long as the round) | hourly/daily/monthly rollups of new readings, then the alert rules on those devices' data (a backlog's devices once it is over) |
//! | `alerts` | 5 s | every alert rule (clock rules, a new day or month clearing consumption alerts) |
//! | `notify` | 2 s (at once while a backlog lasts) | alert events fanned out to the outbox, reminders, due email and webhook deliveries sent |
//! | `reports` | 30 s | due scheduled reports made, mailed and kept; failed runs retried |
//! | `offline-detection` | 30 s | gateways silent for three intervals marked offline |
//! | `crl-refresh` | 1 h | the CRL re-issued before its next-update time |
//! | `renewal` | 10 min | the certificate renewal campaign (from 02:00 tenant time, within the day's budgets) |
//! | `web-state-purge` | 1 h | expired sessions, old login failures |
//! | `retention` | 24 h (first an hour after the first start) | rows past their horizon |

use crate::config::Config;
use std::sync::Arc;
use std::time::Duration;
use tds_jobs::{Next, Runner, RunnerOptions};
use tds_pki::CaFiles;
use tds_store::Store;

/// What the jobs send out: alert notifications and scheduled reports.
#[derive(Debug)]
pub struct Outgoing {
    pub notifier: tds_jobs::Notifier,
    pub reporter: tds_jobs::Reporter,
}

/// Every periodic job of `tds serve`, in a runner named `worker`.
pub fn runner(
    store: Store,
    pki: Arc<CaFiles>,
    Outgoing { notifier, reporter }: Outgoing,
    config: &Config,
    worker: String,
    options: RunnerOptions,
    live: tds_jobs::alerts::Live,
) -> Runner {
    let horizons = config.retention_horizons();
    let crl_config = config.clone();
    let campaign = campaign(pki.clone(), config);
    // The alert rules kept between evaluations, by both jobs that evaluate them.
    let rules = Arc::new(tds_jobs::alerts::RuleCache::default());
    let rollups = Arc::new(tds_jobs::rollups::Worker::new(live.clone(), rules.clone()));
    Runner::new(store, worker, options)
        .every("rollups", tds_jobs::rollups::PERIOD, Duration::ZERO, move |store: Store| {
            let rollups = rollups.clone();
            async move { rollups.round(&store).await }
        })
        .every("alerts", tds_jobs::alerts::PERIOD, tds_jobs::alerts::PERIOD, move |store| {
            tds_jobs::alerts::job(store, rules.clone(), live.clone())
        })
        .every("notify", tds_jobs::notify::PERIOD, Duration::ZERO, move |store: Store| {
            notifier.clone().job(store)
        })
        .every("reports", tds_jobs::reports::PERIOD, tds_jobs::reports::PERIOD, move |store: Store| {
            reporter.clone().job(store)
        })
        .every(
            "offline-detection",
            Duration::from_secs(30),
            Duration::from_secs(30),
            |store: Store| async move {
                let n = store.gateways().staff_mark_silent_offline(chrono::Utc::now()).await?;
                if n > 0 {
                    tracing::info!(gateways = n, "gateways silent for three intervals marked offline");
                }
                Ok(Next::Period)
            },
        )
        .every("crl-refresh", Duration::from_hours(1), Duration::ZERO, move |store: Store| {
            let (pki, config) = (pki.clone(), crl_config.clone());
            async move {
                crate::pki::current_crl(&store, &pki, &config).await?;
                Ok(Next::Period)
            }
        })
        .every("renewal", tds_jobs::renewal::PERIOD, Duration::from_mins(1), move |store: Store| {
            tds_jobs::renewal::job(store, campaign.clone())
        })
        .every("web-state-purge", Duration::from_hours(1), Duration::ZERO, tds_jobs::retention::web_state)
        .every("retention", Duration::from_hours(24), Duration::from_hours(1), move |store| {
            tds_jobs::retention::daily(store, horizons)
        })
}

/// The renewal campaign's settings from the configuration.
pub fn campaign(pki: Arc<CaFiles>, config: &Config) -> tds_jobs::renewal::Campaign {
    tds_jobs::renewal::Campaign {
        ca: pki,
        platform_per_day: i64::from(config.renewal_per_day),
        tenant_per_day: i64::from(config.renewal_per_day_per_tenant),
        device_cert_days: config.device_cert_days,
        hour: 2,
    }
}

/// This instance's name in job leases: host name and process id, so that two instances on one
/// host differ and a restarted instance does not take its predecessor's lease for its own.
pub fn worker_name() -> String {
    let host = rustix::system::uname().nodename().to_string_lossy().into_owned();
    format!("{host}:{}", std::process::id())
}
