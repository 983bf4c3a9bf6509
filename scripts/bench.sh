#!/usr/bin/env bash
# Store benchmark on both databases with production durability: SQLite in WAL mode with
# synchronous=NORMAL, and a throw-away PostgreSQL cluster with its default (durable) settings:
# fsync and synchronous_commit on. Arguments go to `tds bench store` (e.g. --readings 200000).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/postgres.sh

cargo build --release --locked -p tds
tds=target/release/tds

echo "== SQLite"
"$tds" bench store "$@"

pg_start
echo "== PostgreSQL"
"$tds" bench store --database-url "$PG_URL" "$@"
