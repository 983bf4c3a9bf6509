#!/bin/sh
# Runs Mosquitto on the configuration written by `tds broker-config` (scale-out mode) and reloads
# it whenever the CRL changes. One TDS instance rewrites crl.pem (broker_crl_file) when a
# certificate is revoked, but Mosquitto reads its crlfile only at start and on SIGHUP, and a TDS
# container cannot signal a process in another container: this script watches the file and sends
# the SIGHUP. POSIX sh: it runs in the eclipse-mosquitto image (busybox) and on Debian (dash).
#
#   run-mosquitto.sh [DIR]     DIR: the broker-config directory (default /etc/tds-broker)
#   CRL_POLL_SECONDS           how often to look at crl.pem (default 2, as often as TDS writes it)
set -eu

dir=${1:-/etc/tds-broker}
poll=${CRL_POLL_SECONDS:-2}
conf=$dir/mosquitto.conf
crl=$dir/crl.pem

if [ ! -r "$conf" ]; then
  echo "run-mosquitto: $conf is missing or unreadable: run \`tds broker-config --out $dir\` first" >&2
  exit 1
fi

# TDS replaces crl.pem by renaming a new file over it: the inode changes even when the mtime's
# second does not.
stamp() { stat -c '%i %Y %s' "$crl" 2>/dev/null || ls -lid "$crl" 2>/dev/null || true; }

mosquitto -c "$conf" &
pid=$!
# Pass a stop request on to Mosquitto, then wait for it below.
trap 'kill -TERM "$pid" 2>/dev/null || true' TERM INT

last=$(stamp)
while kill -0 "$pid" 2>/dev/null; do
  # In the background so that a TERM interrupts the wait at once.
  sleep "$poll" &
  wait $! 2>/dev/null || true
  now=$(stamp)
  if [ "$now" != "$last" ]; then
    last=$now
    echo "run-mosquitto: $crl changed: reloading Mosquitto (SIGHUP)" >&2
    kill -HUP "$pid" 2>/dev/null || true
  fi
done
# Mosquitto's exit status is the script's.
wait "$pid"
