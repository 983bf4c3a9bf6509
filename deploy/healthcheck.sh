#!/bin/bash
# Container health check for TDS: GET /readyz on the web listener, healthy on 200 only (the
# process answers and its database does too; 503 means the database is unreachable).
#
# It speaks HTTP through bash's /dev/tcp so that the image needs no curl or wget: bash is part of
# every Debian image. The address is TDS_HEALTHCHECK_ADDR, else TDS_HTTP_ADDR (what TDS listens
# on), else TDS's default 127.0.0.1:8080; a wildcard address (0.0.0.0, [::]) is reached on
# 127.0.0.1. When http_addr comes from a TOML file rather than the environment, set
# TDS_HEALTHCHECK_ADDR (TDS itself ignores that variable: it is not a setting).
set -euo pipefail

addr=${TDS_HEALTHCHECK_ADDR:-${TDS_HTTP_ADDR:-127.0.0.1:8080}}
port=${addr##*:}
host=${addr%:*}
host=${host#[}
host=${host%]}
case $host in
  '' | 0.0.0.0 | :: ) host=127.0.0.1 ;;
esac

# The whole exchange is bounded: Docker's own --timeout kills the check too, but a plain `read`
# on a stalled connection must not outlive it.
if ! { exec 3<>"/dev/tcp/$host/$port"; } 2>/dev/null; then
  echo "readyz: cannot connect to $host:$port" >&2
  exit 1
fi
printf 'GET /readyz HTTP/1.1\r\nHost: localhost\r\nUser-Agent: tds-healthcheck\r\nConnection: close\r\n\r\n' >&3
status=
IFS=$' \t\r' read -r -t 5 _ status _ <&3 || true
exec 3<&-
if [ "$status" = 200 ]; then
  exit 0
fi
echo "readyz on $host:$port answered ${status:-nothing}" >&2
exit 1
