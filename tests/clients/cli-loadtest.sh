#!/bin/bash
# chanq loadtest end to end: a short run with slow consumers produces a
# report, a CSV with one row per second and a well-formed SVG chart.
. "${top_srcdir:-.}/tests/clients/cli-lib.sh"

start_daemon
timeout 60 "$CHANQ" loadtest --producers 2 --consumers 1 --duration 3 --capacity 50 \
    --work-us 500 --batch 8 --window 16 --quiet --csv "$TMP/lt.csv" --svg "$TMP/lt.svg" \
    >"$TMP/report.txt" 2>"$TMP/loadtest.log" || fail "loadtest exited $?"
grep -q '^acked ' "$TMP/report.txt" || fail "no report: $(cat "$TMP/report.txt")"
grep -q 'p99' "$TMP/report.txt" || fail "no latency percentiles"
head -n 1 "$TMP/lt.csv" | grep -q '^t_s,submitted_per_s,acked_per_s' || fail "CSV header"
[ "$(wc -l <"$TMP/lt.csv")" -ge 4 ] || fail "CSV has $(wc -l <"$TMP/lt.csv") lines"
# Backpressure: the queue sat at its capacity of 50 at some second.
awk -F, 'NR > 1 && $5 == 50 { full = 1 } END { exit !full }' "$TMP/lt.csv" || fail "depth never reached capacity"
grep -q '^<svg' "$TMP/lt.svg" && grep -q '</svg>' "$TMP/lt.svg" || fail "SVG not complete"
grep -c '<polyline' "$TMP/lt.svg" | grep -q '^[5-9]' || fail "SVG has too few lines"
if command -v xmllint >/dev/null; then
    xmllint --noout "$TMP/lt.svg" || fail "SVG is not well-formed XML"
fi
echo "cli-loadtest: ok"
