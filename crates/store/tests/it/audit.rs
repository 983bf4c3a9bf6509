use tds_store::audit::{AuditFilter, NewAuditEntry};
use tds_store::{Page, Store};
use tds_testkit::{conformance, fixtures};

fn entry(tenant: Option<tds_domain::TenantId>, action: &str, actor: &str) -> NewAuditEntry {
    NewAuditEntry {
        tenant_id: tenant,
        user_id: None,
        actor: actor.into(),
        action: action.into(),
        object_kind: "user".into(),
        object_id: Some("1".into()),
        detail: "{}".into(),
        ip: Some("127.0.0.1".into()),
    }
}

async fn audit_entries_are_listed_newest_first_with_filters(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    store.audit().record(&entry(Some(t.id), "login.succeeded", "ana@x.com")).await.unwrap();
    store.audit().record(&entry(Some(t.id), "login.failed", "bob@x.com")).await.unwrap();
    store.audit().record(&entry(Some(t.id), "gateway.import", "ana@x.com")).await.unwrap();
    store.audit().record(&entry(None, "tenant.create", "cli")).await.unwrap();

    let all = store.audit().list(t.id, &AuditFilter::default(), Page::default()).await.unwrap();
    assert_eq!(
        all.items.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        vec!["gateway.import", "login.failed", "login.succeeded"]
    );
    let logins = AuditFilter { action_prefix: Some("login.".into()), ..Default::default() };
    assert_eq!(store.audit().list(t.id, &logins, Page::default()).await.unwrap().total, 2);
    let ana = AuditFilter { actor: Some("ana@x.com".into()), ..Default::default() };
    assert_eq!(store.audit().list(t.id, &ana, Page::default()).await.unwrap().total, 2);
    let future =
        AuditFilter { since: Some(chrono::Utc::now() + chrono::Duration::hours(1)), ..Default::default() };
    assert_eq!(store.audit().list(t.id, &future, Page::default()).await.unwrap().total, 0);
    assert_eq!(store.audit().staff_list(&AuditFilter::default(), Page::default()).await.unwrap().total, 4);
}

conformance!(audit_entries_are_listed_newest_first_with_filters);
