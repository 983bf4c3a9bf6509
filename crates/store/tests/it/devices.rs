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

/// The telemetry picker: search by gateway code, device code or name, the selection always listed
/// first, archived devices and other tenants' devices never.
async fn the_picker_searches_the_tenants_live_devices_and_lists_the_selection_first(store: Store) {
    let acme = fixtures::tenant(&store, "Acme").await;
    let beta = fixtures::tenant(&store, "Beta").await;
    let north = fixtures::gateway(&store, acme.id, "aa:bb:cc:dd:ee:01", "NORTH").await;
    let south = fixtures::gateway(&store, acme.id, "aa:bb:cc:dd:ee:02", "SOUTH").await;
    let n1 = fixtures::meter(&store, acme.id, &north, "D01").await;
    let n2 = fixtures::meter(&store, acme.id, &north, "D02").await;
    let mut pump = fixtures::meter_fields("P01");
    pump.name = tds_domain::Name::parse("name", "Bomba do poço").unwrap();
    let s1 = store.devices().create(acme.id, south.id, &pump, None).await.unwrap();
    let gone = fixtures::meter(&store, acme.id, &south, "D09").await;
    store.devices().archive(acme.id, gone.id).await.unwrap();
    let beta_gw = fixtures::gateway(&store, beta.id, "aa:bb:cc:dd:ee:03", "NORTH-B").await;
    let foreign = fixtures::meter(&store, beta.id, &beta_gw, "D01").await;

    let listed = |choices: Vec<tds_store::devices::DeviceChoice>| {
        choices.into_iter().map(|c| (c.gateway_code, c.device.code.to_string())).collect::<Vec<_>>()
    };
    let pair = |g: &str, d: &str| (g.to_owned(), d.to_owned());
    let picker = store.devices();
    // Blank search: every live device of the tenant, by gateway code then code.
    assert_eq!(
        listed(picker.picker(acme.id, " ", &[], 50).await.unwrap()),
        [pair("NORTH", "D01"), pair("NORTH", "D02"), pair("SOUTH", "P01")]
    );
    // By gateway code (case-insensitive), device code, and name.
    assert_eq!(listed(picker.picker(acme.id, "north", &[], 50).await.unwrap()).len(), 2);
    assert_eq!(listed(picker.picker(acme.id, "p01", &[], 50).await.unwrap()), [pair("SOUTH", "P01")]);
    assert_eq!(listed(picker.picker(acme.id, "bomba", &[], 50).await.unwrap()), [pair("SOUTH", "P01")]);
    // LIKE wildcards are not wildcards.
    assert!(picker.picker(acme.id, "%", &[], 50).await.unwrap().len() == 3, "a lone % is a blank search");
    // The selection comes first whatever the search and the limit.
    assert_eq!(
        listed(picker.picker(acme.id, "north", &[s1.id], 1).await.unwrap()),
        [pair("SOUTH", "P01")],
        "the selected device is listed even when the search and the limit leave it out"
    );
    assert_eq!(
        listed(picker.picker(acme.id, "", &[n2.id], 2).await.unwrap()),
        [pair("NORTH", "D02"), pair("NORTH", "D01")]
    );
    // Archived devices and other tenants' devices are never listed, not even by id.
    let ids = [gone.id, foreign.id, n1.id];
    assert_eq!(listed(picker.choices_by_id(acme.id, &ids).await.unwrap()), [pair("NORTH", "D01")]);
    assert!(
        picker.picker(acme.id, "NORTH-B", &[foreign.id], 50).await.unwrap().is_empty(),
        "another tenant's gateway is not searched"
    );
    assert!(picker.picker(acme.id, "D09", &[], 50).await.unwrap().is_empty(), "archived");
}

conformance!(
    a_gateway_takes_no_more_active_devices_than_its_maximum,
    archiving_frees_capacity_and_code_but_keeps_the_device,
    the_tenant_device_limit_is_enforced,
    a_meter_needs_its_modbus_address,
    device_codes_are_unique_per_gateway_and_macs_per_tenant,
    device_import_is_all_or_nothing,
    the_picker_searches_the_tenants_live_devices_and_lists_the_selection_first,
);
