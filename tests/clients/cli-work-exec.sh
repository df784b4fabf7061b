#!/bin/bash
# chanq work with a CMD that cannot be started: refused before anything is
# fetched (missing file, not in PATH, not executable, missing #! interpreter,
# deleted while the pool idles), and an exec failure after a fetch (here
# ETXTBSY: the file is open for writing) releases the job: neither nacked
# nor buried, its attempt uncounted. Each case exits 5 with the reason.
. "${top_srcdir:-.}/tests/clients/cli-lib.sh"

start_daemon

# expect_refused WHY CMD...: chanq work exits 5 saying WHY, fetching nothing.
expect_refused() {
    why=$1; shift
    set +e
    timeout --foreground 20 "$CHANQ" work nx -- "$@" 2>"$TMP/refused.txt"; rc=$?
    set -e
    [ $rc -eq 5 ] || fail "work -- $*: exit $rc, want 5: $(cat "$TMP/refused.txt")"
    grep -qF "cannot run" "$TMP/refused.txt" && grep -qF "$why" "$TMP/refused.txt" ||
        fail "work -- $*: message lacks '$why': $(cat "$TMP/refused.txt")"
    out=$(cq job "$nx")
    case "$out" in *'"state":"queued"'*'"attempt":0'*) ;; *) fail "work -- $*: touched the job: $out" ;; esac
}

nx=$(cq submit nx --max-attempts 1 '{"n":1}')
cd "$TMP"
expect_refused "cannot run ./does-not-exist: No such file or directory" ./does-not-exist
expect_refused "'chanq-no-such-command' not found in PATH" chanq-no-such-command
printf '#!/bin/sh\nexit 0\n' >"$TMP/noexec.sh"
expect_refused "noexec.sh: Permission denied" "$TMP/noexec.sh"
expect_refused "Is a directory" "$TMP"
mkdir "$TMP/bin"
cp "$TMP/noexec.sh" "$TMP/bin/noexec-cmd"
PATH="$TMP/bin:$PATH" expect_refused "cannot run noexec-cmd: $TMP/bin/noexec-cmd: Permission denied" noexec-cmd
printf '#!/nonexistent/interp\nexit 0\n' >"$TMP/badinterp.sh"
chmod +x "$TMP/badinterp.sh"
expect_refused "interpreter '/nonexistent/interp': No such file or directory" "$TMP/badinterp.sh"
cd - >/dev/null

# Deleted while the pool waits for jobs: it stops before fetching again.
cat >"$TMP/job.sh" <<EOS
#!/bin/sh
cat >/dev/null
echo done
EOS
chmod +x "$TMP/job.sh"
cp "$TMP/job.sh" "$TMP/gone.sh"
first=$(cq submit idle '{"n":1}')
timeout --foreground 30 "$CHANQ" work idle -- "$TMP/gone.sh" 2>"$TMP/gone.log" &
wpid=$!
cq wait "$first" --timeout-ms 10000 >/dev/null || fail "first job not done"
cq pause idle >/dev/null
second=$(cq submit idle --max-attempts 1 '{"n":2}')
rm "$TMP/gone.sh"
set +e
wait "$wpid"; rc=$?
set -e
[ $rc -eq 5 ] || fail "work with a deleted CMD: exit $rc, want 5"
grep -qF "cannot run $TMP/gone.sh: No such file or directory; stopping" "$TMP/gone.log" || fail "no reason: $(cat "$TMP/gone.log")"
cq resume idle >/dev/null
out=$(cq job "$second")
case "$out" in *'"state":"queued"'*'"attempt":0'*) ;; *) fail "deleted CMD: job touched: $out" ;; esac

# Fails to start after the fetch: released, not nacked (no error, no retry
# delay) and its attempt uncounted, so a job with one attempt is not buried;
# it is queued again at once for the next worker.
busy=$(cq submit busy --max-attempts 1 '{"n":3}')
exec 9>>"$TMP/job.sh"
set +e
timeout --foreground 30 "$CHANQ" work busy -- "$TMP/job.sh" 9>&- 2>"$TMP/busy.log"; rc=$?
set -e
exec 9>&-
[ $rc -eq 5 ] || fail "work with an exec failure: exit $rc, want 5: $(cat "$TMP/busy.log")"
grep -qF "cannot run $TMP/job.sh: Text file busy; stopping" "$TMP/busy.log" ||
    fail "exec failure: no reason: $(cat "$TMP/busy.log")"
grep -qF "not started, released" "$TMP/busy.log" ||
    fail "exec failure: job not released: $(cat "$TMP/busy.log")"
# Released before the worker exited: queued at once, the delivery uncounted.
out=$(cq job "$busy")
case "$out" in *'"state":"queued"'*'"attempt":0'*) ;; *) fail "exec failure: job not queued with attempt 0: $out" ;; esac
case "$out" in *'"error":"'*) fail "exec failure: job was nacked: $out" ;; esac
timeout --foreground 30 "$CHANQ" work busy -q -- "$TMP/job.sh" 2>>"$TMP/busy.log" &
wpid=$!
out=$(cq wait "$busy" --result --timeout-ms 10000) || fail "job not run after the exec failure: $out"
[ "$out" = '"done"' ] || fail "busy job result: $out"
out=$(cq job "$busy")
case "$out" in *'"attempt":1'*) ;; *) fail "busy job: the failed start was counted: $out" ;; esac
kill -TERM "$wpid"
wait "$wpid" || fail "second worker exited $?"
echo "cli-work-exec: ok"
