#!/bin/bash
# chanq CLI end to end: --help everywhere, submit (argument and pipelined
# NDJSON), fetch with --ack and with ack lines on stdin, queue admin, stats,
# exit codes, common options before the command, "did you mean" hints.
. "${top_srcdir:-.}/tests/clients/cli-lib.sh"

for sub in submit fetch ack nack touch cancel wait job declare close pause resume kick ping stats work loadtest; do
    out=$(cq "$sub" --help) || fail "chanq $sub --help exited $?"
    case "$out" in *Usage:*) ;; *) fail "chanq $sub --help printed no usage" ;; esac
done
cq --help | grep -q loadtest || fail "chanq --help lists no commands"
cq -h | grep -q '^Usage: chanq' || fail "chanq -h prints no usage"
# Typos get the closest name, before and after the command.
expect_hint() { # WANT ARGS...: exit 2 and WANT on stderr
    want=$1; shift
    set +e
    cq "$@" >/dev/null 2>"$TMP/err.txt"; rc=$?
    set -e
    [ $rc -eq 2 ] || fail "chanq $*: exit $rc, want 2"
    grep -qF "did you mean '$want'?" "$TMP/err.txt" || fail "chanq $*: no hint for $want: $(cat "$TMP/err.txt")"
}
expect_hint --server stats --sever 127.0.0.1:1
expect_hint --server --sever 127.0.0.1:1 stats
expect_hint --concurrency work q --concurency 2 -- true
expect_hint stats stat
set +e
cq submit >/dev/null 2>&1; [ $? -eq 2 ] || fail "missing QUEUE is not exit 2"
CHANQ_SERVER=127.0.0.1:1 cq ping >/dev/null 2>&1; [ $? -eq 3 ] || fail "unreachable server is not exit 3"
set -e

start_daemon
cq ping >/dev/null || fail "ping"

# Common options before the command, as with git: they beat CHANQ_SERVER,
# and one repeated after the command wins.
good=$CHANQ_SERVER
CHANQ_SERVER=127.0.0.1:1 cq --server "$good" ping >/dev/null || fail "--server before the command"
CHANQ_SERVER=127.0.0.1:1 cq --server="$good" stats --json >/dev/null || fail "--server=ADDR before the command"
CHANQ_SERVER=127.0.0.1:1 cq --server 127.0.0.1:1 ping --server "$good" >/dev/null ||
    fail "--server after the command does not win"
set +e
cq --server 127.0.0.1:1 ping >/dev/null 2>&1; rc=$?
set -e
[ $rc -eq 3 ] || fail "--server before the command ignored (exit $rc, want 3)"
# The command still takes its options after its arguments.
pre=$(CHANQ_SERVER=127.0.0.1:1 cq --server "$good" submit pre '{"x":1}' --ttr-ms 4321) ||
    fail "submit with options after its arguments, common option first"
cq job "$pre" | grep -q '"queue":"pre"' || fail "job $pre not in queue pre"
cq declare mail --capacity 5000 >/dev/null || fail "declare"

id=$(cq submit mail '{"to":"ann"}') || fail "submit with a JSON argument"
[ -n "$id" ] || fail "submit printed no id"

seq 1 1000 | sed 's/.*/{"n":&}/' | cq submit mail >"$TMP/ids" || fail "pipelined submit from stdin"
[ "$(wc -l <"$TMP/ids")" -eq 1000 ] || fail "stdin submit printed $(wc -l <"$TMP/ids") ids, want 1000"
[ "$(sort -u "$TMP/ids" | wc -l)" -eq 1000 ] || fail "duplicate ids"

out=$(cq fetch mail --ack --timeout-ms 2000) || fail "fetch --ack"
[ "$(json_field "$out" id)" = "$id" ] || fail "fetch returned $out, want job $id first"
case "$out" in *'"payload":{"to":"ann"}'*) ;; *) fail "payload lost: $out" ;; esac

out=$(cq fetch mail --count 10 --ack --timeout-ms 2000) || fail "fetch --count"
[ "$(printf '%s\n' "$out" | wc -l)" -eq 10 ] || fail "fetch --count 10 printed $(printf '%s\n' "$out" | wc -l) jobs"
first=$(head -n 1 "$TMP/ids")
[ "$(json_field "$(printf '%s\n' "$out" | head -n 1)" id)" = "$first" ] || fail "FIFO order broken"

# A reservation lives on the fetching connection: ack it through fetch's stdin.
ack_id=$(cq submit solo '"work me"')
coproc FETCH { timeout 20 "$CHANQ" fetch solo --timeout-ms 5000; }
fetch_pid=$FETCH_PID
read -r -t 10 line <&"${FETCH[0]}" || fail "fetch printed no job"
[ "$(json_field "$line" id)" = "$ack_id" ] || fail "fetched $line"
echo "ack $ack_id {\"r\":1}" >&"${FETCH[1]}"
read -r -t 10 answer <&"${FETCH[0]}" || fail "no answer to the ack line"
[ "$answer" = '{"ok":true}' ] || fail "ack line answered $answer"
exec {FETCH[1]}>&-
wait "$fetch_pid" || true
out=$(cq wait "$ack_id" --timeout-ms 5000) || fail "wait after ack: $out"
case "$out" in *'"state":"done"'*'"result":{"r":1}'*|*'"result":{"r":1}'*'"state":"done"'*) ;; *) fail "wait said $out" ;; esac

set +e
cq wait "$(sed -n 20p "$TMP/ids")" --timeout-ms 200 >/dev/null 2>&1
[ $? -eq 1 ] || fail "wait timeout is not exit 1"
set -e

cq pause mail >/dev/null || fail "pause"
out=$(cq fetch mail --timeout-ms 300 --ack) || fail "fetch on paused"
[ -z "$out" ] || fail "paused queue delivered $out"
cq resume mail >/dev/null || fail "resume"

table=$(cq stats) || fail "stats"
printf '%s\n' "$table" | grep -q '^QUEUE' || fail "stats has no header: $table"
printf '%s\n' "$table" | grep -Eq '^mail +990/5000 ' || fail "stats row for mail wrong: $table"
cq stats mail --json | grep -q '"depth":990' || fail "stats --json"

# --key: the second submit prints the first job's id and "duplicate"; a
# key names one job, so it needs the JSON argument.
k1=$(cq submit keyed '{"n":1}' --key order-17) || fail "submit --key"
k2=$(cq submit keyed '{"n":2}' --key order-17) || fail "submit --key again"
[ "$k2" = "$k1 duplicate" ] || fail "a key submitted twice printed '$k1' then '$k2'"
k3=$(cq submit keyed-a,keyed-b '{"n":3}' --key order-18) || fail "--key with two queues"
k4=$(cq submit keyed-a,keyed-b '{"n":3}' --key order-18) || fail "--key with two queues again"
case "$k3" in *" keyed-a" | *" keyed-b") ;; *) fail "--key with two queues printed '$k3'" ;; esac
[ "$k4" = "${k3%% *} duplicate" ] || fail "--key with two queues again printed '$k4', want '${k3%% *} duplicate'"
set +e
echo '{"n":4}' | cq submit keyed --key order-19 >/dev/null 2>&1; rc=$?
set -e
[ $rc -eq 2 ] || fail "--key with stdin: exit $rc, want 2"
# --priority, from the argument and pipelined from stdin: level 7 first.
low=$(cq submit ranked '"low"') || fail "submit to ranked"
printf '"hi1"\n"hi2"\n' | cq submit ranked --priority 7 >"$TMP/hi" || fail "submit --priority from stdin"
mid=$(cq submit ranked '"mid"' --priority 3) || fail "submit --priority"
out=$(cq fetch ranked --count 4 --ack --timeout-ms 2000) || fail "fetch ranked"
got=$(printf '%s\n' "$out" | while read -r l; do json_field "$l" id; done | tr '\n' ' ')
want="$(tr '\n' ' ' <"$TMP/hi")$mid $low "
[ "$got" = "$want" ] || fail "priorities delivered '$got', want '$want'"
set +e
cq submit ranked '1' --priority 10 >/dev/null 2>"$TMP/err.txt"; rc=$?
set -e
[ $rc -eq 1 ] && grep -q priority "$TMP/err.txt" || fail "--priority 10: rc $rc $(cat "$TMP/err.txt")"

cq close mail >/dev/null || fail "close"
set +e
cq submit mail '1' >/dev/null 2>"$TMP/err.txt"; rc=$?
set -e
[ $rc -eq 1 ] && grep -q closed "$TMP/err.txt" || fail "submit to a closed queue: rc $rc $(cat "$TMP/err.txt")"
echo "cli-basics: ok"
