//! Two `tds serve` processes on one database: each periodic job runs on one of them at a time,
//! and when one is killed the other carries on with its jobs.

use crate::support::{Server, Tds};
use std::time::{Duration, Instant};
use tds_store::{DbOptions, Store};
use tds_testkit::{TestDb, per_backend};

async fn rollup_runs(store: &Store) -> (i64, Option<String>) {
    let job = store.jobs().periodic("rollups").await.unwrap();
    (job.runs, job.last_run_by)
}

async fn two_servers_run_each_periodic_job_once_per_period(db: TestDb) {
    let tds = Tds::new(Some(&db.url));
    let env = [("TDS_JOB_LEASE_SECS", "3")];
    // One after the other: the first start creates the CA and the first admin.
    let a = Server::start_with(&tds, &env).await;
    let b = Server::start_with(&tds, &env).await;
    let store = Store::open(&db.url, &DbOptions::default()).await.unwrap();

    // Two instances each running the rollup job would make about two runs a period.
    let period = tds_jobs::rollups::PERIOD.as_secs_f64();
    let (before, _) = rollup_runs(&store).await;
    let started = Instant::now();
    let mut runners = std::collections::BTreeSet::new();
    while started.elapsed() < tds_jobs::rollups::PERIOD * 4 {
        if let (_, Some(by)) = rollup_runs(&store).await {
            runners.insert(by);
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let (after, _) = rollup_runs(&store).await;
    let seconds = started.elapsed().as_secs_f64();
    let runs = after - before;
    assert!(
        runs as f64 <= seconds / period + 1.0,
        "{runs} rollup runs in {seconds:.1} s: more than one per period"
    );
    assert!(runs as f64 >= seconds / period / 2.0, "{runs} rollup runs in {seconds:.1} s: the job stalled");
    eprintln!("{runs} rollup runs in {seconds:.1} s, by {runners:?}");

    // Killed without a chance to clean up: its jobs pass to the other instance.
    let killed = a.child.id();
    std::process::Command::new("kill").args(["-KILL", &killed.to_string()]).status().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (at_kill, _) = rollup_runs(&store).await;
    // The lease (3 s) runs out, then three periods.
    let deadline = Instant::now() + Duration::from_secs(5) + tds_jobs::rollups::PERIOD * 5;
    loop {
        let (runs, by) = rollup_runs(&store).await;
        if runs >= at_kill + 3 {
            let by = by.unwrap();
            assert!(by.ends_with(&format!(":{}", b.child.id())), "last run by {by}, not the survivor");
            break;
        }
        assert!(Instant::now() < deadline, "the surviving instance did not take the rollups over");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    b.stop().await;
}

per_backend!(two_servers_run_each_periodic_job_once_per_period);
