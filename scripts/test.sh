#!/usr/bin/env bash
# Runs the whole TDS test suite: every crate's tests on the embedded SQLite and, through a
# throw-away PostgreSQL cluster started here (and stopped whatever happens), on PostgreSQL too.
# Extra arguments go to `cargo test` (e.g. scripts/test.sh -p tds-store). The whole suite (no
# arguments) ends with the fuzzing smoke run, scripts/fuzz.sh smoke (TDS_SKIP_FUZZ=1 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/postgres.sh

# The certificate tests run Debian's Mosquitto and its clients against `tds broker-config`.
if ! command -v mosquitto >/dev/null 2>&1 && [ -x /usr/sbin/mosquitto ]; then export PATH="$PATH:/usr/sbin"; fi
if ! command -v mosquitto >/dev/null 2>&1 || ! command -v mosquitto_pub >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing mosquitto and mosquitto-clients" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients openssl unzip >/dev/null
    export PATH="$PATH:/usr/sbin"
  else
    echo "Mosquitto not found. Install it with: sudo apt-get install mosquitto mosquitto-clients" >&2
    exit 1
  fi
fi

# The agent's RTU test (tds-gateway) runs Modbus over a pseudo-terminal pair made by socat.
if ! command -v socat >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing socat" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq socat >/dev/null
  else
    echo "socat not found. Install it with: sudo apt-get install socat" >&2
    exit 1
  fi
fi

# The browser tests (tds-web) drive Debian's headless Chromium through chromedriver.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing chromium and chromium-driver" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "Chromium not found. Install it with: sudo apt-get install chromium chromium-driver" >&2
    exit 1
  fi
fi
export TDS_REQUIRE_BROWSER=1

# The renewal test of the tds binary runs an Eclipse Paho gateway (Python) from this virtualenv.
source scripts/lib/pyvenv.sh
# The reports' tests read their PDFs back with poppler's pdftotext (Debian poppler-utils).
if ! command -v pdftotext >/dev/null 2>&1 || ! command -v pdftoppm >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing poppler-utils" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq poppler-utils >/dev/null
  else
    echo "pdftotext not found. Install it with: sudo apt-get install poppler-utils" >&2
    exit 1
  fi
fi

# Tests create hundreds of databases; durability is not what they test, so skip the fsyncs.
pg_start -c fsync=off -c synchronous_commit=off -c full_page_writes=off

export TDS_TEST_DATABASE_URL="$PG_URL"
export TDS_REQUIRE_POSTGRES=1
cargo test --workspace --locked "$@"

# The deployment files (deploy/) through systemd-analyze, nginx, compose and a container engine
# where present, against the tds just built; each check without its tool says it was skipped.
[ $# -gt 0 ] || TDS_BIN="${CARGO_TARGET_DIR:-target}/debug/tds" scripts/deploy-check.sh

# The REST API through clients nobody here wrote: an OpenAPI 3.1 validator, an integration in
# Python (requests + Eclipse Paho over MQTT/TLS) and schemathesis against a real `tds serve`.
[ $# -gt 0 ] || TDS_BIN="${CARGO_TARGET_DIR:-target}/debug/tds" scripts/api-check.sh

# Every fuzz target for a bounded time (skipped, with how to install it, without nightly).
if [ $# -eq 0 ] && [ "${TDS_SKIP_FUZZ:-0}" != 1 ]; then
  scripts/fuzz.sh smoke
fi
