//! Store conformance suite: every scenario runs on SQLite and on PostgreSQL (when
//! `TDS_TEST_DATABASE_URL` is set), each on a fresh database.

// Scenarios are plain async fns called by generated #[tokio::test]s, which clippy's
// allow-*-in-tests settings do not see as tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// A scenario reads best as one story; helpers take results by value to keep call sites short.
#![allow(clippy::too_many_lines, clippy::needless_pass_by_value)]

mod alert_notifications;
mod alert_rules;
mod alerts;
mod api_tokens;
mod audit;
mod certificates;
mod devices;
mod gateways;
mod isolation;
mod jobs;
mod login_failures;
/// The schema of the domain's meter corpus, whose data file `rollups` reads.
#[path = "../../../domain/tests/corpus/meter_series.rs"]
#[allow(
    dead_code,
    reason = "each suite reads the fields it checks: the store keeps no rollover or negative tallies"
)]
mod meter_series;
mod readings;
mod rejected;
mod renewals;
mod report_defs;
mod rollups;
mod rollups_feed;
mod rollups_resume;
mod sessions;
mod tenants;
mod timescale;
mod transfer;
mod user_tokens;
mod users;
