use chrono::{DateTime, Duration, Utc};
use tds_domain::{Role, TenantId, UserId};
use tds_store::sessions::NewSession;
use tds_store::{Store, StoreError, Ts};
use tds_testkit::{conformance, fixtures};

/// Now, at the microsecond precision both databases keep, so that values read back compare equal.
fn now() -> DateTime<Utc> {
    Ts::now().0
}

fn new_session(hash: &str, user: UserId, tenant: Option<TenantId>, expires_at: DateTime<Utc>) -> NewSession {
    NewSession {
        token_hash: hash.into(),
        user_id: user,
        tenant_id: tenant,
        csrf_token: format!("csrf-secret-{hash}"),
        ip: Some("203.0.113.7".into()),
        user_agent: Some("Firefox".into()),
        expires_at,
    }
}

fn not_found<T: std::fmt::Debug>(what: &str, r: Result<T, StoreError>) {
    assert!(matches!(r, Err(StoreError::NotFound)), "{what}: expected NotFound, got {r:?}");
}

async fn a_session_is_found_until_it_expires(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let u = fixtures::member(&store, t.id, "ana@x.com", Role::Admin).await;
    let now = now();
    let created = store
        .sessions()
        .create(&new_session("h1", u.id, Some(t.id), now + Duration::hours(1)))
        .await
        .unwrap();
    assert_eq!(created.last_seen_at, created.created_at);

    let s = store.sessions().get("h1", now).await.unwrap();
    assert_eq!((s.user_id, s.tenant_id), (u.id, Some(t.id)));
    assert_eq!(s.csrf_token, "csrf-secret-h1");
    assert_eq!((s.ip.as_deref(), s.user_agent.as_deref()), (Some("203.0.113.7"), Some("Firefox")));
    assert_eq!(s.expires_at, now + Duration::hours(1));
    let shown = format!("{s:?} {:?}", new_session("h1", u.id, None, now));
    assert!(!shown.contains("csrf-secret"), "the CSRF token must not appear in Debug output: {shown}");

    store.sessions().get("h1", now + Duration::minutes(59)).await.unwrap();
    not_found("at the expiry instant", store.sessions().get("h1", now + Duration::hours(1)).await);
    not_found("after expiry", store.sessions().get("h1", now + Duration::hours(2)).await);
    not_found("unknown token", store.sessions().get("h2", now).await);
    let again = store.sessions().create(&new_session("h1", u.id, None, now + Duration::hours(1))).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
}

async fn touching_slides_the_expiry_but_cannot_revive_a_session(store: Store) {
    let u = fixtures::user(&store, "ana@x.com").await;
    let now = now();
    store.sessions().create(&new_session("h1", u.id, None, now + Duration::minutes(30))).await.unwrap();

    store.sessions().touch("h1", now + Duration::minutes(20), now + Duration::minutes(50)).await.unwrap();
    let s = store.sessions().get("h1", now + Duration::minutes(40)).await.unwrap();
    assert_eq!(s.last_seen_at, now + Duration::minutes(20));
    assert_eq!(s.expires_at, now + Duration::minutes(50));

    not_found(
        "touch after expiry",
        store.sessions().touch("h1", now + Duration::minutes(60), now + Duration::minutes(90)).await,
    );
    not_found("revived", store.sessions().get("h1", now + Duration::minutes(70)).await);
    not_found("touch unknown", store.sessions().touch("nope", now, now + Duration::minutes(5)).await);
}

async fn the_chosen_tenant_is_recorded_on_the_session(store: Store) {
    let a = fixtures::tenant(&store, "Alpha").await;
    let u = fixtures::member(&store, a.id, "ana@x.com", Role::Viewer).await;
    let now = now();
    store.sessions().create(&new_session("h1", u.id, None, now + Duration::hours(1))).await.unwrap();
    assert_eq!(store.sessions().get("h1", now).await.unwrap().tenant_id, None);
    store.sessions().set_tenant("h1", Some(a.id)).await.unwrap();
    assert_eq!(store.sessions().get("h1", now).await.unwrap().tenant_id, Some(a.id));
    store.sessions().set_tenant("h1", None).await.unwrap();
    assert_eq!(store.sessions().get("h1", now).await.unwrap().tenant_id, None);
    not_found("set_tenant unknown", store.sessions().set_tenant("nope", Some(a.id)).await);
}

async fn logout_everywhere_ends_only_that_users_sessions(store: Store) {
    let ana = fixtures::user(&store, "ana@x.com").await;
    let bob = fixtures::user(&store, "bob@x.com").await;
    let now = now();
    let later = now + Duration::hours(1);
    for h in ["a1", "a2", "a3"] {
        store.sessions().create(&new_session(h, ana.id, None, later)).await.unwrap();
    }
    store.sessions().create(&new_session("b1", bob.id, None, later)).await.unwrap();

    assert_eq!(store.sessions().delete_for_user_except(ana.id, "a1").await.unwrap(), 2);
    store.sessions().get("a1", now).await.unwrap();
    not_found("a2 after logout elsewhere", store.sessions().get("a2", now).await);

    assert_eq!(store.sessions().delete_for_user(ana.id).await.unwrap(), 1);
    not_found("a1 after logout everywhere", store.sessions().get("a1", now).await);
    assert_eq!(store.sessions().get("b1", now).await.unwrap().user_id, bob.id, "other users keep theirs");

    store.sessions().delete("b1").await.unwrap();
    not_found("b1 after logout", store.sessions().get("b1", now).await);
    not_found("second logout", store.sessions().delete("b1").await);
    assert_eq!(store.sessions().delete_for_user(bob.id).await.unwrap(), 0);
}

async fn expired_sessions_are_purged(store: Store) {
    let u = fixtures::user(&store, "ana@x.com").await;
    let now = now();
    store.sessions().create(&new_session("short", u.id, None, now + Duration::minutes(1))).await.unwrap();
    store.sessions().create(&new_session("long", u.id, None, now + Duration::hours(1))).await.unwrap();
    assert_eq!(store.sessions().purge_expired(now).await.unwrap(), 0);
    assert_eq!(store.sessions().purge_expired(now + Duration::minutes(10)).await.unwrap(), 1);
    store.sessions().get("long", now).await.unwrap();
    not_found("purged", store.sessions().get("short", now).await);
}

conformance!(
    a_session_is_found_until_it_expires,
    touching_slides_the_expiry_but_cannot_revive_a_session,
    the_chosen_tenant_is_recorded_on_the_session,
    logout_everywhere_ends_only_that_users_sessions,
    expired_sessions_are_purged,
);
