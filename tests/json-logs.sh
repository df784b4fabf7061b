#!/bin/sh
# JSON logs end to end: a representative subset of the black-box tests
# (requests and error answers, hostile input, connections, HTTP, the CLI)
# runs with every chanqd it starts logging JSON (CHANQ_TEST_LOG_FORMAT=json,
# honoured by tests/harness.c, tests/ops/opslib.py and
# tests/clients/cli-lib.sh), their logs kept (CHANQ_TEST_LOG_KEEP); then
# every line must be a JSON object as docs/operations.md says
# (tests/json-logs.py). scripts/json-logs-run.sh does the same for the
# whole suite.
set -eu
b=${top_builddir:-.}
s=${top_srcdir:-.}
keep=$(mktemp -d /tmp/chanq-jsonlogs-XXXXXX)
trap 'rm -rf "$keep"' EXIT
CHANQ_TEST_LOG_FORMAT=json
CHANQ_TEST_LOG_KEEP=$keep
export CHANQ_TEST_LOG_FORMAT CHANQ_TEST_LOG_KEEP
for suite in daemon_ops hostile daemon_conn; do
    CK_RUN_SUITE=$suite "$b/tests/daemon/check_daemon" >"$keep/$suite.out" 2>&1 ||
        { cat "$keep/$suite.out"; echo "FAIL: check_daemon $suite with JSON logs"; exit 1; }
done
"$s/tests/ops/test_http.py" >"$keep/http.out" 2>&1 ||
    { cat "$keep/http.out"; echo "FAIL: test_http.py with JSON logs"; exit 1; }
"$s/tests/clients/cli-work.sh" >"$keep/cli.out" 2>&1 ||
    { cat "$keep/cli.out"; echo "FAIL: cli-work.sh with JSON logs"; exit 1; }
python3 "$s/tests/json-logs.py" --min-files 5 "$keep"
