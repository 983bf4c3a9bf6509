#!/usr/bin/env bash
# Benchmarks on both databases with production durability: SQLite in WAL mode with
# synchronous=NORMAL, and a throw-away PostgreSQL cluster with its default (durable) settings:
# fsync and synchronous_commit on.
#
#   scripts/bench.sh [store] [ARGS]   `tds bench store`: readings through the store (e.g. --readings 200000)
#   scripts/bench.sh ingest [ARGS]    `tds bench ingest`: the MQTT device endpoint end to end, over
#                                     mutual TLS with simulated gateways in the same process
#                                     (e.g. --gateways 100 --devices 10 --inflight 10 --seconds 20)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/postgres.sh

bench=store
case "${1:-}" in
  store | ingest) bench=$1; shift ;;
esac

cargo build --release --locked -p tds
tds=target/release/tds
# The endpoint logs every connection at info level; keep the figures readable.
export TDS_LOG_LEVEL="${TDS_LOG_LEVEL:-warn}"

echo "== SQLite"
"$tds" bench "$bench" "$@"

pg_start
echo "== PostgreSQL"
"$tds" bench "$bench" --database-url "$PG_URL" "$@"
