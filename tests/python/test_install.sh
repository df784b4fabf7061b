#!/bin/sh
# The Python client as a user installs it: `python3 -m venv` in a temp dir,
# `pip install --no-index --no-build-isolation` of a copy of clients/python
# (offline: the package's build backend needs only the standard library),
# then a producer and a worker script run from outside the source tree,
# with only the venv's python, against a real chanqd. Skips (77) when
# python3 or its venv module is missing.
set -u
srcdir=$(cd "${top_srcdir:-.}" && pwd)
builddir=$(cd "${top_builddir:-.}" && pwd)
fail() { echo "FAIL: $*"; [ -f "$tmp/chanqd.log" ] && cat "$tmp/chanqd.log"; echo "0 passed, 1 failed"; exit 1; }

command -v python3 >/dev/null || { echo "SKIP: no python3"; exit 77; }
tmp=$(mktemp -d /tmp/chanq-pyinstall-XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

if ! timeout 120 python3 -m venv "$tmp/venv" >"$tmp/venv.log" 2>&1; then
    cat "$tmp/venv.log"
    echo "SKIP: python3 -m venv failed (Debian: apt-get install python3-venv)"
    exit 77
fi
mkdir "$tmp/src"
(cd "$srcdir/clients/python" && tar cf - --exclude=__pycache__ --exclude='*.egg-info' .) |
    (cd "$tmp/src" && tar xf -) || fail "copying clients/python"
env -u PYTHONPATH timeout 120 "$tmp/venv/bin/pip" install --no-index --no-build-isolation \
    --disable-pip-version-check "$tmp/src" >"$tmp/pip.log" 2>&1 ||
    { cat "$tmp/pip.log"; fail "pip install of clients/python"; }
echo "ok: pip install --no-index --no-build-isolation"

"$builddir/daemon/chanqd" --memory --listen 127.0.0.1:0 2>"$tmp/chanqd.log" &
pid=$!
port=""
for _ in $(seq 100); do
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$tmp/chanqd.log" | head -n1)
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || fail "chanqd did not start"

mkdir "$tmp/run"
cat >"$tmp/run/producer.py" <<'PY'
import sys
import chanq
assert "/venv/" in chanq.__file__, chanq.__file__
with chanq.Client(sys.argv[1]) as c:
    ids = c.submit_many(({"n": i} for i in range(200)), "install")
    total = sum(c.wait(i, timeout_ms=20000).result for i in ids)
print("results", total)
PY
cat >"$tmp/run/worker.py" <<'PY'
import sys
import chanq
def handle(job: chanq.JobContext) -> int:
    return job.payload["n"] * 2
print("worker", chanq.Worker(handle, "install", sys.argv[1], concurrency=4, poll_ms=200).run())
PY
cd "$tmp/run" || fail "cd"
env -u PYTHONPATH timeout 60 "$tmp/venv/bin/python" worker.py "127.0.0.1:$port" >worker.out 2>&1 &
wpid=$!
out=$(env -u PYTHONPATH timeout 60 "$tmp/venv/bin/python" producer.py "127.0.0.1:$port" 2>&1) ||
    { kill "$wpid"; fail "producer: $out"; }
[ "$out" = "results 39800" ] || { kill "$wpid"; fail "producer printed '$out'"; }
echo "ok: producer got every result"
kill -TERM "$wpid"
wait "$wpid" || fail "worker exit status $? after SIGTERM: $(cat worker.out)"
grep -q "acked=200" worker.out || fail "worker: $(cat worker.out)"
echo "ok: worker acked 200 jobs and stopped on SIGTERM"
echo "3 passed, 0 failed"
