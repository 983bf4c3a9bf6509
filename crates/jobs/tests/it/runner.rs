//! The job runner across instances: two runners on two connection pools of one database stand
//! for two `tds serve` instances (on PostgreSQL, exactly what two processes share).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tds_jobs::{Next, Runner, RunnerOptions};
use tds_store::{DbOptions, Store};
use tds_testkit::{TestDb, per_backend};

type Log = Arc<Mutex<Vec<(&'static str, Instant)>>>;

async fn second_instance(db: &TestDb) -> Store {
    Store::open(&db.url, &DbOptions { max_connections: 4, ..DbOptions::default() }).await.unwrap()
}

fn options(lease_ms: u64) -> RunnerOptions {
    RunnerOptions {
        lease: Duration::from_millis(lease_ms),
        poll: Duration::from_millis(20),
        max_retry: Duration::from_millis(400),
    }
}

/// A runner whose job `tick` logs `name` and then works for `busy`.
fn runner(store: Store, name: &'static str, every: Duration, busy: Duration, log: &Log) -> Runner {
    let log = log.clone();
    Runner::new(store, name, options(2_000)).every("tick", every, Duration::ZERO, move |_store| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push((name, Instant::now()));
            tokio::time::sleep(busy).await;
            Ok(Next::Period)
        }
    })
}

async fn a_periodic_job_runs_once_per_period_across_two_instances(db: TestDb) {
    let every = Duration::from_millis(300);
    let log: Log = Arc::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let a = runner(db.store.clone(), "a", every, Duration::from_millis(100), &log);
    let b = runner(second_instance(&db).await, "b", every, Duration::from_millis(100), &log);
    let started = Instant::now();
    let ta = tokio::spawn(a.run(stopped(stop_rx.clone())));
    let tb = tokio::spawn(b.run(stopped(stop_rx)));
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop_tx.send(true).unwrap();
    ta.await.unwrap();
    tb.await.unwrap();
    let elapsed = started.elapsed();

    let log = log.lock().unwrap().clone();
    let periods = (elapsed.as_millis() / every.as_millis()) as usize + 1;
    assert!(log.len() <= periods, "{} runs in {elapsed:?}: more than one per period", log.len());
    assert!(log.len() >= periods / 2, "{} runs in {elapsed:?}: the job stalled", log.len());
    for pair in log.windows(2) {
        let gap = pair[1].1 - pair[0].1;
        assert!(
            gap + Duration::from_millis(20) >= every,
            "runs by {} and {} only {gap:?} apart: twice in one period",
            pair[0].0,
            pair[1].0
        );
    }
    let row = db.store.jobs().periodic("tick").await.unwrap();
    // A run stopped by the shutdown is not counted, so the row may be one short of the log.
    assert!(
        row.runs as usize == log.len() || row.runs as usize + 1 == log.len(),
        "{} vs {}",
        row.runs,
        log.len()
    );
    let by_a = log.iter().filter(|(who, _)| *who == "a").count();
    eprintln!("{} runs in {elapsed:?}: {by_a} by a, {} by b", log.len(), log.len() - by_a);
}

async fn killing_the_instance_that_holds_a_job_hands_it_to_the_other(db: TestDb) {
    let log: Log = Arc::default();
    let never = std::future::pending::<()>;
    // a's run never ends: it holds the job until a dies.
    let a = runner(db.store.clone(), "a", Duration::from_hours(1), Duration::from_hours(1), &log);
    let b = runner(second_instance(&db).await, "b", Duration::from_hours(1), Duration::ZERO, &log);
    let ta = tokio::spawn(a.run(never()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while log.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "a never ran the job");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let tb = tokio::spawn(b.run(never()));
    // Past the 2 s lease: a's heartbeat keeps extending it, so b must not take the job.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(log.lock().unwrap().len(), 1, "b ran the job while a was still running it");
    assert_eq!(db.store.jobs().periodic("tick").await.unwrap().attempts, 1);

    ta.abort();
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(10);
    while log.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "b never took over the job of the dead instance");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let taken = log.lock().unwrap()[1];
    assert_eq!(taken.0, "b");
    let after = taken.1 - killed;
    assert!(after <= Duration::from_millis(2_500), "taken over {after:?} after the kill (lease 2 s)");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let row = db.store.jobs().periodic("tick").await.unwrap();
    assert_eq!(row.runs, 1, "b's run is recorded, a's never finished");
    assert_eq!(row.last_run_by.as_deref(), Some("b"));
    tb.abort();
}

async fn a_failing_job_keeps_its_error_and_is_retried_with_back_off(db: TestDb) {
    let calls = Arc::new(Mutex::new(0));
    let counter = calls.clone();
    let runner = Runner::new(db.store.clone(), "a", options(2_000)).every(
        "flaky",
        Duration::from_hours(1),
        Duration::ZERO,
        move |_store| {
            let counter = counter.clone();
            async move {
                let mut n = counter.lock().unwrap();
                *n += 1;
                if *n == 1 { Err(anyhow::anyhow!("SMTP refused")) } else { Ok(Next::Period) }
            }
        },
    );
    runner.register().await.unwrap();
    assert_eq!(runner.try_run_once().await.unwrap(), Some("flaky"));
    let row = db.store.jobs().periodic("flaky").await.unwrap();
    assert_eq!(row.last_error.as_deref(), Some("SMTP refused"));
    assert_eq!(row.attempts, 1);
    // Retried after an eighth of max_retry (50 ms), not after the hour of its period.
    assert_eq!(runner.try_run_once().await.unwrap(), None, "retried at once");
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(runner.try_run_once().await.unwrap(), Some("flaky"));
    let row = db.store.jobs().periodic("flaky").await.unwrap();
    assert_eq!((row.last_error, row.attempts, row.runs), (None, 0, 2));
    assert!(row.run_after > chrono::Utc::now() + chrono::Duration::minutes(59), "next run a period later");
    assert_eq!(*calls.lock().unwrap(), 2);
}

async fn a_restart_keeps_the_schedule_of_a_periodic_job(db: TestDb) {
    let log: Log = Arc::default();
    let first = runner(db.store.clone(), "a", Duration::from_hours(1), Duration::ZERO, &log);
    first.register().await.unwrap();
    assert_eq!(first.try_run_once().await.unwrap(), Some("tick"));
    // A new instance (or a restart) registers the same job: it is not due again before its time.
    let second = runner(second_instance(&db).await, "b", Duration::from_hours(1), Duration::ZERO, &log);
    second.register().await.unwrap();
    assert_eq!(second.try_run_once().await.unwrap(), None);
    assert_eq!(log.lock().unwrap().len(), 1);
}

/// A backlog worked through at a pace (`Next::After`): the next run comes after the pause the
/// run asked for, neither at once (`Soon`) nor a period later.
async fn a_job_that_asks_for_a_pause_runs_again_after_it(db: TestDb) {
    let runner = Runner::new(db.store.clone(), "a", options(2_000)).every(
        "paced",
        Duration::from_hours(1),
        Duration::ZERO,
        move |_store| async move { Ok(Next::After(Duration::from_millis(1_500))) },
    );
    runner.register().await.unwrap();
    assert_eq!(runner.try_run_once().await.unwrap(), Some("paced"));
    let row = db.store.jobs().periodic("paced").await.unwrap();
    let wait = row.run_after - chrono::Utc::now();
    assert!(wait > chrono::Duration::milliseconds(750), "due again in {wait}: the pause was not kept");
    assert!(wait <= chrono::Duration::milliseconds(1_500), "due again in {wait}: more than the pause");
    assert_eq!(runner.try_run_once().await.unwrap(), None, "ran again before the pause ended");
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    assert_eq!(runner.try_run_once().await.unwrap(), Some("paced"));
}

per_backend!(
    a_job_that_asks_for_a_pause_runs_again_after_it,
    a_periodic_job_runs_once_per_period_across_two_instances,
    killing_the_instance_that_holds_a_job_hands_it_to_the_other,
    a_failing_job_keeps_its_error_and_is_retried_with_back_off,
    a_restart_keeps_the_schedule_of_a_periodic_job
);
