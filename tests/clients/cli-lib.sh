# Shared by the chanq CLI end-to-end tests: start a real chanqd on a free
# loopback port, run the CLI with bounded timeouts, clean up.
set -eu
CHANQ="${top_builddir:-.}/clients/chanq"
CHANQD="${top_builddir:-.}/daemon/chanqd"
TMP=$(mktemp -d /tmp/chanq-cli-XXXXXX)
DPID=

cleanup() {
    if [ -n "$DPID" ]; then
        kill "$DPID" 2>/dev/null || true
        wait "$DPID" 2>/dev/null || true
    fi
    # CHANQ_TEST_LOG_FORMAT / CHANQ_TEST_LOG_KEEP: as in tests/harness.c.
    if [ -n "${CHANQ_TEST_LOG_FORMAT:-}" ] && [ -n "${CHANQ_TEST_LOG_KEEP:-}" ] &&
        [ -f "$TMP/chanqd.log" ]; then
        cat "$TMP/chanqd.log" >>"$CHANQ_TEST_LOG_KEEP/cli-$$-${TMP##*/}.log"
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    for f in "$TMP"/*.log; do
        [ -f "$f" ] && { echo "--- $f" >&2; tail -n 40 "$f" >&2; }
    done
    exit 1
}

start_daemon() {
    set -- "$@" ${CHANQ_TEST_LOG_FORMAT:+--log-format "$CHANQ_TEST_LOG_FORMAT"}
    "$CHANQD" --listen 127.0.0.1:0 --data-dir "$TMP/data" "$@" 2>"$TMP/chanqd.log" &
    DPID=$!
    port=
    for _ in $(seq 200); do
        port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$TMP/chanqd.log" | head -n 1)
        [ -n "$port" ] && break
        sleep 0.05
    done
    [ -n "$port" ] || fail "chanqd did not start"
    CHANQ_SERVER=127.0.0.1:$port
    export CHANQ_SERVER
}

# Every CLI call is bounded.
cq() {
    timeout 20 "$CHANQ" "$@"
}

# wait_for FILE [TENTHS]: until FILE exists (default 10 s).
wait_for() {
    n=${2:-100}
    while [ ! -e "$1" ] && [ "$n" -gt 0 ]; do
        sleep 0.1
        n=$((n - 1))
    done
    [ -e "$1" ]
}

# json_field JSON KEY: a string or number member (flat, first match).
json_field() {
    printf '%s\n' "$1" | sed -n "s/.*\"$2\":\"\{0,1\}\([^\",}]*\).*/\1/p" | head -n 1
}
