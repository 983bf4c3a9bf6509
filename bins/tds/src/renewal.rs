//! `tds cert renew` (one renewal now, outside the daily budget) and `tds cert campaign` (pause,
//! resume or look at a tenant's renewal campaign), over the same store and campaign settings as
//! the server's daily job.

use crate::admin::audit;
use crate::cli::CertCommand;
use crate::config::Config;
use crate::import::find_tenant;
use anyhow::{Context, bail};
use chrono::{Duration, Utc};
use std::sync::Arc;
use tds_domain::Mac;
use tds_domain::renewal::{RENEWAL_WINDOW_DAYS, RenewalMode};
use tds_store::{Store, StoreError};

pub async fn cert(config: &Config, store: &Store, command: CertCommand) -> anyhow::Result<()> {
    match command {
        CertCommand::Renew { mac, csr } => {
            let mac = Mac::parse(&mac)?;
            let gateway = match store.gateways().staff_by_mac(mac).await {
                Ok(g) => g,
                Err(StoreError::NotFound) => bail!("no gateway with MAC {mac}"),
                Err(e) => return Err(e.into()),
            };
            let files = Arc::new(crate::pki::ensure_ca(config)?);
            let campaign = crate::jobs::campaign(files, config);
            let mode = csr.then_some(RenewalMode::Csr);
            let renewal = tds_jobs::renewal::renew_now(
                store,
                &campaign,
                gateway.tenant_id,
                gateway.id,
                mode,
                ("cli", None),
            )
            .await
            .with_context(|| format!("cannot start a renewal of {mac}"))?;
            println!(
                "renewal {} of {mac} started ({}, state {}): the offer waits retained on tds_new/gateway/{mac}/cert_update until the gateway connects with its new certificate",
                renewal.id.get(),
                renewal.mode,
                renewal.state
            );
            Ok(())
        }
        CertCommand::Campaign { tenant, action } => {
            let t = find_tenant(store, &tenant).await?;
            match action.as_str() {
                "pause" | "resume" => {
                    let pause = action == "pause";
                    let changed = store.renewals().set_paused(t, pause, None).await?;
                    if changed {
                        let verb = if pause { "cert.campaign_paused" } else { "cert.campaign_resumed" };
                        audit(store, Some(t), None, verb, "tenant", tenant.clone()).await?;
                    }
                    println!("renewal campaign of {tenant}: {}", if pause { "paused" } else { "running" });
                }
                "status" => {
                    let now = Utc::now();
                    let day = now - Duration::days(1);
                    let p = store
                        .renewals()
                        .progress(
                            Some(t),
                            now + Duration::days(RENEWAL_WINDOW_DAYS),
                            day,
                            now - Duration::days(30),
                        )
                        .await?;
                    let paused = store.renewals().is_paused(t).await?;
                    println!("renewal campaign of {tenant}: {}", if paused { "paused" } else { "running" });
                    println!(
                        "backlog {}  started in the last 24 h {}  in flight {} (offered {}, csr_received {}, issued {})  \
                         last 30 days: confirmed {}  failed {}  rolled back {}",
                        p.backlog,
                        p.started_today,
                        p.in_flight,
                        p.offered,
                        p.csr_received,
                        p.issued,
                        p.confirmed,
                        p.failed,
                        p.rolled_back
                    );
                }
                other => bail!("unknown campaign action {other:?}: pause, resume or status"),
            }
            Ok(())
        }
        _ => bail!("not a renewal command"),
    }
}
