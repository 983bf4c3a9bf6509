#!/usr/bin/env bash
# The REST API checked by clients nobody at TDS wrote, against a real `tds serve` (SQLite, a
# throw-away data directory, real MQTT over mutual TLS):
#   1. openapi-spec-validator: /api/v1/openapi.json is a valid OpenAPI 3.1 document;
#   2. tests/api/e2e.py (requests + Eclipse Paho): an integration end to end (token, gateway,
#      device, certificate bundle, telemetry over MQTT, readings, consumption, live events);
#   3. schemathesis: generated requests to every operation; the answers must match the document
#      (status codes, content types, schemas) and none may be a server error.
# The Python packages (tests/api/requirements.txt, pinned) go into a virtualenv under
# ~/.cache/tds. Environment: TDS_BIN (default: the debug build in $CARGO_TARGET_DIR or target/).
set -euo pipefail
cd "$(dirname "$0")/.."

tds_bin=${TDS_BIN:-${CARGO_TARGET_DIR:-target}/debug/tds}
[ -x "$tds_bin" ] || { echo "api-check: no tds binary at $tds_bin (cargo build, or set TDS_BIN)" >&2; exit 1; }
tds_bin=$(realpath "$tds_bin")

source scripts/lib/pyvenv.sh

tmp=$(mktemp -d)
pid=
cleanup() {
  [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
  [ -z "$pid" ] || wait "$pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http_port=$(free_port)
mqtt_port=$(free_port)
tds=(env -i PATH="$PATH" HOME="$tmp" TDS_DATA_DIR="$tmp/data" TDS_HTTP_ADDR="127.0.0.1:$http_port"
  TDS_MQTT_ADDR="127.0.0.1:$mqtt_port" TDS_MQTT_PUBLIC_HOST=localhost
  TDS_API_RATE_PER_SECOND=100000 TDS_API_BURST=100000 TDS_LOG_LEVEL=warn "$tds_bin")
"${tds[@]}" tenant create --name Integra >/dev/null
token=$("${tds[@]}" token create --tenant Integra --name e2e --role admin 2>/dev/null)
# A simple command in the background, not a shell function: `$!` is then the server itself
# (env execs it), which the cleanup stops; with a function it was a subshell, and killing that
# left `tds serve` running after every check.
"${tds[@]}" serve >"$tmp/tds.log" 2>&1 &
pid=$!
for _ in $(seq 120); do
  curl -sf "http://127.0.0.1:$http_port/readyz" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -sf "http://127.0.0.1:$http_port/readyz" >/dev/null || { tail -n 30 "$tmp/tds.log" >&2; exit 1; }
base="http://127.0.0.1:$http_port"

echo "== api-check: the OpenAPI document against the OpenAPI 3.1 schema (openapi-spec-validator)"
curl -sf "$base/api/v1/openapi.json" -o "$tmp/openapi.json"
"$venv/bin/python" - "$tmp/openapi.json" <<'PY'
import json, sys
from openapi_spec_validator import validate
from openapi_spec_validator import OpenAPIV31SpecValidator
doc = json.load(open(sys.argv[1]))
assert doc["openapi"].startswith("3.1"), doc["openapi"]
validate(doc, cls=OpenAPIV31SpecValidator)
print(f"valid OpenAPI {doc['openapi']}: {len(doc['paths'])} paths")
PY

echo "== api-check: an integration end to end (tests/api/e2e.py: requests + paho-mqtt)"
"$venv/bin/python" tests/api/e2e.py --base "$base" --mqtt "localhost:$mqtt_port" --token "$token"

# The tenant routes with a tenant's admin token, the staff routes with a staff token. The event
# stream never ends by design; it is exercised by e2e.py and the Rust tests.
fuzz() { # $1: token, then filters
  local token=$1; shift
  set +e
  # From the temporary directory: schemathesis keeps a cache of the crashes it found in the
  # working directory's .schemathesis/, which does not belong in the repository.
  (cd "$tmp" && "$venv/bin/schemathesis" run "$base/api/v1/openapi.json" \
    --header "Authorization: Bearer $token" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "${TDS_API_CHECK_EXAMPLES:-30}" \
    --seed 1 \
    --no-color "$@" >"$tmp/schemathesis.log" 2>&1)
  local status=$?
  set -e
  if [ "$status" = 0 ]; then tail -n 25 "$tmp/schemathesis.log"; else cat "$tmp/schemathesis.log"; fi
  return "$status"
}
staff_token=$("${tds[@]}" token create --staff --name fuzz 2>/dev/null)
echo "== api-check: generated requests to every tenant operation (schemathesis, an admin token)"
fuzz "$token" --exclude-path /api/v1/events --exclude-tag staff
echo "== api-check: generated requests to every staff operation (schemathesis, a staff token)"
fuzz "$staff_token" --include-tag staff
if grep -qiE "panicked|internal error" "$tmp/tds.log"; then
  echo "api-check: the server logged internal errors:" >&2
  grep -iE "panicked|internal error" "$tmp/tds.log" | head -n 20 >&2
  exit 1
fi
