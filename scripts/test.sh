#!/usr/bin/env bash
# Runs the whole TDS test suite: every crate's tests on the embedded SQLite and, through a
# throw-away PostgreSQL cluster started here (and stopped whatever happens), on PostgreSQL too.
# Extra arguments go to `cargo test` (e.g. scripts/test.sh -p tds-store).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/postgres.sh

# Tests create hundreds of databases; durability is not what they test, so skip the fsyncs.
pg_start -c fsync=off -c synchronous_commit=off -c full_page_writes=off

export TDS_TEST_DATABASE_URL="$PG_URL"
export TDS_REQUIRE_POSTGRES=1
cargo test --workspace --locked "$@"
