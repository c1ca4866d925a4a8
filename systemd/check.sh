#!/usr/bin/env bash
# Checks the unit file: `systemd-analyze verify` must be clean and the offline
# security rating 1.5 or better. Uses the freshly built binary in place of
# /usr/local/bin/feedsieve (or /usr/bin/feedsieve, in the Debian package's unit).
# Skipped (with a message) where systemd-analyze is missing.
#
#   bash systemd/check.sh [BINARY [UNIT]]   (default: target/debug/feedsieve, systemd/feedsieve.service)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v systemd-analyze >/dev/null; then
    echo "systemd-analyze not found: unit checks skipped"
    exit 0
fi
bin="${1:-$PWD/target/debug/feedsieve}"
[ -x "$bin" ] || cargo build --quiet
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
unit="${2:-systemd/feedsieve.service}"
sed -e "s#/usr/local/bin/feedsieve#$bin#g" -e "s#/usr/bin/feedsieve#$bin#g" "$unit" > "$tmp/feedsieve.service"
out=$(systemd-analyze verify "$tmp/feedsieve.service" 2>&1 || true)
if [ -n "$out" ]; then
    echo "systemd-analyze verify:"; echo "$out"; exit 1
fi
level=$(systemd-analyze security --offline=yes "$tmp/feedsieve.service" 2>&1 | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
echo "unit verified; exposure level $level"
awk -v l="$level" 'BEGIN { exit !(l != "" && l <= 1.5) }' || { echo "exposure $level is above 1.5"; exit 1; }
