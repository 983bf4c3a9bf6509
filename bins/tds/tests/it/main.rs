//! End-to-end tests of the `tds` binary: the real executable, run as a user would run it, against
//! SQLite and PostgreSQL.

// Scenarios are plain async fns called by generated #[tokio::test]s, which clippy's
// allow-*-in-tests settings do not see as tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// A scenario reads best as one story; helpers take results by value to keep call sites short.
#![allow(clippy::too_many_lines, clippy::needless_pass_by_value)]

mod abuse;
mod agent;
mod backup;
mod broker;
mod broker_renewal;
mod cli;
mod consumption;
mod db_copy;
mod demo;
mod durability;
mod hardening;
mod jobs;
mod live;
mod mqtt;
mod notify;
mod pki;
mod renewal;
mod reports;
mod serve;
mod simulate;
mod support;
