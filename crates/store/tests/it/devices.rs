use tds_domain::limits::MaxDevices;
use tds_domain::{DeviceCode, DeviceStatus, DeviceType, Mac, ValidationError};
use tds_store::tenants::TenantLimits;
use tds_store::{Store, StoreError};
use tds_testkit::{conformance, fixtures};

async fn a_gateway_takes_no_more_active_devices_than_its_maximum(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let mut fields = fixtures::gateway_fields("GW1");
    fields.max_devices = MaxDevices::new(2).unwrap();
    let g =
        store.gateways().create(t.id, Mac::parse("aa:bb:cc:dd:ee:01").unwrap(), &fields, None).await.unwrap();
    fixtures::meter(&store, t.id, &g, "D01").await;
    fixtures::meter(&store, t.id, &g, "D02").await;
    let third = store.devices().create(t.id, g.id, &fixtures::meter_fields("D03"), None).await;
    match third {
        Err(StoreError::Limit(msg)) => assert!(msg.contains("maximum is 2"), "{msg}"),
        other => panic!("expected limit, got {other:?}"),
    }
    // An inactive device does not count, but cannot then be activated while the gateway is full.
    let mut inactive = fixtures::meter_fields("D03");
    inactive.status = DeviceStatus::Inactive;
    let d3 = store.devices().create(t.id, g.id, &inactive, None).await.unwrap();
    let activate = fixtures::meter_fields("D03");
    assert!(matches!(store.devices().update(t.id, d3.id, &activate).await, Err(StoreError::Limit(_))));
}

async fn archiving_frees_capacity_and_code_but_keeps_the_device(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let mut fields = fixtures::gateway_fields("GW1");
    fields.max_devices = MaxDevices::new(1).unwrap();
    let g =
        store.gateways().create(t.id, Mac::parse("aa:bb:cc:dd:ee:01").unwrap(), &fields, None).await.unwrap();
    let d1 = fixtures::meter(&store, t.id, &g, "D01").await;
    store.devices().archive(t.id, d1.id).await.unwrap();
    assert!(matches!(store.devices().archive(t.id, d1.id).await, Err(StoreError::NotFound)));
    let again = fixtures::meter(&store, t.id, &g, "D01").await;
    assert_ne!(again.id, d1.id);
    let live = store.devices().list_for_gateway(t.id, g.id, false).await.unwrap();
    assert_eq!(live.iter().map(|d| d.id).collect::<Vec<_>>(), vec![again.id]);
    let all = store.devices().list_for_gateway(t.id, g.id, true).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(store.devices().get(t.id, d1.id).await.unwrap().archived_at.is_some());
    let by_code = store.devices().by_code(t.id, g.id, &DeviceCode::parse("d01").unwrap()).await.unwrap();
    assert_eq!(by_code.id, again.id);
}

async fn the_tenant_device_limit_is_enforced(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    store
        .tenants()
        .staff_set_limits(t.id, TenantLimits { max_gateways: 5, max_devices: 1, max_users: 5 })
        .await
        .unwrap();
    let g = fixtures::gateway(&store, t.id, "aa:bb:cc:dd:ee:01", "GW1").await;
    fixtures::meter(&store, t.id, &g, "D01").await;
    let err = store.devices().create(t.id, g.id, &fixtures::meter_fields("D02"), None).await;
    assert!(matches!(err, Err(StoreError::Limit(msg)) if msg.contains("tenant")));
}

async fn a_meter_needs_its_modbus_address(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let g = fixtures::gateway(&store, t.id, "aa:bb:cc:dd:ee:01", "GW1").await;
    let mut fields = fixtures::meter_fields("D01");
    fields.slave_id = None;
    let err = store.devices().create(t.id, g.id, &fields, None).await;
    assert!(matches!(err, Err(StoreError::Invalid(ValidationError::Required { field: "Modbus slave id" }))));
    fields.device_type = DeviceType::Sensor;
    store.devices().create(t.id, g.id, &fields, None).await.unwrap();
    let mut meter = fixtures::meter_fields("D02");
    meter.register = None;
    assert_eq!(meter.check(), Err(ValidationError::Required { field: "Modbus register" }));
}

async fn device_codes_are_unique_per_gateway_and_macs_per_tenant(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let g1 = fixtures::gateway(&store, t.id, "aa:bb:cc:dd:ee:01", "GW1").await;
    let g2 = fixtures::gateway(&store, t.id, "aa:bb:cc:dd:ee:02", "GW2").await;
    fixtures::meter(&store, t.id, &g1, "D01").await;
    fixtures::meter(&store, t.id, &g2, "D01").await;
    let dup = store.devices().create(t.id, g1.id, &fixtures::meter_fields("d01"), None).await;
    assert!(matches!(dup, Err(StoreError::Conflict(msg)) if msg.contains("D01")));

    let mut with_mac = fixtures::meter_fields("D02");
    with_mac.mac = Some(Mac::parse("11:22:33:44:55:66").unwrap());
    store.devices().create(t.id, g1.id, &with_mac, None).await.unwrap();
    with_mac.code = DeviceCode::parse("D03").unwrap();
    assert!(matches!(
        store.devices().create(t.id, g2.id, &with_mac, None).await,
        Err(StoreError::Conflict(_))
    ));
}

async fn device_import_is_all_or_nothing(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let g = fixtures::gateway(&store, t.id, "aa:bb:cc:dd:ee:01", "GW1").await;
    let other = fixtures::tenant(&store, "Other").await;
    let foreign = fixtures::gateway(&store, other.id, "aa:bb:cc:dd:ee:09", "GW9").await;
    let rows = vec![
        (g.id, fixtures::meter_fields("D01")),
        (g.id, fixtures::meter_fields("D01")),
        (foreign.id, fixtures::meter_fields("D02")),
    ];
    let Err(StoreError::Import(errors)) = store.devices().import(t.id, &rows, None).await else {
        panic!("import should be refused")
    };
    assert_eq!(errors.iter().map(|e| e.row).collect::<Vec<_>>(), vec![2, 3], "{errors:?}");
    assert!(errors[1].message.contains("gateway not found"));
    assert!(store.devices().list(t.id).await.unwrap().is_empty());
}

conformance!(
    a_gateway_takes_no_more_active_devices_than_its_maximum,
    archiving_frees_capacity_and_code_but_keeps_the_device,
    the_tenant_device_limit_is_enforced,
    a_meter_needs_its_modbus_address,
    device_codes_are_unique_per_gateway_and_macs_per_tenant,
    device_import_is_all_or_nothing,
);
