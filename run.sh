#!/bin/sh
# Newcomer set-up in one command: install missing build dependencies,
# build (only what changed), and run chanqd in the foreground on
# 127.0.0.1:7420 with its data under ./var/. Extra arguments go to chanqd.
set -eu
top=$(cd "$(dirname "$0")" && pwd)
"$top/scripts/deps.sh" build
"$top/scripts/build.sh"
mkdir -p "$top/var"
exec "${BUILD_DIR:-$top/build}/daemon/chanqd" --data-dir "$top/var" "$@"
