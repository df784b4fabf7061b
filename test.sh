#!/bin/sh
# The whole test suite in one command: install missing dependencies, build,
# then `make check` (every Check suite and black-box test). Exits non-zero on
# any failure and prints Check's summary line for each test binary.
set -eu
top=$(cd "$(dirname "$0")" && pwd)
build=${BUILD_DIR:-$top/build}
"$top/scripts/deps.sh" test
"$top/scripts/build.sh"
cd "$build"
rc=0
# CHANQ_TESTS: run only these test programs (space-separated), e.g. the
# suites CI runs under ThreadSanitizer.
if [ -n "${CHANQ_TESTS:-}" ]; then
    make -j"$(nproc)" check TESTS="$CHANQ_TESTS" >make-check.out 2>&1 || rc=$?
else
    make -j"$(nproc)" check >make-check.out 2>&1 || rc=$?
fi
grep -E '^(PASS|FAIL|XFAIL|XPASS|SKIP|ERROR):' make-check.out || true
echo "--- Check summaries"
find . -name '*.log' ! -name test-suite.log ! -name config.log -exec grep -H -E '^[0-9]+%: Checks:' {} + || true
if [ "$rc" -ne 0 ]; then
    echo "--- make check failed; details:"
    tail -n 60 make-check.out
    find . -name test-suite.log -exec cat {} +
fi
exit "$rc"
