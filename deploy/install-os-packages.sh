#!/usr/bin/env bash
# Installs the servers supplymeter runs locally (Debian/Ubuntu packages) when they are missing:
#   mosquitto  (Mosquitto 2 broker)    influxdb  (InfluxDB 1.x, the v1 HTTP API)
#   nodejs, npm (the test that checks the dashboards against Grafana's published schema)
#   chromium   (the console's browser tests drive it; nothing is downloaded at run time)
#   postgresql (the operations database's PostgreSQL test starts a throwaway cluster)
# and python3-venv when Python's venv cannot bootstrap pip.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/local/sbin/$1" ]; }

missing=()
have mosquitto || missing+=(mosquitto)
have influxd || missing+=(influxdb)
have node || missing+=(nodejs)
have npm || missing+=(npm)
have chromium || missing+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
python3 -c "import ensurepip" >/dev/null 2>&1 || missing+=(python3-venv)

[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "supplymeter needs: ${missing[*]} (Debian/Ubuntu package names)." >&2
  echo "apt-get is not available here: install Mosquitto 2.x and InfluxDB 1.x (influxd) with" >&2
  echo "your system's package manager, make sure 'mosquitto' and 'influxd' are on PATH or in" >&2
  echo "/usr/sbin, and run make again." >&2
  exit 1
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
  else
    echo "supplymeter needs: ${missing[*]}; run as root: apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

echo "Installing ${missing[*]} with apt-get..."
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "Installed ${missing[*]}."
