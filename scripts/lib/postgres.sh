# Throw-away PostgreSQL cluster for tests and benchmarks, from Debian's `postgresql` package.
# Source this file, then: pg_start [extra postgres -c settings...]; it exports PG_URL and stops the
# cluster and removes its directory when the calling shell exits, whatever happens.

pg_bindir() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

pg_ensure_installed() {
  if [ -n "$(pg_bindir)" ] && [ -x "$(pg_bindir)/initdb" ]; then return 0; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing PostgreSQL (Debian package postgresql)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "PostgreSQL server binaries not found. Install them with: sudo apt-get install postgresql" >&2
    return 1
  fi
}

pg_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# pg_start [-c name=value ...]
pg_start() {
  pg_ensure_installed || return 1
  local bin; bin=$(pg_bindir)
  PG_DIR=$(mktemp -d /tmp/tds-pg.XXXXXX)
  local port; port=$(pg_free_port)
  # initdb refuses to run as root: run the cluster as the package's `postgres` user then.
  local as=()
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
    chown postgres "$PG_DIR"
    as=(runuser -u postgres --)
  fi
  trap 'pg_stop' EXIT
  "${as[@]}" "$bin/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$PG_DIR/initdb.log" 2>&1 \
    || { cat "$PG_DIR/initdb.log" >&2; return 1; }
  "${as[@]}" "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
    -o "-p $port -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=300 $*" start >/dev/null \
    || { cat "$PG_DIR/server.log" >&2; return 1; }
  PG_AS=("${as[@]}")
  PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
  export PG_URL
  echo "== PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port ($PG_DIR)" >&2
}

pg_stop() {
  if [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR" ]; then
    "${PG_AS[@]}" "$(pg_bindir)/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
    PG_DIR=
  fi
}

# pg_warm_wal SEGMENTS: has the cluster (started with min_wal_size of at least SEGMENTS × 16 MB)
# create SEGMENTS WAL segments, then checkpoint, so that the next SEGMENTS are recycled ones, as
# on a server that has been running a while. A fresh cluster creates and zero-fills every new
# 16 MB segment, and the COMMIT that crosses into one waits for it: 20–30 ms on this machine,
# every 1.7 s at 46,000 readings/s (PostgreSQL 15's log, `log_min_duration_statement`).
pg_warm_wal() {
  local psql; psql="$(pg_bindir)/psql"
  "$psql" -X -q "$PG_URL" -c "CREATE TABLE tds_wal_warm (x int)"
  # A switch with nothing written since the last one stays in its segment: a row each time.
  for i in $(seq "$1"); do echo "INSERT INTO tds_wal_warm VALUES ($i); SELECT pg_switch_wal();"; done \
    | "$psql" -X -q -o /dev/null "$PG_URL"
  "$psql" -X -q "$PG_URL" -c "DROP TABLE tds_wal_warm" -c "CHECKPOINT"
}
