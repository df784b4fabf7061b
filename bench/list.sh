#!/bin/bash
# bench/list.sh: `list` page by page through a queue of 1M jobs; the time
# per page must stay flat as the cursor advances (docs/performance.md).
#
#   bench/list.sh [JOBS (default 1000000)] [LIMIT (default 1000)]
#
# Builds daemon/chanqd and bench/list in BUILD_DIR (default ./build, which
# must be configured: ./scripts/build.sh), starts chanqd --memory on a free
# loopback port, runs bench/list against it (with its pid: the server's CPU
# per page too) and stops it.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$top/build}
make -C "$build" -j2 daemon/chanqd bench/list >/dev/null
log=$(mktemp /tmp/chanq-bench-list-XXXXXX)
"$build/daemon/chanqd" --memory --listen 127.0.0.1:0 --max-memory 4G 2>"$log" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$log"' EXIT
port=
for _ in $(seq 200); do
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$log" | head -n 1)
    [ -n "$port" ] && break
    sleep 0.05
done
[ -n "$port" ] || { cat "$log" >&2; exit 1; }
"$build/bench/list" "127.0.0.1:$port" "${1:-1000000}" "${2:-1000}" "$pid"
