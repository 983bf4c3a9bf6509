use chrono::{Duration, Utc};
use tds_domain::limits::MaxDevices;
use tds_domain::{GatewayCode, GatewayStatus, Mac, Name, TenantId, TimeZone};
use tds_store::certificates::NewCertificate;
use tds_store::gateways::{Connection, GatewayFilter};
use tds_store::readings::NewReading;
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

async fn many_gateways_are_marked_seen_at_once_and_never_moved_back(store: Store) {
    let a = fixtures::tenant(&store, "Alpha").await;
    let b = fixtures::tenant(&store, "Beta").await;
    let now = Utc::now();
    // More than one statement's worth on SQLite (500 a statement), over several tenants (at most
    // 100 gateways each by default).
    let mut seen = Vec::new();
    let mut tenant = a.id;
    for i in 0..520_i64 {
        if i > 0 && i % 90 == 0 {
            tenant = fixtures::tenant(&store, &format!("T{i}")).await.id;
        }
        let mac = format!("aa:bb:cc:dd:{:02x}:{:02x}", i / 256, i % 256);
        let g = fixtures::gateway(&store, tenant, &mac, &format!("G{i}")).await;
        seen.push((tenant, g.id, now - Duration::seconds(i)));
    }
    let gb = fixtures::gateway(&store, b.id, "aa:bb:cc:ee:00:01", "B1").await;
    store.gateways().mark_seen(b.id, gb.id, now).await.unwrap();
    // Beta's gateway named under Alpha is skipped: it stays as it was.
    seen.push((a.id, gb.id, now + Duration::hours(1)));
    store.gateways().mark_seen_many(&seen).await.unwrap();
    for &(t, g, at) in &seen[..520] {
        let g = store.gateways().get(t, g).await.unwrap();
        assert_eq!((g.status, g.connection()), (GatewayStatus::Active, Connection::Online));
        assert_eq!(g.last_seen_at.map(|s| s.timestamp_micros()), Some(at.timestamp_micros()));
    }
    let other = store.gateways().get(b.id, gb.id).await.unwrap();
    assert_eq!(other.last_seen_at.map(|s| s.timestamp_micros()), Some(now.timestamp_micros()));
    // An older instant does not move last_seen_at back; a newer one moves it on.
    let first = seen[0];
    store
        .gateways()
        .mark_seen_many(&[(a.id, first.1, now - Duration::days(1)), (a.id, seen[1].1, now)])
        .await
        .unwrap();
    let g0 = store.gateways().get(a.id, first.1).await.unwrap();
    assert_eq!(g0.last_seen_at.map(|s| s.timestamp_micros()), Some(now.timestamp_micros()));
    let g1 = store.gateways().get(a.id, seen[1].1).await.unwrap();
    assert_eq!(g1.last_seen_at.map(|s| s.timestamp_micros()), Some(now.timestamp_micros()));
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

fn reading(device: tds_domain::DeviceId, time: chrono::DateTime<Utc>, value: f64) -> NewReading {
    NewReading { device_id: device, time, value, unit: "kWh".into() }
}

async fn issue_certificate(store: &Store, tenant: TenantId, g: &tds_store::gateways::Gateway) {
    let now = Utc::now();
    let cert = NewCertificate {
        mac: g.mac,
        serial: format!("0{}", g.id),
        fingerprint_sha256: format!("fp-{}", g.id),
        pem: "-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n".into(),
        key_algorithm: "RSA-2048".into(),
        issued_at: now,
        expires_at: now + Duration::days(365),
    };
    store.certificates().record_issued(tenant, g.id, &cert, false, None).await.unwrap();
}

async fn limits(store: &Store, tenant: TenantId, max_gateways: i64, max_devices: i64) {
    store
        .tenants()
        .staff_set_limits(tenant, TenantLimits { max_gateways, max_devices, max_users: 10 })
        .await
        .unwrap();
}

async fn transfer_with_devices_moves_them_and_leaves_past_readings_with_the_old_tenant(store: Store) {
    let a = fixtures::tenant(&store, "Alpha").await;
    let b = fixtures::tenant(&store, "Beta").await;
    let g = fixtures::gateway(&store, a.id, "aa:bb:cc:dd:ee:01", "GW1").await;
    let live = fixtures::meter(&store, a.id, &g, "D01").await;
    let archived = fixtures::meter(&store, a.id, &g, "D02").await;
    store.devices().archive(a.id, archived.id).await.unwrap();
    issue_certificate(&store, a.id, &g).await;
    let before = Utc::now() - Duration::hours(1);
    store.readings().insert(a.id, &[reading(live.id, before, 10.0)]).await.unwrap();

    let moved = store.gateways().staff_transfer(g.id, b.id, true, None).await.unwrap();
    assert_eq!((moved.id, moved.tenant_id, moved.code.as_str()), (g.id, b.id, "GW1"));
    assert!(matches!(store.gateways().get(a.id, g.id).await, Err(StoreError::NotFound)));
    assert_eq!(store.gateways().get(b.id, g.id).await.unwrap().tenant_id, b.id);
    assert_eq!(store.gateways().staff_by_mac(g.mac).await.unwrap().tenant_id, b.id);

    let devices = store.devices().list_for_gateway(b.id, g.id, true).await.unwrap();
    assert_eq!(devices.iter().map(|d| d.id).collect::<Vec<_>>(), vec![live.id, archived.id]);
    assert!(
        store.devices().get(b.id, live.id).await.unwrap().archived_at.is_none(),
        "live devices stay live"
    );
    assert!(store.devices().get(b.id, archived.id).await.unwrap().archived_at.is_some());
    assert!(matches!(store.devices().get(a.id, live.id).await, Err(StoreError::NotFound)));
    assert!(store.devices().list_for_gateway(a.id, g.id, true).await.unwrap().is_empty());

    let certs = store.certificates().for_gateway(b.id, g.id).await.unwrap();
    assert_eq!(certs.iter().map(|c| c.tenant_id).collect::<Vec<_>>(), vec![Some(b.id)]);
    assert!(store.certificates().for_gateway(a.id, g.id).await.unwrap().is_empty());

    // The reading taken under A stays A's; what the device measures from now on is B's.
    assert!(store.readings().latest(b.id, live.id, 10).await.unwrap().is_empty());
    let past = store.readings().latest(a.id, live.id, 10).await.unwrap();
    assert_eq!(past.iter().map(|r| (r.tenant_id, r.value)).collect::<Vec<_>>(), vec![(a.id, 10.0)]);
    store.readings().insert(b.id, &[reading(live.id, Utc::now(), 11.0)]).await.unwrap();
    let new = store.readings().latest(b.id, live.id, 10).await.unwrap();
    assert_eq!(new.iter().map(|r| (r.tenant_id, r.value)).collect::<Vec<_>>(), vec![(b.id, 11.0)]);
    assert!(matches!(
        store.readings().insert(a.id, &[reading(live.id, Utc::now(), 12.0)]).await,
        Err(StoreError::NotFound)
    ));
    let usage_b = store.tenants().usage(b.id).await.unwrap();
    assert_eq!((usage_b.gateways, usage_b.active_devices), (1, 1));
    let usage_a = store.tenants().usage(a.id).await.unwrap();
    assert_eq!((usage_a.gateways, usage_a.active_devices), (0, 0));
}

async fn transfer_without_devices_archives_them_in_the_old_tenant(store: Store) {
    let a = fixtures::tenant(&store, "Alpha").await;
    let b = fixtures::tenant(&store, "Beta").await;
    let g = fixtures::gateway(&store, a.id, "aa:bb:cc:dd:ee:01", "GW1").await;
    let d = fixtures::meter(&store, a.id, &g, "D01").await;
    let before = Utc::now() - Duration::hours(1);
    store.readings().insert(a.id, &[reading(d.id, before, 10.0)]).await.unwrap();

    let moved = store.gateways().staff_transfer(g.id, b.id, false, None).await.unwrap();
    assert_eq!(moved.tenant_id, b.id);

    let left = store.devices().get(a.id, d.id).await.unwrap();
    assert_eq!(left.tenant_id, a.id);
    assert!(left.archived_at.is_some(), "devices left behind are archived");
    assert!(store.devices().list(a.id).await.unwrap().is_empty());
    assert!(store.devices().list_for_gateway(b.id, g.id, true).await.unwrap().is_empty());
    // Still in A's reports, through A's (archived) device.
    let window = (before - Duration::minutes(1), Utc::now() + Duration::minutes(1));
    let in_a = store.readings().for_tenant(a.id, None, window.0, window.1, None, 10).await.unwrap();
    assert_eq!(in_a.iter().map(|r| (r.device_id, r.tenant_id)).collect::<Vec<_>>(), vec![(d.id, a.id)]);
    assert_eq!(store.readings().count_since(a.id, window.0).await.unwrap(), 1);
    assert_eq!(store.readings().count_since(b.id, window.0).await.unwrap(), 0);
    assert!(store.readings().for_tenant(b.id, None, window.0, window.1, None, 10).await.unwrap().is_empty());

    // The new owner starts with an empty gateway: the code is free there.
    let fresh = fixtures::meter(&store, b.id, &moved, "D01").await;
    assert_eq!((fresh.tenant_id, fresh.gateway_id), (b.id, g.id));
    assert_eq!(store.tenants().usage(a.id).await.unwrap().active_devices, 0);
}

async fn transfer_refuses_conflicts_and_changes_nothing(store: Store) {
    let a = fixtures::tenant(&store, "Alpha").await;
    let b = fixtures::tenant(&store, "Beta").await;
    let g = fixtures::gateway(&store, a.id, "aa:bb:cc:dd:ee:01", "GW1").await;
    let mut fields = fixtures::meter_fields("D01");
    fields.mac = Some(Mac::parse("11:22:33:44:55:66").unwrap());
    let dev = store.devices().create(a.id, g.id, &fields, None).await.unwrap();
    let gw = store.gateways();

    let same = gw.staff_transfer(g.id, a.id, true, None).await;
    assert!(matches!(same, Err(StoreError::Conflict(_))), "{same:?}");
    assert!(matches!(
        gw.staff_transfer(tds_domain::GatewayId::new(9999), b.id, true, None).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        gw.staff_transfer(g.id, TenantId::new(9999), true, None).await,
        Err(StoreError::NotFound)
    ));

    // B has a device with the same MAC: moving the devices would collide, leaving them would not.
    let gb = fixtures::gateway(&store, b.id, "bb:bb:bb:bb:bb:01", "GWB").await;
    let mut same_mac = fixtures::meter_fields("X01");
    same_mac.mac = fields.mac;
    store.devices().create(b.id, gb.id, &same_mac, None).await.unwrap();
    match gw.staff_transfer(g.id, b.id, true, None).await {
        Err(StoreError::Conflict(msg)) => assert!(msg.contains("11:22:33:44:55:66"), "{msg}"),
        other => panic!("expected a MAC conflict, got {other:?}"),
    }

    // Gamma has a gateway with the same code.
    let gamma = fixtures::tenant(&store, "Gamma").await;
    fixtures::gateway(&store, gamma.id, "cc:cc:cc:cc:cc:01", "GW1").await;
    match gw.staff_transfer(g.id, gamma.id, false, None).await {
        Err(StoreError::Conflict(msg)) => assert!(msg.contains("GW1"), "{msg}"),
        other => panic!("expected a code conflict, got {other:?}"),
    }

    assert_eq!(gw.get(a.id, g.id).await.unwrap().tenant_id, a.id, "refused transfers change nothing");
    let d_after = store.devices().get(a.id, dev.id).await.unwrap();
    assert!(d_after.archived_at.is_none());
    assert_eq!(d_after.tenant_id, a.id);

    // Without its devices the gateway may go to B.
    gw.staff_transfer(g.id, b.id, false, None).await.unwrap();
    assert!(store.devices().get(a.id, dev.id).await.unwrap().archived_at.is_some());
}

async fn transfer_respects_the_target_tenants_limits(store: Store) {
    let a = fixtures::tenant(&store, "Alpha").await;
    let b = fixtures::tenant(&store, "Beta").await;
    let g = fixtures::gateway(&store, a.id, "aa:bb:cc:dd:ee:01", "GW1").await;
    let d = fixtures::meter(&store, a.id, &g, "D01").await;
    let gb = fixtures::gateway(&store, b.id, "bb:bb:bb:bb:bb:01", "GWB").await;
    fixtures::meter(&store, b.id, &gb, "X01").await;
    let gw = store.gateways();

    limits(&store, b.id, 1, 10).await;
    match gw.staff_transfer(g.id, b.id, false, None).await {
        Err(StoreError::Limit(msg)) => assert!(msg.contains("limit of 1 gateways"), "{msg}"),
        other => panic!("expected the gateway limit, got {other:?}"),
    }

    limits(&store, b.id, 5, 1).await;
    match gw.staff_transfer(g.id, b.id, true, None).await {
        Err(StoreError::Limit(msg)) => assert!(msg.contains("limit of 1 active devices"), "{msg}"),
        other => panic!("expected the device limit, got {other:?}"),
    }
    assert_eq!(gw.get(a.id, g.id).await.unwrap().tenant_id, a.id, "refused transfers change nothing");
    assert!(store.devices().get(a.id, d.id).await.unwrap().archived_at.is_none());

    // Inactive devices do not count against the limit.
    let mut fields = fixtures::meter_fields("D01");
    fields.status = tds_domain::DeviceStatus::Inactive;
    store.devices().update(a.id, d.id, &fields).await.unwrap();
    let moved = gw.staff_transfer(g.id, b.id, true, None).await.unwrap();
    assert_eq!(moved.tenant_id, b.id);
    assert_eq!(store.devices().get(b.id, d.id).await.unwrap().tenant_id, b.id);

    // A decommissioned gateway takes no slot, so it can always be moved back.
    gw.decommission(b.id, g.id).await.unwrap();
    limits(&store, a.id, 0, 0).await;
    let back = gw.staff_transfer(g.id, a.id, true, None).await.unwrap();
    assert_eq!((back.tenant_id, back.status), (a.id, GatewayStatus::Decommissioned));
}

async fn gateways_silent_for_three_intervals_go_offline(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let quiet = fixtures::gateway(&store, t.id, "aa:00:00:00:00:01", "QUIET").await;
    let lively = fixtures::gateway(&store, t.id, "aa:00:00:00:00:02", "LIVELY").await;
    // Default interval: 300 s. One was last heard 16 minutes ago, the other 14.
    let now = Utc::now();
    store.gateways().mark_seen(t.id, quiet.id, now - Duration::minutes(16)).await.unwrap();
    store.gateways().mark_seen(t.id, lively.id, now - Duration::minutes(14)).await.unwrap();
    assert_eq!(store.gateways().staff_mark_silent_offline(now).await.unwrap(), 1);
    assert!(!store.gateways().get(t.id, quiet.id).await.unwrap().online);
    assert!(store.gateways().get(t.id, lively.id).await.unwrap().online);
    assert_eq!(store.gateways().staff_mark_silent_offline(now).await.unwrap(), 0, "idempotent");
    assert_eq!(store.gateways().get(t.id, quiet.id).await.unwrap().connection(), Connection::Offline);
}

async fn connection_history_is_kept_per_gateway_and_tenant(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let other = fixtures::tenant(&store, "Other").await;
    let g = fixtures::gateway(&store, t.id, "aa:00:00:00:00:01", "GW").await;
    let now = Utc::now();
    let events = store.gateway_events();
    events.record(t.id, g.id, "connected", "from 10.0.0.5", now - Duration::seconds(10)).await.unwrap();
    events.record(t.id, g.id, "disconnected", "keep_alive_timeout", now).await.unwrap();
    let recent = events.recent(t.id, g.id, 10).await.unwrap();
    assert_eq!(recent.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), ["disconnected", "connected"]);
    assert!(events.recent(other.id, g.id, 10).await.unwrap().is_empty(), "another tenant sees none");
}

/// The device endpoint's bookkeeping of many connections in one transaction: entries in order,
/// a gateway's last state wins, the telemetry instant of one going offline written with it,
/// and what names a gateway that does not exist is left out without failing the rest.
async fn a_batch_of_connection_bookkeeping_is_written_at_once(store: Store) {
    use tds_domain::GatewayId;
    use tds_store::gateway_events::{GatewayState, NewGatewayEvent};
    let t = fixtures::tenant(&store, "Acme").await;
    let one = fixtures::gateway(&store, t.id, "aa:00:00:00:00:01", "ONE").await;
    let two = fixtures::gateway(&store, t.id, "aa:00:00:00:00:02", "TWO").await;
    let gone = GatewayId::new(i64::from(i32::MAX));
    let now = Utc::now();
    let seen_at = now - Duration::seconds(5);
    let event = |gateway, kind: &str| NewGatewayEvent {
        tenant: t.id,
        gateway,
        kind: kind.to_owned(),
        detail: "127.0.0.1".to_owned(),
        at: now,
    };
    let state = |gateway, online, last_seen| GatewayState { tenant: t.id, gateway, online, last_seen };
    store
        .gateway_events()
        .record_connections(
            &[
                event(one.id, "connected"),
                event(gone, "connected"),
                event(one.id, "disconnected"),
                event(two.id, "connected"),
            ],
            &[
                state(one.id, true, None),
                state(two.id, true, None),
                state(gone, true, None),
                state(one.id, false, Some((t.id, seen_at))),
            ],
        )
        .await
        .unwrap();
    let recent = store.gateway_events().recent(t.id, one.id, 10).await.unwrap();
    assert_eq!(recent.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), ["disconnected", "connected"]);
    assert_eq!(store.gateway_events().recent(t.id, two.id, 10).await.unwrap().len(), 1);
    let one = store.gateways().get(t.id, one.id).await.unwrap();
    assert!(!one.online, "the last state of the batch wins");
    assert_eq!(one.last_seen_at.map(|at| at.timestamp_micros()), Some(seen_at.timestamp_micros()));
    assert_eq!(one.status, GatewayStatus::Active, "heard from: no longer pre-registered");
    assert!(store.gateways().get(t.id, two.id).await.unwrap().online);
}

/// The device endpoint's one read at a connection: the gateway with its tenant's settings and
/// only its live devices; another gateway's devices, a gateway without devices and an unknown
/// MAC each as they are.
async fn a_connecting_gateway_is_read_with_its_tenants_settings_and_live_devices(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let other = fixtures::tenant(&store, "Other").await;
    store
        .tenants()
        .update_profile(
            t.id,
            &Name::parse("name", "Acme").unwrap(),
            None,
            TimeZone::parse("America/Manaus").unwrap(),
        )
        .await
        .unwrap();
    store.tenants().staff_set_retention(t.id, 400).await.unwrap();
    let g = fixtures::gateway(&store, t.id, "aa:00:00:00:00:01", "G1").await;
    let b = fixtures::meter(&store, t.id, &g, "D02").await;
    let a = fixtures::meter(&store, t.id, &g, "D01").await;
    let gone = fixtures::meter(&store, t.id, &g, "D03").await;
    store.devices().archive(t.id, gone.id).await.unwrap();
    let elsewhere = fixtures::gateway(&store, t.id, "aa:00:00:00:00:02", "G2").await;
    fixtures::meter(&store, t.id, &elsewhere, "D09").await;
    let bare = fixtures::gateway(&store, other.id, "aa:00:00:00:00:03", "G3").await;

    let found = store.gateways().staff_connecting(g.mac).await.unwrap().expect("registered");
    assert_eq!((found.id, found.tenant_id, found.status), (g.id, t.id, GatewayStatus::PreRegistered));
    assert_eq!(found.timezone.name(), "America/Manaus");
    assert_eq!(found.retention(), Some(Duration::days(400)));
    let devices: Vec<_> = found.devices.iter().map(|d| (d.id, d.code.as_str(), &d.unit)).collect();
    assert_eq!(devices, vec![(a.id, "D01", &a.unit), (b.id, "D02", &b.unit)]);

    let found = store.gateways().staff_connecting(bare.mac).await.unwrap().expect("registered");
    assert_eq!((found.id, found.tenant_id), (bare.id, other.id));
    assert!(found.devices.is_empty(), "a gateway without devices is found all the same");
    assert_eq!(found.retention(), other.retention());
    assert_eq!(found.timezone, other.timezone);

    assert!(
        store.gateways().staff_connecting(Mac::parse("aa:00:00:00:00:04").unwrap()).await.unwrap().is_none()
    );
}

/// The endpoint's two writers of gateway rows run side by side on PostgreSQL: the connection
/// bookkeeping (a batch's last telemetry instants, then its states, in one transaction) and the
/// seen buffer's flush (every noted gateway in one statement). Each takes row locks on many
/// gateways; taken in different orders, two such transactions deadlock and PostgreSQL fails one
/// after a second (`tds bench ingest --storm`: a 1.2 s stall and a batch of states lost). Both
/// now lock their gateways in id order first.
async fn the_connection_bookkeeping_and_the_seen_flush_never_deadlock(store: Store) {
    use tds_domain::GatewayId;
    use tds_store::gateway_events::GatewayState;
    let t = fixtures::tenant(&store, "Acme").await;
    let mut ids: Vec<GatewayId> = Vec::new();
    for i in 0..60 {
        ids.push(
            fixtures::gateway(&store, t.id, &format!("aa:00:00:00:01:{i:02x}"), &format!("G{i}")).await.id,
        );
    }
    let (low, high) = ids.split_at(30);
    for round in 0..25_i64 {
        let at = Utc::now() + Duration::seconds(round);
        // The bookkeeping locks the later gateways first (their last instants), then the earlier
        // ones (their states); the flush names them all, the earlier first.
        let states: Vec<GatewayState> = high
            .iter()
            .map(|&g| GatewayState { tenant: t.id, gateway: g, online: false, last_seen: Some((t.id, at)) })
            .chain(low.iter().map(|&g| GatewayState {
                tenant: t.id,
                gateway: g,
                online: true,
                last_seen: None,
            }))
            .collect();
        let seen: Vec<_> = low.iter().chain(high.iter()).map(|&g| (t.id, g, at)).collect();
        let (events, gateways) = (store.gateway_events(), store.gateways());
        let (booked, flushed) =
            tokio::join!(events.record_connections(&[], &states), gateways.mark_seen_many(&seen));
        booked.unwrap();
        flushed.unwrap();
    }
}

conformance!(
    the_connection_bookkeeping_and_the_seen_flush_never_deadlock,
    a_connecting_gateway_is_read_with_its_tenants_settings_and_live_devices,
    a_batch_of_connection_bookkeeping_is_written_at_once,
    connection_history_is_kept_per_gateway_and_tenant,
    gateways_silent_for_three_intervals_go_offline,
    a_new_gateway_is_pre_registered_and_never_connected,
    first_telemetry_activates_and_marks_online,
    many_gateways_are_marked_seen_at_once_and_never_moved_back,
    mac_is_unique_across_tenants,
    import_is_all_or_nothing_and_reports_every_bad_row,
    gateway_limit_is_enforced,
    list_filters_searches_and_paginates,
    update_checks_code_and_capacity,
    decommissioned_gateways_take_no_new_devices,
    transfer_with_devices_moves_them_and_leaves_past_readings_with_the_old_tenant,
    transfer_without_devices_archives_them_in_the_old_tenant,
    transfer_refuses_conflicts_and_changes_nothing,
    transfer_respects_the_target_tenants_limits,
);
