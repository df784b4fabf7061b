#!/bin/sh
# contrib/chanqd.service and chanqd.socket pass `systemd-analyze verify`
# with no message at all, and keep the settings docs/operations.md promises.
# Installs the Debian package systemd when systemd-analyze is missing (as
# scripts/deps.sh test does); skips (77) if it still is not there.
set -u
srcdir=${top_srcdir:-$(dirname "$0")/../..}
builddir=$(cd "${top_builddir:-.}" && pwd)
fail() { echo "FAIL: $*"; echo "0 passed, 1 failed"; exit 1; }

if ! command -v systemd-analyze >/dev/null 2>&1 && [ "$(id -u)" = 0 ] &&
   command -v apt-get >/dev/null 2>&1; then
    echo "test_units: installing the Debian package systemd for systemd-analyze"
    DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq --no-install-recommends \
        systemd >/dev/null 2>&1 || true
fi
if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "SKIP: systemd-analyze not available (install the Debian package systemd)"
    exit 77
fi

tmp=$(mktemp -d /tmp/chanq-units-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# verify checks that ExecStart's program exists and that Documentation=
# man pages resolve: point both at this tree.
mkdir -p "$tmp/man/man8"
cp "$srcdir/contrib/chanqd.8" "$tmp/man/man8/"
sed -e "s|/usr/bin/chanqd|$builddir/daemon/chanqd|" "$srcdir/contrib/chanqd.service" \
    >"$tmp/chanqd.service"
cp "$srcdir/contrib/chanqd.socket" "$tmp/"
man_opt=""
command -v man >/dev/null 2>&1 || man_opt="--man=no"
out=$(cd "$tmp" && MANPATH="$tmp/man" timeout 60 systemd-analyze verify $man_opt \
      chanqd.service chanqd.socket 2>&1)
rc=$?
[ -n "$out" ] && echo "$out"
[ $rc -eq 0 ] || fail "systemd-analyze verify exited $rc"
[ -z "$out" ] || fail "systemd-analyze verify printed messages"
echo "PASS: systemd-analyze verify chanqd.service chanqd.socket"

for want in Type=notify WatchdogSec= StateDirectory=chanqd DynamicUser=yes LimitNOFILE= \
            NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes \
            PrivateDevices=yes "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX" \
            SystemCallFilter=@system-service MemoryDenyWriteExecute=yes \
            'ExecReload=/bin/kill -HUP $MAINPID' "--data-dir /var/lib/chanqd"; do
    grep -qF -- "$want" "$srcdir/contrib/chanqd.service" || fail "chanqd.service lacks $want"
done
grep -q '^ListenStream=127.0.0.1:7420' "$srcdir/contrib/chanqd.socket" ||
    fail "chanqd.socket does not listen on 127.0.0.1:7420"
grep -q '^ListenStream=/' "$srcdir/contrib/chanqd.socket" ||
    fail "chanqd.socket has no Unix socket"
echo "PASS: the units carry the documented settings"
echo "2 passed, 0 failed"
