//! Integration tests of the reports crate, on SQLite always and on PostgreSQL whenever
//! `TDS_TEST_DATABASE_URL` is set: figures over stored readings and their rollups
//! ([`figures`]), the files read back by independent readers ([`files`]), and the raw export
//! ([`export`]).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod export;
mod figures;
mod files;
mod support;
