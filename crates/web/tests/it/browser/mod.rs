//! Headless Chromium against the real server: logging in, creating a gateway and a device
//! through the forms (with a validation error on the way), switching language, the home page's
//! styles, icons and scripts, a screenshot that is not blank, and the menu on a phone.
//!
//! Each test starts its own `chromedriver` (Debian `chromium-driver`) on a free port, with a fresh
//! Chromium profile; the driver and its browser are killed when the test ends, pass or fail.
//! Without Chromium the tests are skipped with a note, unless `TDS_REQUIRE_BROWSER=1` (set by
//! scripts/test.sh), which makes them fail instead.

mod alerts;
mod kit;
mod reports;

use crate::support::{PASSWORD, TestApp};
use kit::{Browser, Screenshot};
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};
use tds_domain::Role;
use tds_testkit::{TestDb, fixtures};

/// How long a page may take to show what a test waits for.
pub(super) const WAIT: Duration = Duration::from_secs(10);

/// Desktop and phone viewports (CSS pixels).
pub(super) const DESKTOP: (u32, u32) = (1280, 900);
const PHONE: (u32, u32) = (390, 844);

#[tokio::test]
async fn an_editor_logs_in_creates_a_gateway_and_a_device_through_the_forms() {
    let app = TestApp::spawn(TestDb::sqlite().await).await;
    let t = app.tenant("Águas do Vale").await;
    app.user("edu@example.com", Some((t.id, Role::Editor))).await;
    let Some(b) = Browser::open(&app, DESKTOP).await else { return };

    // Anonymous visitors land on the login page; a wrong password says so.
    b.goto("/").await;
    b.find("#email").await;
    assert_eq!(b.path().await, "/login");
    b.fill("email", "edu@example.com").await;
    b.fill("password", "not the password").await;
    b.click("#login-submit").await;
    assert_eq!(b.text("#login-error").await, "E-mail ou senha incorretos.");
    assert_eq!(b.value("email").await, "edu@example.com", "the email stays in the form");

    b.fill("password", PASSWORD).await;
    b.click("#login-submit").await;
    b.find("#home-figures").await;
    assert_eq!(b.path().await, "/");
    assert!(b.text("#tenant-switch").await.contains("Águas do Vale"));

    // Through the sidebar to the gateways, then the "new gateway" button.
    b.click("#sidebar a[href='/gateways']").await;
    b.click("#new-gateway").await;
    b.find("#gateway-form").await;
    b.fill("mac", "aa:bb:cc:00:00:zz").await;
    b.fill("code", "GW-1").await;
    b.fill("name", "Estação Norte").await;
    b.fill("max_devices", "4").await;
    b.click("#save").await;

    // The wrong MAC is named next to its field, visibly, and what was typed stays.
    let error = b.find("#mac-error").await;
    assert!(error.is_displayed().await.unwrap(), "the message is shown, not just in the HTML");
    let message = error.text().await.unwrap();
    assert!(message.contains("MAC inválido"), "{message}");
    assert!(b.find("#mac").await.attr("class").await.unwrap().unwrap_or_default().contains("is-invalid"));
    assert_eq!(b.value("code").await, "GW-1");
    assert_eq!(b.value("name").await, "Estação Norte");
    assert_eq!(b.value("max_devices").await, "4");
    assert_eq!(
        app.store.gateways().list(t.id, &Default::default(), tds_store::Page::default()).await.unwrap().total,
        0,
        "nothing is stored"
    );

    b.fill("mac", "AA:BB:CC:00:00:01").await;
    b.click("#save").await;
    assert_eq!(b.text("#gateway-title").await, "GW-1 · Estação Norte");
    let gateways =
        app.store.gateways().list(t.id, &Default::default(), tds_store::Page::default()).await.unwrap();
    assert_eq!(gateways.total, 1);
    let gw = &gateways.items[0];
    assert_eq!(gw.mac.to_string(), "aa:bb:cc:00:00:01");
    assert_eq!(gw.max_devices, 4);
    assert_eq!(b.path().await, format!("/gateways/{}", gw.id));

    // A gas meter on that gateway, choosing from the selects.
    b.click("#new-device").await;
    b.find("#device-form").await;
    b.fill("code", "D01").await;
    b.fill("name", "Medidor do térreo").await;
    b.select("medium", "gas").await;
    b.select("mode", "MANUAL").await;
    b.fill("slave_id", "7").await;
    b.fill("register", "100").await;
    b.click("#save").await;
    assert_eq!(b.text("#device-title").await, "D01 · Medidor do térreo");
    let devices = app.store.devices().list_for_gateway(t.id, gw.id, false).await.unwrap();
    assert_eq!(devices.len(), 1);
    let d = &devices[0];
    assert_eq!(b.path().await, format!("/devices/{}", d.id));
    assert_eq!(d.medium.as_str(), "gas");
    assert_eq!(d.mode.as_str(), "MANUAL");
    assert_eq!(d.slave_id.map(|s| s.to_string()), Some("7".into()));
    b.close().await;
}

#[tokio::test]
async fn pages_load_without_a_console_error_a_policy_violation_or_a_missing_icon() {
    let app = TestApp::spawn(TestDb::sqlite().await).await;
    let t = app.tenant("T").await;
    app.user("ana@example.com", Some((t.id, Role::Admin))).await;
    let gw = fixtures::gateway(&app.store, t.id, "aa:00:00:00:00:01", "GW1").await;
    let d = fixtures::meter(&app.store, t.id, &gw, "D01").await;
    // A certificate, so that the certificates page draws its expiry horizon.
    app.pki.issue(&app.store, &gw, tds_pki::DeviceKeyKind::EcdsaP256, false).await.unwrap();
    let Some(b) = Browser::open(&app, DESKTOP).await else { return };
    b.goto("/login").await;
    b.find("#email").await;
    assert_eq!(b.console_errors().await, Vec::<String>::new(), "the login page");
    // The log does report what it should.
    b.js("console.error('probe of the console log')").await;
    assert!(b.console_errors().await.iter().any(|e| e.contains("probe of the console log")));
    b.login("ana@example.com").await;
    for path in [
        "/".to_owned(),
        "/gateways".to_owned(),
        format!("/gateways/{}", gw.id),
        format!("/devices/{}", d.id),
        format!("/telemetry?device={}", d.id),
        "/certificates".to_owned(),
        "/alerts".to_owned(),
        "/alerts/rules".to_owned(),
        "/alerts/rules/new".to_owned(),
        "/members".to_owned(),
        "/profile".to_owned(),
    ] {
        b.goto(&path).await;
        b.find("main h1").await;
        // Let htmx and the charts start (htmx's own style injection happened at load).
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(b.console_errors().await, Vec::<String>::new(), "{path}");
    }
    b.goto("/certificates").await;
    b.until(
        "the expiry horizon chart",
        "return document.getElementById('horizon-chart').dataset.ready === 'true'",
    )
    .await;
    let icon = reqwest::get(format!("{}/favicon.ico", app.base)).await.unwrap();
    assert_eq!(icon.status(), 200);
    assert_eq!(icon.headers()["content-type"], "image/svg+xml");
    b.close().await;
}

#[tokio::test]
async fn the_api_browser_renders_the_document_under_its_content_policy() {
    let app = TestApp::spawn(TestDb::sqlite().await).await;
    let Some(b) = Browser::open(&app, DESKTOP).await else { return };
    b.goto("/api/docs").await;
    // Swagger UI builds the page from /api/v1/openapi.json: the title and an operation of each tag.
    assert!(b.text(".swagger-ui .info .title").await.contains("TDS API"));
    b.find("#operations-gateways-list_gateways").await;
    b.find("#operations-events-stream_events").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.console_errors().await, Vec::<String>::new(), "no script or style refused by the policy");
    b.close().await;
}

#[tokio::test]
async fn switching_to_english_translates_the_page() {
    let app = TestApp::spawn(TestDb::sqlite().await).await;
    let t = app.tenant("T").await;
    app.user("ana@example.com", Some((t.id, Role::Viewer))).await;
    let Some(b) = Browser::open(&app, DESKTOP).await else { return };
    b.login("ana@example.com").await;

    assert_eq!(b.js("return document.documentElement.lang").await, "pt-BR");
    assert_eq!(b.text("main h1").await, "Início");
    assert_eq!(b.text("#lang-switch").await, "EN");

    b.click("#lang-switch").await;
    b.find("html[lang='en']").await;
    assert_eq!(b.path().await, "/", "the switch comes back to the same page");
    assert_eq!(b.text("main h1").await, "Home");
    assert_eq!(b.text("#sidebar a[href='/gateways']").await, "Devices");
    assert_eq!(b.text("#lang-switch").await, "PT");

    // The choice follows the user to other pages…
    b.click("#sidebar a[href='/gateways']").await;
    b.find("#gateway-total").await;
    assert_eq!(b.js("return document.documentElement.lang").await, "en");
    assert!(b.text("main h1").await.starts_with("Gateways"), "{}", b.text("main h1").await);
    let user =
        app.store.users().by_email(&tds_domain::Email::parse("ana@example.com").unwrap()).await.unwrap();
    assert_eq!(user.language, "en", "and is saved in the profile");

    // …and switches back.
    b.click("#lang-switch").await;
    b.find("html[lang='pt-BR']").await;
    assert_eq!(b.path().await, "/gateways");
    assert_eq!(b.text("#sidebar a[href='/gateways']").await, "Dispositivos");
    b.close().await;
}

#[tokio::test]
async fn the_home_page_renders_with_its_styles_and_is_not_blank() {
    let app = TestApp::spawn(TestDb::sqlite().await).await;
    let t = app.tenant("Águas do Vale").await;
    app.user("ana@example.com", Some((t.id, Role::Viewer))).await;
    let gw = fixtures::gateway(&app.store, t.id, "aa:bb:cc:00:00:01", "GW-1").await;
    fixtures::meter(&app.store, t.id, &gw, "D01").await;
    let Some(b) = Browser::open(&app, DESKTOP).await else { return };
    b.login("ana@example.com").await;
    assert_eq!(b.text("#fig-gateways").await, "1");
    assert_eq!(b.text("#fig-devices").await, "1");
    // Fonts (the icons) load after the page; wait for them before looking.
    b.js("return document.fonts.ready.then(() => document.fonts.status)").await;

    // Bootstrap's CSS, the application's CSS, the icon font and both scripts were served and
    // allowed by the Content-Security-Policy.
    let styles = b
        .js("const nav = getComputedStyle(document.querySelector('.navbar'));
             const icon = getComputedStyle(document.querySelector('.navbar-brand .bi'), '::before');
             return {
               navbar: nav.position,
               navbarBackground: nav.backgroundColor,
               bodyPaddingTop: getComputedStyle(document.body).paddingTop,
               iconFamily: icon.fontFamily,
               iconFontLoaded: [...document.fonts].some(
                 f => f.family.replace(/\"/g, '') === 'bootstrap-icons' && f.status === 'loaded'),
               bootstrap: typeof bootstrap === 'object' && typeof bootstrap.Offcanvas === 'function',
               htmx: typeof htmx === 'object',
               width: window.innerWidth,
             }")
        .await;
    assert_eq!(styles["navbar"], "fixed", "Bootstrap's CSS: {styles}");
    assert_eq!(styles["navbarBackground"], "rgb(13, 110, 253)", "bg-primary: {styles}");
    assert_eq!(styles["bodyPaddingTop"], "56px", "tds.css: {styles}");
    assert!(styles["iconFamily"].as_str().unwrap().contains("bootstrap-icons"), "{styles}");
    assert_eq!(styles["iconFontLoaded"], true, "the icon font file: {styles}");
    assert_eq!(styles["bootstrap"], true, "bootstrap.bundle.min.js: {styles}");
    assert_eq!(styles["htmx"], true, "htmx.min.js: {styles}");

    let png = b.client.screenshot().await.unwrap();
    let path = std::env::temp_dir().join("tds-home.png");
    std::fs::write(&path, &png).unwrap();
    eprintln!("home page screenshot: {}", path.display());

    let shot = Screenshot::decode(&png);
    assert!(shot.width >= 800 && shot.height >= 600, "{}x{}", shot.width, shot.height);
    let colours = shot.colour_counts();
    let (_, most) = colours.iter().max_by_key(|(_, n)| **n).unwrap();
    let share = f64::from(u32::try_from(*most).unwrap()) / f64::from(shot.width * shot.height);
    assert!(colours.len() >= 50, "only {} colours in {}", colours.len(), path.display());
    assert!(share < 0.9, "one colour covers {:.0}% of {}", share * 100.0, path.display());
    // The top bar is Bootstrap's blue in the picture too (screenshots are in device pixels).
    let scale = f64::from(shot.width) / styles["width"].as_f64().unwrap();
    let (x, y) = (shot.width / 2, (8.0 * scale) as u32);
    assert_eq!(shot.rgb(x, y), [13, 110, 253], "top bar colour at ({x}, {y}) of {}", path.display());
    b.close().await;
}

#[tokio::test]
async fn on_a_phone_the_sidebar_hides_behind_the_menu_button() {
    let app = TestApp::spawn(TestDb::sqlite().await).await;
    let t = app.tenant("Águas do Vale").await;
    app.user("ana@example.com", Some((t.id, Role::Viewer))).await;
    let Some(b) = Browser::open(&app, PHONE).await else { return };
    b.login("ana@example.com").await;

    let width = b.js("return window.innerWidth").await.as_u64().unwrap();
    assert!(width < 576, "a phone-sized viewport, not {width}px");
    let overflow = b.js("return document.documentElement.scrollWidth - window.innerWidth").await;
    assert_eq!(overflow, 0, "nothing sticks out sideways");

    let sidebar = b.find("#sidebar").await;
    assert!(!sidebar.is_displayed().await.unwrap(), "the sidebar starts hidden");
    let menu = b.find("[data-bs-target='#sidebar'][data-bs-toggle='offcanvas']").await;
    assert!(menu.is_displayed().await.unwrap(), "the menu button is shown");
    menu.click().await.unwrap();
    b.until(
        "the sidebar slid in",
        "const s = document.getElementById('sidebar').classList;
         return s.contains('show') && !s.contains('showing');",
    )
    .await;
    assert!(b.find("#sidebar").await.is_displayed().await.unwrap());

    b.click("#sidebar a[href='/gateways']").await;
    b.find("#gateway-total").await;
    assert_eq!(b.path().await, "/gateways");
    assert!(!b.find("#sidebar").await.is_displayed().await.unwrap(), "hidden again on the new page");
    b.close().await;
}

/// The telemetry page's charts come from the rollups and readings in the database, and a reading
/// published over MQTT (Debian's `mosquitto_pub`, mutual TLS, through the real device endpoint)
/// reaches the open page through server-sent events within 2 s, without a reload.
#[tokio::test]
async fn the_telemetry_page_draws_stored_data_and_shows_a_reading_published_over_mqtt_within_two_seconds() {
    let app = TestApp::spawn(TestDb::sqlite().await).await;
    let t = app.tenant("Águas do Vale").await;
    app.user("vera@example.com", Some((t.id, Role::Viewer))).await;
    let g = fixtures::gateway(&app.store, t.id, "aa:bb:cc:00:00:31", "GW-31").await;
    let d = fixtures::meter(&app.store, t.id, &g, "D01").await;
    // Twelve hours of an energy register every 30 minutes, one kWh each time, then the rollups.
    let now = chrono::Utc::now();
    let rows: Vec<_> = (0..24)
        .map(|i: i32| tds_store::readings::NewReading {
            device_id: d.id,
            time: now - chrono::Duration::minutes(i64::from(30 * (24 - i))),
            value: 1000.0 + f64::from(i),
            unit: "kWh".into(),
        })
        .collect();
    app.store.readings().insert(t.id, &rows).await.unwrap();
    while app.store.rollups().staff_refresh_dirty(100).await.unwrap() > 0 {}

    // The device endpoint, announcing on the application's bus, and the gateway's certificate.
    let mut config = tds_ingest::IngestConfig::new(([127, 0, 0, 1], 0).into());
    config.events = Some(app.events.clone());
    let endpoint = tds_ingest::Endpoint::bind(config, app.store.clone(), &app.pki.files).await.unwrap();
    let port = endpoint.local_addr().unwrap().port();
    tokio::spawn(endpoint.run(std::future::pending()));
    let bundle = app.pki.issue(&app.store, &g, tds_pki::DeviceKeyKind::EcdsaP256, false).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), app.pki.files.ca.cert_pem()).unwrap();
    std::fs::write(dir.path().join("client.crt"), &bundle.certificate.cert_pem).unwrap();
    std::fs::write(dir.path().join("client.key"), bundle.certificate.key_pem.as_deref().unwrap()).unwrap();

    let Some(b) = Browser::open(&app, DESKTOP).await else { return };
    b.login("vera@example.com").await;
    b.click("#sidebar a[href='/telemetry']").await;
    b.until("the charts drawn", "return document.getElementById('telemetry')?.dataset.ready === 'true'")
        .await;
    assert_eq!(b.path().await, "/telemetry");
    let points = "return Chart.getChart('chart-line').data.datasets[0].data.filter(p => p.y !== null).length";
    assert_eq!(b.js(points).await, json!(24), "every stored reading of the last 24 h is a point");
    let used =
        "return Chart.getChart('chart-bars').data.datasets[0].data.reduce((s, p) => s + (p.y || 0), 0)";
    assert_eq!(b.js(used).await, json!(23), "hourly consumption bars add up to the register's growth");
    assert_eq!(
        b.js("return Chart.getChart('chart-line').options.scales['y-kWh'].title.text").await,
        json!("kWh")
    );
    b.until(
        "the live stream open",
        "return document.getElementById('live-status').textContent.includes('Ao vivo')",
    )
    .await;

    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let message = format!(
        r#"{{"gateway_mac":"aa:bb:cc:00:00:31","timestamp":"{at}","leituras":[{{"dispositivo_codigo":"D01","valor":1234.5,"unidade":"kWh"}}]}}"#
    );
    let published = Instant::now();
    // Off the test's (single) runtime thread, which the endpoint needs meanwhile.
    let cwd = dir.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("mosquitto_pub")
            .current_dir(cwd)
            .args(["-h", "localhost", "-p", &port.to_string(), "--cafile", "ca.crt", "--cert", "client.crt"])
            .args(["--key", "client.key", "-q", "1", "-i", "aa:bb:cc:00:00:31"])
            .args(["-t", "tds_new/gateway/aa:bb:cc:00:00:31/telemetria", "-m", &message])
            .output()
            .expect("Debian's mosquitto-clients are installed (scripts/test.sh installs them)")
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let row = "return [...document.querySelectorAll('#latest-readings tr.tds-live-row')].some(r => r.textContent.includes('1.234,5'))";
    while b.js(row).await != json!(true) {
        assert!(
            published.elapsed() < Duration::from_secs(2),
            "the reading did not appear within 2 s{}",
            b.describe().await
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(b.js(points).await, json!(25), "the live reading is a new point on the open chart");
    assert_eq!(b.js("return performance.getEntriesByType('navigation').length").await, json!(1), "no reload");
    b.close().await;
}
