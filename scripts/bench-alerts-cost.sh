#!/usr/bin/env bash
# What alert evaluation costs the device endpoint (README, "Performance"): `tds bench ingest`
# with alerts off and on, alternating PAIRS times at the same offered load (RATE messages/s of
# 100 gateways × 10 devices), each run under /usr/bin/time for the process's CPU time; then
# `tds bench alerts --devices 1000`, the evaluation alone for the same 1,000 devices.
# Usage: scripts/bench-alerts-cost.sh            (builds the release binary first), or
#        TDS=path/to/tds scripts/bench-alerts-cost.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${TDS:-}" ]; then
  cargo build --release -p tds --locked
  TDS="${CARGO_TARGET_DIR:-target}/release/tds"
fi
for _ in $(seq "${PAIRS:-3}"); do
  for alerts in off on; do
    /usr/bin/time -f "alerts $alerts: process CPU user %U s, system %S s, wall %e s" \
      "$TDS" bench ingest --gateways 100 --devices 10 --seconds 20 --rate "${RATE:-1500}" --alerts "$alerts" 2>&1 \
      | grep -E "^offered|^alerts (on|off):"
  done
done
"$TDS" bench alerts --devices 1000
