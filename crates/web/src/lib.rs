//! TDS web application (SPEC §4): server-rendered pages with askama and htmx, embedded assets,
//! server-side sessions, CSRF protection, roles and tenant isolation.
//!
//! The crate owns HTTP only. It reads and writes through `tds-store` (whose tenant-scoped methods
//! all take the tenant), so a handler can only reach the tenant its [`auth::TenantCtx`] names;
//! it never reads the environment or installs logging (that is `bins/tds`'s job).

rust_i18n::i18n!("locales", fallback = "pt-BR");

pub mod api;
pub mod api_token;
pub mod assets;
pub mod auth;
pub mod certs;
pub mod config;
pub mod csrf;
pub mod error;
pub mod figures;
pub mod forms;
pub mod i18n;
pub mod import;
pub mod page;
pub mod password;
pub mod proxy;
pub mod replay;
pub mod routes;
pub mod security;
pub mod server;
pub mod session;
pub mod state;
pub mod throttled_log;

pub use config::WebConfig;
pub use state::AppState;
pub use tds_mail::{MailError, Mailer};

/// The whole web application: pages, the API, assets and their middleware.
pub fn router(state: AppState) -> axum::Router {
    routes::router(state)
}
