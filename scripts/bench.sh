#!/usr/bin/env bash
# Benchmarks on both databases with production durability: SQLite in WAL mode with
# synchronous=NORMAL, and a throw-away PostgreSQL cluster with its default (durable) settings:
# fsync and synchronous_commit on.
#
#   scripts/bench.sh [store] [ARGS]   `tds bench store`: readings through the store (e.g. --readings 200000)
#   scripts/bench.sh ingest [ARGS]    `tds bench ingest`: the MQTT device endpoint end to end, over
#                                     mutual TLS with simulated gateways in the same process
#                                     (e.g. --gateways 100 --devices 10 --inflight 10 --seconds 20);
#                                     prints the server's (and PostgreSQL's) CPU per stored reading;
#                                     --overload 60 adds 60 s offered twice the sustained load, then
#                                     half load again to show the latency recover
#   scripts/bench.sh compare [ARGS]   the same load generator against Debian's Mosquitto (mutual
#                                     TLS, QoS 1, no persistence) and against TDS (durable), in one
#                                     run per database, side by side with the ratio TDS / Mosquitto
#   scripts/bench.sh queries [ARGS]   `tds bench queries`: loads a data set through the ingest path,
#                                     refreshes the rollups and prints p50/p95/p99 of the telemetry
#                                     and home pages' queries. PostgreSQL: 10k devices x 365 days
#                                     (~99 M readings, ~35 min here); SQLite: --devices 1000 unless
#                                     ARGS say otherwise.
#   scripts/bench.sh renewal [ARGS]   `tds bench renewal`: a day of the certificate renewal campaign
#                                     over 10,000 gateways due for renewal with a budget of 2,000 a
#                                     day (server-key mode, RSA-2048 then P-256): time and peak RSS
# TDS_BENCH_DB=sqlite|postgres runs store, ingest, queries and renewal on that database only.
# TDS_BENCH_PG_SETTINGS="-c shared_buffers=4GB -c max_wal_size=8GB" starts the throw-away cluster
# with those settings (docs/operations.md §6: PostgreSQL for a large fleet); its defaults otherwise.
#   scripts/bench.sh copy [ARGS]      `tds bench copy`: an embedded installation (default 1,000,000
#                                     readings) copied by `tds db copy` into a new database of the
#                                     throw-away PostgreSQL cluster; prints rows per second
#   scripts/bench.sh api [SECONDS]    the REST API's reads under load (wrk, 4 connections, SECONDS
#                                     each, default 15) against a release `tds serve`: a page of
#                                     1,000 readings and a month of a 32-meter gateway's daily
#                                     consumption (JSON and CSV), on SQLite and on PostgreSQL
#   scripts/bench.sh parse            `tds bench parse`: the endpoint's work on a telemetry message
#                                     before the writer, timed, then its instructions a message
#                                     under callgrind (two sizes, the difference; the same on
#                                     every run, for comparing two builds)
#   scripts/bench.sh connections [N] [SECONDS] [INTERVAL]
#                                     `tds serve` on SQLite in one process and `tds simulate` with N
#                                     (default 10000) gateways sending one batch every INTERVAL
#                                     seconds (default 60; 3600 for a fleet that stays idle, the
#                                     gateways starting spread over one interval) in another:
#                                     gateways held connected and the server's memory (RSS), sampled
#                                     every 10 s for SECONDS (default 240) after the fleet is up.
#                                     A fleet past the open-file hard limit (ulimit -Hn) of one
#                                     process is shared by several `tds serve` instances on one
#                                     PostgreSQL, each with a simulator of its own (TDS_BENCH_INSTANCES=K
#                                     sets how many); the ephemeral ports are widened when needed
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/postgres.sh
# The benchmarks' cluster: PostgreSQL's defaults, or the settings given (word-split on purpose),
# its WAL warmed first (`pg_warm_wal`): 64 recycled segments, as on a server that has run a while,
# instead of a fresh cluster zero-filling each new 16 MB segment during the measured runs.
# shellcheck disable=SC2086
bench_pg_start() { pg_start -c min_wal_size=1GB ${TDS_BENCH_PG_SETTINGS:-}; pg_warm_wal 64; }

bench=store
case "${1:-}" in
  store | ingest | queries | connections | copy | api | renewal | compare | parse) bench=$1; shift ;;
esac

cargo build --release --locked -p tds
tds="${CARGO_TARGET_DIR:-target}/release/tds"
# The endpoint logs every connection at info level; keep the figures readable.
export TDS_LOG_LEVEL="${TDS_LOG_LEVEL:-warn}"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_mb() { awk '/^VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
connected() { curl -fsS "http://$1/metrics" 2>/dev/null | awk '$1=="tds_ingest_connections" {print $2}'; }

if [ "$bench" = parse ]; then
  "$tds" bench parse --messages 200000
  command -v valgrind >/dev/null || { echo "bench parse: valgrind is not installed; no instruction count" >&2; exit 0; }
  out=$(mktemp -d /tmp/tds-parse.XXXXXX)
  trap 'rm -rf "$out"' EXIT
  # The setup (a SQLite database, a tenant, its gateway and devices) costs the same at both sizes.
  for n in 10000 30000; do
    valgrind --tool=callgrind --callgrind-out-file="$out/cg.$n" "$tds" bench parse --messages "$n" >"$out/log.$n" 2>&1
  done
  a=$(grep -o 'Collected : [0-9]*' "$out/log.10000" | grep -o '[0-9]*$')
  b=$(grep -o 'Collected : [0-9]*' "$out/log.30000" | grep -o '[0-9]*$')
  echo "parse: $(( (b - a) / 20000 )) instructions a message of 10 readings (callgrind: 30,000 messages less 10,000)"
  exit 0
fi

if [ "$bench" = connections ]; then
  gateways=${1:-10000}
  seconds=${2:-240}
  interval=${3:-60}
  # Each gateway is a socket in `tds serve` and another in `tds simulate`: both processes need
  # as many open files (they raise their soft limit to the hard one themselves). A fleet larger
  # than one process may hold is shared by several `tds serve` instances on one PostgreSQL
  # database (each with its own device endpoint, as behind a TCP load balancer), each with a
  # simulator of its own share; TDS_BENCH_INSTANCES=K asks for K of them whatever the limit.
  files=$(ulimit -Hn)
  instances=${TDS_BENCH_INSTANCES:-1}
  # Room is left in each process for the database's connections, the simulator's retries and
  # the sessions a reconnecting gateway leaves behind until they time out: a first run of 50,000
  # on three instances (16,667 each, 20,000 files) ran out of files.
  room=$((files - 5000))
  if [ "$files" != unlimited ] && [ -z "${TDS_BENCH_INSTANCES:-}" ] && [ "$gateways" -gt "$room" ]; then
    instances=$(( (gateways + room - 1) / room ))
    echo "== $gateways gateways need $gateways open files in each of tds serve and tds simulate; this" \
      "machine allows $files per process (ulimit -Hn): $instances instances of each, on one PostgreSQL"
  fi
  share=$(( (gateways + instances - 1) / instances ))
  # The whole fleet connects from 127.0.0.1: the ephemeral port range bounds the connections to
  # one port (28,231 ports by default). Widened for the run when the fleet needs more, then put back.
  ports=/proc/sys/net/ipv4/ip_local_port_range
  read -r port_lo port_hi <"$ports"
  restore_ports=
  if [ "$share" -gt $((port_hi - port_lo - 1000)) ]; then
    echo "1024 65535" >"$ports" \
      || { echo "bench connections: $share gateways need more than $((port_hi - port_lo)) ephemeral ports; widen $ports" >&2; exit 1; }
    restore_ports="$port_lo $port_hi"
    echo "== ephemeral ports widened to 1024-65535 for the run (were $port_lo-$port_hi)"
  fi
  if [ "$instances" -gt 1 ] || [ "${TDS_BENCH_DB:-sqlite}" = postgres ]; then
    bench_pg_start
    export TDS_DATABASE_URL="$PG_URL"
  fi
  dir=$(mktemp -d /tmp/tds-conn.XXXXXX)
  serve_pids=() sim_pids=() https=()
  # (after pg_start, whose own EXIT trap this one replaces and calls)
  trap 'kill "${serve_pids[@]}" "${sim_pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"; [ -z "$restore_ports" ] || echo "$restore_ports" >"$ports"; pg_stop' EXIT
  export TDS_DATA_DIR="$dir"
  # The whole fleet connects from 127.0.0.1: lift the per-address connection limit (5 a second by
  # default, against one misbehaving source among many), which would take it half an hour.
  export TDS_MQTT_CONNECTS_PER_SECOND_PER_IP=100000 TDS_MQTT_CONNECT_BURST_PER_IP=100000
  ulimit -n "$(ulimit -Hn)"
  # The instances share the data directory (its pki/: one CA) and the database; the first one
  # creates both before the others start.
  bases=() mqtt_ports=()
  for i in $(seq 1 "$instances"); do
    http="127.0.0.1:$(free_port)" mqtt_port=$(free_port)
    TDS_HTTP_ADDR="$http" TDS_MQTT_ADDR="127.0.0.1:$mqtt_port" "$tds" serve >"$dir/serve-$i.log" 2>&1 &
    serve_pids+=($!) https+=("$http") mqtt_ports+=("$mqtt_port")
    until curl -fsS "http://$http/readyz" >/dev/null 2>&1; do sleep 0.5; done
  done
  for i in $(seq 0 $((instances - 1))); do bases+=("$(rss_mb "${serve_pids[$i]}")"); done
  echo "== tds serve ready ($instances instance(s), pids ${serve_pids[*]}): RSS ${bases[*]} MB with no gateway"
  # The server's TLS handshakes (RSA-4096 signatures) bound how fast the fleet can connect: the
  # simulators share 500 new connections a second (300 with several instances, whose simulators
  # and servers share the same two cores).
  rate=500; [ "$instances" = 1 ] || rate=$(( 300 / instances ))
  for i in $(seq 0 $((instances - 1))); do
    first=$(( i * share )); n=$(( gateways - first < share ? gateways - first : share ))
    tenant=Bench; [ "$instances" = 1 ] || tenant="Bench-$((i + 1))"
    "$tds" simulate --tenant "$tenant" --first-gateway "$first" --gateways "$n" --devices 1 --interval "$interval" \
      --faults none --connect-rate "$rate" --report-every 10 --mqtt-port "${mqtt_ports[$i]}" \
      --duration $((seconds + gateways / 150 + 120)) >"$dir/simulate-$i.log" 2>&1 &
    sim_pids+=($!)
  done
  echo "== tds simulate ($instances): $gateways gateways, one batch every $interval s each (provisioning, then $rate connections/s each)"
  # Gateways connected, as the simulators count them (the servers' connection gauge also
  # counts sessions that a reconnecting gateway left behind until they time out).
  all_connected() {
    local sum=0 n
    for f in "$dir"/simulate-*.log; do
      n=$(awk '$2 == "connected;" {n = $1} END {print n + 0}' "$f"); sum=$((sum + n))
    done
    echo $sum
  }
  server_connections() { for h in "${https[@]}"; do n=$(connected "$h"); echo "${n%.*}"; done | xargs; }
  start=$(date +%s); held=0; peaks=() per=()
  for i in $(seq 0 $((instances - 1))); do peaks+=(0); done
  while kill -0 "${sim_pids[0]}" 2>/dev/null; do
    sleep 10
    n=$(all_connected) rss=()
    for i in $(seq 0 $((instances - 1))); do
      r=$(rss_mb "${serve_pids[$i]}"); rss+=("$r")
      [ "$r" -gt "${peaks[$i]}" ] && peaks[i]=$r
    done
    echo "  $(( $(date +%s) - start )) s: $n gateways connected (server connections $(server_connections)), server RSS ${rss[*]} MB, simulator RSS $(for p in "${sim_pids[@]}"; do echo "$(rss_mb "$p" 2>/dev/null || echo -)"; done | xargs) MB"
    [ "$n" -ge "$gateways" ] && [ "$held" = 0 ] && held=$(date +%s)
    if [ "$held" != 0 ] && [ $(( $(date +%s) - held )) -ge "$seconds" ]; then break; fi
  done
  for i in $(seq 0 $((instances - 1))); do
    first=$(( i * share )); n=$(( gateways - first < share ? gateways - first : share ))
    per+=("$(( ((peaks[i] - bases[i]) * 1024) / (n > 0 ? n : 1) ))")
  done
  if [ "$held" != 0 ]; then held_for="held for $(( $(date +%s) - held )) s"; else held_for="never all connected"; fi
  echo "== $gateways gateways: $(all_connected) connected at the end ($held_for); server RSS now $(for p in "${serve_pids[@]}"; do echo "$(rss_mb "$p")"; done | xargs) MB (peak ${peaks[*]} MB), ${per[*]} KB per gateway at peak above the server with none"
  for i in $(seq 0 $((instances - 1))); do tail -n 3 "$dir/simulate-$i.log"; done
  echo "server log lines with error/refused: $(cat "$dir"/serve-*.log | grep -ciE "error|refused" || true)"
  for h in "${https[@]}"; do
    refusals=$(curl -fsS "http://$h/metrics" \
      | awk -F'[{}"]' '/^tds_ingest_refusals_total\{/ {printf "%s %s  ", $3, $5}' || true)
    echo "connections the server ($h) refused, by reason: ${refusals:-none}"
  done
  exit 0
fi

if [ "$bench" = api ]; then
  seconds=${1:-15}
  if ! command -v wrk >/dev/null; then
    [ "$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null \
      || { echo "bench api: wrk not found (apt-get install wrk)" >&2; exit 1; }
  fi
  api_bench() { # $1: database URL or empty for SQLite
    local dir serve_pid
    dir=$(mktemp -d /tmp/tds-api.XXXXXX)
    export TDS_DATA_DIR="$dir" TDS_HTTP_ADDR="127.0.0.1:$(free_port)" TDS_MQTT_ADDR="127.0.0.1:$(free_port)"
    export TDS_API_RATE_PER_SECOND=1000000 TDS_API_BURST=1000000
    if [ -n "$1" ]; then export TDS_DATABASE_URL=$1; else unset TDS_DATABASE_URL; fi
    eval "$("$tds" bench api-data)"
    "$tds" serve >"$dir/serve.log" 2>&1 &
    serve_pid=$!
    until curl -fsS "http://$TDS_HTTP_ADDR/readyz" >/dev/null 2>&1; do sleep 0.5; done
    local base="http://$TDS_HTTP_ADDR/api/v1"
    local readings="$base/readings?gateway=$MAC&from=$FROM&to=$TO&limit=1000"
    local month="$base/consumption?scope=gateway&gateway=$MAC&bucket=day&from=$FIRST_DAY&to=$LAST_DAY"
    local perdev="$base/consumption?scope=device&gateway=$MAC&device=D00&bucket=day&from=$FIRST_DAY&to=$LAST_DAY"
    echo "   data: $READINGS readings of 32 meters (one gateway), $FIRST_DAY to $LAST_DAY; rollups up to date"
    for target in "readings page of 1,000 rows|$readings" "consumption of the month, gateway, by day|$month" \
                  "consumption of the month, one meter, by day|$perdev" "same, as CSV|$month&format=csv"; do
      local name=${target%%|*} url=${target#*|}
      curl -fsS -o /dev/null -H "Authorization: Bearer $TOKEN" "$url" || { echo "bench api: $url failed" >&2; exit 1; }
      wrk -t 2 -c 4 -d "${seconds}s" --latency -H "Authorization: Bearer $TOKEN" "$url" >"$dir/wrk.out"
      printf '   %-45s %8s req/s   p50 %8s   p99 %8s\n' "$name" \
        "$(awk '/Requests\/sec/ {printf "%.0f", $2}' "$dir/wrk.out")" \
        "$(awk '$1=="50%" {print $2}' "$dir/wrk.out")" "$(awk '$1=="99%" {print $2}' "$dir/wrk.out")"
      if grep -q "Non-2xx" "$dir/wrk.out"; then grep "Non-2xx" "$dir/wrk.out"; exit 1; fi
    done
    kill "$serve_pid"; wait "$serve_pid" 2>/dev/null || true
    rm -rf "$dir"
  }
  echo "== REST API reads, wrk -t 2 -c 4 -d ${seconds}s (release build, server and load on this machine)"
  if [ "${TDS_BENCH_DB:-both}" != postgres ]; then echo "== SQLite"; api_bench ""; fi
  if [ "${TDS_BENCH_DB:-both}" != sqlite ]; then
    bench_pg_start
    "$(pg_bindir)/psql" -X -q "$PG_URL" -c "CREATE DATABASE tds_api"
    echo "== PostgreSQL"; api_bench "${PG_URL%/*}/tds_api"
  fi
  exit 0
fi

if [ "$bench" = compare ]; then
  if ! command -v mosquitto >/dev/null; then
    [ "$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null \
      || { echo "bench compare: mosquitto not found (apt-get install mosquitto)" >&2; exit 1; }
  fi
  # Debian's package starts a broker of its own on port 1883; the benchmark starts its own.
  bench=ingest
  set -- --compare mosquitto "$@"
fi

if [ "$bench" = copy ]; then
  bench_pg_start
  "$(pg_bindir)/psql" -X -q "$PG_URL" -c "CREATE DATABASE tds_copy"
  "$tds" bench copy --to "${PG_URL%/*}/tds_copy" "$@"
  exit 0
fi

if [ "$bench" = renewal ]; then
  if [ "${TDS_BENCH_DB:-both}" != postgres ]; then
    echo "== SQLite"
    "$tds" bench renewal "$@"
  fi
  if [ "${TDS_BENCH_DB:-both}" != sqlite ]; then
    bench_pg_start
    echo "== PostgreSQL"
    # A database per key type, as on SQLite.
    for key in rsa2048 ecdsa-p256; do
      "$(pg_bindir)/psql" -X -q "$PG_URL" -c "CREATE DATABASE tds_renewal_${key//-/_}"
      "$tds" bench renewal --database-url "${PG_URL%/*}/tds_renewal_${key//-/_}" --key "$key" "$@"
    done
  fi
  exit 0
fi

if [ "$bench" = queries ]; then
  sqlite_size=(--devices 1000)
  case " $* " in *" --devices"*) sqlite_size=() ;; esac
  if [ "${TDS_BENCH_DB:-both}" != postgres ]; then
    echo "== SQLite"
    "$tds" bench queries "${sqlite_size[@]}" "$@"
  fi
  if [ "${TDS_BENCH_DB:-both}" != sqlite ]; then
    bench_pg_start
    echo "== PostgreSQL"
    "$tds" bench queries --database-url "$PG_URL" "$@"
    "$(pg_bindir)/psql" -X -q "$PG_URL" -c "SELECT relname AS \"table\", reltuples::bigint AS \"rows (estimate)\", \
      pg_size_pretty(pg_total_relation_size(oid)) AS \"size with indexes\" FROM pg_class \
      WHERE relname IN ('readings', 'rollups') ORDER BY relname"
  fi
  exit 0
fi

if [ "${TDS_BENCH_DB:-both}" != postgres ]; then
  echo "== SQLite"
  "$tds" bench "$bench" "$@"
fi
if [ "${TDS_BENCH_DB:-both}" != sqlite ]; then
  bench_pg_start
  echo "== PostgreSQL"
  "$tds" bench "$bench" --database-url "$PG_URL" "$@"
fi
