//! `tds bench parse`: the device endpoint's work on a telemetry message between reading it off
//! the connection and handing it to the writer ([`tds_ingest::pipeline::telemetry`]: parsing the
//! JSON, checking each reading, matching it to the gateway's devices, building the readings to
//! store), in one thread, on the load generator's messages. What it costs per reading is part of
//! goal 8's CPU per stored reading (issue 20), measured here without the network, TLS and the
//! database around it; under `valgrind --tool=callgrind` the difference between two sizes is
//! the instructions per message, the same on every run.

use super::ingest::setup;
use super::load::telemetry_text;
use crate::config::Config;
use anyhow::{Context, bail};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tds_ingest::directory::Directory;
use tds_ingest::limits::RateLog;
use tds_ingest::pipeline::{self, Limits};

pub async fn run(config: &Config, messages: u64, devices: usize) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (store, _) = super::open_store(config, None, tmp.path()).await?;
    let (_, fleet) = setup(&store, 1, devices, false).await?;
    let (mac, codes) = fleet.into_iter().next().context("no gateway was set up")?;
    let directory = Directory::new(store.clone(), Duration::from_hours(1));
    let gateway = directory.gateway(mac).await?.context("the gateway was not found")?;
    let mut ingest = tds_ingest::IngestConfig::new(([127, 0, 0, 1], 0).into());
    config.apply_ingest_limits(&mut ingest);
    let limits = Limits::of(&ingest);
    let refusals = RateLog::new(Duration::from_mins(1));
    let topic = format!("tds_new/gateway/{mac}/telemetria");
    // Stamped in the last `messages` seconds, so that every reading is within the tenant's
    // retention and none is in the future.
    let now = chrono::Utc::now();
    let t0 = now - chrono::Duration::seconds(i64::try_from(messages)? + 60);
    // Built beforehand: making the text is the gateway's work, not the endpoint's.
    let texts: Vec<String> = (0..messages.min(10_000)).map(|n| telemetry_text(mac, &codes, t0, n)).collect();
    let mut readings = 0usize;
    let started = Instant::now();
    for n in 0..messages {
        let text = &texts[(n % texts.len() as u64) as usize];
        let submission = pipeline::telemetry(
            &directory,
            Arc::clone(&gateway),
            &topic,
            text.as_bytes(),
            limits,
            &refusals,
            now,
        )
        .await?;
        if !submission.rejected.is_empty() {
            bail!("message {n} was refused: {:?}", submission.rejected[0].reason);
        }
        readings += submission.readings.len();
    }
    let took = started.elapsed();
    store.db().close().await;
    if readings != usize::try_from(messages)? * devices {
        bail!("{readings} readings from {messages} messages of {devices}");
    }
    let secs = took.as_secs_f64();
    println!(
        "parse: {messages} messages of {devices} readings in {:.2} s: {:.0} messages/s, {:.0} readings/s, {:.0} ns a reading",
        secs,
        messages as f64 / secs,
        readings as f64 / secs,
        secs * 1e9 / readings as f64,
    );
    Ok(())
}
