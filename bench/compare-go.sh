#!/bin/sh
# Run chanq's runtime benchmarks (bench/core_bench) and the same rows in Go
# (bench/go) on this machine, in one run, at each GOMAXPROCS in $PROCS, and
# print a table: row, chanq, Go, ratio Go/chanq (> 1 means chanq is faster).
#
# Usage: bench/compare-go.sh [ROW...]
# Environment: BUILD_DIR (default ./build, configured by scripts/build.sh if
# it has no Makefile yet), PROCS (default "1 2"), BENCH_RUNS (default 5;
# runs per process, of which the process prints the median), BENCH_ROUNDS
# (default 3; processes per side, alternating chanq and Go; the table shows
# the median of their medians), BENCH_SCALE (default 1; multiplies every
# iteration count, for quick checks).
# Installs Debian's golang-go with apt-get if `go` is missing. Exits 0 once
# the table is printed, whatever the ratios; non-zero if the build fails or a
# row crashed (the table is still printed, the row marked FAILED).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$top/build}
procs_list=${PROCS:-1 2}
runs=${BENCH_RUNS:-5}
rounds=${BENCH_ROUNDS:-3}
scale=${BENCH_SCALE:-1}

if ! command -v go >/dev/null 2>&1; then
    echo "compare-go: 'go' not found; installing Debian's golang-go (apt-get install golang-go)" >&2
    if [ "$(id -u)" -ne 0 ]; then
        echo "compare-go: not root: run 'apt-get install golang-go' as root first" >&2
        exit 1
    fi
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go >&2
fi

# The C side: configure BUILD_DIR if needed, then `make bench`.
if [ ! -f "$build/Makefile" ]; then
    BUILD_DIR=$build "$top/scripts/build.sh"
fi
make -s -C "$build" -j"$(nproc)" bench >&2
cbench=$build/bench/core_bench

# The Go side: standard library only, never touches the network.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
if [ -z "${GOCACHE:-}" ] && [ -z "${HOME:-}" ] && [ -z "${XDG_CACHE_HOME:-}" ]; then
    export GOCACHE="$tmp/gocache"
fi
export GOPROXY=off GOFLAGS= GO111MODULE=on GOTOOLCHAIN=local
(cd "$top/bench/go" && go build -o "$tmp/gobench" .) >&2
gobench=$tmp/gobench

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
echo "# compare-go: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($cpu), $(go version | cut -d' ' -f3), runs=$runs x rounds=$rounds (median of medians), scale=$scale, PROCS=\"$procs_list\""
echo "# command: bench/compare-go.sh $*"
echo "# Each row: $rounds processes per side, alternating chanq and Go. A shared machine is noisy."
echo
# Each row runs in its own process, chanq then Go, so that a row starts
# with fresh memory, noise falls on both sides alike, and a crash costs one
# row rather than the table.
rows=${*:-$("$cbench" -l)}

# The line "row value unit" of FILE with the median value (the upper one of
# the middle pair); empty when FILE is empty.
median_line() {
    sort -g -k2,2 "$1" | awk '{ l[NR] = $0 } END { if (NR) print l[int(NR / 2) + 1] }'
}
failed=0
for p in $procs_list; do
    echo "### GOMAXPROCS=$p"
    echo
    echo "| row | unit | chanq | Go | Go/chanq | verdict |"
    echo "|---|---|---:|---:|---:|---|"
    for row in $rows; do
        # ROUNDS alternations chanq, Go, chanq, Go...: a burst of noise from
        # the shared machine then hits both sides, and the figure of each
        # side is the median of its rounds' medians.
        : >"$tmp/c.all"
        : >"$tmp/go.all"
        for r in $(seq "$rounds"); do
            GOMAXPROCS=$p "$cbench" -p "$p" -r "$runs" -s "$scale" "$row" >"$tmp/c.out" 2>"$tmp/c.err" ||
                { failed=1; echo "compare-go: core_bench $row at GOMAXPROCS=$p failed: $(tail -n 3 "$tmp/c.err")" >&2; }
            GOMAXPROCS=$p "$gobench" -p "$p" -r "$runs" -s "$scale" "$row" >"$tmp/go.out" 2>"$tmp/go.err" ||
                { failed=1; echo "compare-go: gobench $row at GOMAXPROCS=$p failed: $(tail -n 3 "$tmp/go.err")" >&2; }
            grep "^$row " "$tmp/c.out" >>"$tmp/c.all" || true
            grep "^$row " "$tmp/go.out" >>"$tmp/go.all" || true
        done
        c=$(median_line "$tmp/c.all")
        g=$(median_line "$tmp/go.all")
        # Every unit is lower-is-better; rss_parked_100k is judged against
        # its 8 KiB target rather than against Go.
        echo "$row|$c|$g" | awk -F'|' '
            {
                split($2, c, " "); split($3, g, " ")
                unit = (c[3] != "") ? c[3] : g[3]
                cv = (c[2] != "") ? c[2] : "crashed"; gv = (g[2] != "") ? g[2] : "crashed"
                if (c[2] == "" || g[2] == "") {
                    printf "| %s | %s | %s | %s | - | FAILED to run |\n", $1, unit, cv, gv
                    next
                }
                ratio = (c[2] > 0) ? g[2] / c[2] : 0
                if ($1 ~ /^rss_/)
                    verdict = (c[2] <= 8) ? "ok (target <= 8 KiB)" : "MISSES the 8 KiB target"
                else
                    verdict = (ratio >= 1) ? "chanq faster" : "SLOWER than Go"
                printf "| %s | %s | %s | %s | %.2f | %s |\n", $1, unit, cv, gv, ratio, verdict
            }'
    done
    echo
done
[ "$failed" -eq 0 ] || { echo "compare-go: some rows failed to run (see above)" >&2; exit 1; }
