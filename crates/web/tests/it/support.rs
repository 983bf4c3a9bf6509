//! `TestApp::spawn`: the web application on 127.0.0.1:0 over a test database, with an SMTP
//! sink, and `Client`: a cookie-keeping HTTP client that behaves like a browser for forms
//! (sends the page's CSRF token and an Origin header).

use std::sync::{Arc, Mutex};
use tds_domain::{Email, Name, Role, TenantId};
use tds_store::Store;
use tds_store::tenants::Tenant;
use tds_store::users::{NewUser, User};
pub use tds_testkit::MailSink;
use tds_testkit::TestDb;
use tds_web::{AppState, Mailer, WebConfig};

pub const PASSWORD: &str = "correct horse battery";

pub struct TestApp {
    pub base: String,
    pub store: Store,
    pub mail: MailSink,
    pub pki: tds_web::certs::Pki,
    /// The application's live-event bus (a device endpoint under test publishes on it).
    pub events: tokio::sync::broadcast::Sender<tds_domain::LiveEvent>,
    _db: TestDb,
    _pki_dir: tempfile::TempDir,
}

impl TestApp {
    pub async fn spawn(db: TestDb) -> Self {
        Self::spawn_with(db, |_| {}).await
    }

    /// With settings changed by `configure` (limits, proxies, lifetimes).
    pub async fn spawn_with(db: TestDb, configure: impl FnOnce(&mut WebConfig)) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let base = format!("http://{addr}");
        let mail = MailSink::start();
        let mut config = WebConfig::new(url::Url::parse(&base).unwrap());
        configure(&mut config);
        let mailer = Mailer::smtp(&format!("smtp://{}", mail.addr), "TDS <tds@example.com>").unwrap();
        // ECDSA P-384 keeps CA creation fast; device certificates last one year so that they
        // show as "expiring within 2 years".
        let pki_dir = tempfile::tempdir().unwrap();
        let files = tds_pki::CaFiles::init(
            pki_dir.path(),
            &tds_pki::CaSubject::default(),
            tds_pki::CaAlgorithm::EcdsaP384,
            None,
            &["localhost".to_owned()],
        )
        .unwrap();
        let pki = tds_web::certs::Pki::new(Arc::new(files), 365, 7, tds_pki::BrokerInfo::new("mqtt.test"));
        let state = AppState::new(db.store.clone(), config.clone(), mailer, pki.clone());
        let events = state.events().clone();
        let app = tds_web::router(state);
        tokio::spawn(async move {
            tds_web::server::serve(listener, app, &config, std::future::pending()).await.unwrap();
        });
        Self { base, store: db.store.clone(), mail, pki, events, _db: db, _pki_dir: pki_dir }
    }

    pub fn client(&self) -> Client {
        Client::new(&self.base)
    }

    pub async fn tenant(&self, name: &str) -> Tenant {
        tds_testkit::fixtures::tenant(&self.store, name).await
    }

    /// A user with [`PASSWORD`], optionally a member of `tenant` with `role`.
    pub async fn user(&self, email: &str, membership: Option<(TenantId, Role)>) -> User {
        self.user_with(email, membership, false).await
    }

    pub async fn user_with(&self, email: &str, membership: Option<(TenantId, Role)>, staff: bool) -> User {
        let user = self
            .store
            .users()
            .create(&NewUser {
                email: Email::parse(email).unwrap(),
                display_name: Name::parse("name", email.split('@').next().unwrap()).unwrap(),
                password_hash: Some(tds_web::password::hash(PASSWORD).unwrap()),
                language: "pt-BR".into(),
                is_staff: staff,
                created_by: None,
            })
            .await
            .unwrap();
        if let Some((tenant, role)) = membership {
            self.store.memberships().add(tenant, user.id, role, None).await.unwrap();
        }
        user
    }

    /// A client logged in as `email` (with [`PASSWORD`]).
    pub async fn login(&self, email: &str) -> Client {
        let c = self.client();
        let page = c.login(email, PASSWORD).await;
        assert!(page.status < 400, "login of {email} failed: {} {}", page.status, page.body);
        c
    }
}

#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub url: String,
    pub body: String,
}

impl Page {
    pub fn path(&self) -> String {
        url::Url::parse(&self.url).map(|u| u.path().to_owned()).unwrap_or_default()
    }

    pub fn has(&self, needle: &str) -> bool {
        self.body.contains(needle)
    }

    /// The text of the element with this id (up to its closing tag, inner tags stripped).
    pub fn text_of(&self, id: &str) -> Option<String> {
        let at = self.body.find(&format!("id=\"{id}\""))?;
        let open = self.body[..at].rfind('<')?;
        let tag: String = self.body[open + 1..].chars().take_while(char::is_ascii_alphanumeric).collect();
        let start = at + self.body[at..].find('>')? + 1;
        let end = start + self.body[start..].find(&format!("</{tag}>"))?;
        let mut text = String::new();
        let mut in_tag = false;
        for c in self.body[start..end].chars() {
            match c {
                '<' => in_tag = true,
                '>' => in_tag = false,
                c if !in_tag => text.push(c),
                _ => {}
            }
        }
        Some(text.split_whitespace().collect::<Vec<_>>().join(" "))
    }
}

pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    jar: Arc<reqwest::cookie::Jar>,
    csrf: Mutex<Option<String>>,
}

impl Client {
    pub fn new(base: &str) -> Self {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("origin", base.parse().unwrap());
        headers.insert("accept", "text/html".parse().unwrap());
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let http =
            reqwest::Client::builder().cookie_provider(jar.clone()).default_headers(headers).build().unwrap();
        Self { http, base: base.to_owned(), jar, csrf: Mutex::new(None) }
    }

    /// An HTTP client with the same cookies that does not follow redirects (to read `Location`).
    pub fn no_redirect(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .cookie_provider(self.jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    /// The `tds_session=…` cookie the browser holds, if any.
    pub fn session_cookie(&self) -> Option<String> {
        use reqwest::cookie::CookieStore;
        let all = self.jar.cookies(&self.base.parse().unwrap())?;
        all.to_str().unwrap().split("; ").find(|c| c.starts_with("tds_session=")).map(str::to_owned)
    }

    async fn page(&self, resp: reqwest::Response) -> Page {
        let status = resp.status().as_u16();
        let url = resp.url().to_string();
        let body = resp.text().await.unwrap();
        if let Some(token) = csrf_in(&body) {
            *self.csrf.lock().unwrap() = Some(token);
        }
        Page { status, url, body }
    }

    pub async fn get(&self, path: &str) -> Page {
        let resp = self.http.get(format!("{}{path}", self.base)).send().await.unwrap();
        self.page(resp).await
    }

    /// The CSRF token of the last page seen.
    pub fn csrf(&self) -> String {
        self.csrf.lock().unwrap().clone().expect("no page with a CSRF token seen yet")
    }

    /// Posts a form with the last page's CSRF token (unless the fields carry one).
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let mut form: Vec<(String, String)> =
            fields.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        if !fields.iter().any(|(k, _)| *k == "_csrf") {
            form.push(("_csrf".into(), self.csrf()));
        }
        let resp = self.http.post(format!("{}{path}", self.base)).form(&form).send().await.unwrap();
        self.page(resp).await
    }

    /// Uploads `csv` as the `file` field of a multipart form (CSRF token first, as the page does).
    pub async fn upload(&self, path: &str, csv: &str) -> Page {
        let form = reqwest::multipart::Form::new()
            .text("_csrf", self.csrf())
            .part("file", reqwest::multipart::Part::text(csv.to_owned()).file_name("import.csv"));
        let resp = self.http.post(format!("{}{path}", self.base)).multipart(form).send().await.unwrap();
        self.page(resp).await
    }

    pub async fn login(&self, email: &str, password: &str) -> Page {
        self.get("/login").await;
        self.post("/login", &[("email", email), ("password", password)]).await
    }
}

fn csrf_in(body: &str) -> Option<String> {
    let at = body.find("name=\"_csrf\" value=\"")? + "name=\"_csrf\" value=\"".len();
    let end = at + body[at..].find('"')?;
    Some(body[at..end].to_owned())
}

/// The first link in `text` starting with `prefix` (e.g. the base URL), up to whitespace.
pub fn link_in(text: &str, prefix: &str) -> String {
    let at = text.find(prefix).unwrap_or_else(|| panic!("no link {prefix} in {text}"));
    text[at..].split_whitespace().next().unwrap().to_owned()
}
