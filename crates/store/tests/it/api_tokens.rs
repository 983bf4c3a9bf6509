use chrono::{Duration, Utc};
use tds_domain::{Name, Role};
use tds_store::api_tokens::NewApiToken;
use tds_store::{Store, StoreError};
use tds_testkit::{conformance, fixtures};

fn token(name: &str, hash: &str, expires_in: Option<Duration>) -> NewApiToken {
    NewApiToken {
        name: Name::parse("name", name).unwrap(),
        role: Role::Viewer,
        token_hash: hash.into(),
        prefix: "tds_0123abcd".into(),
        expires_at: expires_in.map(|d| Utc::now() + d),
        created_by: None,
    }
}

async fn a_token_authenticates_until_it_is_revoked_or_expires(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let tokens = store.api_tokens();
    let erp = tokens.create(t.id, &token("erp", "h1", None)).await.unwrap();
    tokens.create(t.id, &token("old", "h2", Some(Duration::seconds(-1)))).await.unwrap();
    let now = Utc::now();
    assert_eq!(tokens.authenticate("h1", now).await.unwrap().id, erp.id);
    assert!(matches!(tokens.authenticate("h2", now).await, Err(StoreError::NotFound)), "expired");
    assert!(matches!(tokens.authenticate("nope", now).await, Err(StoreError::NotFound)));
    assert!(matches!(tokens.create(t.id, &token("erp", "h3", None)).await, Err(StoreError::Conflict(_))));
    tokens.mark_used(erp.id, now).await.unwrap();
    assert!(tokens.by_name(t.id, "erp").await.unwrap().last_used_at.is_some());
    tokens.revoke(t.id, erp.id).await.unwrap();
    assert!(matches!(tokens.authenticate("h1", now).await, Err(StoreError::NotFound)), "revoked");
    let listed = tokens.list(t.id).await.unwrap();
    assert_eq!(listed.len(), 2, "revoked and expired tokens stay listed");
    assert!(!listed.iter().any(|t| t.is_live(now)));
}

async fn another_tenant_cannot_list_or_revoke_a_token(store: Store) {
    let a = fixtures::tenant(&store, "A").await;
    let b = fixtures::tenant(&store, "B").await;
    let tokens = store.api_tokens();
    let t = tokens.create(a.id, &token("erp", "ha", None)).await.unwrap();
    assert!(tokens.list(b.id).await.unwrap().is_empty());
    assert!(matches!(tokens.by_name(b.id, "erp").await, Err(StoreError::NotFound)));
    assert!(matches!(tokens.revoke(b.id, t.id).await, Err(StoreError::NotFound)));
    assert!(tokens.authenticate("ha", Utc::now()).await.is_ok(), "still live");
    // The same name in another tenant is another token.
    tokens.create(b.id, &token("erp", "hb", None)).await.unwrap();
}

conformance!(
    a_token_authenticates_until_it_is_revoked_or_expires,
    another_tenant_cannot_list_or_revoke_a_token
);
