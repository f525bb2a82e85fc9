#!/bin/sh
# Set up edge-fer as a service on Raspberry Pi OS Bookworm. Idempotent: run it again after a git pull.
#   sudo firmware_config/pi/setup-pi.sh [--with-mosquitto]
set -eu

REPO="$(cd "$(dirname "$0")/../.." && pwd)"
WITH_MOSQUITTO=0
[ "${1:-}" = "--with-mosquitto" ] && WITH_MOSQUITTO=1

die() { echo "setup-pi: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run me with sudo"
grep -qi "raspberry pi" /proc/device-tree/model 2>/dev/null || die "this is not a Raspberry Pi (no 'Raspberry Pi' in /proc/device-tree/model); on other Debian machines use 'make demo'"
. /etc/os-release
[ "${VERSION_CODENAME:-}" = "bookworm" ] || [ "${VERSION_CODENAME:-}" = "trixie" ] || die "Raspberry Pi OS Bookworm or newer is needed (found ${VERSION_CODENAME:-unknown})"

echo "== packages (picamera2 comes from apt: it is tied to the system's libcamera)"
apt-get update -qq
apt-get install -y -qq python3-venv python3-picamera2 make
[ "$WITH_MOSQUITTO" -eq 1 ] && apt-get install -y -qq mosquitto mosquitto-clients

echo "== camera boot configuration"
BOOT=/boot/firmware/config.txt
[ -f "$BOOT" ] || BOOT=/boot/config.txt
if ! grep -q "edge-fer" "$BOOT"; then
    { echo ""; echo "# edge-fer"; grep -v '^#' "$REPO/firmware_config/pi/config.txt.snippet" | sed '/^$/d'; } >> "$BOOT"
    echo "   added camera settings to $BOOT (reboot once to apply)"
fi

echo "== user and folders"
id edge-fer >/dev/null 2>&1 || useradd --system --home /var/lib/edge-fer --shell /usr/sbin/nologin --groups video edge-fer
install -d -o edge-fer -g edge-fer -m 0700 /var/lib/edge-fer
install -d -m 0755 /etc/edge-fer
[ -f /etc/edge-fer/edge-fer.toml ] || install -m 0644 "$REPO/firmware_config/edge-fer.toml" /etc/edge-fer/edge-fer.toml

echo "== edge-fer in /opt/edge-fer (a venv that sees Debian's picamera2)"
if [ "$REPO" != /opt/edge-fer ]; then
    mkdir -p /opt/edge-fer && cp -a "$REPO/." /opt/edge-fer/
fi
make -C /opt/edge-fer install
sudo -u edge-fer XDG_DATA_HOME=/var/lib/edge-fer /opt/edge-fer/.venv/bin/edge-fer models fetch

echo "== service"
install -m 0644 /opt/edge-fer/systemd/edge-fer.service /etc/systemd/system/edge-fer.service
systemctl daemon-reload
systemctl enable edge-fer
systemctl restart edge-fer
echo "done: edit /etc/edge-fer/edge-fer.toml (source.spec = \"picamera2\", sinks, deployment), then 'sudo systemctl restart edge-fer'"
echo "      check with: /opt/edge-fer/.venv/bin/edge-fer doctor --config /etc/edge-fer/edge-fer.toml"
