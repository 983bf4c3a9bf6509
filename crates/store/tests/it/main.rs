//! Store conformance suite: every scenario runs on SQLite and on PostgreSQL (when
//! `TDS_TEST_DATABASE_URL` is set), each on a fresh database.

// Scenarios are plain async fns called by generated #[tokio::test]s, which clippy's
// allow-*-in-tests settings do not see as tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// A scenario reads best as one story; helpers take results by value to keep call sites short.
#![allow(clippy::too_many_lines, clippy::needless_pass_by_value)]

mod audit;
mod certificates;
mod devices;
mod gateways;
mod isolation;
mod jobs;
mod login_failures;
mod readings;
mod rejected;
mod sessions;
mod tenants;
mod user_tokens;
mod users;
