use chrono::{Duration, Utc};
use tds_store::{Store, StoreError};
use tds_testkit::conformance;

async fn a_due_job_is_claimed_once_until_its_lease_runs_out(store: Store) {
    let now = Utc::now();
    let id = store.jobs().enqueue("rollup", "{\"device\":1}", now - Duration::seconds(1)).await.unwrap();
    store.jobs().enqueue("later", "{}", now + Duration::hours(1)).await.unwrap();

    let job = store.jobs().claim("a", now, Duration::seconds(30)).await.unwrap().expect("due job");
    assert_eq!((job.id, job.kind.as_str(), job.attempts), (id, "rollup", 1));
    assert!(
        store.jobs().claim("b", now, Duration::seconds(30)).await.unwrap().is_none(),
        "leased and nothing else due"
    );

    // Worker `a` died: once the lease has run out another worker takes the job over.
    let later = now + Duration::seconds(31);
    let retaken =
        store.jobs().claim("b", later, Duration::seconds(30)).await.unwrap().expect("lease expired");
    assert_eq!((retaken.id, retaken.attempts), (id, 2));
    store.jobs().complete(id).await.unwrap();
    assert!(matches!(store.jobs().get(id).await, Err(StoreError::NotFound)));
}

async fn failed_jobs_keep_their_error_and_retry_later(store: Store) {
    let now = Utc::now();
    let id = store.jobs().enqueue("report", "{}", now).await.unwrap();
    store.jobs().claim("a", now, Duration::seconds(30)).await.unwrap().unwrap();
    store.jobs().fail(id, "SMTP refused", now + Duration::minutes(5)).await.unwrap();
    assert!(
        store.jobs().claim("a", now + Duration::minutes(1), Duration::seconds(30)).await.unwrap().is_none()
    );
    let job =
        store.jobs().claim("a", now + Duration::minutes(6), Duration::seconds(30)).await.unwrap().unwrap();
    assert_eq!(job.last_error.as_deref(), Some("SMTP refused"));
    assert_eq!(job.attempts, 2);
}

async fn periodic_jobs_exist_once_and_are_rescheduled(store: Store) {
    let now = Utc::now();
    store.jobs().ensure_periodic("offline-detection", "offline", now).await.unwrap();
    store.jobs().ensure_periodic("offline-detection", "offline", now + Duration::days(1)).await.unwrap();
    let job = store.jobs().claim("a", now, Duration::seconds(30)).await.unwrap().unwrap();
    assert_eq!(job.key.as_deref(), Some("offline-detection"));
    store.jobs().reschedule(job.id, now + Duration::minutes(1)).await.unwrap();
    assert!(store.jobs().claim("a", now, Duration::seconds(30)).await.unwrap().is_none());
    let next =
        store.jobs().claim("a", now + Duration::minutes(2), Duration::seconds(30)).await.unwrap().unwrap();
    assert_eq!((next.id, next.attempts), (job.id, 1));
}

async fn concurrent_claims_never_hand_out_the_same_job(store: Store) {
    let now = Utc::now();
    for i in 0..20 {
        store.jobs().enqueue("work", &i.to_string(), now).await.unwrap();
    }
    let mut tasks = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(job) =
                store.jobs().claim(&format!("w{w}"), now, Duration::minutes(5)).await.unwrap()
            {
                got.push(job.id);
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!((before, all.len()), (20, 20));
}

conformance!(
    a_due_job_is_claimed_once_until_its_lease_runs_out,
    failed_jobs_keep_their_error_and_retry_later,
    periodic_jobs_exist_once_and_are_rescheduled,
    concurrent_claims_never_hand_out_the_same_job,
);
