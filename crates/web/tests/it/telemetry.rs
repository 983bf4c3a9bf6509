//! Telemetria over HTTP: the device picker's search and limit, and device ids of another tenant
//! in the page's and the chart data's query strings (the browser test draws the charts).

use crate::support::TestApp;
use tds_domain::Role;
use tds_testkit::{TestDb, fixtures, per_backend};

/// The checkbox of a device in the picker, checked or not.
fn pick(id: impl std::fmt::Display) -> String {
    format!("id=\"pick-{id}\"")
}

async fn the_device_picker_searches_and_keeps_the_selection(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("Alfa").await;
    app.user("ana@example.com", Some((t.id, Role::Viewer))).await;
    // 7 gateways of 30 meters: more than the picker lists at once.
    let mut devices = Vec::new();
    for g in 0..7 {
        let mut fields = fixtures::gateway_fields(&format!("GW-{g}"));
        fields.max_devices = tds_domain::limits::MaxDevices::new(32).unwrap();
        let mac = tds_domain::Mac::parse(&format!("aa:00:00:00:00:0{g}")).unwrap();
        let gw = app.store.gateways().create(t.id, mac, &fields, None).await.unwrap();
        let rows: Vec<_> = (0..30).map(|d| (gw.id, fixtures::meter_fields(&format!("M{d:02}")))).collect();
        devices.extend(app.store.devices().import(t.id, &rows, None).await.unwrap());
    }
    let c = app.login("ana@example.com").await;

    let page = c.get("/telemetry").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.body.matches("name=\"device\"").count(), 200, "the first 200 devices");
    assert!(page.has("id=\"picker-more\""), "and a hint that there are more");
    assert!(page.has(&format!("{} checked", pick(devices[0].id))), "the first meter is shown at once");

    // A search narrows the list; the selection stays listed and checked.
    let chosen = &devices[200];
    let page = c.get(&format!("/telemetry?q=gw-2&device={}", chosen.id)).await;
    assert_eq!(page.body.matches("name=\"device\"").count(), 31, "GW-2's 30 meters and the selection");
    assert!(page.has(&format!("{} checked", pick(chosen.id))), "selected, though not on GW-2");
    assert!(!page.has("id=\"picker-more\""));
    assert!(page.has("value=\"gw-2\""), "the search box keeps its text");
    assert!(page.has(&format!("/telemetry/data?period=24h&#38;device={}", chosen.id)), "{}", page.body);

    let page = c.get("/telemetry?q=nothing-like-this").await;
    assert_eq!(page.body.matches("name=\"device\"").count(), 0);
    assert!(page.has("No device matches the search.") || page.has("Nenhum dispositivo corresponde à busca."));
}

async fn another_tenants_device_ids_show_nothing_on_the_telemetry_page_or_its_data(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let a = app.tenant("A").await;
    let b = app.tenant("B").await;
    app.user("eve@example.com", Some((b.id, Role::Admin))).await;
    let gw = fixtures::gateway(&app.store, a.id, "aa:00:00:00:00:01", "SECRET-GW").await;
    let secret = fixtures::meter(&app.store, a.id, &gw, "D01").await;
    let reading = tds_store::readings::NewReading {
        device_id: secret.id,
        time: chrono::Utc::now() - chrono::Duration::minutes(5),
        value: 4242.0,
        unit: secret.unit.clone().into_cow(),
    };
    app.store.readings().insert(a.id, &[reading]).await.unwrap();
    let own_gw = fixtures::gateway(&app.store, b.id, "bb:00:00:00:00:01", "EVE-GW").await;
    let own = fixtures::meter(&app.store, b.id, &own_gw, "E01").await;
    let eve = app.login("eve@example.com").await;

    let page = eve.get(&format!("/telemetry?device={}&q=SECRET", secret.id)).await;
    assert_eq!(page.status, 200);
    assert!(!page.has("SECRET-GW") && !page.has(&pick(secret.id)) && !page.has("4242"), "{}", page.body);
    let page = eve.get(&format!("/telemetry/data?device={}&device={}", secret.id, own.id)).await;
    assert_eq!(page.status, 200);
    let data: serde_json::Value = serde_json::from_str(&page.body).unwrap();
    let series = data["series"].as_array().unwrap();
    assert_eq!(series.len(), 1, "only Eve's own device: {data}");
    assert_eq!(series[0]["device"], own.id.get());
    assert!(!page.has("4242") && !page.has("SECRET"));
}

per_backend!(
    the_device_picker_searches_and_keeps_the_selection,
    another_tenants_device_ids_show_nothing_on_the_telemetry_page_or_its_data,
);
