//! Settings of the web application, filled in by `bins/tds` from its configuration.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct WebConfig {
    /// The address people use to reach TDS (e.g. `https://tds.example.com`); links in emails
    /// are built from it, and its origin is accepted by the CSRF origin check.
    pub public_url: url::Url,
    /// Whether session cookies carry `Secure`. On by default when `public_url` is https.
    pub secure_cookies: bool,
    /// Idle time after which a session ends (sliding).
    pub session_idle: Duration,
    /// How long an invitation link stays valid.
    pub invite_ttl: Duration,
    /// How long a password-reset link stays valid.
    pub reset_ttl: Duration,
    /// How large a CSV import may be (rows and bytes).
    pub import_limits: tds_domain::import_rows::ImportLimits,
}

impl WebConfig {
    pub fn new(public_url: url::Url) -> Self {
        let secure_cookies = public_url.scheme() == "https";
        Self {
            public_url,
            secure_cookies,
            session_idle: Duration::from_hours(12),
            invite_ttl: Duration::from_hours(7 * 24),
            reset_ttl: Duration::from_hours(1),
            import_limits: tds_domain::import_rows::ImportLimits::default(),
        }
    }

    /// An absolute link to `path` (which starts with `/`).
    pub fn link(&self, path: &str) -> String {
        let base = self.public_url.as_str().trim_end_matches('/');
        format!("{base}{path}")
    }
}
