#!/bin/sh
# Run chanq's runtime benchmarks (bench/core_bench) and the same rows in Go
# (bench/go) on this machine, in one run, at each GOMAXPROCS in $PROCS, and
# print a table: row, chanq, Go, ratio Go/chanq (> 1 means chanq is faster).
#
# Usage: bench/compare-go.sh [ROW...]
# Environment: BUILD_DIR (default ./build, configured by scripts/build.sh if
# it has no Makefile yet), PROCS (default "1 2"), BENCH_RUNS (default 5;
# each figure is the median of that many runs).
# Installs Debian's golang-go with apt-get if `go` is missing. Exits 0 once
# the table is printed, whatever the ratios; non-zero if something can't run.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$top/build}
procs_list=${PROCS:-1 2}
runs=${BENCH_RUNS:-5}

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
echo "# compare-go: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($cpu), $(go version | cut -d' ' -f3), runs=$runs (median), PROCS=\"$procs_list\""
echo "# command: bench/compare-go.sh $*"
echo "# The machine may be shared: figures are medians and still noisy."
echo
for p in $procs_list; do
    GOMAXPROCS=$p "$cbench" -p "$p" -r "$runs" "$@" >"$tmp/c.$p"
    GOMAXPROCS=$p "$gobench" -p "$p" -r "$runs" "$@" >"$tmp/go.$p"
    echo "### GOMAXPROCS=$p"
    echo
    # Join the two outputs on the row name. Every unit is lower-is-better;
    # rss_parked_100k is judged against its 8 KiB target rather than Go.
    awk -v p="$p" '
        /^#/ || NF < 3 { next }
        FNR == NR { goval[$1] = $2; next }
        {
            name = $1; c = $2; unit = $3
            if (!(name in goval)) { printf "| %s | %s | %s | - | - | no Go row |\n", name, unit, c; next }
            g = goval[name]
            ratio = (c > 0) ? g / c : 0
            if (name ~ /^rss_/)
                verdict = (c <= 8) ? "ok (target <= 8 KiB)" : "MISSES the 8 KiB target"
            else
                verdict = (ratio >= 1) ? "chanq faster" : "SLOWER than Go"
            printf "| %s | %s | %s | %s | %.2f | %s |\n", name, unit, c, g, ratio, verdict
        }
        BEGIN {
            print "| row | unit | chanq | Go | Go/chanq | verdict |"
            print "|---|---|---:|---:|---:|---|"
        }
    ' "$tmp/go.$p" "$tmp/c.$p"
    echo
done
exit 0
