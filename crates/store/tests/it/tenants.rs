use chrono::NaiveDate;
use tds_domain::{Cnpj, LicenceState, Name, TimeZone};
use tds_store::tenants::{NewTenant, TenantLimits};
use tds_store::{Store, StoreError};
use tds_testkit::{conformance, fixtures};

async fn tenant_is_created_with_defaults_and_found_by_name(store: Store) {
    let t = fixtures::tenant(&store, "Águas do Porto").await;
    assert!(t.active);
    assert_eq!(t.timezone, TimeZone::default());
    assert_eq!(t.retention_days, 730);
    let by_name = store.tenants().staff_by_name("águas do porto").await.unwrap();
    assert_eq!(by_name.id, t.id);
    assert_eq!(store.tenants().staff_list().await.unwrap().len(), 1);
}

async fn tenant_names_are_unique_ignoring_case(store: Store) {
    fixtures::tenant(&store, "Acme").await;
    let err = store.tenants().staff_create(&NewTenant::named(Name::parse("name", "ACME").unwrap())).await;
    assert!(matches!(err, Err(StoreError::Conflict(_))), "{err:?}");
    fixtures::tenant(&store, "Água Limpa").await;
    let err =
        store.tenants().staff_create(&NewTenant::named(Name::parse("name", "ÁGUA LIMPA").unwrap())).await;
    assert!(matches!(err, Err(StoreError::Conflict(_))), "non-ASCII case is folded too: {err:?}");
}

async fn profile_licence_and_limits_are_updated(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let cnpj = Cnpj::parse("11.222.333/0001-81").unwrap();
    let tz = TimeZone::parse("America/New_York").unwrap();
    let updated = store
        .tenants()
        .update_profile(t.id, &Name::parse("name", "Acme Energia").unwrap(), Some(&cnpj), tz)
        .await
        .unwrap();
    assert_eq!(updated.name.as_str(), "Acme Energia");
    assert_eq!(updated.cnpj.as_deref(), Some("11222333000181"));
    assert_eq!(updated.timezone, tz);

    let end = NaiveDate::from_ymd_opt(2026, 1, 31).unwrap();
    store.tenants().staff_set_licence(t.id, Some(end)).await.unwrap();
    let t2 = store.tenants().get(t.id).await.unwrap();
    assert_eq!(t2.licence().state_on(NaiveDate::from_ymd_opt(2026, 2, 1).unwrap()), LicenceState::Expired);
    store.tenants().staff_set_active(t.id, false).await.unwrap();
    assert!(!store.tenants().get(t.id).await.unwrap().active);

    let limits = TenantLimits { max_gateways: 1, max_devices: 2, max_users: 3 };
    store.tenants().staff_set_limits(t.id, limits).await.unwrap();
    assert_eq!(store.tenants().get(t.id).await.unwrap().limits, limits);
    assert!(matches!(
        store.tenants().staff_set_limits(t.id, TenantLimits { max_gateways: -1, ..limits }).await,
        Err(StoreError::Limit(_))
    ));
}

async fn usage_counts_what_the_limits_apply_to(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let g = fixtures::gateway(&store, t.id, "aa:bb:cc:00:00:01", "GW1").await;
    let d = fixtures::meter(&store, t.id, &g, "D01").await;
    fixtures::meter(&store, t.id, &g, "D02").await;
    store.devices().archive(t.id, d.id).await.unwrap();
    fixtures::member(&store, t.id, "ana@acme.com.br", tds_domain::Role::Admin).await;
    let usage = store.tenants().usage(t.id).await.unwrap();
    assert_eq!((usage.gateways, usage.active_devices, usage.users), (1, 1, 1));
}

conformance!(
    tenant_is_created_with_defaults_and_found_by_name,
    tenant_names_are_unique_ignoring_case,
    profile_licence_and_limits_are_updated,
    usage_counts_what_the_limits_apply_to,
);
