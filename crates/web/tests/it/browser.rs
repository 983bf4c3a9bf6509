//! Headless Chromium against the real server: logging in, creating a gateway and a device
//! through the forms (with a validation error on the way), switching language, the home page's
//! styles, icons and scripts, a screenshot that is not blank, and the menu on a phone.
//!
//! Each test starts its own `chromedriver` (Debian `chromium-driver`) on a free port, with a fresh
//! Chromium profile; the driver and its browser are killed when the test ends, pass or fail.
//! Without Chromium the tests are skipped with a note, unless `TDS_REQUIRE_BROWSER=1` (set by
//! scripts/test.sh), which makes them fail instead.

use crate::support::{PASSWORD, TestApp};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value as Json, json};
use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tds_domain::Role;
use tds_testkit::{TestDb, fixtures};

/// How long a page may take to show what a test waits for.
const WAIT: Duration = Duration::from_secs(10);

/// Desktop and phone viewports (CSS pixels).
const DESKTOP: (u32, u32) = (1280, 900);
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
        "/members".to_owned(),
        "/profile".to_owned(),
    ] {
        b.goto(&path).await;
        b.find("main h1").await;
        // Let htmx and the charts start (htmx's own style injection happened at load).
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(b.console_errors().await, Vec::<String>::new(), "{path}");
    }
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

/// A WebDriver session in a headless Chromium of its own.
/// chromedriver's `POST /session/{id}/se/log` for the browser's console.
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        (axum::http::Method::POST, Some(json!({ "type": "browser" }).to_string()))
    }
}

struct Browser {
    client: Client,
    base: String,
    // Dropped after the client: kills chromedriver and its Chromium, then removes the profile.
    _driver: Driver,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a `width`×`height` viewport, or `None`
    /// (after a note) when they are not installed and `TDS_REQUIRE_BROWSER` is not `1`.
    async fn open(app: &TestApp, (width, height): (u32, u32)) -> Option<Self> {
        let (chromedriver, chromium) = match (find_program("chromedriver"), find_program("chromium")) {
            (Some(driver), Some(chromium)) => (driver, chromium),
            _ if std::env::var("TDS_REQUIRE_BROWSER").as_deref() == Ok("1") => panic!(
                "TDS_REQUIRE_BROWSER=1 but chromium or chromedriver is not installed \
                 (apt-get install chromium chromium-driver)"
            ),
            _ => {
                eprintln!(
                    "note: browser test skipped: chromium or chromedriver not found \
                     (apt-get install chromium chromium-driver, or set TDS_REQUIRE_BROWSER=1 to fail)"
                );
                return None;
            }
        };
        let driver = Driver::start(&chromedriver).await;
        let options = json!({
            "binary": chromium,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--hide-scrollbars",
                "--force-device-scale-factor=1",
                "--lang=pt-BR",
                format!("--window-size={width},{height}"),
                format!("--user-data-dir={}", driver.profile.path().display()),
            ],
            // A Brazilian browser: pages before login follow Accept-Language.
            "prefs": { "intl.accept_languages": "pt-BR,pt" },
        });
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert("goog:chromeOptions".into(), options);
        caps.insert("timeouts".into(), json!({ "pageLoad": 30_000, "script": 15_000, "implicit": 0 }));
        // Keeps the console (CSP violations, failed loads) for `console_errors`.
        caps.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
        let client = ClientBuilder::rustls()
            .unwrap()
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
            .unwrap_or_else(|e| panic!("cannot start Chromium through chromedriver: {e}"));
        Some(Self { client, base: app.base.clone(), _driver: driver })
    }

    async fn goto(&self, path: &str) {
        self.client.goto(&format!("{}{path}", self.base)).await.unwrap();
    }

    async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    /// The first element matching `css`, waiting for it to appear (a page loading after a
    /// click); panics with the page's URL and text when it does not.
    async fn find(&self, css: &str) -> Element {
        match self.client.wait().at_most(WAIT).for_element(Locator::Css(css)).await {
            Ok(element) => element,
            Err(e) => panic!("no {css} within {WAIT:?} ({e}){}", self.describe().await),
        }
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        // To the middle of the window first, at once: Bootstrap's `scroll-behavior: smooth`
        // makes the driver's own scrolling animate, and the click would land before it ends.
        let arg = serde_json::to_value(&element).unwrap();
        self.client
            .execute("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'})", vec![arg])
            .await
            .unwrap();
        element.click().await.unwrap_or_else(|e| panic!("cannot click {css}: {e}"));
    }

    /// The rendered text of `css`, trimmed.
    async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap().trim().to_owned()
    }

    /// Types `value` into the field with this id, replacing what was there.
    async fn fill(&self, id: &str, value: &str) {
        let field = self.find(&format!("#{id}")).await;
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
        assert_eq!(self.value(id).await, value, "typing into #{id}");
    }

    async fn value(&self, id: &str) -> String {
        self.find(&format!("#{id}")).await.prop("value").await.unwrap().unwrap_or_default()
    }

    async fn select(&self, id: &str, value: &str) {
        self.find(&format!("#{id}")).await.select_by_value(value).await.unwrap();
        assert_eq!(self.value(id).await, value, "choosing in #{id}");
    }

    /// The console's errors and warnings since the last call (chromedriver's browser log): a
    /// Content-Security-Policy violation, a resource that failed to load.
    async fn console_errors(&self) -> Vec<String> {
        let log = self.client.issue_cmd(BrowserLog).await.unwrap();
        log.as_array()
            .into_iter()
            .flatten()
            .filter(|e| matches!(e["level"].as_str(), Some("SEVERE" | "WARNING")))
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Runs `script` (a function body; a returned promise is awaited) and returns its result.
    async fn js(&self, script: &str) -> Json {
        self.client.execute(script, Vec::new()).await.unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    /// Waits until `script` returns true.
    async fn until(&self, what: &str, script: &str) {
        let start = Instant::now();
        while self.js(script).await != Json::Bool(true) {
            assert!(start.elapsed() < WAIT, "not {what} within {WAIT:?}{}", self.describe().await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn login(&self, email: &str) {
        self.goto("/login").await;
        self.fill("email", email).await;
        self.fill("password", PASSWORD).await;
        self.click("#login-submit").await;
        self.find("#home-figures").await;
    }

    /// Where the browser is and what it shows, for failure messages.
    async fn describe(&self) -> String {
        let url = self.client.current_url().await.map(|u| u.to_string()).unwrap_or_default();
        let text = self
            .client
            .execute("return document.body ? document.body.innerText : ''", Vec::new())
            .await
            .ok()
            .and_then(|t| t.as_str().map(str::to_owned))
            .unwrap_or_default();
        format!("\n  at {url}\n  page text: {}", text.chars().take(1500).collect::<String>())
    }

    async fn close(self) {
        self.client.close().await.unwrap();
    }
}

/// A chromedriver process on a free port, in a process group of its own so that the Chromium it
/// starts is killed with it even when a test fails before closing its session.
struct Driver {
    child: Child,
    port: u16,
    profile: tempfile::TempDir,
}

impl Driver {
    async fn start(program: &Path) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(program)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .arg(format!("--log-path={}", profile.path().join("chromedriver.log").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        let driver = Self { child, port, profile };
        let start = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(start.elapsed() < WAIT, "chromedriver did not listen on port {port}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        driver
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: chromedriver, Chromium and Chromium's helper processes.
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `name` on the `PATH` (Debian puts both programs in /usr/bin).
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain([PathBuf::from("/usr/bin")]).map(|dir| dir.join(name)).find(|p| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// A decoded screenshot, 8-bit RGB(A).
struct Screenshot {
    width: u32,
    height: u32,
    channels: usize,
    pixels: Vec<u8>,
}

impl Screenshot {
    fn decode(png_bytes: &[u8]) -> Self {
        let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = decoder.read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut pixels).unwrap();
        let channels = match info.color_type {
            png::ColorType::Rgb => 3,
            png::ColorType::Rgba => 4,
            other => panic!("unexpected screenshot colour type {other:?}"),
        };
        pixels.truncate(info.buffer_size());
        Self { width: info.width, height: info.height, channels, pixels }
    }

    fn rgb(&self, x: u32, y: u32) -> [u8; 3] {
        let at = (y as usize * self.width as usize + x as usize) * self.channels;
        [self.pixels[at], self.pixels[at + 1], self.pixels[at + 2]]
    }

    /// How many pixels have each colour.
    fn colour_counts(&self) -> HashMap<[u8; 3], usize> {
        let mut counts = HashMap::new();
        for px in self.pixels.chunks_exact(self.channels) {
            *counts.entry([px[0], px[1], px[2]]).or_insert(0) += 1;
        }
        counts
    }
}
