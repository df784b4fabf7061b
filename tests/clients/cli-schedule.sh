#!/bin/sh
# chanq schedule: add (cron and --every, a zone, a policy), list as a table
# and as JSON, pause, resume, rm, and the errors a bad expression, an
# unknown zone and bad options get. Firing runs on chanqd's test clock.
. "${top_srcdir:-.}/tests/clients/cli-lib.sh"

echo 1767225630000 >"$TMP/clock" # 2026-01-01T00:00:30Z
export CHANQ_TEST_CLOCK_FILE="$TMP/clock"
start_daemon

out=$(cq schedule add nightly --cron '30 2 * * mon-fri' --tz Europe/Berlin --queue reports \
    --payload '{"kind":"daily"}' --missed once) || fail "add: $out"
case $out in *'"name":"nightly"'*'"tz":"Europe/Berlin"'*'"missed":"once"'*) ;; *) fail "add printed: $out" ;; esac
cq schedule add tick --every 1m --queue ticks --payload '[1]' >/dev/null || fail "add --every"

table=$(cq schedule list) || fail "list"
printf '%s\n' "$table" | grep -q '^NAME  *CRON' || fail "list has no header: $table"
printf '%s\n' "$table" | grep -q '^nightly  *30 2 \* \* mon-fri  *Europe/Berlin  *reports  *2026-01-01 01:30:00Z  *-  *active$' ||
    fail "list row of nightly: $table"
json=$(cq schedule list --json) || fail "list --json"
case $json in '['*'"name":"nightly"'*'"name":"tick"'*']') ;; *) fail "list --json: $json" ;; esac

# A firing is a job with the envelope.
echo 1767225695000 >"$TMP/clock" # 00:01:35: tick's first planned time passed
job=$(cq fetch ticks --timeout-ms 5000) || fail "fetch"
case $job in *'"payload":{"schedule":"tick","planned":1767225690000,"payload":[1]}'*) ;; *) fail "fired job: $job" ;; esac

cq schedule pause tick || fail "pause"
cq schedule list | grep -q '^tick .* paused$' || fail "not shown paused"
cq schedule resume tick || fail "resume"
cq schedule rm tick || fail "rm"
set +e
err=$(cq schedule rm tick 2>&1); rc=$?
[ $rc -eq 1 ] && case $err in *not_found*"no schedule named 'tick'"*) true ;; *) false ;; esac ||
    fail "rm of a missing schedule: rc $rc, $err"
err=$(cq schedule add x --cron '61 * * * *' --queue q --payload 1 2>&1); rc=$?
[ $rc -eq 1 ] && case $err in *"61 is out of range 0-59"*) true ;; *) false ;; esac ||
    fail "bad cron: rc $rc, $err"
err=$(cq schedule add x --cron '@daily' --tz Moon/Base --queue q --payload 1 2>&1); rc=$?
[ $rc -eq 1 ] && case $err in *"unknown time zone 'Moon/Base'"*) true ;; *) false ;; esac ||
    fail "unknown zone: rc $rc, $err"
err=$(cq schedule add x --cron '@daily' --queue q --payload '{bad' 2>&1); rc=$?
[ $rc -eq 2 ] || fail "payload that is not JSON: rc $rc, $err"
err=$(cq schedule add x --cron '@daily' --queue q --payload 1 --missed never 2>&1); rc=$?
[ $rc -eq 2 ] || fail "--missed never: rc $rc, $err"
err=$(cq schedule frob x 2>&1); rc=$?
[ $rc -eq 2 ] || fail "unknown action: rc $rc, $err"
set -e
[ "$(cq schedule list --json)" = "$(cq schedule list --json | grep -v '"name":"x"')" ] || fail "x was made"
echo "ok: chanq schedule"
