use chrono::{Duration, Utc};
use tds_store::login_failures::FailureCounts;
use tds_store::{Store, Ts};
use tds_testkit::conformance;

async fn failures_are_counted_per_email_and_per_ip_within_the_window(store: Store) {
    let now = Ts::now().0;
    let lf = store.login_failures();
    lf.record("ana@x.com", "10.0.0.1", now - Duration::hours(2)).await.unwrap();
    lf.record("Ana@X.com", "10.0.0.1", now - Duration::minutes(5)).await.unwrap();
    lf.record("ana@x.com", "10.0.0.2", now - Duration::minutes(1)).await.unwrap();
    lf.record("bob@x.com", "10.0.0.1", now - Duration::minutes(1)).await.unwrap();
    // Addresses that do not parse are counted too: probing them must not be free.
    lf.record("not an email", "10.0.0.1", now).await.unwrap();

    let since = now - Duration::hours(1);
    assert_eq!(
        lf.count_since("ana@x.com", "10.0.0.1", since).await.unwrap(),
        FailureCounts { by_email: 2, by_ip: 3 }
    );
    assert_eq!(
        lf.count_since("ANA@x.com", "10.0.0.9", now - Duration::hours(3)).await.unwrap(),
        FailureCounts { by_email: 3, by_ip: 0 }
    );
    assert_eq!(
        lf.count_since("not an email", "10.0.0.1", now).await.unwrap(),
        FailureCounts { by_email: 1, by_ip: 1 },
        "a failure exactly at the window's start counts"
    );
    assert_eq!(lf.count_since("nobody@x.com", "10.0.0.3", since).await.unwrap(), FailureCounts::default());
}

async fn a_successful_login_clears_the_email_but_not_other_addresses(store: Store) {
    let now = Utc::now();
    let lf = store.login_failures();
    for _ in 0..3 {
        lf.record("ana@x.com", "10.0.0.1", now).await.unwrap();
    }
    lf.record("bob@x.com", "10.0.0.1", now).await.unwrap();
    lf.record("bob@x.com", "10.0.0.2", now).await.unwrap();
    lf.clear_email("Ana@x.com").await.unwrap();
    let since = now - Duration::minutes(1);
    assert_eq!(
        lf.count_since("ana@x.com", "10.0.0.1", since).await.unwrap(),
        FailureCounts { by_email: 0, by_ip: 1 },
        "the guess at bob from the same IP still counts"
    );
    assert_eq!(
        lf.count_since("bob@x.com", "10.0.0.2", since).await.unwrap(),
        FailureCounts { by_email: 2, by_ip: 1 }
    );
}

async fn old_failures_are_purged(store: Store) {
    let now = Ts::now().0;
    let lf = store.login_failures();
    lf.record("ana@x.com", "10.0.0.1", now - Duration::days(2)).await.unwrap();
    lf.record("ana@x.com", "10.0.0.1", now - Duration::hours(1)).await.unwrap();
    lf.record("ana@x.com", "10.0.0.1", now).await.unwrap();
    assert_eq!(lf.purge_before(now - Duration::hours(1)).await.unwrap(), 1);
    let left = lf.count_since("ana@x.com", "10.0.0.1", now - Duration::days(7)).await.unwrap();
    assert_eq!(left, FailureCounts { by_email: 2, by_ip: 2 });
}

conformance!(
    failures_are_counted_per_email_and_per_ip_within_the_window,
    a_successful_login_clears_the_email_but_not_other_addresses,
    old_failures_are_purged,
);
