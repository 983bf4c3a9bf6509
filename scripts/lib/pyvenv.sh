# Sourced by scripts/test.sh and scripts/api-check.sh: the Python packages of
# tests/api/requirements.txt (pinned: requests, Eclipse Paho, the OpenAPI validator,
# schemathesis) in a virtualenv under ~/.cache/tds, made or refreshed when the list changed.
# Sets $venv; TDS_PY_VENV overrides the place (the Rust tests read it too).
venv=${TDS_PY_VENV:-$HOME/.cache/tds/venv}
export TDS_PY_VENV="$venv"
if [ ! -x "$venv/bin/schemathesis" ] || ! cmp -s tests/api/requirements.txt "$venv/requirements.txt"; then
  echo "== installing tests/api/requirements.txt into $venv" >&2
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    # Debian's python3 keeps venv in a package of its own.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv "$venv"
    else
      echo "python3 -m venv failed; install python3-venv" >&2
      exit 1
    fi
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check -r tests/api/requirements.txt
  cp tests/api/requirements.txt "$venv/requirements.txt"
fi
