use chrono::{DateTime, Duration, Utc};
use tds_domain::{Email, Name, Role, TenantId, UserId};
use tds_store::tenants::TenantLimits;
use tds_store::user_tokens::{TokenPurpose, UserToken};
use tds_store::users::NewUser;
use tds_store::{Store, StoreError, Ts};
use tds_testkit::{conformance, fixtures};

fn email(s: &str) -> Email {
    Email::parse(s).unwrap()
}

fn name(s: &str) -> Name {
    Name::parse("name", s).unwrap()
}

fn not_found<T: std::fmt::Debug>(what: &str, r: Result<T, StoreError>) {
    assert!(matches!(r, Err(StoreError::NotFound)), "{what}: expected NotFound, got {r:?}");
}

async fn invite(
    store: &Store,
    tenant: TenantId,
    to: &str,
    role: Role,
    hash: &str,
    expires_at: DateTime<Utc>,
    by: Option<UserId>,
) -> UserToken {
    store.user_tokens().create_invite(tenant, &email(to), role, hash, expires_at, by).await.unwrap()
}

async fn set_max_users(store: &Store, tenant: TenantId, max_users: i64) {
    store
        .tenants()
        .staff_set_limits(tenant, TenantLimits { max_users, ..TenantLimits::default() })
        .await
        .unwrap();
}

async fn an_invitation_creates_the_account_and_membership_once(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let admin = fixtures::member(&store, t.id, "admin@acme.com", Role::Admin).await;
    let now = Ts::now().0;
    let token =
        invite(&store, t.id, "New@Acme.com", Role::Editor, "h1", now + Duration::days(7), Some(admin.id))
            .await;
    assert_eq!(token.purpose, TokenPurpose::Invite);
    assert_eq!((token.tenant_id, token.role, token.user_id), (Some(t.id), Some(Role::Editor), None));
    assert_eq!(token.email.as_str(), "new@acme.com");
    assert_eq!(token.created_by, Some(admin.id));

    let peeked = store.user_tokens().peek("h1", TokenPurpose::Invite, now).await.unwrap();
    assert_eq!(peeked.id, token.id);
    not_found("peek as reset", store.user_tokens().peek("h1", TokenPurpose::Reset, now).await);
    not_found("peek unknown", store.user_tokens().peek("h9", TokenPurpose::Invite, now).await);
    let pending = store.user_tokens().pending_invites(t.id, now).await.unwrap();
    assert_eq!(pending.iter().map(|p| p.id).collect::<Vec<_>>(), vec![token.id]);

    let (user, tenant, role) =
        store.user_tokens().accept_invite("h1", now, &name("Nova"), "$argon2id$new", "en").await.unwrap();
    assert_eq!((tenant, role), (t.id, Role::Editor));
    assert_eq!(
        (user.email.as_str(), user.display_name.as_str(), user.language.as_str()),
        ("new@acme.com", "Nova", "en")
    );
    assert!(user.has_password && user.active && !user.is_staff);
    let creds = store.users().credentials(&email("new@acme.com")).await.unwrap();
    assert_eq!(creds.password_hash.as_deref(), Some("$argon2id$new"));
    assert_eq!(store.memberships().role(t.id, user.id).await.unwrap(), Some(Role::Editor));

    not_found(
        "second accept",
        store.user_tokens().accept_invite("h1", now, &name("Other"), "$argon2id$other", "pt-BR").await,
    );
    not_found("peek after use", store.user_tokens().peek("h1", TokenPurpose::Invite, now).await);
    assert!(store.user_tokens().pending_invites(t.id, now).await.unwrap().is_empty());
    let creds = store.users().credentials(&email("new@acme.com")).await.unwrap();
    assert_eq!(creds.password_hash.as_deref(), Some("$argon2id$new"), "a used link changes nothing");
}

async fn an_expired_invitation_cannot_be_accepted(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let now = Ts::now().0;
    invite(&store, t.id, "late@acme.com", Role::Viewer, "h1", now + Duration::hours(1), None).await;
    let later = now + Duration::hours(2);
    assert_eq!(store.user_tokens().pending_invites(t.id, now).await.unwrap().len(), 1);
    assert!(store.user_tokens().pending_invites(t.id, later).await.unwrap().is_empty());
    not_found("peek expired", store.user_tokens().peek("h1", TokenPurpose::Invite, later).await);
    not_found(
        "accept at the expiry instant",
        store.user_tokens().accept_invite("h1", now + Duration::hours(1), &name("Late"), "$x", "en").await,
    );
    not_found(
        "accept expired",
        store.user_tokens().accept_invite("h1", later, &name("Late"), "$x", "en").await,
    );
    not_found("account of a refused accept", store.users().by_email(&email("late@acme.com")).await);
}

async fn two_accepts_of_one_invitation_race_and_exactly_one_wins(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    fixtures::member(&store, t.id, "admin@acme.com", Role::Admin).await;
    let now = Ts::now().0;
    invite(&store, t.id, "new@acme.com", Role::Viewer, "h1", now + Duration::days(1), None).await;
    let (n1, n2) = (name("First"), name("Second"));
    let tokens = store.user_tokens();
    let (first, second) = tokio::join!(
        tokens.accept_invite("h1", now, &n1, "$argon2id$first", "en"),
        tokens.accept_invite("h1", now, &n2, "$argon2id$second", "en"),
    );
    let outcomes = [&first, &second];
    assert_eq!(outcomes.iter().filter(|r| r.is_ok()).count(), 1, "{first:?} / {second:?}");
    assert_eq!(
        outcomes.iter().filter(|r| matches!(r, Err(StoreError::NotFound))).count(),
        1,
        "{first:?} / {second:?}"
    );
    let winner = first.or(second).unwrap().0;
    let creds = store.users().credentials(&email("new@acme.com")).await.unwrap();
    assert_eq!(creds.user.display_name, winner.display_name, "only the winner's account exists");
    assert_eq!(store.memberships().members(t.id).await.unwrap().len(), 2);
}

async fn two_invitations_cannot_both_take_the_last_seat(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    fixtures::member(&store, t.id, "admin@acme.com", Role::Admin).await;
    set_max_users(&store, t.id, 2).await;
    let now = Ts::now().0;
    invite(&store, t.id, "one@acme.com", Role::Viewer, "h1", now + Duration::days(1), None).await;
    invite(&store, t.id, "two@acme.com", Role::Viewer, "h2", now + Duration::days(1), None).await;
    let (n1, n2) = (name("One"), name("Two"));
    let tokens = store.user_tokens();
    let (one, two) = tokio::join!(
        tokens.accept_invite("h1", now, &n1, "$x", "en"),
        tokens.accept_invite("h2", now, &n2, "$x", "en"),
    );
    assert_eq!([&one, &two].iter().filter(|r| r.is_ok()).count(), 1, "{one:?} / {two:?}");
    assert!([&one, &two].iter().any(|r| matches!(r, Err(StoreError::Limit(_)))), "{one:?} / {two:?}");
    assert_eq!(store.memberships().members(t.id).await.unwrap().len(), 2);
}

async fn accepting_respects_the_user_limit_and_keeps_the_link_usable(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    fixtures::member(&store, t.id, "admin@acme.com", Role::Admin).await;
    set_max_users(&store, t.id, 1).await;
    let now = Ts::now().0;
    invite(&store, t.id, "new@acme.com", Role::Viewer, "h1", now + Duration::days(1), None).await;

    let full = store.user_tokens().accept_invite("h1", now, &name("Nova"), "$x", "en").await;
    match full {
        Err(StoreError::Limit(msg)) => assert!(msg.contains("limit of 1 users"), "{msg}"),
        other => panic!("expected Limit, got {other:?}"),
    }
    not_found("account of a refused accept", store.users().by_email(&email("new@acme.com")).await);
    store
        .user_tokens()
        .peek("h1", TokenPurpose::Invite, now)
        .await
        .expect("a refused accept leaves the link usable");

    set_max_users(&store, t.id, 2).await;
    let (user, _, role) =
        store.user_tokens().accept_invite("h1", now, &name("Nova"), "$x", "en").await.unwrap();
    assert_eq!(role, Role::Viewer);
    assert_eq!(store.memberships().role(t.id, user.id).await.unwrap(), Some(Role::Viewer));
}

async fn an_existing_account_keeps_its_password_and_its_role(store: Store) {
    let a = fixtures::tenant(&store, "Alpha").await;
    let b = fixtures::tenant(&store, "Beta").await;
    let ana = store
        .users()
        .create(&NewUser {
            email: email("ana@x.com"),
            display_name: name("Ana"),
            password_hash: Some("$argon2id$old".into()),
            language: "pt-BR".into(),
            is_staff: false,
            created_by: None,
        })
        .await
        .unwrap();
    store.memberships().add(a.id, ana.id, Role::Admin, None).await.unwrap();
    let now = Ts::now().0;

    invite(&store, b.id, "ANA@x.com", Role::Viewer, "hb", now + Duration::days(1), None).await;
    let (user, tenant, role) =
        store.user_tokens().accept_invite("hb", now, &name("Someone"), "$argon2id$new", "en").await.unwrap();
    assert_eq!((user.id, tenant, role), (ana.id, b.id, Role::Viewer));
    assert_eq!((user.display_name.as_str(), user.language.as_str()), ("Ana", "pt-BR"));
    let creds = store.users().credentials(&email("ana@x.com")).await.unwrap();
    assert_eq!(
        creds.password_hash.as_deref(),
        Some("$argon2id$old"),
        "an invitation must not change a password"
    );

    // Already a member: the invitation is used up and the current role stays, lower or higher.
    invite(&store, a.id, "ana@x.com", Role::Viewer, "ha", now + Duration::days(1), None).await;
    let (_, _, role) = store.user_tokens().accept_invite("ha", now, &name("Ana"), "$x", "en").await.unwrap();
    assert_eq!(role, Role::Admin);
    assert_eq!(store.memberships().role(a.id, ana.id).await.unwrap(), Some(Role::Admin));
    not_found("peek used", store.user_tokens().peek("ha", TokenPurpose::Invite, now).await);
    invite(&store, b.id, "ana@x.com", Role::Admin, "hb2", now + Duration::days(1), None).await;
    let (_, _, role) = store.user_tokens().accept_invite("hb2", now, &name("Ana"), "$x", "en").await.unwrap();
    assert_eq!(role, Role::Viewer, "an invitation does not upgrade an existing member");
}

async fn revoked_invitations_stop_working(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let now = Ts::now().0;
    let kept = invite(&store, t.id, "kept@acme.com", Role::Viewer, "h1", now + Duration::days(1), None).await;
    let gone = invite(&store, t.id, "gone@acme.com", Role::Viewer, "h2", now + Duration::days(1), None).await;
    store.user_tokens().revoke_invite(t.id, gone.id).await.unwrap();
    not_found(
        "accept revoked",
        store.user_tokens().accept_invite("h2", now, &name("Gone"), "$x", "en").await,
    );
    not_found("revoke twice", store.user_tokens().revoke_invite(t.id, gone.id).await);
    let pending = store.user_tokens().pending_invites(t.id, now).await.unwrap();
    assert_eq!(pending.iter().map(|p| p.id).collect::<Vec<_>>(), vec![kept.id]);
    store.user_tokens().accept_invite("h1", now, &name("Kept"), "$x", "en").await.unwrap();
    not_found("revoke accepted", store.user_tokens().revoke_invite(t.id, kept.id).await);
}

async fn a_reset_sets_the_password_once_and_voids_older_links(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let ana = fixtures::user(&store, "ana@x.com").await;
    let now = Ts::now().0;
    let rt = store.user_tokens();
    let older = rt.create_reset(ana.id, &ana.email, "r1", now + Duration::hours(1)).await.unwrap();
    assert_eq!(
        (older.purpose, older.user_id, older.tenant_id, older.role),
        (TokenPurpose::Reset, Some(ana.id), None, None)
    );
    rt.create_reset(ana.id, &ana.email, "r2", now + Duration::hours(1)).await.unwrap();
    invite(&store, t.id, "ana@x.com", Role::Viewer, "inv", now + Duration::hours(1), None).await;

    rt.peek("r1", TokenPurpose::Reset, now).await.unwrap();
    not_found("peek reset as invite", rt.peek("r1", TokenPurpose::Invite, now).await);
    not_found("invitation used as reset", rt.consume_reset("inv", now, "$argon2id$evil").await);
    not_found("reset used as invitation", rt.accept_invite("r1", now, &name("Ana"), "$x", "en").await);

    let user = rt.consume_reset("r2", now, "$argon2id$new").await.unwrap();
    assert_eq!(user.id, ana.id);
    assert!(user.has_password);
    let creds = store.users().credentials(&ana.email).await.unwrap();
    assert_eq!(creds.password_hash.as_deref(), Some("$argon2id$new"));

    not_found("second use", rt.consume_reset("r2", now, "$argon2id$again").await);
    not_found("older link after a reset", rt.consume_reset("r1", now, "$argon2id$older").await);
    let late = rt.create_reset(ana.id, &ana.email, "r3", now + Duration::minutes(1)).await.unwrap();
    assert!(late.used_at.is_none());
    not_found("expired", rt.consume_reset("r3", now + Duration::minutes(2), "$argon2id$late").await);
    let creds = store.users().credentials(&ana.email).await.unwrap();
    assert_eq!(creds.password_hash.as_deref(), Some("$argon2id$new"));
    rt.peek("inv", TokenPurpose::Invite, now).await.expect("a reset leaves invitations alone");
}

conformance!(
    an_invitation_creates_the_account_and_membership_once,
    an_expired_invitation_cannot_be_accepted,
    two_accepts_of_one_invitation_race_and_exactly_one_wins,
    two_invitations_cannot_both_take_the_last_seat,
    accepting_respects_the_user_limit_and_keeps_the_link_usable,
    an_existing_account_keeps_its_password_and_its_role,
    revoked_invitations_stop_working,
    a_reset_sets_the_password_once_and_voids_older_links,
);
