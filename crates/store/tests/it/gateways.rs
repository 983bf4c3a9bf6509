use chrono::Utc;
use tds_domain::limits::MaxDevices;
use tds_domain::{GatewayCode, GatewayStatus, Mac, Name};
use tds_store::gateways::{Connection, GatewayFilter};
use tds_store::tenants::TenantLimits;
use tds_store::{Page, Store, StoreError};
use tds_testkit::{conformance, fixtures};

async fn a_new_gateway_is_pre_registered_and_never_connected(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let g = fixtures::gateway(&store, t.id, "AA-BB-CC-DD-EE-01", "gw-1").await;
    assert_eq!(g.mac.to_string(), "aa:bb:cc:dd:ee:01");
    assert_eq!(g.code.as_str(), "GW-1");
    assert_eq!(g.status, GatewayStatus::PreRegistered);
    assert_eq!(g.connection(), Connection::NeverConnected);
    assert_eq!(g.max_devices, 8);
    assert_eq!(g.expected_interval_s, 300);
    assert_eq!(store.gateways().by_code(t.id, &GatewayCode::parse("gw-1").unwrap()).await.unwrap().id, g.id);
    assert_eq!(store.gateways().staff_by_mac(g.mac).await.unwrap().id, g.id);
}

async fn first_telemetry_activates_and_marks_online(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let g = fixtures::gateway(&store, t.id, "aa:bb:cc:dd:ee:01", "GW1").await;
    store.gateways().mark_seen(t.id, g.id, Utc::now()).await.unwrap();
    let g = store.gateways().get(t.id, g.id).await.unwrap();
    assert_eq!(g.status, GatewayStatus::Active);
    assert_eq!(g.connection(), Connection::Online);
}

async fn mac_is_unique_across_tenants(store: Store) {
    let a = fixtures::tenant(&store, "Alpha").await;
    let b = fixtures::tenant(&store, "Beta").await;
    fixtures::gateway(&store, a.id, "aa:bb:cc:dd:ee:01", "GW1").await;
    let err = store
        .gateways()
        .create(b.id, Mac::parse("AA:BB:CC:DD:EE:01").unwrap(), &fixtures::gateway_fields("GW1"), None)
        .await;
    match err {
        Err(StoreError::Conflict(msg)) => assert!(msg.contains("aa:bb:cc:dd:ee:01"), "{msg}"),
        other => panic!("expected conflict, got {other:?}"),
    }
}

async fn import_is_all_or_nothing_and_reports_every_bad_row(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    fixtures::gateway(&store, t.id, "aa:bb:cc:dd:ee:01", "TAKEN").await;
    let rows = vec![
        (Mac::parse("aa:bb:cc:dd:ee:02").unwrap(), fixtures::gateway_fields("NEW1")),
        (Mac::parse("aa:bb:cc:dd:ee:01").unwrap(), fixtures::gateway_fields("NEW2")),
        (Mac::parse("aa:bb:cc:dd:ee:03").unwrap(), fixtures::gateway_fields("TAKEN")),
        (Mac::parse("aa:bb:cc:dd:ee:02").unwrap(), fixtures::gateway_fields("NEW4")),
    ];
    let Err(StoreError::Import(errors)) = store.gateways().import(t.id, &rows, None).await else {
        panic!("import should be refused")
    };
    let rows_with_errors: Vec<usize> = errors.iter().map(|e| e.row).collect();
    assert_eq!(rows_with_errors, vec![2, 3, 4], "{errors:?}");
    let all = store.gateways().list(t.id, &GatewayFilter::default(), Page::default()).await.unwrap();
    assert_eq!(all.total, 1, "nothing of the refused import may be written");

    let good = &rows[..1];
    assert_eq!(store.gateways().import(t.id, good, None).await.unwrap().len(), 1);
}

async fn gateway_limit_is_enforced(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    store
        .tenants()
        .staff_set_limits(t.id, TenantLimits { max_gateways: 1, max_devices: 10, max_users: 10 })
        .await
        .unwrap();
    fixtures::gateway(&store, t.id, "aa:bb:cc:dd:ee:01", "GW1").await;
    let err = store
        .gateways()
        .create(t.id, Mac::parse("aa:bb:cc:dd:ee:02").unwrap(), &fixtures::gateway_fields("GW2"), None)
        .await;
    assert!(matches!(err, Err(StoreError::Limit(_))), "{err:?}");
}

async fn list_filters_searches_and_paginates(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    for i in 1..=12 {
        fixtures::gateway(&store, t.id, &format!("aa:bb:cc:dd:ee:{i:02x}"), &format!("GW{i:02}")).await;
    }
    let g5 = store.gateways().by_code(t.id, &GatewayCode::parse("GW05").unwrap()).await.unwrap();
    store.gateways().mark_seen(t.id, g5.id, Utc::now()).await.unwrap();

    let page2 = store.gateways().list(t.id, &GatewayFilter::default(), Page::new(2, 5)).await.unwrap();
    assert_eq!((page2.total, page2.items.len(), page2.pages()), (12, 5, 3));
    assert_eq!(page2.items[0].code.as_str(), "GW06");

    let online = GatewayFilter { connection: Some(Connection::Online), ..Default::default() };
    let found = store.gateways().list(t.id, &online, Page::default()).await.unwrap();
    assert_eq!(found.items.iter().map(|g| g.code.as_str()).collect::<Vec<_>>(), vec!["GW05"]);

    let never = GatewayFilter { connection: Some(Connection::NeverConnected), ..Default::default() };
    assert_eq!(store.gateways().list(t.id, &never, Page::default()).await.unwrap().total, 11);

    let active = GatewayFilter { status: Some(GatewayStatus::Active), ..Default::default() };
    assert_eq!(store.gateways().list(t.id, &active, Page::default()).await.unwrap().total, 1);

    let by_mac = GatewayFilter { search: Some("EE:0A".into()), ..Default::default() };
    let hits = store.gateways().list(t.id, &by_mac, Page::default()).await.unwrap();
    assert_eq!(hits.items.iter().map(|g| g.code.as_str()).collect::<Vec<_>>(), vec!["GW10"]);

    let by_code = GatewayFilter { search: Some("gw1".into()), ..Default::default() };
    assert_eq!(store.gateways().list(t.id, &by_code, Page::default()).await.unwrap().total, 3);
}

async fn update_checks_code_and_capacity(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let g1 = fixtures::gateway(&store, t.id, "aa:bb:cc:dd:ee:01", "GW1").await;
    fixtures::gateway(&store, t.id, "aa:bb:cc:dd:ee:02", "GW2").await;
    fixtures::meter(&store, t.id, &g1, "D01").await;
    fixtures::meter(&store, t.id, &g1, "D02").await;

    let mut fields = fixtures::gateway_fields("GW1");
    fields.name = Name::parse("name", "Bloco A").unwrap();
    let updated = store.gateways().update(t.id, g1.id, &fields).await.unwrap();
    assert_eq!(updated.name.as_str(), "Bloco A");

    let taken = fixtures::gateway_fields("GW2");
    assert!(matches!(store.gateways().update(t.id, g1.id, &taken).await, Err(StoreError::Conflict(_))));

    fields.max_devices = MaxDevices::new(1).unwrap();
    assert!(matches!(store.gateways().update(t.id, g1.id, &fields).await, Err(StoreError::Limit(_))));
    assert_eq!(
        store.gateways().get(t.id, g1.id).await.unwrap().max_devices,
        8,
        "refused update must not stick"
    );
}

async fn decommissioned_gateways_take_no_new_devices(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let g = fixtures::gateway(&store, t.id, "aa:bb:cc:dd:ee:01", "GW1").await;
    store.gateways().decommission(t.id, g.id).await.unwrap();
    assert_eq!(store.gateways().get(t.id, g.id).await.unwrap().status, GatewayStatus::Decommissioned);
    let err = store.devices().create(t.id, g.id, &fixtures::meter_fields("D01"), None).await;
    assert!(matches!(err, Err(StoreError::Limit(_))), "{err:?}");
}

conformance!(
    a_new_gateway_is_pre_registered_and_never_connected,
    first_telemetry_activates_and_marks_online,
    mac_is_unique_across_tenants,
    import_is_all_or_nothing_and_reports_every_bad_row,
    gateway_limit_is_enforced,
    list_filters_searches_and_paginates,
    update_checks_code_and_capacity,
    decommissioned_gateways_take_no_new_devices,
);
