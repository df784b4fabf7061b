#!/bin/bash
# Trace context end to end: a job submitted with a W3C traceparent keeps it
# (fetch, job), through a restart and through a compaction (the journal's
# JOB records) and another restart; chanq work gives it to the command as
# TRACEPARENT, and a job without one gets an empty TRACEPARENT even when
# chanq work's own environment has one. A malformed one is refused and
# submits nothing.
. "${top_srcdir:-.}/tests/clients/cli-lib.sh"

TP=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
OTHER=00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01

stop_daemon() {
    kill -TERM "$DPID"
    wait "$DPID" || fail "chanqd did not stop cleanly"
    DPID=
}

start_daemon
id=$(cq submit traced '{"n":1}' --traceparent "$TP") || fail "submit with a traceparent: $id"
plain=$(cq submit traced '{"n":2}') || fail "submit without one"
for bad in 00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01 \
    00-00000000000000000000000000000000-00f067aa0ba902b7-01 \
    ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 \
    00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra "not a trace"; do
    if out=$(cq submit traced '{"n":3}' --traceparent "$bad" 2>&1); then
        fail "malformed traceparent '$bad' accepted: $out"
    fi
    case "$out" in *bad_request*traceparent*) ;; *) fail "refusal of '$bad': $out" ;; esac
done
out=$(cq job "$id") || fail "job: $out"
case "$out" in *"\"traceparent\":\"$TP\""*) ;; *) fail "job answer without the traceparent: $out" ;; esac
out=$(cq job "$plain")
case "$out" in *'"traceparent":null'*) ;; *) fail "a job without one: $out" ;; esac
out=$(cq stats traced --json) || fail "stats: $out"
case "$out" in *'"depth":2'*) ;; *) fail "the refused submits changed the queue: $out" ;; esac

# A restart replays the SUBMIT record; one with compactions running rewrites
# the journal as JOB records, which the next restart reads.
stop_daemon
CHANQ_TEST_COMPACT_MS=20 start_daemon
out=$(cq job "$id")
case "$out" in *"\"traceparent\":\"$TP\""*) ;; *) fail "after a restart: $out" ;; esac
for _ in $(seq 100); do
    grep -q 'journal: compacted' "$TMP/chanqd.log" && break
    sleep 0.1
done
grep -q 'journal: compacted' "$TMP/chanqd.log" || fail "no compaction in 10 s"
stop_daemon
start_daemon
out=$(cq job "$id")
case "$out" in *"\"traceparent\":\"$TP\""*) ;; *) fail "after a compaction and a restart: $out" ;; esac

# chanq work: the command sees the job's trace context, and only the job's.
TRACEPARENT=$OTHER timeout --foreground 60 "$CHANQ" work traced -q -- \
    sh -c 'printf "\"%s\"" "$TRACEPARENT"' 2>"$TMP/work.log" &
wpid=$!
out=$(cq wait "$id" --result --timeout-ms 10000) || fail "traced job not done: $out"
[ "$out" = "\"$TP\"" ] || fail "the command's TRACEPARENT: $out"
out=$(cq wait "$plain" --result --timeout-ms 10000) || fail "plain job not done: $out"
[ "$out" = '""' ] || fail "a job without a trace context saw TRACEPARENT=$out"
kill -TERM "$wpid"
wait "$wpid" || fail "chanq work did not stop cleanly"
out=$(cq job "$id")
case "$out" in *"\"traceparent\":\"$TP\""*'"state":"done"'* | *'"state":"done"'*"\"traceparent\":\"$TP\""*) ;;
*) fail "the done job lost its traceparent: $out" ;;
esac
echo "ok: traceparent kept, refused when malformed, survives restarts and compaction, TRACEPARENT in chanq work"
