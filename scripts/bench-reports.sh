#!/usr/bin/env bash
# Figures for SPEC §6's reports and exports (README, "Reports"):
#  1. `tds bench report`: the time to build and render the monthly report (PDF and XLSX) of a
#     tenant of DEVICES (1,000) meters, on a new SQLite database;
#  2. a streamed raw export (`tds readings export`) of 1 M and then 10 M readings to a CSV file,
#     each under /usr/bin/time -v: its wall time and the process's peak resident memory, which
#     must not grow with the rows.
# Usage: scripts/bench-reports.sh [release|debug]   (builds tds in that profile first), or
#        TDS=path/to/tds scripts/bench-reports.sh     (measures that binary, e.g. the debug one a
#                                                     `cargo test --workspace --no-run` left)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-release}
if [ -z "${TDS:-}" ]; then
  flag=(); [ "$profile" = release ] && flag=(--release)
  cargo build "${flag[@]}" -p tds --locked
  TDS="${CARGO_TARGET_DIR:-target}/$profile/tds"
fi
tds=$TDS
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export TDS_DATA_DIR="$work/data"

echo "== monthly report, ${DEVICES:-1000} devices ($profile build)"
"$tds" bench report --database-url "sqlite://$work/report.db" --devices "${DEVICES:-1000}"

echo "== streamed raw export ($profile build)"
export TDS_DATABASE_URL="sqlite://$work/export.db"
# 10 M readings of 100 meters, one a minute per meter from 2026-01-01T00:00Z: the first 1 M are
# the first 10,000 minutes.
"$tds" bench store --database-url "$TDS_DATABASE_URL" --readings "${READINGS:-10000000}" --devices 100 --batch 100000
tenant=$("$tds" tenant list | awk '$2 ~ /^bench-/ {print $2}' | tail -1)
for range in "2026-01-07T22:40:00Z 1M" "2026-12-31T00:00:00Z all"; do
  set -- $range
  /usr/bin/time -v "$tds" readings export --tenant "$tenant" --from 2026-01-01T00:00:00Z --to "$1" \
      --out "$work/export.csv" 2> "$work/time.txt"
  rows=$(($(wc -l < "$work/export.csv") - 1))
  wall=$(grep 'Elapsed (wall clock)' "$work/time.txt" | awk '{print $NF}')
  rss=$(grep 'Maximum resident set size' "$work/time.txt" | awk '{print $NF}')
  size=$(du -m "$work/export.csv" | cut -f1)
  echo "export of $rows readings ($2): wall $wall, peak RSS $((rss / 1024)) MiB, CSV ${size} MiB"
  rm -f "$work/export.csv"
done
