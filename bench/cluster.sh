#!/bin/bash
# bench/cluster.sh: chanqd as a three-node cluster against one node, both
# durable. See docs/performance.md ("Cluster").
#
#   bench/cluster.sh [--seconds N] [--rounds R] [--rtt-count N]
#                    [--no-ab] [--ab-ref REF] [--no-build] [--keep]
#
# 1. The job cycle (bench/jobcycle's load generator) on a single chanqd
#    (--data-dir, --fsync always) and on the leader of three chanqd nodes
#    on loopback (each with its own data dir; libraft fsyncs every append
#    of its log, which is what makes an entry count as on a node's disk),
#    interleaved: each round runs every scenario on one node, then on the
#    cluster. Scenarios (100-byte payload, closed loop, 8 producers and 8
#    consumers): 8x8 (one job in flight per producer) and 8x8p64 (64
#    pipelined per producer), each with fetch + ack workers and with
#    consume workers. Medians over the rounds; the target is the cluster
#    at >= 0.35x one node's cycles/s.
# 2. Commit latency: bench/submit_rtt.py, submit round trips with one
#    submit in flight (each its own batch, so on the cluster its own Raft
#    entry) on one node and on the leader, interleaved; the median of
#    the rounds' p50 must be < 5 ms on the cluster (a transport left to
#    Nagle and delayed ACKs takes ~40 ms a commit).
# 3. Unless --no-ab: single-node mode against main's chanqd, by
#    bench/jobcycle.sh --durable --ab (same run, interleaved, fetch
#    workers, 1x1, 8x8 and 8x8p64). main's chanqd is built from REF
#    (default: main) of this repository, exported with git archive into
#    BUILD_DIR/ab-COMMIT and built there once; this tree's chanqd is the A
#    side. The target is A / B >= 1 (no slower), within noise.
#
# The three nodes, the single node and the generator share this machine's
# cores and its one disk: a real cluster puts each replica on its own.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$SRC/build}
SECONDS_PER_RUN=5
ROUNDS=3
RTT_COUNT=500
DO_AB=1
AB_REF=main
DO_BUILD=1
KEEP=0

while [ $# -gt 0 ]; do
    case "$1" in
    --seconds) SECONDS_PER_RUN=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --rtt-count) RTT_COUNT=$2; shift ;;
    --no-ab) DO_AB=0 ;;
    --ab-ref) AB_REF=$2; shift ;;
    --no-build) DO_BUILD=0 ;;
    --keep) KEEP=1 ;;
    -h | --help) sed -n '2,33p' "$0"; exit 0 ;;
    *) echo "cluster.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

say() { echo "== $*" >&2; }

# ---- build ----
if [ "$DO_BUILD" = 1 ]; then
    if [ ! -f "$BUILD_DIR/Makefile" ]; then
        say "configuring in $BUILD_DIR"
        (cd "$SRC" && { test -f Makefile.in || autoreconf -fi; })
        mkdir -p "$BUILD_DIR"
        (cd "$BUILD_DIR" && "$SRC/configure" -q)
    fi
    say "building daemon/chanqd and bench/jobcycle in $BUILD_DIR"
    make -s -C "$BUILD_DIR" -j2 daemon/chanqd bench/jobcycle >&2
fi
CHANQD=$BUILD_DIR/daemon/chanqd
JOBCYCLE=$BUILD_DIR/bench/jobcycle
[ -x "$CHANQD" ] && [ -x "$JOBCYCLE" ] || { echo "cluster.sh: $CHANQD or $JOBCYCLE missing" >&2; exit 1; }
if ! "$CHANQD" --check-config --node-id 1 --peers 1@127.0.0.1:1 >/dev/null 2>&1; then
    echo "cluster.sh: $CHANQD was built without the cluster code (libraft-dev, libuv1-dev)" >&2
    exit 1
fi

WORK=$(mktemp -d /tmp/cluster-bench.XXXXXX)
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

free_port() { # below the ephemeral range, not used by any socket, not handed out before
    local p
    for _ in $(seq 100); do
        p=$((10000 + RANDOM % 20000))
        if ! grep -qx "$p" "$WORK/ports" 2>/dev/null &&
            ! ss -Htan 2>/dev/null | awk '{print $4}' | grep -q ":$p\$"; then
            echo "$p" >>"$WORK/ports"
            echo "$p"
            return
        fi
    done
    echo "cluster.sh: no free port" >&2
    exit 1
}

ask() { # port json -> the answer line, or nothing
    timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && printf '%s\n' '$2' >&3 && head -1 <&3" \
        2>/dev/null || true
}

# ---- servers ----
# One node: the single-node durable chanqd.
start_single() {
    local port
    port=$(free_port)
    mkdir -p "$WORK/single"
    "$CHANQD" --data-dir "$WORK/single" --fsync always --listen "127.0.0.1:$port" \
        --log-level warn 2>"$WORK/single.log" &
    PIDS+=($!)
    PID_single=$!
    PORT_single=$port
    for _ in $(seq 200); do
        ask "$port" '{"op":"ping"}' | grep -q '"ok":true' && { say "one node: pid $PID_single on :$port"; return 0; }
        sleep 0.05
    done
    echo "cluster.sh: the single node did not start; its log:" >&2
    cat "$WORK/single.log" >&2
    exit 1
}

# Three nodes: the serving leader's port and pid in PORT_cluster, PID_cluster.
start_cluster() {
    local i peers="" raft=() client=()
    for i in 1 2 3; do
        raft[i]=$(free_port)
        client[i]=$(free_port)
        peers="$peers${peers:+,}$i@127.0.0.1:${raft[i]}/127.0.0.1:${client[i]}"
    done
    for i in 1 2 3; do
        mkdir -p "$WORK/node$i"
        "$CHANQD" --data-dir "$WORK/node$i" --fsync always --listen "127.0.0.1:${client[i]}" \
            --node-id "$i" --peers "$peers" --log-level warn 2>"$WORK/node$i.log" &
        PIDS+=($!)
        eval "NODE_PID_$i=$!"
    done
    for _ in $(seq 600); do
        for i in 1 2 3; do
            if ask "${client[i]}" '{"op":"declare","queue":"probe"}' | grep -q '"ok":true'; then
                PORT_cluster=${client[i]}
                eval "PID_cluster=\$NODE_PID_$i"
                say "three nodes: the leader is node $i, pid $PID_cluster on :$PORT_cluster"
                return 0
            fi
        done
        sleep 0.05
    done
    echo "cluster.sh: no leader served within 30 s; the logs:" >&2
    tail -n 20 "$WORK"/node*.log >&2
    exit 1
}

RESULTS=$WORK/results.txt
: >"$RESULTS"

run_cycle() { # system proto scenario window round
    local sys=$1 port pid out
    eval "port=\$PORT_$sys pid=\$PID_$sys"
    out=$("$JOBCYCLE" --proto "$2" --port "$port" --pid "$pid" --producers 8 --consumers 8 \
        --window "$4" --seconds "$SECONDS_PER_RUN" --runs 1 --warmup 1 \
        --label "$sys-$2" --scenario "$3" 2>&1) || { echo "$out" >&2; return 1; }
    echo "$out" | grep -v '^RESULT' >&2 || true
    echo "$out" | grep '^RESULT' | sed "s/\$/ round=$5/" >>"$RESULTS"
}

run_rtt() { # system round: a queue per round, so none fills up (nothing consumes them)
    local sys=$1 port out
    eval "port=\$PORT_$sys"
    out=$(python3 "$SRC/bench/submit_rtt.py" --port "$port" --count "$RTT_COUNT" --label "$sys" \
        --queue "rtt$2") ||
        { echo "$out" >&2; return 1; }
    echo "$out" | grep -v '^RESULT' >&2 || true
    echo "$out" | grep '^RESULT' >>"$RESULTS"
}

# median over the rounds of field f of the RESULT lines of server s (and scenario sc, if given)
med() { # server scenario field
    awk -v s="$1" -v sc="$2" -v f="$3" '
        $1 == "RESULT" {
            ok = 0; v = ""
            for (i = 2; i <= NF; i++) {
                split($i, kv, "=")
                if (kv[1] == "server" && kv[2] == s) ok++
                if (kv[1] == "scenario" && (sc == "" || kv[2] == sc)) ok++
                if (kv[1] == f) v = kv[2]
            }
            if (sc == "") ok++
            if (ok >= 2 && v != "") a[n++] = v + 0
        }
        END {
            if (n == 0) { print "-"; exit }
            for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
            print a[int(n / 2)]
        }' "$RESULTS"
}
# median over the rounds of cluster / single cycles/s within the same round
# (the two ran one after the other, so the machine's load hits both alike)
paired() { # proto scenario
    awk -v a="single-$1" -v b="cluster-$1" -v sc="$2" '
        $1 == "RESULT" {
            s = ""; c = ""; r = ""; v = ""
            for (i = 2; i <= NF; i++) {
                split($i, kv, "=")
                if (kv[1] == "server") s = kv[2]
                if (kv[1] == "scenario") c = kv[2]
                if (kv[1] == "round") r = kv[2]
                if (kv[1] == "cps") v = kv[2] + 0
            }
            if (c == sc && s == a) one[r] = v
            if (c == sc && s == b) three[r] = v
        }
        END {
            for (r in one) if ((r in three) && one[r] > 0) x[n++] = three[r] / one[r]
            if (n == 0) { print "-"; exit }
            for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t }
            printf "%.2f", x[int(n / 2)]
        }' "$RESULTS"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a !~ /^[0-9.]+$/ || b !~ /^[0-9.]+$/ || b == 0) print "-"; else printf "%.2f", a / b }'; }

say "machine: $(nproc) CPUs, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(uname -r); disk of $WORK: $(df -h --output=source "$WORK" | tail -1)"
say "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
start_single
start_cluster

SCENARIOS=("8x8 1" "8x8p64 64")
PROTOS=(chanq chanq-consume)
say "$ROUNDS rounds: ${SECONDS_PER_RUN}s per scenario and system (1 s warm-up each), then $RTT_COUNT submit round trips each"
for r in $(seq "$ROUNDS"); do
    say "round $r"
    for scn in "${SCENARIOS[@]}"; do
        set -- $scn
        for p in "${PROTOS[@]}"; do
            run_cycle single "$p" "$1" "$2" "$r"
            run_cycle cluster "$p" "$1" "$2" "$r"
        done
    done
    run_rtt single "$r"
    run_rtt cluster "$r"
done
say "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

echo
echo "### Three nodes against one, durable (cycles/s, median of $ROUNDS interleaved runs of ${SECONDS_PER_RUN} s)"
echo
echo "One node: --data-dir, --fsync always. Three nodes on loopback: an ok means the change is in"
echo "libraft's fsynced log on two of the three. All four chanqd processes and the generator share"
echo "this machine's $(nproc) cores and one disk."
echo
echo "\"paired\" is the median over the rounds of each round's three / one (the two ran back to back);"
echo "the target is judged on it. \"of medians\" divides the medians."
echo
echo "| scenario | workers | one node | three nodes | three / one, paired | of medians | target (>= 0.35x) | p50 / p99 one (us) | p50 / p99 three (us) |"
echo "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |"
for scn in "${SCENARIOS[@]}"; do
    set -- $scn
    for p in "${PROTOS[@]}"; do
        a=$(med "single-$p" "$1" cps)
        b=$(med "cluster-$p" "$1" cps)
        rt=$(ratio "$b" "$a")
        pr=$(paired "$p" "$1")
        verdict=$(awk -v x="$pr" 'BEGIN { if (x !~ /^[0-9.]+$/) print "n/a"; else print (x >= 0.35 ? "met" : "MISSED") }')
        w=fetch
        [ "$p" = chanq-consume ] && w=consume
        echo "| $1 | $w | $a | $b | $pr | $rt | $verdict | $(med "single-$p" "$1" p50_us) / $(med "single-$p" "$1" p99_us) | $(med "cluster-$p" "$1" p50_us) / $(med "cluster-$p" "$1" p99_us) |"
    done
done
echo
echo "Server CPU per cycle (us, user + system; for three nodes the leader's only):"
for scn in "${SCENARIOS[@]}"; do
    set -- $scn
    for p in "${PROTOS[@]}"; do
        echo "    $1 $p: one node $(med "single-$p" "$1" cpu_us), leader $(med "cluster-$p" "$1" cpu_us)"
    done
done
echo
c50=$(med cluster "" p50_ms)
echo "### Commit latency: $RTT_COUNT submit round trips, one in flight (ms, median over $ROUNDS rounds)"
echo
echo "| system | p50 | p90 | p99 | max |"
echo "| --- | ---: | ---: | ---: | ---: |"
for s in single cluster; do
    label="one node"
    [ "$s" = cluster ] && label="three nodes (leader)"
    echo "| $label | $(med "$s" "" p50_ms) | $(med "$s" "" p90_ms) | $(med "$s" "" p99_ms) | $(med "$s" "" max_ms) |"
done
echo
echo "Target: three nodes' p50 < 5 ms: $(awk -v x="$c50" 'BEGIN { if (x !~ /^[0-9.]+$/) print "n/a"; else print (x < 5 ? "met" : "MISSED") }') ($c50 ms)"
echo
echo "Raw results:"
sed 's/^RESULT /    /' "$RESULTS"

for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
PIDS=()

# ---- single-node mode against main's chanqd ----
if [ "$DO_AB" = 1 ]; then
    commit=$(git -C "$SRC" rev-parse --verify "$AB_REF^{commit}")
    AB_DIR=$BUILD_DIR/ab-${commit:0:12}
    if [ ! -x "$AB_DIR/build/daemon/chanqd" ]; then
        say "building chanqd of $AB_REF (${commit:0:12}) in $AB_DIR"
        rm -rf "$AB_DIR"
        mkdir -p "$AB_DIR/src" "$AB_DIR/build"
        git -C "$SRC" archive "$commit" | tar -x -C "$AB_DIR/src"
        (cd "$AB_DIR/src" && autoreconf -fi >/dev/null 2>&1)
        (cd "$AB_DIR/build" && "$AB_DIR/src/configure" -q >/dev/null)
        make -s -C "$AB_DIR/build" -j2 daemon/chanqd >&2
    fi
    echo
    echo "### Single-node mode: this tree's chanqd (A) against $AB_REF's (${commit:0:12}, B), --fsync always"
    BUILD_DIR=$BUILD_DIR "$SRC/bench/jobcycle.sh" --durable --no-build --no-mem \
        --seconds "$SECONDS_PER_RUN" --rounds "$ROUNDS" --ab "$AB_DIR/build/daemon/chanqd" |
        sed -n '/^| scenario/,$p'
fi
