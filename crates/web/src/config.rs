//! Settings of the web application, filled in by `bins/tds` from its configuration.

use crate::proxy::IpNet;
use std::time::Duration;

/// Three years and a day or two: a year-over-year chart of two whole years fits.
pub const DEFAULT_MAX_RANGE_DAYS: u32 = 1100;

#[derive(Debug, Clone)]
pub struct WebConfig {
    /// The address people use to reach TDS (e.g. `https://tds.example.com`); links in emails
    /// are built from it, and its origin is accepted by the CSRF origin check.
    pub public_url: url::Url,
    /// Whether session cookies carry `Secure`. On by default when `public_url` is https.
    pub secure_cookies: bool,
    /// Idle time after which a session ends (sliding).
    pub session_idle: Duration,
    /// Time after login at which a session ends however active it is.
    pub session_absolute: Duration,
    /// How long an invitation link stays valid.
    pub invite_ttl: Duration,
    /// How long a password-reset link stays valid.
    pub reset_ttl: Duration,
    /// Longest custom range of a chart, in days (SPEC §11: more is a clear error).
    pub max_range_days: u32,
    /// Password hashes (argon2id, ~19 MiB each) allowed to run at once…
    pub max_concurrent_hashes: usize,
    /// …and how long a login waits for one before it is answered "busy" (503).
    pub hash_wait: Duration,
    /// Peers whose `X-Forwarded-For` is believed (the reverse proxy in front of TDS). Empty: the
    /// header is ignored and the TCP peer is the client.
    pub trusted_proxies: Vec<IpNet>,
    /// Open HTTP connections at most; more are closed at once.
    pub max_connections: usize,
    /// Time allowed for a request's line and headers (and for the next one on a kept-alive
    /// connection).
    pub header_timeout: Duration,
    /// Time allowed for a request's whole body after its headers.
    pub body_timeout: Duration,
    /// Largest urlencoded form body read (before the CSRF check, by any route).
    pub max_form_bytes: usize,
    /// Largest upload (multipart: CSV imports, CSR files) read.
    pub max_upload_bytes: usize,
    /// How large a CSV import may be (rows and bytes).
    pub import_limits: tds_domain::import_rows::ImportLimits,
    /// API requests a second each token may make, sustained…
    pub api_rate_per_second: std::num::NonZeroU32,
    /// …and at once (the bucket's size).
    pub api_burst: std::num::NonZeroU32,
}

/// Default API request rate per token (a second) and burst.
pub const DEFAULT_API_RATE: std::num::NonZeroU32 = std::num::NonZeroU32::new(20).unwrap();
pub const DEFAULT_API_BURST: std::num::NonZeroU32 = std::num::NonZeroU32::new(100).unwrap();

impl WebConfig {
    pub fn new(public_url: url::Url) -> Self {
        let secure_cookies = public_url.scheme() == "https";
        Self {
            public_url,
            secure_cookies,
            session_idle: Duration::from_hours(12),
            session_absolute: Duration::from_hours(7 * 24),
            invite_ttl: Duration::from_hours(7 * 24),
            reset_ttl: Duration::from_hours(1),
            max_range_days: DEFAULT_MAX_RANGE_DAYS,
            max_concurrent_hashes: std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
            hash_wait: Duration::from_secs(5),
            trusted_proxies: Vec::new(),
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_mins(1),
            max_form_bytes: 64 * 1024,
            max_upload_bytes: 8 * 1024 * 1024,
            import_limits: tds_domain::import_rows::ImportLimits::default(),
            api_rate_per_second: DEFAULT_API_RATE,
            api_burst: DEFAULT_API_BURST,
        }
    }

    /// An absolute link to `path` (which starts with `/`).
    pub fn link(&self, path: &str) -> String {
        let base = self.public_url.as_str().trim_end_matches('/');
        format!("{base}{path}")
    }
}
