//! Store conformance suite: every scenario runs on SQLite and on PostgreSQL (when
//! `TDS_TEST_DATABASE_URL` is set), each on a fresh database.

mod audit;
mod devices;
mod gateways;
mod isolation;
mod jobs;
mod readings;
mod rejected;
mod tenants;
mod users;
