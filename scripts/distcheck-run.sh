#!/bin/sh
# `make distcheck` hook: unpack the release tarball into a scratch directory,
# as a user would, and run the README's two commands there: `./run.sh --help`
# must build and print chanqd's usage without starting a daemon, then
# `./test.sh` must pass (the whole suite, a second time after distcheck's own
# `make check`). Catches files that run.sh/test.sh need but `make dist` left
# out. Usage: scripts/distcheck-run.sh TARBALL
set -eu
tarball=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
tmp=$(mktemp -d "${TMPDIR:-/tmp}/chanq-distrun-XXXXXX")
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT

fail() {
    echo "distcheck-run: FAIL: $*" >&2
    exit 1
}

# A user's shell: nothing from the calling make or a developer's set-up.
unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES BUILD_DIR CHANQ_CONFIGURE_FLAGS top_srcdir top_builddir

cd "$tmp"
tar -xf "$tarball"
top=$(find "$tmp" -mindepth 1 -maxdepth 1 -type d)
[ -n "$top" ] && [ -x "$top/run.sh" ] || fail "no run.sh at the top of $1"
cd "$top"

echo "distcheck-run: ./run.sh --help in $top" >&2
# chanqd --help exits at once; the timeout covers the build and catches a
# daemon that would serve instead.
rc=0
timeout 900 ./run.sh --help >"$tmp/run.out" 2>"$tmp/run.err" || rc=$?
[ $rc -eq 0 ] || { tail -n 30 "$tmp/run.err" >&2; fail "./run.sh --help exited $rc"; }
grep -q '^usage: chanqd' "$tmp/run.out" ||
    fail "./run.sh --help printed no chanqd usage: $(head -n 5 "$tmp/run.out")"
! grep -q 'listening on' "$tmp/run.err" || fail "./run.sh --help started a daemon"

echo "distcheck-run: ./test.sh" >&2
rc=0
timeout 1200 ./test.sh || rc=$?
[ $rc -eq 0 ] || fail "./test.sh exited $rc"
echo "distcheck-run: ok" >&2
