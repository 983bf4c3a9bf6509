//! End-to-end tests of the web application: the real router on a real port (0), a real
//! database (SQLite and PostgreSQL), an HTTP client with a cookie jar playing the browser, a real
//! SMTP sink for emails, and headless Chromium for the browser tests.

// Scenarios are plain async fns called by generated #[tokio::test]s, which clippy's
// allow-*-in-tests settings do not see as tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::too_many_lines, clippy::needless_pass_by_value)]
// Test tables read best inline: `&Default::default()` filters, (fields, field, words) tuples,
// and asset paths compared by their literal suffix.
#![allow(
    clippy::default_trait_access,
    clippy::type_complexity,
    clippy::case_sensitive_file_extension_comparisons,
    clippy::many_single_char_names
)]

mod alerts;
mod alerts_e2e;
mod api;
mod attack;
mod auth;
mod browser;
mod certificates;
mod dead_letters;
mod forms;
mod hardening;
mod imports;
mod members;
mod renewals;
mod reports;
mod roles;
mod settings;
mod staff;
mod support;
mod telemetry;
mod tenancy;
