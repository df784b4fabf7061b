#!/bin/sh
# Builds the Debian packages (chanqd, chanq, libchanq2, libchanq-dev,
# python3-chanq) from a clean copy of this checkout's tracked files,
# uncommitted changes included, with `dpkg-buildpackage -us -uc -b`; checks
# them with lintian (errors fail the build; warnings are printed); and
# leaves the .debs, .buildinfo and .changes in OUT_DIR (default
# ./build-deb). With --test it then runs scripts/deb-test.sh on them.
# Installs what it needs with scripts/deps.sh deb. DEB_BUILD_OPTIONS
# passes through (nocheck skips the test suites run during the build).
# Usage: scripts/deb.sh [--test]
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT_DIR:-$top/build-deb}
test_after=no
case ${1:-} in
--test) test_after=yes ;;
"") ;;
*) echo "usage: scripts/deb.sh [--test]" >&2; exit 2 ;;
esac
"$top/scripts/deps.sh" deb

tmp=$(mktemp -d /tmp/chanq-deb-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# A commit of the working tree's tracked files (HEAD when nothing is
# changed), exported: nothing generated or left over in the checkout gets in.
rev=$(git -C "$top" stash create)
rev=${rev:-HEAD}
git -C "$top" archive --prefix=chanq/ "$rev" | tar -x -C "$tmp"
echo "deb: building from $(git -C "$top" rev-parse --short HEAD)$([ "$rev" = HEAD ] || echo ' with uncommitted changes') in $tmp" >&2
# Debian's own tools: no python or pkg-config from elsewhere in PATH.
(cd "$tmp/chanq" && PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg-buildpackage -us -uc -b) \
    >"$tmp/build.log" 2>&1 || {
    tail -n 80 "$tmp/build.log" >&2
    echo "deb: dpkg-buildpackage failed (log above)" >&2
    exit 1
}
mkdir -p "$out"
rm -f "$out"/*.deb "$out"/*.buildinfo "$out"/*.changes
mv "$tmp"/*.deb "$tmp"/*.buildinfo "$tmp"/*.changes "$out"/
cp "$tmp/build.log" "$out/build.log"
ls -l "$out"/*.deb >&2

# lintian: exit status 2 on errors; warnings are listed for the record.
rc=0
lintian --fail-on error --display-info --pedantic "$out"/*.changes >"$out/lintian.txt" 2>&1 || rc=$?
cat "$out/lintian.txt" >&2
[ "$rc" -eq 0 ] || { echo "deb: lintian reports errors" >&2; exit 1; }
echo "deb: lintian: no errors ($(grep -c '^W:' "$out/lintian.txt" || true) warnings, $(grep -c '^I:' "$out/lintian.txt" || true) infos, $(grep -c '^P:' "$out/lintian.txt" || true) pedantic)" >&2

if [ "$test_after" = yes ]; then
    "$top/scripts/deb-test.sh" "$out"
fi
