#!/bin/sh
# `make install DESTDIR=...` puts every file in place: chanqd, the units
# (with ExecStart naming the installed paths), the sample config, the man
# page, and the client library, headers and pkg-config file when the build
# has them. The installed chanqd accepts the installed sample config.
set -u
builddir=$(cd "${top_builddir:-.}" && pwd)
make=${MAKE:-make}
fail() { echo "FAIL: $*"; echo "0 passed, 1 failed"; exit 1; }

dest=$(mktemp -d /tmp/chanq-install-XXXXXX)
trap 'rm -rf "$dest"' EXIT
if ! (unset MAKEFLAGS MFLAGS; timeout 300 $make -C "$builddir" --no-print-directory install \
        DESTDIR="$dest") >"$dest.log" 2>&1; then
    cat "$dest.log"; rm -f "$dest.log"
    fail "make install DESTDIR=$dest failed"
fi
rm -f "$dest.log"
eval "$(unset MAKEFLAGS MFLAGS; $make -s -C "$builddir" --no-print-directory print-install-dirs)"

check() {
    [ -f "$dest$1" ] || { find "$dest" -type f | sed "s|^$dest||"; fail "$1 not installed"; }
    echo "ok: $1"
}
check "$bindir/chanqd"
check "$chanqconfdir/chanqd.conf"
check "$man8dir/chanqd.8"
if [ "$systemdsystemunitdir" != no ]; then
    check "$systemdsystemunitdir/chanqd.service"
    check "$systemdsystemunitdir/chanqd.socket"
    grep -qF "ExecStart=$bindir/chanqd --config $chanqconfdir/chanqd.conf" \
        "$dest$systemdsystemunitdir/chanqd.service" ||
        fail "the installed unit does not name $bindir/chanqd and $chanqconfdir/chanqd.conf"
fi
grep -q 'libchanq\.la' "$builddir/Makefile" && check "$libdir/libchanq.la"
grep -q 'libchanq\.pc' "$builddir/Makefile" && check "$libdir/pkgconfig/libchanq.pc"
grep -q 'clients/chanq\.h' "$builddir/Makefile" && check "$includedir/chanq.h"
"$dest$bindir/chanqd" --version >/dev/null || fail "the installed chanqd does not run"
"$dest$bindir/chanqd" --config "$dest$chanqconfdir/chanqd.conf" --check-config >/dev/null ||
    fail "the installed sample config does not pass --check-config"
echo "PASS: make install DESTDIR puts every file in place"
echo "1 passed, 0 failed"
