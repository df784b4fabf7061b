#!/bin/sh
# The Go client (clients/go): `go test ./...` against the chanqd of this
# build (the tests start their own on free loopback ports), then the
# installed use: a program outside the module, with its own go.mod that
# replaces the module with the source tree, built and run with `go run`.
# Standard library only: nothing is fetched (GOPROXY=off). Skips (77) only
# when there is no `go` (scripts/deps.sh test installs golang-go).
set -eu
if ! command -v go >/dev/null 2>&1; then
    echo "SKIP: no go command (apt-get install golang-go)"
    exit 77
fi
src=$(cd "${top_srcdir:-$(dirname "$0")/../..}" && pwd)/clients/go
CHANQD=$(cd "${top_builddir:-.}" && pwd)/daemon/chanqd
export CHANQD
# A sanitizer build of chanqd runs several times slower: the tests that
# race a TTR against the worker's touches stretch their times.
if grep -qE 'define CHANQ_(ASAN|TSAN) 1' "${top_builddir:-.}/chanq_config.h" 2>/dev/null; then
    export CHANQ_TEST_TIME_SCALE=3
fi
TMP=$(mktemp -d /tmp/chanq-go-XXXXXX)
DPID=
cleanup() {
    if [ -n "$DPID" ]; then
        kill "$DPID" 2>/dev/null || true
        wait "$DPID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

export GOFLAGS=-mod=mod GOPROXY=off GOTOOLCHAIN=local GO111MODULE=on GOTELEMETRY=off GOWORK=off
# A build cache of our own when there is no home for the default one.
if [ -z "${GOCACHE:-}" ] && { [ -z "${HOME:-}" ] || [ ! -w "${HOME:-/nonexistent}" ]; }; then
    export GOCACHE="$TMP/gocache"
fi

cd "$src"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
    echo "FAIL: not gofmt'ed: $unformatted"
    exit 1
fi
# -p 1: one test binary at a time on a shared machine; the tests bound
# every wait themselves, -timeout is the last resort.
timeout 300 go test -count=1 -p 1 -timeout 240s ./...

# Installed use: a module of its own that requires chanq.invalid/chanq
# and replaces it with the source tree.
mkdir "$TMP/use"
cp "$src/examples/quickstart/main.go" "$TMP/use/main.go"
cat >"$TMP/use/go.mod" <<EOM
module example.invalid/use

go 1.19

require chanq.invalid/chanq v0.0.0

replace chanq.invalid/chanq => $src
EOM
"$CHANQD" --memory --listen 127.0.0.1:0 2>"$TMP/chanqd.log" &
DPID=$!
port=
for _ in $(seq 200); do
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$TMP/chanqd.log" | head -n 1)
    [ -n "$port" ] && break
    sleep 0.05
done
[ -n "$port" ] || { echo "FAIL: chanqd did not start"; cat "$TMP/chanqd.log"; exit 1; }
out=$(cd "$TMP/use" && CHANQ_SERVER=127.0.0.1:$port timeout 120 go run . -n 25)
echo "$out"
case $out in
    "quickstart: 25 jobs done, last result \"JOB-24\"") ;;
    *) echo "FAIL: go run of the example printed: $out"; exit 1 ;;
esac
echo "go-client: ok"
