//! The browser tests' kit: a WebDriver session in a headless Chromium of its own, its driver
//! process, and screenshots decoded for colour checks.

use crate::support::{PASSWORD, TestApp};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value as Json, json};
use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::WAIT;

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

pub(super) struct Browser {
    pub(super) client: Client,
    base: String,
    // Dropped after the client: kills chromedriver and its Chromium, then removes the profile.
    _driver: Driver,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a `width`×`height` viewport, or `None`
    /// (after a note) when they are not installed and `TDS_REQUIRE_BROWSER` is not `1`.
    pub(super) async fn open(app: &TestApp, (width, height): (u32, u32)) -> Option<Self> {
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

    pub(super) async fn goto(&self, path: &str) {
        self.client.goto(&format!("{}{path}", self.base)).await.unwrap();
    }

    pub(super) async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    /// The first element matching `css`, waiting for it to appear (a page loading after a
    /// click); panics with the page's URL and text when it does not.
    pub(super) async fn find(&self, css: &str) -> Element {
        match self.client.wait().at_most(WAIT).for_element(Locator::Css(css)).await {
            Ok(element) => element,
            Err(e) => panic!("no {css} within {WAIT:?} ({e}){}", self.describe().await),
        }
    }

    pub(super) async fn click(&self, css: &str) {
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
    pub(super) async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap().trim().to_owned()
    }

    /// Types `value` into the field with this id, replacing what was there.
    pub(super) async fn fill(&self, id: &str, value: &str) {
        let field = self.find(&format!("#{id}")).await;
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
        assert_eq!(self.value(id).await, value, "typing into #{id}");
    }

    pub(super) async fn value(&self, id: &str) -> String {
        self.find(&format!("#{id}")).await.prop("value").await.unwrap().unwrap_or_default()
    }

    pub(super) async fn select(&self, id: &str, value: &str) {
        self.find(&format!("#{id}")).await.select_by_value(value).await.unwrap();
        assert_eq!(self.value(id).await, value, "choosing in #{id}");
    }

    /// The console's errors and warnings since the last call (chromedriver's browser log): a
    /// Content-Security-Policy violation, a resource that failed to load.
    pub(super) async fn console_errors(&self) -> Vec<String> {
        let log = self.client.issue_cmd(BrowserLog).await.unwrap();
        log.as_array()
            .into_iter()
            .flatten()
            .filter(|e| matches!(e["level"].as_str(), Some("SEVERE" | "WARNING")))
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Runs `script` (a function body; a returned promise is awaited) and returns its result.
    pub(super) async fn js(&self, script: &str) -> Json {
        self.client.execute(script, Vec::new()).await.unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    /// Waits until `script` returns true.
    pub(super) async fn until(&self, what: &str, script: &str) {
        let start = Instant::now();
        while self.js(script).await != Json::Bool(true) {
            assert!(start.elapsed() < WAIT, "not {what} within {WAIT:?}{}", self.describe().await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(super) async fn login(&self, email: &str) {
        self.goto("/login").await;
        self.fill("email", email).await;
        self.fill("password", PASSWORD).await;
        self.click("#login-submit").await;
        self.find("#home-figures").await;
    }

    /// Where the browser is and what it shows, for failure messages.
    pub(super) async fn describe(&self) -> String {
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

    pub(super) async fn close(self) {
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
    pub(super) async fn start(program: &Path) -> Self {
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
pub(super) struct Screenshot {
    pub(super) width: u32,
    pub(super) height: u32,
    channels: usize,
    pixels: Vec<u8>,
}

impl Screenshot {
    pub(super) fn decode(png_bytes: &[u8]) -> Self {
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

    pub(super) fn rgb(&self, x: u32, y: u32) -> [u8; 3] {
        let at = (y as usize * self.width as usize + x as usize) * self.channels;
        [self.pixels[at], self.pixels[at + 1], self.pixels[at + 2]]
    }

    /// How many pixels have each colour.
    pub(super) fn colour_counts(&self) -> HashMap<[u8; 3], usize> {
        let mut counts = HashMap::new();
        for px in self.pixels.chunks_exact(self.channels) {
            *counts.entry([px[0], px[1], px[2]]).or_insert(0) += 1;
        }
        counts
    }
}
