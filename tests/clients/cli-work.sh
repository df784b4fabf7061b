#!/bin/bash
# chanq work end to end: exit 0 acks with stdout as the result (JSON or a
# string), non-zero nacks with the stderr tail, a cancelled job's command
# gets SIGTERM (and SIGKILL when it ignores it), SIGTERM to chanq work lets
# the running command finish.
. "${top_srcdir:-.}/tests/clients/cli-lib.sh"

start_daemon
cat >"$TMP/job.sh" <<EOS
#!/bin/sh
p=\$(cat)
case "\$p" in
*'"json"'*) echo "{\"id\":\"\$CHANQ_JOB_ID\",\"attempt\":\$CHANQ_ATTEMPT,\"got\":\$p}" ;;
*'"text"'*) echo "plain words" ;;
*'"fail"'*) echo "first line" >&2; echo "disk on fire" >&2; exit 7 ;;
*'"hang"'*) trap 'echo term >"$TMP/hang.term"; exit 143' TERM
            echo \$\$ >"$TMP/hang.pid"
            while :; do sleep 0.1; done ;;
*'"stubborn"'*) trap '' TERM
            echo \$\$ >"$TMP/stub.pid"
            while :; do sleep 0.1; done ;;
*'"slow"'*) touch "$TMP/slow.started"; sleep 1; echo finished ;;
esac
EOS
chmod +x "$TMP/job.sh"

a=$(cq submit jobs '{"mode":"json"}')
b=$(cq submit jobs '{"mode":"text"}')
c=$(cq submit jobs --max-attempts 1 '{"mode":"fail"}')
d=$(cq submit jobs '{"mode":"hang"}')
e=$(cq submit jobs '{"mode":"stubborn"}')

# --foreground: a plain timeout would pass our SIGTERM on twice (to chanq,
# then to its process group), and a second signal means "stop the commands".
timeout --foreground 60 "$CHANQ" work jobs --concurrency 4 --grace-ms 1000 -- "$TMP/job.sh" 2>"$TMP/work.log" &
wpid=$!

out=$(cq wait "$a" --timeout-ms 10000) || fail "json job not done: $out"
case "$out" in *"\"id\":\"$a\""*'"attempt":1'*'"got":{"mode":"json"}'*) ;; *) fail "json result: $out" ;; esac
out=$(cq wait "$b" --result --timeout-ms 10000) || fail "text job not done"
[ "$out" = '"plain words"' ] || fail "text result: $out"
set +e
out=$(cq wait "$c" --timeout-ms 10000); rc=$?
set -e
[ $rc -eq 4 ] || fail "failed job: wait exit $rc ($out), want 4 (final, not done)"
case "$out" in *'"state":"dead"'*) ;; *) fail "failed job state: $out" ;; esac
case "$out" in *'exit status 7'*'disk on fire'*) ;; *) fail "stderr tail not the error: $out" ;; esac

wait_for "$TMP/hang.pid" || fail "hang job never started"
wait_for "$TMP/stub.pid" || fail "stubborn job never started"
hang=$(cat "$TMP/hang.pid"); stub=$(cat "$TMP/stub.pid")
cq cancel "$d" >/dev/null || fail "cancel hang"
cq cancel "$e" >/dev/null || fail "cancel stubborn"
wait_for "$TMP/hang.term" 50 || fail "cancelled command got no SIGTERM"
for _ in $(seq 50); do kill -0 "$hang" 2>/dev/null || break; sleep 0.1; done
kill -0 "$hang" 2>/dev/null && fail "cancelled command still runs"
# The stubborn one ignores SIGTERM: SIGKILL after the 1 s grace.
for _ in $(seq 50); do kill -0 "$stub" 2>/dev/null || break; sleep 0.1; done
kill -0 "$stub" 2>/dev/null && fail "command ignoring SIGTERM still runs after the grace period"
out=$(cq job "$d"); case "$out" in *'"state":"cancelled"'*) ;; *) fail "job $d: $out" ;; esac
grep -q "job $d .*cancelled" "$TMP/work.log" || fail "work did not log the cancel"

# SIGTERM: stop fetching, let the running command finish, exit 0.
f=$(cq submit jobs '{"mode":"slow"}')
wait_for "$TMP/slow.started" || fail "slow job never started"
kill -TERM "$wpid"
set +e
wait "$wpid"; rc=$?
set -e
[ $rc -eq 0 ] || fail "chanq work exited $rc after SIGTERM"
out=$(cq wait "$f" --result --timeout-ms 2000) || fail "running job not finished after SIGTERM: $out"
[ "$out" = '"finished"' ] || fail "slow job result: $out"
# And it fetched nothing more.
g=$(cq submit jobs '{"mode":"text"}')
sleep 0.5
out=$(cq job "$g"); case "$out" in *'"state":"queued"'*) ;; *) fail "a stopped worker took $g: $out" ;; esac

# Closing the queue ends chanq work by itself.
timeout --foreground 30 "$CHANQ" work jobs -q -- "$TMP/job.sh" 2>>"$TMP/work.log" &
wpid=$!
cq wait "$g" --timeout-ms 10000 >/dev/null || fail "second worker did not run $g"
cq close jobs >/dev/null
set +e
wait "$wpid"; rc=$?
set -e
[ $rc -eq 0 ] || fail "chanq work on a closed queue exited $rc"
echo "cli-work: ok"
