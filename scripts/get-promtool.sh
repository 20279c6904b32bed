#!/bin/sh
# Put promtool (from Debian's `prometheus` package) in a cache folder and print its path.
#
# Only the binary is wanted: the package is downloaded and unpacked with `dpkg -x`, never
# installed, so no Prometheus service, user or unit file appears on the machine. Tests look for
# promtool in $PROMTOOL, then on PATH, then in this cache, and skip (saying why) without it.
#
#   scripts/get-promtool.sh            # prints e.g. ~/.cache/toloka-kafka-connector/promtool/usr/bin/promtool
#   PROMTOOL_CACHE=/tmp/x scripts/get-promtool.sh
set -eu

cache="${PROMTOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/toloka-kafka-connector/promtool}"
binary="$cache/usr/bin/promtool"

if [ -x "$binary" ]; then
    echo "$binary"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg >/dev/null 2>&1; then
    echo "get-promtool: needs apt-get and dpkg (Debian/Ubuntu); elsewhere install promtool from" \
        "https://prometheus.io/download/ and put it on PATH or in \$PROMTOOL" >&2
    exit 1
fi

workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
cd "$workdir"
# `apt-get download` needs package lists; refresh them only when the first try fails, because
# `apt-get update` needs root and takes a while.
if ! apt-get download prometheus >/dev/null 2>&1; then
    apt-get update -qq
    apt-get download prometheus >/dev/null
fi
mkdir -p "$cache"
dpkg -x prometheus_*.deb "$cache"
"$binary" --version >/dev/null
echo "$binary"
