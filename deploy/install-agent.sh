#!/usr/bin/env bash
# Installs tds-agent on a Linux gateway (Debian / Raspberry Pi OS), as root:
#   deploy/install-agent.sh PATH/TO/tds-agent PATH/TO/{mac}.zip
# The binary goes to /usr/local/bin, the systemd unit to /etc/systemd/system, the bundle's
# ca.crt, client.crt and client.key to /var/lib/tds-agent (mode 0600, owner tds-agent), and an
# example configuration to /etc/tds-agent/agent.toml unless one is there. Nothing is started:
# edit the configuration, run `tds-agent check` and `tds-agent scan`, then
# `systemctl enable --now tds-agent`. See docs/agent.md.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 TDS_AGENT_BINARY BUNDLE_ZIP" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
bin=$1 bundle=$2
here=$(cd "$(dirname "$0")" && pwd)
command -v unzip >/dev/null || { echo "unzip is needed: apt-get install unzip" >&2; exit 1; }

id tds-agent >/dev/null 2>&1 || useradd --system --home-dir /var/lib/tds-agent --shell /usr/sbin/nologin tds-agent
usermod -a -G dialout tds-agent
install -m 0755 "$bin" /usr/local/bin/tds-agent
install -m 0644 "$here/tds-agent.service" /etc/systemd/system/tds-agent.service
install -d -m 0700 -o tds-agent -g tds-agent /var/lib/tds-agent
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
unzip -q "$bundle" -d "$tmp"
for f in ca.crt client.crt client.key; do
  [ -f "$tmp/$f" ] || { echo "$bundle has no $f: is it a TDS certificate bundle?" >&2; exit 1; }
  install -m 0600 -o tds-agent -g tds-agent "$tmp/$f" "/var/lib/tds-agent/$f"
done
mac=$(openssl x509 -in "$tmp/client.crt" -noout -subject -nameopt multiline 2>/dev/null | sed -n 's/ *commonName *= *//p' || true)
install -d -m 0755 /etc/tds-agent
if [ ! -f /etc/tds-agent/agent.toml ]; then
  sed "s/^mac = .*/mac = \"${mac:-aa:bb:cc:dd:ee:ff}\"/" "$here/agent.example.toml" >/etc/tds-agent/agent.toml
  chmod 0644 /etc/tds-agent/agent.toml
  echo "wrote /etc/tds-agent/agent.toml: set mqtt.host, the buses and the meters"
fi
systemctl daemon-reload 2>/dev/null || true
echo "installed. Next: tds-agent check --config /etc/tds-agent/agent.toml; tds-agent scan --config …; systemctl enable --now tds-agent"
