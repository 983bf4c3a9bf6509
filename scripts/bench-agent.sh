#!/usr/bin/env bash
# Measures tds-agent (release build) on this machine:
#   1. memory (RSS, peak RSS) and CPU while polling 32 Modbus TCP meters every 10 s and
#      publishing to a local Mosquitto over mutual TLS, for BENCH_SECONDS (default 120);
#   2. the flush speed of a day's backlog: 8,640 batches of 32 readings (a day at 10 s) put in
#      the disk queue while the agent is stopped, then sent to Mosquitto (QoS 1, window 8).
# The meters are served by `tds-agent bench modbus-sim` in a separate process, so that only the
# agent is measured. Needs openssl and mosquitto. Usage: scripts/bench-agent.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin"
seconds=${BENCH_SECONDS:-120}
meters=${BENCH_METERS:-32}
poll=${BENCH_POLL:-10}
target=${CARGO_TARGET_DIR:-target}
cargo build --release --locked -q -p tds-agent
agent="$(cd "$target/release" && pwd)/tds-agent"

tmp=$(mktemp -d /tmp/tds-bench-agent.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

mac=02:00:00:00:be:0c
cd "$tmp"
mkdir data
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt \
  -subj /CN=bench-ca -days 2 2>/dev/null
leaf() { # name cn extension
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$2" 2>/dev/null
  printf '%s\n' "$3" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 2 -extfile "$1.ext" 2>/dev/null
}
leaf server localhost "subjectAltName=DNS:localhost
extendedKeyUsage=serverAuth"
leaf client "$mac" "extendedKeyUsage=clientAuth"
cp ca.crt data/ca.crt; cp client.crt data/client.crt; cp client.key data/client.key

mqtt=$(free_port); modbus=$(free_port)
cat >mosquitto.conf <<CONF
user root
persistence false
listener $mqtt 127.0.0.1
cafile $tmp/ca.crt
certfile $tmp/server.crt
keyfile $tmp/server.key
require_certificate true
use_identity_as_username true
max_inflight_messages 100
max_queued_messages 100000
CONF
mosquitto -c mosquitto.conf 2>/dev/null & pids+=($!)
"$agent" bench modbus-sim --meters "$meters" --listen "127.0.0.1:$modbus" 2>/dev/null & pids+=($!)
sleep 1

{
  cat <<CONF
mac = "$mac"
poll_seconds = $poll
data_dir = "$tmp/data"
[mqtt]
host = "localhost"
port = $mqtt
ca_file = "ca.crt"
cert_file = "client.crt"
key_file = "client.key"
[queue]
max_bytes = 1073741824
[[bus]]
name = "lan"
kind = "tcp"
host = "127.0.0.1"
port = $modbus
CONF
  for i in $(seq 1 "$meters"); do
    printf '[[meter]]\ncode = "M%02d"\nbus = "lan"\nslave = %d\nregister = 0\ntype = "u32"\nscale = 0.01\nunit = "kWh"\n' "$i" "$i"
  done
} >agent.toml
A=$agent
"$A" check --config agent.toml

clk=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

echo "== 1. polling $meters meters every ${poll} s for ${seconds} s"
TDS_AGENT_LOG=warn "$A" run --config agent.toml & agent_pid=$!; pids+=($agent_pid)
sleep 5
t0=$(cpu_ticks $agent_pid); s0=$(date +%s.%N)
sleep "$seconds"
t1=$(cpu_ticks $agent_pid); s1=$(date +%s.%N)
rss=$(awk '/VmRSS/ {print $2}' /proc/$agent_pid/status); hwm=$(awk '/VmHWM/ {print $2}' /proc/$agent_pid/status)
acked=$("$A" status --config agent.toml --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["batches_acknowledged"])')
cpu=$(python3 -c "print(f'{100*($t1-$t0)/$clk/($s1-$s0):.3f}')")
echo "   RSS ${rss} KiB (peak ${hwm} KiB); CPU ${cpu} % of one core; ${acked} batches acknowledged"
kill -TERM $agent_pid; wait $agent_pid || true

echo "== 2. flushing a day's backlog (8640 batches of $meters readings)"
"$A" bench fill-queue --config agent.toml --batches 8640 --step "$poll"
s0=$(date +%s.%N)
TDS_AGENT_LOG=warn "$A" run --config agent.toml & agent_pid=$!; pids+=($agent_pid)
while [ "$(find data/queue -name '*.json' | wc -l)" -gt 1 ]; do sleep 0.05; done
s1=$(date +%s.%N)
hwm=$(awk '/VmHWM/ {print $2}' /proc/$agent_pid/status)
kill -TERM $agent_pid; wait $agent_pid || true
python3 -c "d=$s1-$s0; print(f'   flushed in {d:.1f} s: {8640/d:.0f} batches/s, {8640*$meters/d:.0f} readings/s; peak RSS ${hwm} KiB')"
