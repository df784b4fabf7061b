#!/bin/bash
# bench/jobcycle.sh: the job-cycle benchmark of chanqd side by side with
# beanstalkd and Redis, and with --durable the fsync-every-write
# comparison. See docs/performance.md.
#
#   bench/jobcycle.sh [--durable] [--seconds N] [--rounds R] [--jobs N]
#                     [--prefetch N] [--no-mem] [--no-half] [--no-build]
#                     [--keep] [--ab OTHER_CHANQD [--ab-proto P]]
#
# Five systems, each on its own server process of the kind (chanqd,
# beanstalkd, redis-server): chanqd with fetch + ack (the polling worker),
# chanqd with consume + pipelined acks of several ids (the streaming
# worker, --prefetch jobs unacked per consumer, default 64), beanstalkd,
# Redis LPUSH + BRPOP (no ack) and Redis's reliable-queue pattern (RPUSH +
# BLMOVE to a processing list + LREM as the ack). Every table also has
# each server's CPU time per cycle (user + system from /proc, divided by
# the cycles of the same seconds).
#
# --ab OTHER_CHANQD: an A/B of two chanqd builds instead (this tree's and
# another binary, e.g. one built from an older commit), interleaved the
# same way, with the ratio per scenario; no beanstalkd or Redis. The
# workers use fetch (--ab-proto chanq-consume: consume, if both have it).
#
# It installs beanstalkd and redis-server with apt-get when they are
# missing (and says so), builds daemon/chanqd and bench/jobcycle in
# BUILD_DIR (default ./build, bootstrapped and configured out of tree if
# needed), starts each server on a free loopback port, runs every scenario
# against each server, interleaved (round 1: chanqd, beanstalkd, Redis;
# round 2: ...) so that noise from the shared machine hits all three alike,
# and prints medians over the rounds and the ratios. The servers are
# stopped on exit.
#
# Scenarios (100-byte payload, closed loop):
#   1x1     1 producer, 1 consumer, 1 job in flight
#   8x8     8 producers with 1 job in flight each, 8 consumers
#   8x8p64  8 producers pipelining 64 jobs each, 8 consumers
#   half    8x8p64 paced to half of Redis's peak cycles/s: p99 latency
# Memory: RSS growth of each (fresh) server per queued job after 1M
# 100-byte submits with nothing consuming.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$SRC/build}
SECONDS_PER_RUN=5
ROUNDS=3
JOBS=1000000
DURABLE=0
DO_MEM=1
DO_HALF=1
DO_BUILD=1
KEEP=0
AB_CHANQD=
AB_PROTO=chanq
PREFETCH=64

while [ $# -gt 0 ]; do
    case "$1" in
    --durable) DURABLE=1 ;;
    --seconds) SECONDS_PER_RUN=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --jobs) JOBS=$2; shift ;;
    --no-mem) DO_MEM=0 ;;
    --no-half) DO_HALF=0 ;;
    --no-build) DO_BUILD=0 ;;
    --keep) KEEP=1 ;;
    --ab) AB_CHANQD=$2; shift ;;
    --ab-proto) AB_PROTO=$2; shift ;;
    --prefetch) PREFETCH=$2; shift ;;
    -h | --help) sed -n '2,38p' "$0"; exit 0 ;;
    *) echo "jobcycle.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

say() { echo "== $*" >&2; }

# ---- dependencies ----
missing=()
command -v beanstalkd >/dev/null 2>&1 || missing+=(beanstalkd)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} with apt-get (missing)"
    SUDO=
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get install -y "${missing[@]}" >/dev/null ||
        { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y "${missing[@]}" >/dev/null; }
fi

# ---- build ----
if [ "$DO_BUILD" = 1 ]; then
    if [ ! -f "$BUILD_DIR/Makefile" ]; then
        say "configuring in $BUILD_DIR"
        (cd "$SRC" && { test -f Makefile.in || autoreconf -fi; })
        mkdir -p "$BUILD_DIR"
        (cd "$BUILD_DIR" && "$SRC/configure" -q)
    fi
    say "building daemon/chanqd and bench/jobcycle in $BUILD_DIR"
    # a shared checkout may be mid-autoreconf: retry a few times before giving up
    for i in 1 2 3 4; do
        make -s -C "$BUILD_DIR" -j2 daemon/chanqd bench/jobcycle >&2 && break
        [ "$i" = 4 ] && { echo "jobcycle.sh: build failed" >&2; exit 1; }
        say "build failed, retrying in 30 s"
        sleep 30
    done
fi
CHANQD=$BUILD_DIR/daemon/chanqd
JOBCYCLE=$BUILD_DIR/bench/jobcycle
[ -x "$CHANQD" ] && [ -x "$JOBCYCLE" ] || { echo "jobcycle.sh: $CHANQD or $JOBCYCLE missing" >&2; exit 1; }

WORK=$(mktemp -d /tmp/jobcycle.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    [ "$KEEP" = 1 ] && echo "results kept in $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { # below the ephemeral range, and not used by any socket
    local p
    for _ in $(seq 100); do
        p=$((10000 + RANDOM % 20000))
        if ! ss -Htan 2>/dev/null | awk '{print $4}' | grep -q ":$p\$"; then
            echo "$p"
            return
        fi
    done
    echo "jobcycle.sh: no free port" >&2
    exit 1
}

wait_port() { # port timeout_s
    local i
    for i in $(seq $(($2 * 20))); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    return 1
}

# start_server NAME -> sets PORT_<NAME>, PID_<NAME>; NAME in chanqd chanqd_b beanstalkd redis
CHANQD_NOTE=
start_server() {
    local name=$1 port pid log=$WORK/$1.log dir=$WORK/$1-data
    rm -rf "$dir"
    mkdir -p "$dir"
    case $name in
    chanqd | chanqd_b)
        local bin=$CHANQD
        [ "$name" = chanqd_b ] && bin=$AB_CHANQD
        if [ "$DURABLE" = 1 ]; then
            "$bin" --data-dir "$dir" --fsync always --listen 127.0.0.1:0 --log-level info 2>"$log" &
        else
            "$bin" --memory --listen 127.0.0.1:0 --log-level info 2>"$log" &
        fi
        pid=$!
        port=
        for _ in $(seq 100); do
            port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -1)
            [ -n "$port" ] && break
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        if [ -z "$port" ] && [ "$DURABLE" = 1 ]; then
            # with --log-level warn the listen line is not printed: ask the OS
            port=$(ss -Htlnp 2>/dev/null | grep "pid=$pid," | awk '{print $4}' | sed 's/.*://' | head -1)
        fi
        ;;
    beanstalkd)
        port=$(free_port)
        if [ "$DURABLE" = 1 ]; then
            beanstalkd -l 127.0.0.1 -p "$port" -b "$dir" -f0 2>"$log" &
        else
            beanstalkd -l 127.0.0.1 -p "$port" 2>"$log" &
        fi
        pid=$!
        ;;
    redis)
        port=$(free_port)
        if [ "$DURABLE" = 1 ]; then
            redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly yes \
                --appendfsync always --dir "$dir" --daemonize no >"$log" 2>&1 &
        else
            redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
                --dir "$dir" --daemonize no >"$log" 2>&1 &
        fi
        pid=$!
        ;;
    esac
    PIDS+=("$pid")
    if [ -z "$port" ] || ! wait_port "$port" 10; then
        echo "jobcycle.sh: $name did not start; its log:" >&2
        cat "$log" >&2
        return 1
    fi
    eval "PORT_$name=$port PID_$name=$pid"
    say "$name pid $pid on 127.0.0.1:$port"
}

stop_server() {
    local name=$1 pid
    eval "pid=\${PID_$name:-}"
    [ -n "$pid" ] || return 0
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    eval "PID_$name="
}

proto_of() { # server -> the generator's protocol for the memory row
    case $1 in chanqd | chanqd_b) echo chanq ;; beanstalkd) echo beanstalk ;; redis) echo redis ;; esac
}

# The systems measured: label, server process, generator protocol.
system_server() { case $1 in chanqd-*) echo chanqd ;; chanqd_b-*) echo chanqd_b ;; redis-*) echo redis ;; *) echo "$1" ;; esac; }
system_proto() {
    case $1 in
    *-fetch) echo chanq ;; *-consume) echo chanq-consume ;; beanstalkd) echo beanstalk ;;
    redis-brpop) echo redis ;; redis-reliable) echo redis-reliable ;;
    esac
}

# journal check: does a durable chanqd write anything to its data dir?
# The journal's size in chanqd's stats (bytes of records written; the
# files themselves are preallocated with --fsync always, so their size
# says nothing), or 0.
chanqd_journal_bytes() {
    printf '{"op":"stats"}\n' >"$WORK/probe.in"
    timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT_chanqd; cat $WORK/probe.in >&3; head -1 <&3" \
        2>/dev/null | sed -n 's/.*"journal":{[^}]*"bytes":\([0-9]*\).*/\1/p' | grep . || echo 0
}

chanqd_journals() {
    local before after
    before=$(chanqd_journal_bytes)
    printf '{"op":"submit","queue":"probe","payload":"x"}\n' >"$WORK/probe.in"
    timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT_chanqd; cat $WORK/probe.in >&3; head -1 <&3" \
        >/dev/null 2>&1 || true
    after=$(chanqd_journal_bytes)
    [ "$after" -gt "$before" ]
}

SERVERS=(chanqd beanstalkd redis)
SYSTEMS=(chanqd-fetch chanqd-consume beanstalkd redis-brpop redis-reliable)
if [ -n "$AB_CHANQD" ]; then
    [ -x "$AB_CHANQD" ] || { echo "jobcycle.sh: --ab $AB_CHANQD is not an executable" >&2; exit 2; }
    SERVERS=(chanqd chanqd_b)
    suffix=fetch
    [ "$AB_PROTO" = chanq-consume ] && suffix=consume
    SYSTEMS=(chanqd-$suffix chanqd_b-$suffix)
    DO_HALF=0
    DO_MEM=0
fi
RESULTS=$WORK/results.txt
: >"$RESULTS"

start_all() { # a port another process took in between: try again
    local s i
    for s in "${SERVERS[@]}"; do
        for i in 1 2 3; do
            start_server "$s" && break
            [ "$i" = 3 ] && exit 1
        done
    done
}

run_one() { # system scenario producers consumers window rate
    local s=$1 sc=$2 port pid srv out
    srv=$(system_server "$s")
    eval "port=\$PORT_$srv pid=\$PID_$srv"
    out=$("$JOBCYCLE" --proto "$(system_proto "$s")" --port "$port" --pid "$pid" --producers "$3" \
        --consumers "$4" --window "$5" --rate "$6" --prefetch "$PREFETCH" \
        --seconds "$SECONDS_PER_RUN" --runs 1 --warmup 1 --label "$s" --scenario "$sc" 2>&1) ||
        { echo "$out" >&2; return 1; }
    echo "$out" | grep -v '^RESULT' >&2 || true
    echo "$out" | grep '^RESULT' >>"$RESULTS"
}

SCENARIOS=("1x1 1 1 1" "8x8 8 8 1" "8x8p64 8 8 64")

say "machine: $(nproc) CPUs, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(uname -r)"
if [ -n "$AB_CHANQD" ]; then
    say "A: $CHANQD; B: $AB_CHANQD"
else
    say "versions: $("$CHANQD" --version 2>&1 | head -1 || true); $(beanstalkd -v 2>&1 | head -1); $(redis-server --version | cut -d' ' -f1-3)"
say "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
fi
start_all
if [ "$DURABLE" = 1 ] && [ -z "$AB_CHANQD" ] && ! chanqd_journals; then
    CHANQD_NOTE="journal not built yet"
    say "chanqd --data-dir wrote nothing to its data dir: $CHANQD_NOTE"
    stop_server chanqd
    SERVERS=(beanstalkd redis)
    SYSTEMS=(beanstalkd redis-brpop redis-reliable)
fi

say "$ROUNDS rounds of ${SECONDS_PER_RUN}s per scenario and system (1 s warm-up each)"
for r in $(seq "$ROUNDS"); do
    for scn in "${SCENARIOS[@]}"; do
        set -- $scn
        for s in "${SYSTEMS[@]}"; do
            run_one "$s" "$1" "$2" "$3" "$4" 0
        done
    done
done

# median of the rounds per server and scenario: field=value lookups in awk
med() { # server scenario field
    awk -v s="$1" -v sc="$2" -v f="$3" '
        $1 == "RESULT" {
            ok = 0; v = ""
            for (i = 2; i <= NF; i++) {
                split($i, kv, "=")
                if (kv[1] == "server" && kv[2] == s) ok++
                if (kv[1] == "scenario" && kv[2] == sc) ok++
                if (kv[1] == f) v = kv[2]
            }
            if (ok == 2) a[n++] = v + 0
        }
        END {
            if (n == 0) { print "-"; exit }
            for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
            print a[int(n / 2)]
        }' "$RESULTS"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a !~ /^[0-9.]+$/ || b !~ /^[0-9.]+$/ || b == 0) print "-"; else printf "%.2f", a / b }'; }

HALF_RATE=
if [ "$DURABLE" = 0 ] && [ "$DO_HALF" = 1 ]; then
    peak=0
    for scn in "${SCENARIOS[@]}"; do
        set -- $scn
        v=$(med redis-brpop "$1" cps)
        [ "$v" != "-" ] && [ "$v" -gt "$peak" ] && peak=$v
    done
    HALF_RATE=$((peak / 2))
    say "half of Redis's peak ($peak cycles/s): $HALF_RATE cycles/s, 8 producers x 64 in flight, 8 consumers"
    for r in $(seq "$ROUNDS"); do
        for s in "${SYSTEMS[@]}"; do
            run_one "$s" half 8 8 64 "$HALF_RATE"
        done
    done
fi

if [ -n "$AB_CHANQD" ]; then
    echo
    echo "### A/B: this tree's chanqd (A) and $AB_CHANQD (B)$([ "$DURABLE" = 1 ] && echo ', --fsync always'), cycles/s, median of $ROUNDS interleaved runs"
    echo
    echo "| scenario | A | B | A / B |"
    echo "| --- | ---: | ---: | ---: |"
    for scn in "${SCENARIOS[@]}"; do
        set -- $scn
        a=$(med "${SYSTEMS[0]}" "$1" cps)
        b=$(med "${SYSTEMS[1]}" "$1" cps)
        echo "| $1 | $a | $b | $(ratio "$a" "$b") |"
    done
    echo
    echo "Server CPU per cycle (us), A / B:"
    for scn in "${SCENARIOS[@]}"; do
        set -- $scn
        echo "    $1: $(med "${SYSTEMS[0]}" "$1" cpu_us) / $(med "${SYSTEMS[1]}" "$1" cpu_us)"
    done
    exit 0
fi

cyc() { # system scenario -> "cps" or note
    local v
    v=$(med "$1" "$2" cps)
    if [ "$v" = "-" ] && [ -n "$CHANQD_NOTE" ]; then
        case $1 in chanqd-*) v="($CHANQD_NOTE)" ;; esac
    fi
    echo "$v"
}
# A target met or missed: value >= factor x reference
want() { # value reference factor
    awk -v c="$1" -v r="$2" -v f="$3" 'BEGIN { if (c !~ /^[0-9.]+$/ || r !~ /^[0-9.]+$/ || r == 0) print "n/a"; else printf "%s (%.2fx)", (c >= f * r ? "met" : "MISSED"), c / r }'
}

echo
if [ "$DURABLE" = 1 ]; then
    echo "### Durable job cycle: chanqd --fsync always, beanstalkd -b -f0, Redis appendfsync always (cycles/s, median of $ROUNDS runs of ${SECONDS_PER_RUN} s)"
else
    echo "### Job cycle, in memory (cycles/s, median of $ROUNDS runs of ${SECONDS_PER_RUN} s)"
fi
echo
echo "| scenario | chanqd fetch | chanqd consume | beanstalkd | Redis BRPOP (no ack) | Redis reliable (acked) |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
for scn in "${SCENARIOS[@]}"; do
    set -- $scn
    line="| $1"
    for s in "${SYSTEMS[@]}"; do line="$line | $(cyc "$s" "$1")"; done
    echo "$line |"
done
echo
echo "Server CPU per cycle (microseconds of user + system time, median over the runs):"
echo
echo "| scenario | chanqd fetch | chanqd consume | beanstalkd | Redis BRPOP | Redis reliable |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
for scn in "${SCENARIOS[@]}"; do
    set -- $scn
    line="| $1"
    for s in "${SYSTEMS[@]}"; do line="$line | $(med "$s" "$1" cpu_us)"; done
    echo "$line |"
done
echo
if [ "$DURABLE" = 1 ]; then
    echo "Targets, chanqd consume: >= Redis BRPOP, >= 2x Redis reliable, >= 3x beanstalkd; CPU per cycle <= Redis BRPOP's:"
    F1=1 F2=2 F3=3
else
    echo "Targets, chanqd consume: >= Redis BRPOP, >= 2x Redis reliable, >= 2x beanstalkd; CPU per cycle <= Redis BRPOP's:"
    F1=1 F2=2 F3=2
fi
echo
echo "| scenario | vs Redis BRPOP | vs Redis reliable | vs beanstalkd | CPU vs Redis BRPOP | consume vs fetch |"
echo "| --- | --- | --- | --- | --- | --- |"
for scn in "${SCENARIOS[@]}"; do
    set -- $scn
    c=$(med chanqd-consume "$1" cps)
    cc=$(med chanqd-consume "$1" cpu_us)
    rc=$(med redis-brpop "$1" cpu_us)
    cpu=$(awk -v c="$cc" -v r="$rc" 'BEGIN { if (c !~ /^[0-9.]+$/ || r !~ /^[0-9.]+$/ || r == 0) print "n/a"; else printf "%s (%.2fx)", (c <= r ? "met" : "MISSED"), c / r }')
    echo "| $1 | $(want "$c" "$(med redis-brpop "$1" cps)" $F1) | $(want "$c" "$(med redis-reliable "$1" cps)" $F2) | $(want "$c" "$(med beanstalkd "$1" cps)" $F3) | $cpu | $(ratio "$c" "$(med chanqd-fetch "$1" cps)")x |"
done
echo
echo "Latency, submit sent -> ack answered (median over the runs of each run's p50 / p99, microseconds):"
echo
echo "| scenario | chanqd fetch | chanqd consume | beanstalkd | Redis BRPOP | Redis reliable |"
echo "| --- | --- | --- | --- | --- | --- |"
LAT_SCN=()
for scn in "${SCENARIOS[@]}"; do set -- $scn; LAT_SCN+=("$1"); done
[ -n "$HALF_RATE" ] && LAT_SCN+=(half)
for sc in "${LAT_SCN[@]}"; do
    line="| $sc"
    [ "$sc" = half ] && line="| 8x8p64 at $HALF_RATE/s"
    for s in "${SYSTEMS[@]}"; do
        line="$line | $(med "$s" "$sc" p50_us) / $(med "$s" "$sc" p99_us)"
    done
    echo "$line |"
done
if [ -n "$HALF_RATE" ]; then
    cp=$(med chanqd-consume half p99_us)
    rp=$(med redis-brpop half p99_us)
    cc=$(med chanqd-consume half cps)
    echo
    echo "p99 at half of Redis's peak ($HALF_RATE cycles/s; chanqd consume achieved $cc/s): chanqd $cp us vs Redis BRPOP $rp us:" \
        "$(awk -v c="$cp" -v r="$rp" 'BEGIN { if (c == "-" || r == "-") print "n/a"; else if (c <= r) print "target met"; else printf "target MISSED (%.1fx Redis)\n", c / r }')"
fi
echo
echo "Raw results:"
sed 's/^RESULT /    /' "$RESULTS"

# ---- memory per queued job (fresh servers) ----
if [ "$DURABLE" = 0 ] && [ "$DO_MEM" = 1 ]; then
    for s in "${SERVERS[@]}"; do stop_server "$s"; done
    start_all
    : >"$WORK/mem.txt"
    for s in "${SERVERS[@]}"; do
        eval "port=\$PORT_$s pid=\$PID_$s"
        say "memory: $JOBS queued 100-byte jobs in $s"
        "$JOBCYCLE" --mode mem --proto "$(proto_of "$s")" --port "$port" --pid "$pid" --jobs "$JOBS" \
            --queue memq --label "$s" | tee -a "$WORK/mem.txt" | grep -v '^RESULT' >&2
        stop_server "$s"
    done
    echo
    echo "### Resident memory per queued 100-byte job ($JOBS jobs, nothing consuming)"
    echo
    echo "| server | jobs queued (server's count) | RSS before (kB) | RSS after (kB) | bytes per job | target (<= 300 B) |"
    echo "| --- | ---: | ---: | ---: | ---: | --- |"
    awk '$1 == "RESULT" {
            for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
            t = f["server"] == "chanqd" ? (f["bytes_per_job"] <= 300 ? "met" : "missed") : ""
            if (f["failed"] > 0) t = t " (" f["failed"] " submits failed)"
            printf "| %s | %s | %s | %s | %s | %s |\n", f["server"], f["depth"], f["rss_before_kb"], f["rss_after_kb"], f["bytes_per_job"], t
        }' "$WORK/mem.txt"
fi

# ---- durable: replay time of 1M live jobs ----
if [ "$DURABLE" = 1 ] && [ -z "$CHANQD_NOTE" ] && [ "$DO_MEM" = 1 ]; then
    stop_server chanqd
    start_server chanqd || exit 1
    say "replay: $JOBS live jobs, kill -9, restart"
    "$JOBCYCLE" --mode mem --proto chanq --port "$PORT_chanqd" --pid "$PID_chanqd" --jobs "$JOBS" \
        --queue replayq --label chanqd-durable >&2
    kill -9 "$PID_chanqd"
    wait "$PID_chanqd" 2>/dev/null || true
    t0=$(date +%s.%N)
    "$CHANQD" --data-dir "$WORK/chanqd-data" --fsync always --listen 127.0.0.1:0 2>"$WORK/replay.log" &
    rp=$!
    PIDS+=("$rp")
    for _ in $(seq 1200); do
        grep -q 'listening on' "$WORK/replay.log" && break
        kill -0 "$rp" 2>/dev/null || break
        sleep 0.01
    done
    t1=$(date +%s.%N)
    echo
    if grep -q 'listening on' "$WORK/replay.log"; then
        echo "Replay of $JOBS live jobs (kill -9, restart until 'listening on'): $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f s", b - a }') (target < 3 s)"
    else
        echo "Replay of $JOBS live jobs: chanqd did not come back within 12 s; its log:"
        sed 's/^/    /' "$WORK/replay.log"
    fi
    kill "$rp" 2>/dev/null || true
    wait "$rp" 2>/dev/null || true
fi
