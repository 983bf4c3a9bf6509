use tds_domain::{Email, Name, Role};
use tds_store::tenants::TenantLimits;
use tds_store::users::NewUser;
use tds_store::{Store, StoreError};
use tds_testkit::{conformance, fixtures};

async fn user_credentials_are_kept_apart_from_the_user(store: Store) {
    let u = store
        .users()
        .create(&NewUser {
            email: Email::parse("Ana@Acme.com.br").unwrap(),
            display_name: Name::parse("name", "Ana").unwrap(),
            password_hash: Some("$argon2id$v=19$fake".into()),
            language: "pt-BR".into(),
            is_staff: true,
            created_by: None,
        })
        .await
        .unwrap();
    assert!(u.has_password && u.is_staff && u.active);
    let creds = store.users().credentials(&Email::parse("ana@acme.com.br").unwrap()).await.unwrap();
    assert_eq!(creds.password_hash.as_deref(), Some("$argon2id$v=19$fake"));
    assert!(!format!("{creds:?}").contains("argon2"), "hash must not appear in Debug output");
    store.users().set_password(u.id, "$argon2id$new").await.unwrap();
    store.users().record_login(u.id).await.unwrap();
    assert!(store.users().get(u.id).await.unwrap().last_login_at.is_some());
}

async fn emails_are_unique(store: Store) {
    fixtures::user(&store, "ana@acme.com.br").await;
    let again = store
        .users()
        .create(&NewUser {
            email: Email::parse("ANA@acme.com.br").unwrap(),
            display_name: Name::parse("name", "Ana 2").unwrap(),
            password_hash: None,
            language: "en".into(),
            is_staff: false,
            created_by: None,
        })
        .await;
    match again {
        Err(StoreError::Conflict(msg)) => assert!(msg.contains("ana@acme.com.br"), "{msg}"),
        other => panic!("expected conflict, got {other:?}"),
    }
}

async fn a_user_can_belong_to_several_tenants_with_different_roles(store: Store) {
    let a = fixtures::tenant(&store, "Alpha").await;
    let b = fixtures::tenant(&store, "Beta").await;
    let u = fixtures::member(&store, a.id, "ana@x.com", Role::Admin).await;
    store.memberships().add(b.id, u.id, Role::Viewer, None).await.unwrap();
    let tenants = store.memberships().tenants_of(u.id).await.unwrap();
    let summary: Vec<_> = tenants.iter().map(|(t, r)| (t.name.as_str().to_owned(), *r)).collect();
    assert_eq!(summary, vec![("Alpha".to_owned(), Role::Admin), ("Beta".to_owned(), Role::Viewer)]);
    assert_eq!(store.memberships().role(b.id, u.id).await.unwrap(), Some(Role::Viewer));
    assert!(matches!(
        store.memberships().add(b.id, u.id, Role::Editor, None).await,
        Err(StoreError::Conflict(_))
    ));
}

async fn the_last_admin_cannot_be_demoted_or_removed(store: Store) {
    let t = fixtures::tenant(&store, "Alpha").await;
    let admin = fixtures::member(&store, t.id, "admin@x.com", Role::Admin).await;
    let editor = fixtures::member(&store, t.id, "ed@x.com", Role::Editor).await;
    assert!(matches!(
        store.memberships().set_role(t.id, admin.id, Role::Editor).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(store.memberships().remove(t.id, admin.id).await, Err(StoreError::Conflict(_))));
    store.memberships().set_role(t.id, editor.id, Role::Admin).await.unwrap();
    store.memberships().set_role(t.id, admin.id, Role::Viewer).await.unwrap();
    store.memberships().remove(t.id, admin.id).await.unwrap();
    let members = store.memberships().members(t.id).await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].role, Role::Admin);
}

async fn the_user_limit_is_enforced(store: Store) {
    let t = fixtures::tenant(&store, "Alpha").await;
    store
        .tenants()
        .staff_set_limits(t.id, TenantLimits { max_gateways: 1, max_devices: 1, max_users: 1 })
        .await
        .unwrap();
    fixtures::member(&store, t.id, "a@x.com", Role::Admin).await;
    let extra = fixtures::user(&store, "b@x.com").await;
    assert!(matches!(
        store.memberships().add(t.id, extra.id, Role::Viewer, None).await,
        Err(StoreError::Limit(_))
    ));
}

conformance!(
    user_credentials_are_kept_apart_from_the_user,
    emails_are_unique,
    a_user_can_belong_to_several_tenants_with_different_roles,
    the_last_admin_cannot_be_demoted_or_removed,
    the_user_limit_is_enforced,
);

/// Instances starting at once on a new database (one pool each) create one first user, not one
/// each.
async fn the_first_user_is_created_once_by_racing_instances(db: tds_testkit::TestDb) {
    let mut racers = Vec::new();
    for i in 0..6 {
        let url = db.url.clone();
        racers.push(tokio::spawn(async move {
            let store = Store::open(&url, &tds_store::DbOptions::default()).await.unwrap();
            store
                .users()
                .create_first(&NewUser {
                    email: Email::parse(&format!("admin{i}@x.com")).unwrap(),
                    display_name: Name::parse("name", "Admin").unwrap(),
                    password_hash: None,
                    language: "pt-BR".into(),
                    is_staff: true,
                    created_by: None,
                })
                .await
                .unwrap()
        }));
    }
    let mut created = 0;
    for r in racers {
        created += usize::from(r.await.unwrap().is_some());
    }
    assert_eq!(created, 1);
    assert_eq!(db.store.users().staff_list().await.unwrap().len(), 1);
}

mod racing {
    use super::the_first_user_is_created_once_by_racing_instances;
    use tds_testkit::per_backend;
    per_backend!(the_first_user_is_created_once_by_racing_instances);
}
