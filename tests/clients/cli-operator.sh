#!/bin/bash
# chanq's operator commands end to end: jobs (table, --json, paging with
# --cursor and --all, every state), retry, delete (--force), purge, queue
# delete / configure, clients; their exit codes and what a restart keeps.
. "${top_srcdir:-.}/tests/clients/cli-lib.sh"

for sub in jobs retry delete purge queue clients; do
    out=$(cq "$sub" --help) || fail "chanq $sub --help exited $?"
    case "$out" in *Usage:*) ;; *) fail "chanq $sub --help printed no usage" ;; esac
done
# Bad command lines are exit 2 before anything is sent.
set +e
cq jobs q >/dev/null 2>&1; [ $? -eq 2 ] || fail "jobs without --state is not exit 2"
cq jobs q --state dead --limit 0 >/dev/null 2>&1; [ $? -eq 2 ] || fail "jobs --limit 0 is not exit 2"
cq purge q >/dev/null 2>&1; [ $? -eq 2 ] || fail "purge without --state is not exit 2"
cq queue rename q >/dev/null 2>&1; [ $? -eq 2 ] || fail "queue rename is not exit 2"
cq queue configure q >/dev/null 2>&1; [ $? -eq 2 ] || fail "queue configure without settings is not exit 2"
cq retry >/dev/null 2>&1; [ $? -eq 2 ] || fail "retry without ID is not exit 2"
set -e

start_daemon
cq declare mail --max-attempts 1 >/dev/null || fail "declare"
ids=()
for i in 1 2 3 4 5; do
    ids+=("$(cq submit mail "{\"n\":$i}")") || fail "submit $i"
done

# A table with a header and one row per job, oldest first.
out=$(cq jobs mail --state queued)
[ "$(printf '%s\n' "$out" | head -n 1 | awk '{print $1, $2}')" = "ID STATE" ] || fail "jobs: no header: $out"
[ "$(printf '%s\n' "$out" | sed 1d | awk '{print $1}' | tr '\n' ' ')" = "${ids[*]} " ] ||
    fail "jobs: rows are not the submitted ids in order: $out"
# Paging: two jobs a page, the cursor of the last line goes on.
page=$(cq jobs mail --state queued --limit 2)
cursor=$(printf '%s\n' "$page" | sed -n 's/^more: --cursor \([0-9]*\)$/\1/p')
[ "$cursor" = "${ids[1]}" ] || fail "jobs --limit 2: cursor '$cursor', want ${ids[1]}: $page"
page=$(cq jobs mail --state queued --limit 2 --cursor "$cursor")
[ "$(printf '%s\n' "$page" | sed -n '2p;3p' | awk '{print $1}' | tr '\n' ' ')" = "${ids[2]} ${ids[3]} " ] ||
    fail "jobs --cursor: $page"
[ "$(cq jobs mail --state queued --limit 2 --all | grep -c '^[0-9]')" -eq 5 ] || fail "jobs --all"
[ "$(cq jobs mail --state queued --newest | sed -n 2p | awk '{print $1}')" = "${ids[4]}" ] || fail "jobs --newest"
# --json: one line per page, the payload when asked.
json=$(cq jobs mail --state queued --json --limit 1 --payload)
case $json in '{"jobs":[{"id":"'"${ids[0]}"'"'*'"payload":{"n":1}'*'"next":"'"${ids[0]}"'"}') ;;
    *) fail "jobs --json: $json" ;; esac

# A job whose only attempt ended with its connection (chanq fetch exits
# holding it) is dead, with that error; retried, it is queued again.
fetched=$(cq fetch mail --timeout-ms 2000) || fail "fetch"
for _ in $(seq 100); do # the server sees the connection close soon, not at once
    [ "$(cq jobs mail --state dead | grep -c '^[0-9]')" -eq 1 ] && break
    sleep 0.1
done
out=$(cq jobs mail --state reserved)
[ "$(printf '%s\n' "$out" | grep -c '^[0-9]')" -eq 0 ] || fail "the fetch's connection is gone: nothing reserved: $out"
out=$(cq jobs mail --state dead)
printf '%s\n' "$out" | grep -q "^${ids[0]} .*dead .*connection lost" || fail "jobs --state dead: $out"
case $fetched in *"${ids[0]}"*) ;; *) fail "fetch got $fetched" ;; esac
out=$(cq retry "${ids[0]}") || fail "retry"
case $out in *'"state":"queued"'*) ;; *) fail "retry: $out" ;; esac
set +e
cq retry "${ids[0]}" >/dev/null 2>"$TMP/err.txt"; rc=$?
set -e
[ $rc -eq 1 ] && grep -q conflict "$TMP/err.txt" || fail "retry of a queued job: exit $rc $(cat "$TMP/err.txt")"

# delete, purge.
out=$(cq delete "${ids[1]}") || fail "delete"
case $out in *'"state":"queued"'*) ;; *) fail "delete: $out" ;; esac
set +e
cq delete "${ids[1]}" >/dev/null 2>"$TMP/err.txt"; rc=$?
set -e
[ $rc -eq 1 ] && grep -q not_found "$TMP/err.txt" || fail "delete twice: exit $rc"
out=$(cq purge mail --state queued) || fail "purge"
case $out in *'"purged":4'*) ;; *) fail "purge: $out" ;; esac
set +e
cq purge mail --state running >/dev/null 2>"$TMP/err.txt"; rc=$?
set -e
[ $rc -eq 1 ] && grep -q "bad_request.*'state'" "$TMP/err.txt" || fail "purge --state running: $(cat "$TMP/err.txt")"

# queue configure / delete, and what a restart keeps.
out=$(cq queue configure mail --capacity 7 --ttr-ms 5000) || fail "queue configure"
case $out in *'"capacity":7'*'"ttr_ms":5000'*) ;; *) fail "queue configure: $out" ;; esac
cq submit other '{"x":1}' >/dev/null || fail "submit other"
out=$(cq queue delete other) || fail "queue delete"
case $out in *'"deleted":1'*) ;; *) fail "queue delete: $out" ;; esac
kill -9 "$DPID"
wait "$DPID" 2>/dev/null || true
start_daemon
[ "$(cq queues)" = "mail" ] || fail "after kill -9 the queues are: $(cq queues)"
[ "$(cq jobs mail --state queued | grep -c '^[0-9]')" -eq 0 ] || fail "purged jobs came back"
case $(cq stats mail --json) in *'"capacity":7'*) ;; *) fail "configure lost on restart" ;; esac

# clients: the asking connection, in the table and as JSON.
out=$(cq clients)
[ "$(printf '%s\n' "$out" | head -n 1 | awk '{print $1, $2}')" = "CONN CLIENT" ] || fail "clients: $out"
[ "$(printf '%s\n' "$out" | grep -c '127.0.0.1:')" -ge 1 ] || fail "clients lists no connection: $out"
case $(cq clients --json) in '{"ok":true,"clients":[{"conn":'*'"addr":"127.0.0.1:'*) ;; *) fail "clients --json" ;; esac
echo "cli-operator: ok"
