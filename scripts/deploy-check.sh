#!/usr/bin/env bash
# Checks the deployment files in deploy/ with the tools that read them:
#   1. deploy/tds.service   systemd-analyze verify (and its security exposure, at most 2.0);
#      deploy/tds-agent.service  the same for the gateway agent's unit
#   2. deploy/tds.env       `tds config check` on exactly its settings
#   3. deploy/nginx/tds.conf  nginx -t, then nginx in front of a real `tds serve` (readyz, the
#                           /metrics block, the http->https redirect, the 8 MiB body limit,
#                           TDS's HSTS through the proxy)
#   4. deploy/broker/run-mosquitto.sh  Mosquitto on `tds broker-config` output, reloaded when
#                           crl.pem is replaced, stopped by SIGTERM
#   5. deploy/compose.yml   `docker compose config` (or docker-compose), both profiles
#   6. deploy/Dockerfile    with a working container engine: the `prebuilt` image with the tds
#                           binary, run read-only without capabilities: healthy (/readyz 200)
#                           and running as uid 10001, not root
# A check whose tool is missing is skipped with a message saying what was not checked; a check
# that runs and finds a problem fails the script.
#
# Environment: TDS_BIN (a built `tds`; default: $CARGO_TARGET_DIR or target/, release then
# debug), TDS_DEPLOY_CHECK_BASE (the runtime base image; default debian:bookworm-slim, made with
# debootstrap when it can be neither found nor pulled).
set -euo pipefail
cd "$(dirname "$0")/.."

tmp=$(mktemp -d /tmp/tds-deploy-check.XXXXXX)
pids=()
container=
volume=
image=
failures=()
skipped=()
passed=0

cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ -n "$container" ]; then docker rm -f "$container" >/dev/null 2>&1 || true; fi
  if [ -n "$volume" ]; then docker volume rm "$volume" >/dev/null 2>&1 || true; fi
  if [ -n "$image" ]; then docker rmi "$image" >/dev/null 2>&1 || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

step() { echo "== deploy-check: $*"; }
ok() { echo "   ok: $*"; passed=$((passed + 1)); }
skip() { echo "   SKIPPED: $*"; skipped+=("$*"); }
fail() { echo "   FAILED: $*" >&2; failures+=("$*"); }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_for SECONDS COMMAND...: runs COMMAND every 0.5 s until it succeeds.
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}

# A tds binary for the checks that run TDS itself.
tds_bin=${TDS_BIN:-}
if [ -z "$tds_bin" ]; then
  for candidate in "${CARGO_TARGET_DIR:-target}/release/tds" "${CARGO_TARGET_DIR:-target}/debug/tds"; do
    if [ -x "$candidate" ]; then tds_bin=$candidate; break; fi
  done
fi
if [ -n "$tds_bin" ] && [ ! -x "$tds_bin" ]; then
  echo "deploy-check: TDS_BIN=$tds_bin is not an executable" >&2
  exit 1
fi
if [ -n "$tds_bin" ]; then tds_bin=$(realpath "$tds_bin"); fi

# Starts `tds serve` on SQLite in DIR with extra TDS_* assignments; sets tds_port and tds_log.
start_tds() {
  local dir=$1; shift
  mkdir -p "$dir"
  tds_port=$(free_port)
  tds_log=$dir/tds.log
  env -i PATH="$PATH" HOME="$dir" TDS_DATA_DIR="$dir/data" TDS_HTTP_ADDR="127.0.0.1:$tds_port" \
    TDS_MQTT_ADDR="127.0.0.1:$(free_port)" "$@" "$tds_bin" serve >"$tds_log" 2>&1 &
  pids+=($!)
  if ! wait_for 60 curl -sf "http://127.0.0.1:$tds_port/readyz"; then
    tail -n 20 "$tds_log" >&2
    return 1
  fi
}

# --- 1. systemd unit ----------------------------------------------------------------------
step "systemd unit deploy/tds.service"
if command -v systemd-analyze >/dev/null 2>&1; then
  # `verify` insists that ExecStart's program exists, so the unit is verified, unchanged, inside
  # a throw-away root: the system's unit files, the unit in etc/systemd/system, and an
  # executable stand-in at usr/local/bin/tds (the unit is what is checked, not the binary).
  root=$tmp/root
  mkdir -p "$root/etc/systemd/system" "$root/usr/local/bin" "$root/usr/lib/systemd"
  units=/usr/lib/systemd/system
  [ -d "$units" ] || units=/lib/systemd/system
  cp -a "$units" "$root/usr/lib/systemd/"
  cp deploy/tds.service "$root/etc/systemd/system/tds.service"
  printf '#!/bin/sh\nexit 0\n' >"$root/usr/local/bin/tds"
  chmod 0755 "$root/usr/local/bin/tds"
  # verify reports bad values and unknown keys but still exits 0: any output is a failure.
  if out=$(systemd-analyze verify --root="$root" tds.service 2>&1) && [ -z "$out" ]; then
    ok "systemd-analyze verify: no complaints"
  else
    fail "systemd-analyze verify deploy/tds.service: ${out:-exit status $?}"
  fi
  if out=$(systemd-analyze security --offline=yes --root="$root" --threshold=20 tds.service 2>&1); then
    ok "systemd-analyze security: $(printf '%s\n' "$out" | tail -n 1 | sed 's/^→ //')"
  else
    fail "systemd-analyze security deploy/tds.service above 2.0: $(printf '%s\n' "$out" | tail -n 1)"
  fi
else
  skip "systemd unit: systemd-analyze not found (apt-get install systemd)"
fi

# --- 1b. the agent's systemd unit -----------------------------------------------------------
step "systemd unit deploy/tds-agent.service"
if command -v systemd-analyze >/dev/null 2>&1; then
  root=$tmp/root-agent
  mkdir -p "$root/etc/systemd/system" "$root/usr/local/bin" "$root/usr/lib/systemd"
  units=/usr/lib/systemd/system
  [ -d "$units" ] || units=/lib/systemd/system
  cp -a "$units" "$root/usr/lib/systemd/"
  cp deploy/tds-agent.service "$root/etc/systemd/system/tds-agent.service"
  printf '#!/bin/sh\nexit 0\n' >"$root/usr/local/bin/tds-agent"
  chmod 0755 "$root/usr/local/bin/tds-agent"
  if out=$(systemd-analyze verify --root="$root" tds-agent.service 2>&1) && [ -z "$out" ]; then
    ok "systemd-analyze verify: no complaints"
  else
    fail "systemd-analyze verify deploy/tds-agent.service: ${out:-exit status $?}"
  fi
  if out=$(systemd-analyze security --offline=yes --root="$root" --threshold=20 tds-agent.service 2>&1); then
    ok "systemd-analyze security: $(printf '%s\n' "$out" | tail -n 1 | sed 's/^→ //')"
  else
    fail "systemd-analyze security deploy/tds-agent.service above 2.0: $(printf '%s\n' "$out" | tail -n 1)"
  fi
else
  skip "agent systemd unit: systemd-analyze not found (apt-get install systemd)"
fi

# --- 2. the unit's environment file ---------------------------------------------------------
step "environment file deploy/tds.env"
if [ -n "$tds_bin" ]; then
  # The file's assignments, read literally as systemd's EnvironmentFile= does (none is quoted).
  vars=()
  while IFS= read -r line; do
    case $line in '' | '#'*) continue ;; esac
    vars+=("$line")
  done <deploy/tds.env
  if out=$(env -i PATH="$PATH" HOME="$tmp" "${vars[@]}" "$tds_bin" config check 2>&1); then
    ok "tds config check accepts its ${#vars[@]} settings"
  else
    fail "tds config check on deploy/tds.env: $out"
  fi
else
  skip "deploy/tds.env: no tds binary (build it, or set TDS_BIN)"
fi

# --- 3. nginx ---------------------------------------------------------------------------------
step "nginx example deploy/nginx/tds.conf"
nginx_bin=$(command -v nginx || true)
if [ -z "$nginx_bin" ] && [ -x /usr/sbin/nginx ]; then nginx_bin=/usr/sbin/nginx; fi
if [ -z "$nginx_bin" ]; then
  skip "nginx: nginx not found (apt-get install nginx)"
elif ! command -v openssl >/dev/null 2>&1; then
  skip "nginx: openssl not found for the throw-away certificate (apt-get install openssl)"
else
  ng=$tmp/nginx
  mkdir -p "$ng"
  # nginx's workers (user nobody when started as root) read their temporary directories here.
  chmod 0755 "$tmp" "$ng"
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=tds.example.com \
    -addext subjectAltName=DNS:tds.example.com \
    -keyout "$ng/privkey.pem" -out "$ng/fullchain.pem" >/dev/null 2>&1
  # Only the certificate paths change for `nginx -t`.
  if [ "$(grep -c '/etc/ssl/tds/' deploy/nginx/tds.conf)" != 2 ]; then
    fail "nginx: expected the two certificate paths under /etc/ssl/tds/ in deploy/nginx/tds.conf"
  fi
  sed "s#/etc/ssl/tds/#$ng/#" deploy/nginx/tds.conf >"$ng/tds.conf"
  wrapper() { # wrapper SITE_CONF: an nginx.conf whose http block holds SITE_CONF
    cat <<EOF
worker_processes 1;
pid $ng/nginx.pid;
error_log $ng/error.log;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $ng/client_body;
    proxy_temp_path $ng/proxy;
    fastcgi_temp_path $ng/fastcgi;
    uwsgi_temp_path $ng/uwsgi;
    scgi_temp_path $ng/scgi;
    include $1;
}
EOF
  }
  wrapper "$ng/tds.conf" >"$ng/nginx.conf"
  if out=$("$nginx_bin" -t -q -p "$ng" -e "$ng/error.log" -c "$ng/nginx.conf" 2>&1); then
    ok "nginx -t ($("$nginx_bin" -v 2>&1 | sed 's/.*version: //'))${out:+: $out}"
  else
    fail "nginx -t on deploy/nginx/tds.conf: $out"
  fi

  # The same file in front of a real TDS: only the certificate paths, the ports and the upstream
  # port differ (the IPv6 listeners are dropped: the check listens on 127.0.0.1 only).
  if [ -z "$tds_bin" ]; then
    skip "nginx in front of TDS: no tds binary (build it, or set TDS_BIN)"
  elif ! command -v curl >/dev/null 2>&1; then
    skip "nginx in front of TDS: curl not found"
  elif ! start_tds "$tmp/tds-nginx" TDS_PUBLIC_URL=https://tds.example.com 'TDS_TRUSTED_PROXIES=["127.0.0.1/32"]'; then
    fail "nginx in front of TDS: tds serve did not become ready"
  else
    https_port=$(free_port)
    http_port=$(free_port)
    sed -e "s#/etc/ssl/tds/#$ng/#" \
        -e "s#listen 443 ssl http2;#listen 127.0.0.1:$https_port ssl http2;#" \
        -e "s#listen 80;#listen 127.0.0.1:$http_port;#" \
        -e '/listen \[::\]:/d' \
        -e "s#server 127.0.0.1:8080;#server 127.0.0.1:$tds_port;#" \
        deploy/nginx/tds.conf >"$ng/tds-live.conf"
    wrapper "$ng/tds-live.conf" >"$ng/nginx-live.conf"
    "$nginx_bin" -p "$ng" -e "$ng/error.log" -c "$ng/nginx-live.conf" -g 'daemon off;' >"$ng/nginx.out" 2>&1 &
    pids+=($!)
    site=https://tds.example.com:$https_port
    curl_tls=(curl -s --max-time 10 --cacert "$ng/fullchain.pem" --resolve "tds.example.com:$https_port:127.0.0.1")
    if ! wait_for 20 "${curl_tls[@]}" -f "$site/readyz"; then
      fail "nginx in front of TDS: https://…/readyz did not answer 200 through nginx: $(tail -n 5 "$ng/error.log" "$ng/nginx.out" 2>/dev/null)"
    else
      ok "https /readyz through nginx: $("${curl_tls[@]}" "$site/readyz")"
      code=$("${curl_tls[@]}" -o /dev/null -w '%{http_code}' "$site/metrics")
      [ "$code" = 404 ] && ok "/metrics is not served through the proxy (404)" \
        || fail "/metrics through nginx answered $code, not 404"
      hsts=$("${curl_tls[@]}" -o /dev/null -D - "$site/login" | tr -d '\r' | grep -i '^strict-transport-security:' || true)
      [ "$(printf '%s' "$hsts" | grep -c .)" = 1 ] && ok "TDS's HSTS reaches the browser, once: $hsts" \
        || fail "expected one Strict-Transport-Security header on /login through nginx, got: '${hsts}'"
      redirect=$(curl -s --max-time 10 -o /dev/null -w '%{http_code} %{redirect_url}' -H 'Host: tds.example.com' "http://127.0.0.1:$http_port/login")
      [ "$redirect" = "301 https://tds.example.com/login" ] && ok "http redirects to https ($redirect)" \
        || fail "http://…/login answered '$redirect', not a 301 to https://tds.example.com/login"
      # TDS takes uploads of up to 8 MiB (max_upload_bytes): nginx lets exactly that much through
      # and refuses one byte more with 413 itself. Without a session TDS refuses the request
      # before reading the body: 403, or 502 when nginx was still sending it then.
      post() {
        head -c "$1" /dev/zero | "${curl_tls[@]}" -o /dev/null -w '%{http_code}' \
          -H 'Content-Type: application/octet-stream' --data-binary @- "$site/import/gateways"
      }
      code=$(post $((8 * 1024 * 1024)))
      [ "$code" != 413 ] && [ "$code" != 000 ] && ok "a body of 8 MiB passes nginx on to TDS (answer $code, not 413)" \
        || fail "a body of exactly 8 MiB answered $code: nginx must let it through to TDS"
      code=$(post $((8 * 1024 * 1024 + 1)))
      [ "$code" = 413 ] && ok "a body of 8 MiB + 1 byte is refused with 413" \
        || fail "a body of 8 MiB + 1 byte answered $code, not 413"
    fi
  fi
fi

# --- 4. Mosquitto runner for scale-out -----------------------------------------------------------
step "scale-out broker runner deploy/broker/run-mosquitto.sh"
mosquitto_bin=$(command -v mosquitto || true)
if [ -z "$mosquitto_bin" ] && [ -x /usr/sbin/mosquitto ]; then mosquitto_bin=/usr/sbin/mosquitto; fi
if [ -z "$tds_bin" ]; then
  skip "run-mosquitto.sh: no tds binary for \`tds broker-config\` (build it, or set TDS_BIN)"
elif [ -z "$mosquitto_bin" ]; then
  skip "run-mosquitto.sh: mosquitto not found (apt-get install mosquitto)"
else
  br=$tmp/broker
  mqtt_port=$(free_port)
  if ! out=$(env -i PATH="$PATH" HOME="$tmp" TDS_DATA_DIR="$tmp/tds-broker-data" \
      "$tds_bin" broker-config --out "$br" --bind 127.0.0.1 --port "$mqtt_port" 2>&1); then
    fail "tds broker-config: $out"
  else
    # Mosquitto runs as the user who owns the files, as in deploy/compose.yml (it refuses to
    # start as root without a `user` to drop to). Debian's `sh` is dash, eclipse-mosquitto's
    # busybox: the script is POSIX.
    # setpriv execs, so that the runner's pid is the script's own (it gets the SIGTERM below).
    as=()
    if [ "$(id -u)" = 0 ]; then
      id mosquitto >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin mosquitto
      chown -R mosquitto "$br"
      chmod 0755 "$tmp"
      as=(setpriv --reuid="$(id -u mosquitto)" --regid="$(id -g mosquitto)" --clear-groups --)
    fi
    "${as[@]}" env PATH="$(dirname "$mosquitto_bin"):$PATH" CRL_POLL_SECONDS=1 \
      sh deploy/broker/run-mosquitto.sh "$br" >"$tmp/mosquitto.log" 2>&1 &
    runner=$!
    pids+=("$runner")
    if ! wait_for 20 grep -q 'mosquitto version .* running' "$tmp/mosquitto.log"; then
      fail "run-mosquitto.sh: Mosquitto did not start: $(tail -n 5 "$tmp/mosquitto.log")"
    else
      ok "Mosquitto runs on the broker-config files (mTLS listener on 127.0.0.1:$mqtt_port)"
      # What TDS does with broker_crl_file: a new file renamed over crl.pem.
      "${as[@]}" cp "$br/crl.pem" "$br/crl.pem.tmp"
      "${as[@]}" mv "$br/crl.pem.tmp" "$br/crl.pem"
      if wait_for 15 grep -q 'Reloading config' "$tmp/mosquitto.log"; then
        ok "a replaced crl.pem makes Mosquitto reload (SIGHUP)"
      else
        fail "run-mosquitto.sh: no reload after crl.pem was replaced: $(tail -n 5 "$tmp/mosquitto.log")"
      fi
      kill -TERM "$runner"
      status=0
      wait "$runner" || status=$?
      if [ "$status" = 0 ] && ! pgrep -f "mosquitto -c $br/mosquitto.conf" >/dev/null; then
        ok "SIGTERM stops the runner and Mosquitto (exit 0)"
      else
        fail "run-mosquitto.sh after SIGTERM: exit status $status$(pgrep -f "mosquitto -c $br/" >/dev/null && echo ', Mosquitto still running')"
      fi
    fi
  fi
fi

# --- 5. compose file ----------------------------------------------------------------------------
step "compose file deploy/compose.yml"
compose=()
# An empty env file: the check must not depend on a deploy/.env of this machine.
: >"$tmp/empty.env"
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
fi
if [ ${#compose[@]} -eq 0 ]; then
  skip "compose file: neither the docker compose plugin nor docker-compose is installed"
else
  for profile in "" scale-out; do
    args=(-f deploy/compose.yml --env-file "$tmp/empty.env")
    [ -z "$profile" ] || args+=(--profile "$profile")
    if out=$(env -u TDS_IMAGE TDS_DB_PASSWORD=check "${compose[@]}" "${args[@]}" config 2>&1 >"$tmp/compose.out"); then
      services=$(env TDS_DB_PASSWORD=check "${compose[@]}" "${args[@]}" config --services 2>/dev/null | sort | tr '\n' ' ')
      ok "${compose[*]} config${profile:+ --profile $profile}: services $services"
    else
      fail "${compose[*]} config${profile:+ --profile $profile}: $out"
    fi
  done
  # The database password has no default: without it the file must refuse to load.
  if env -u TDS_DB_PASSWORD "${compose[@]}" -f deploy/compose.yml --env-file "$tmp/empty.env" config >/dev/null 2>&1; then
    fail "compose file loads without TDS_DB_PASSWORD"
  else
    ok "compose file refuses to load without TDS_DB_PASSWORD"
  fi
fi

# --- 6. container image -------------------------------------------------------------------------
step "container image deploy/Dockerfile (target prebuilt)"
if ! command -v docker >/dev/null 2>&1; then
  skip "image build and run: no docker command"
elif ! docker_info=$(docker info 2>&1); then
  skip "image build and run: no container engine daemon ($(printf '%s\n' "$docker_info" | grep -m1 -i -E 'cannot|error' || echo 'docker info failed'))"
elif [ -z "$tds_bin" ]; then
  skip "image build and run: no tds binary (build it, or set TDS_BIN)"
else
  base=${TDS_DEPLOY_CHECK_BASE:-debian:bookworm-slim}
  if ! docker image inspect "$base" >/dev/null 2>&1 && ! timeout 120 docker pull -q "$base" >/dev/null 2>&1; then
    # No registry: a bookworm base of Debian's packages (debootstrap minbase: Essential + apt,
    # like bookworm-slim), made once and kept.
    local_base=tds-deploy-check/debian:bookworm-debootstrap
    if docker image inspect "$local_base" >/dev/null 2>&1; then
      base=$local_base
    elif command -v debootstrap >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
      echo "   $base cannot be pulled: making $local_base with debootstrap"
      if debootstrap --variant=minbase bookworm "$tmp/rootfs" http://deb.debian.org/debian >"$tmp/debootstrap.log" 2>&1; then
        printf '%s\n' 'Types: deb' 'URIs: http://deb.debian.org/debian' 'Suites: bookworm bookworm-updates' \
          'Components: main' 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' '' \
          'Types: deb' 'URIs: http://deb.debian.org/debian-security' 'Suites: bookworm-security' \
          'Components: main' 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' \
          >"$tmp/rootfs/etc/apt/sources.list.d/debian.sources"
        rm -f "$tmp/rootfs/etc/apt/sources.list"
        rm -rf "$tmp/rootfs/var/lib/apt/lists/"* "$tmp/rootfs/var/cache/apt/"*.bin \
          "$tmp/rootfs/var/cache/apt/archives/"*.deb
        tar -C "$tmp/rootfs" -c . | docker import -c 'CMD ["bash"]' - "$local_base" >/dev/null
        rm -rf "$tmp/rootfs"
        base=$local_base
      else
        tail -n 5 "$tmp/debootstrap.log" >&2
        base=
      fi
    else
      base=
    fi
  fi
  if [ -z "$base" ]; then
    skip "image build and run: base image ${TDS_DEPLOY_CHECK_BASE:-debian:bookworm-slim} neither present nor pullable, and no debootstrap (as root) to make one"
  else
    # A build context of just what the prebuilt target reads: the health check and the binary.
    ctx=$tmp/context
    mkdir -p "$ctx/deploy"
    cp deploy/healthcheck.sh "$ctx/deploy/"
    ln "$tds_bin" "$ctx/tds" 2>/dev/null || cp "$tds_bin" "$ctx/tds"
    # Without buildx, Docker 23+ can only use the legacy builder; the prebuilt target is placed
    # so that it builds there too.
    build_env=()
    docker buildx version >/dev/null 2>&1 || build_env=(DOCKER_BUILDKIT=0)
    image=tds-deploy-check:$$
    # Host networking: the build's apt-get and the run need no bridge network, and the check
    # talks to 127.0.0.1 only.
    if ! env "${build_env[@]}" docker build -q --network host -f deploy/Dockerfile --target prebuilt \
        --build-arg RUNTIME_IMAGE="$base" --build-arg TDS_BINARY=tds -t "$image" "$ctx" >"$tmp/build.log" 2>&1; then
      fail "docker build --target prebuilt: $(tail -n 15 "$tmp/build.log")"
      image=
    else
      ok "docker build -f deploy/Dockerfile --target prebuilt (base $base)"
      volume=tds-deploy-check-$$
      container=tds-deploy-check-$$
      http_port=$(free_port)
      docker volume create "$volume" >/dev/null
      # As deploy/compose.yml runs it: read-only root, no capabilities, no privilege gain.
      if ! docker run -d --name "$container" --network host --read-only --tmpfs /tmp --cap-drop ALL \
          --security-opt no-new-privileges:true --health-interval 2s --health-start-period 60s \
          -e TDS_HTTP_ADDR="0.0.0.0:$http_port" -e TDS_MQTT_ADDR="127.0.0.1:$(free_port)" \
          -v "$volume:/var/lib/tds" "$image" >/dev/null 2>"$tmp/run.log"; then
        fail "docker run: $(cat "$tmp/run.log")"
      else
        health=
        for _ in $(seq 1 60); do
          health=$(docker inspect -f '{{.State.Health.Status}}' "$container" 2>/dev/null || true)
          [ "$health" = healthy ] || [ "$health" = unhealthy ] && break
          sleep 1
        done
        if [ "$health" = healthy ]; then
          ok "container is healthy (HEALTHCHECK tds-healthcheck: GET /readyz → 200)"
        else
          fail "container health is '$health': $(docker logs "$container" 2>&1 | tail -n 10)"
        fi
        readyz=$(curl -s --max-time 5 -w ' %{http_code}' "http://127.0.0.1:$http_port/readyz" || true)
        [ "${readyz##* }" = 200 ] && ok "/readyz from the host: $readyz" || fail "/readyz from the host: '$readyz'"
        uid=$(docker exec "$container" id -u 2>/dev/null || true)
        pid=$(docker inspect -f '{{.State.Pid}}' "$container")
        host_uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
        owner=$(docker exec "$container" stat -c %u /var/lib/tds/pki/ca.key 2>/dev/null || true)
        # (Under rootless Docker the host sees a subordinate uid: only "not root" is required.)
        if [ "$uid" = 10001 ] && [ -n "$host_uid" ] && [ "$host_uid" != 0 ] && [ "$owner" = 10001 ]; then
          ok "tds runs as uid 10001 (host uid $host_uid, not root), and owns the CA key it made in the volume"
        else
          fail "tds should run as uid 10001: id -u '$uid', process uid '$host_uid', ca.key owner '$owner'"
        fi
        docker stop -t 30 "$container" >/dev/null
        code=$(docker inspect -f '{{.State.ExitCode}}' "$container")
        [ "$code" = 0 ] && ok "docker stop: TDS stopped gracefully (exit 0)" || fail "docker stop: exit status $code"
      fi
    fi
  fi
fi

echo "== deploy-check: $passed passed, ${#failures[@]} failed, ${#skipped[@]} skipped"
for s in "${skipped[@]}"; do echo "   skipped: $s"; done
for f in "${failures[@]}"; do echo "   failed: $f" >&2; done
[ ${#failures[@]} -eq 0 ]
