#!/bin/sh
# The whole test suite with every chanqd the harnesses start logging JSON
# (CHANQ_TEST_LOG_FORMAT=json), their logs kept, then every kept line checked
# (tests/json-logs.py). Reports both: the suite's result and the lines'.
# Build first (./test.sh or scripts/build.sh). Usage: scripts/json-logs-run.sh
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$top/build}
keep=$(mktemp -d /tmp/chanq-jsonlogs-all-XXXXXX)
trap 'rm -rf "$keep"' EXIT
cd "$build"
rc=0
CHANQ_TEST_LOG_FORMAT=json CHANQ_TEST_LOG_KEEP=$keep make -j2 check >make-check-json.out 2>&1 || rc=$?
grep -E '^(PASS|FAIL|XFAIL|XPASS|SKIP|ERROR):' make-check-json.out || true
echo "json-logs-run: make check with JSON logs exited $rc"
lrc=0
python3 "$top/tests/json-logs.py" --min-files 10 "$keep" || lrc=$?
[ "$rc" -eq 0 ] && [ "$lrc" -eq 0 ]
