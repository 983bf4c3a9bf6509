//! Tenant B tries to read, change and delete tenant A's rows through every tenant-scoped method,
//! using A's real ids, codes and MACs. Every attempt must fail or see nothing, and A's rows must be
//! unchanged afterwards. Removing the tenant filter from any of these queries fails this test.

use chrono::{Duration, Utc};
use tds_domain::{Email, Name, Role, TimeZone};
use tds_store::audit::{AuditFilter, NewAuditEntry};
use tds_store::gateways::GatewayFilter;
use tds_store::readings::NewReading;
use tds_store::rejected::NewRejected;
use tds_store::{Page, Store, StoreError};
use tds_testkit::{conformance, fixtures};

fn not_found<T: std::fmt::Debug>(what: &str, r: Result<T, StoreError>) {
    assert!(matches!(r, Err(StoreError::NotFound)), "{what}: expected NotFound, got {r:?}");
}

async fn another_tenant_cannot_read_change_or_delete_any_row(store: Store) {
    let a = fixtures::tenant(&store, "Alpha").await;
    let b = fixtures::tenant(&store, "Beta").await;
    let admin_a = fixtures::member(&store, a.id, "admin@alpha.com", Role::Admin).await;
    let viewer_a = fixtures::member(&store, a.id, "viewer@alpha.com", Role::Viewer).await;
    fixtures::member(&store, b.id, "admin@beta.com", Role::Admin).await;
    let ga = fixtures::gateway(&store, a.id, "aa:aa:aa:aa:aa:01", "GW1").await;
    let da = fixtures::meter(&store, a.id, &ga, "D01").await;
    let gb = fixtures::gateway(&store, b.id, "bb:bb:bb:bb:bb:01", "GWB").await;
    let now = Utc::now();
    store
        .readings()
        .insert(a.id, &[NewReading { device_id: da.id, time: now, value: 1.0, unit: "kWh".into() }])
        .await
        .unwrap();
    let dead = store
        .rejected()
        .record(&[NewRejected {
            tenant_id: Some(a.id),
            gateway_id: Some(ga.id),
            mac: Some(ga.mac),
            topic: "t".into(),
            payload: b"x".to_vec(),
            payload_size: None,
            reading_index: None,
            reason_code: "invalid_json".into(),
            reason: "r".into(),
            received_at: now,
        }])
        .await
        .unwrap()[0];
    store
        .audit()
        .record(&NewAuditEntry {
            tenant_id: Some(a.id),
            user_id: Some(admin_a.id),
            actor: "admin@alpha.com".into(),
            action: "gateway.create".into(),
            object_kind: "gateway".into(),
            object_id: Some(ga.id.to_string()),
            detail: "{}".into(),
            ip: None,
        })
        .await
        .unwrap();
    let invite_a = store
        .user_tokens()
        .create_invite(
            a.id,
            &Email::parse("new@alpha.com").unwrap(),
            Role::Editor,
            "invite-a",
            now + Duration::days(7),
            Some(admin_a.id),
        )
        .await
        .unwrap();

    // Memberships
    assert_eq!(store.memberships().role(b.id, admin_a.id).await.unwrap(), None);
    not_found("set_role", store.memberships().set_role(b.id, viewer_a.id, Role::Admin).await);
    not_found("remove member", store.memberships().remove(b.id, viewer_a.id).await);
    assert!(store.memberships().members(b.id).await.unwrap().iter().all(|m| m.user.id != admin_a.id));

    // Invitations
    not_found("revoke invite", store.user_tokens().revoke_invite(b.id, invite_a.id).await);
    assert!(store.user_tokens().pending_invites(b.id, now).await.unwrap().is_empty());

    // Tenant profile: B's update touches only B.
    store
        .tenants()
        .update_profile(b.id, &Name::parse("name", "Beta 2").unwrap(), None, TimeZone::default())
        .await
        .unwrap();
    assert_eq!(store.tenants().get(a.id).await.unwrap().name.as_str(), "Alpha");

    // Gateways
    let gw = store.gateways();
    not_found("gateway get", gw.get(b.id, ga.id).await);
    not_found("gateway by_code", gw.by_code(b.id, &ga.code).await);
    not_found("gateway by_mac", gw.by_mac(b.id, ga.mac).await);
    not_found("gateway update", gw.update(b.id, ga.id, &fixtures::gateway_fields("STOLEN")).await);
    not_found("gateway decommission", gw.decommission(b.id, ga.id).await);
    not_found("gateway mark_seen", gw.mark_seen(b.id, ga.id, now).await);
    let listed = gw.list(b.id, &GatewayFilter::default(), Page::default()).await.unwrap();
    assert_eq!(listed.items.iter().map(|g| g.id).collect::<Vec<_>>(), vec![gb.id]);
    let search = GatewayFilter { search: Some("aa:aa".into()), ..Default::default() };
    assert_eq!(gw.list(b.id, &search, Page::default()).await.unwrap().total, 0);

    // Devices
    let dv = store.devices();
    not_found("device get", dv.get(b.id, da.id).await);
    not_found("device by_code", dv.by_code(b.id, ga.id, &da.code).await);
    not_found("device update", dv.update(b.id, da.id, &fixtures::meter_fields("D09")).await);
    not_found("device archive", dv.archive(b.id, da.id).await);
    not_found(
        "device create on A's gateway",
        dv.create(b.id, ga.id, &fixtures::meter_fields("D09"), None).await,
    );
    assert!(dv.list_for_gateway(b.id, ga.id, true).await.unwrap().is_empty());
    assert!(dv.list(b.id).await.unwrap().is_empty());

    // Readings
    let rd = store.readings();
    let foreign =
        NewReading { device_id: da.id, time: now + Duration::seconds(1), value: 666.0, unit: "kWh".into() };
    not_found("reading insert on A's device", rd.insert(b.id, &[foreign]).await);
    assert!(
        rd.for_device(b.id, da.id, now - Duration::hours(1), now + Duration::hours(1), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(rd.latest(b.id, da.id, 10).await.unwrap().is_empty());
    assert!(
        rd.for_tenant(b.id, None, now - Duration::hours(1), now + Duration::hours(1), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        rd.for_tenant(b.id, Some(ga.id), now - Duration::hours(1), now + Duration::hours(1), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(rd.count_since(b.id, now - Duration::hours(1)).await.unwrap(), 0);

    // Dead letters and audit
    not_found("rejected get", store.rejected().get(b.id, dead).await);
    not_found("rejected mark_replayed", store.rejected().mark_replayed(b.id, dead, "x").await);
    assert_eq!(store.rejected().list(b.id, None, Page::default()).await.unwrap().total, 0);
    assert_eq!(store.rejected().count_since(b.id, now - Duration::hours(1)).await.unwrap(), 0);
    assert_eq!(store.audit().list(b.id, &AuditFilter::default(), Page::default()).await.unwrap().total, 0);

    // A's rows are untouched.
    let ga_after = store.gateways().get(a.id, ga.id).await.unwrap();
    assert_eq!((ga_after.code.as_str(), ga_after.online), ("GW1", false));
    let da_after = store.devices().get(a.id, da.id).await.unwrap();
    assert!(da_after.archived_at.is_none());
    assert_eq!(da_after.code.as_str(), "D01");
    assert_eq!(store.readings().latest(a.id, da.id, 10).await.unwrap().len(), 1);
    assert_eq!(store.memberships().members(a.id).await.unwrap().len(), 2);
    assert!(store.rejected().get(a.id, dead).await.unwrap().replayed_at.is_none());
    let pending = store.user_tokens().pending_invites(a.id, now).await.unwrap();
    assert_eq!(pending.iter().map(|t| t.id).collect::<Vec<_>>(), vec![invite_a.id]);
}

conformance!(another_tenant_cannot_read_change_or_delete_any_row);
