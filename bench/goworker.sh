#!/bin/sh
# The job cycle driven by the Go client's Worker (bench/goworker) side by
# side with the C load generator (`chanq loadtest`), against one chanqd
# --memory: P producers pipelining submits (window 64 each) and C
# consumers, 100-byte payloads, flat out. Rounds are interleaved (the Go
# Worker consuming, with its default prefetch and with 64; the Go Worker
# polling, one job per fetch and 64; loadtest --batch 1, loadtest with its
# default --batch 64; then again) so that noise from a shared machine hits
# every side alike; the table gives the median, min and max of the acked
# jobs/s (acked jobs over the time from the first submit until the last
# ack).
#
# -b REV also builds the Go worker (clients/go and bench/goworker) as of
# git revision REV and runs it in every round next to the current one, for
# an A/B comparison of a change to the Go client in the same run (with its
# own defaults: a revision from before the Worker consumed polls).
#
# Usage: bench/goworker.sh [-d SECONDS] [-r ROUNDS] [-p PRODUCERS] [-c CONSUMERS] [-b REV]
# Defaults: -d 5 -r 5 -p 8 -c 8. BUILD_DIR as for scripts/build.sh.
# Needs the go command (apt-get install golang-go); fetches nothing.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$top/build}
secs=5 rounds=5 producers=8 consumers=8 base=
while [ $# -gt 0 ]; do
    case $1 in
    -d) secs=$2; shift 2 ;;
    -r) rounds=$2; shift 2 ;;
    -p) producers=$2; shift 2 ;;
    -c) consumers=$2; shift 2 ;;
    -b) base=$2; shift 2 ;;
    *) echo "usage: bench/goworker.sh [-d SECONDS] [-r ROUNDS] [-p PRODUCERS] [-c CONSUMERS] [-b REV]" >&2; exit 2 ;;
    esac
done
command -v go >/dev/null 2>&1 || { echo "goworker: no go command (apt-get install golang-go)" >&2; exit 1; }
if [ ! -x "$build/daemon/chanqd" ] || [ ! -x "$build/clients/chanq" ]; then
    BUILD_DIR=$build "$top/scripts/build.sh"
fi

tmp=$(mktemp -d)
dpid=
cleanup() {
    [ -n "$dpid" ] && kill "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
export GOPROXY=off GOFLAGS=-mod=mod GO111MODULE=on GOTOOLCHAIN=local GOWORK=off
(cd "$top/bench/goworker" && go build -o "$tmp/goworker" .)
if [ -n "$base" ]; then
    mkdir "$tmp/base"
    git -C "$top" archive "$base" clients/go bench/goworker | tar -x -C "$tmp/base"
    (cd "$tmp/base/bench/goworker" && go build -o "$tmp/goworker-base" .)
fi

"$build/daemon/chanqd" --memory --listen 127.0.0.1:0 2>"$tmp/chanqd.log" &
dpid=$!
port=
for _ in $(seq 200); do
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$tmp/chanqd.log" | head -n 1)
    [ -n "$port" ] && break
    sleep 0.05
done
[ -n "$port" ] || { echo "goworker: chanqd did not start" >&2; cat "$tmp/chanqd.log" >&2; exit 1; }
server=127.0.0.1:$port

# The acked jobs/s of a report ("acked N in T s: X jobs/s ...").
rate() { sed -n 's/^acked .*: \([0-9][0-9]*\) jobs\/s.*/\1/p'; }

echo "# bench/goworker.sh -d $secs -r $rounds -p $producers -c $consumers${base:+ -b $base}: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(go version | cut -d' ' -f3), load $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$rounds"); do
    "$tmp/goworker" -server "$server" -p "$producers" -c "$consumers" -d "$secs" | rate >>"$tmp/go"
    "$tmp/goworker" -server "$server" -p "$producers" -c "$consumers" -d "$secs" -prefetch 64 | rate >>"$tmp/go64"
    "$tmp/goworker" -server "$server" -p "$producers" -c "$consumers" -d "$secs" -poll | rate >>"$tmp/gopoll"
    "$tmp/goworker" -server "$server" -p "$producers" -c "$consumers" -d "$secs" -poll -prefetch 64 | rate >>"$tmp/gopoll64"
    if [ -n "$base" ]; then
        "$tmp/goworker-base" -server "$server" -p "$producers" -c "$consumers" -d "$secs" | rate >>"$tmp/base1"
        "$tmp/goworker-base" -server "$server" -p "$producers" -c "$consumers" -d "$secs" -prefetch 64 | rate >>"$tmp/base64"
    fi
    "$build/clients/chanq" loadtest --server "$server" -p "$producers" -c "$consumers" -d "$secs" \
        --batch 1 --quiet | rate >>"$tmp/c1"
    "$build/clients/chanq" loadtest --server "$server" -p "$producers" -c "$consumers" -d "$secs" \
        --quiet | rate >>"$tmp/c64"
    echo "# round $r: go worker $(tail -n 1 "$tmp/go"), prefetch 64 $(tail -n 1 "$tmp/go64"), polling $(tail -n 1 "$tmp/gopoll") / prefetch 64 $(tail -n 1 "$tmp/gopoll64")${base:+, $base $(tail -n 1 "$tmp/base1") / prefetch 64 $(tail -n 1 "$tmp/base64")}, loadtest --batch 1 $(tail -n 1 "$tmp/c1"), loadtest --batch 64 $(tail -n 1 "$tmp/c64") jobs/s" >&2
done

# median min max of a file of numbers
stats() { sort -n "$1" | awk '{ v[NR] = $1 } END { printf "%d | %d | %d", v[int((NR + 1) / 2)], v[1], v[NR] }'; }
med() { sort -n "$1" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
echo
ratio() { awk -v a="$(med "$1")" -v b="$(med "$2")" 'BEGIN { printf "%.2f", a / b }'; }
echo "| client | consumers get | acked jobs/s (median) | min | max | vs C (--batch 1 for one job a fetch, else 64) |"
echo "|---|---|---:|---:|---:|---:|"
echo "| Go chanq.Worker, $consumers slots | consume, prefetch $consumers, acks pipelined | $(stats "$tmp/go") | $(ratio "$tmp/go" "$tmp/c64") |"
echo "| Go chanq.Worker, $consumers slots, Prefetch 64 | consume, prefetch 64, acks pipelined | $(stats "$tmp/go64") | $(ratio "$tmp/go64" "$tmp/c64") |"
echo "| Go chanq.Worker, $consumers slots, Poll | 1 job, ack pipelined with the next fetch | $(stats "$tmp/gopoll") | $(ratio "$tmp/gopoll" "$tmp/c1") |"
[ -n "$base" ] && echo "| Go chanq.Worker as of $base | its default | $(stats "$tmp/base1") | $(ratio "$tmp/base1" "$tmp/c1") |"
echo "| chanq loadtest --batch 1 | 1 job, acks pipelined | $(stats "$tmp/c1") | 1.00 |"
echo "| Go chanq.Worker, $consumers slots, Poll, Prefetch 64 | up to 64 jobs, acks pipelined | $(stats "$tmp/gopoll64") | $(ratio "$tmp/gopoll64" "$tmp/c64") |"
[ -n "$base" ] && echo "| Go chanq.Worker as of $base, Prefetch 64 | its default, Prefetch 64 | $(stats "$tmp/base64") | $(ratio "$tmp/base64" "$tmp/c64") |"
echo "| chanq loadtest (--batch 64) | up to 64 jobs, acks pipelined | $(stats "$tmp/c64") | 1.00 |"
