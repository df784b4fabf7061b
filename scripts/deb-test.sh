#!/bin/sh
# Tests the Debian packages scripts/deb.sh built (in DIR, default
# ./build-deb), without touching this machine:
#   1. their contents (dpkg-deb -c): each package has its files, and no
#      libtool archive or build path slipped in;
#   2. installed with `dpkg -i` in a throwaway copy of this machine (an
#      overlay of / in a private mount namespace, entered with chroot; what
#      changes lands in a scratch directory, dropped at the end): the
#      maintainer scripts run, the units pass `systemd-analyze verify`,
#      chanqd runs as an unprivileged user with the packaged config and its
#      data in /var/lib/chanqd as the unit sets it up (systemd does not run
#      here), the packaged CLI (linked to the packaged libchanq.so.2)
#      submits a job and `chanq work` runs it, python3-chanq does the same
#      from Python, a C program builds against libchanq-dev with pkg-config
#      (shared and static) and runs, and bash loads the completion;
#   3. purged: nothing is left behind but dpkg's own records and caches.
# Needs root (unshare, mount, chroot); exits 77 otherwise.
# Usage: scripts/deb-test.sh [DIR]
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
debs=$(cd "${1:-$top/build-deb}" && pwd)
if [ "$(id -u)" -ne 0 ]; then
    echo "deb-test: needs root (a mount namespace and an overlay of /)" >&2
    exit 77
fi
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }
pkgs="chanqd chanq libchanq2 libchanq-dev python3-chanq"
for p in $pkgs; do
    ls "$debs/${p}_"*.deb >/dev/null 2>&1 || fail "no ${p}_*.deb in $debs"
done

# 1. Contents.
contents() { dpkg-deb -c "$debs/${1}_"*.deb | awk '{ print $6 }' | sed 's|^\./|/|'; }
has() {
    pkg=$1
    shift
    for f in "$@"; do
        contents "$pkg" | grep -qx -- "$f" || fail "$pkg lacks $f"
    done
}
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
has chanqd /usr/bin/chanqd /etc/chanq/chanqd.conf /lib/systemd/system/chanqd.service \
    /lib/systemd/system/chanqd.socket /usr/share/man/man8/chanqd.8.gz
has chanq /usr/bin/chanq /usr/share/man/man1/chanq.1.gz \
    /usr/share/bash-completion/completions/chanq /usr/share/zsh/vendor-completions/_chanq
has libchanq2 "/usr/lib/$multiarch/libchanq.so.2" "/usr/lib/$multiarch/libchanq.so.2.0.0"
has libchanq-dev /usr/include/chanq.h "/usr/lib/$multiarch/libchanq.a" \
    "/usr/lib/$multiarch/libchanq.so" "/usr/lib/$multiarch/pkgconfig/libchanq.pc"
has python3-chanq /usr/lib/python3/dist-packages/chanq/__init__.py \
    /usr/lib/python3/dist-packages/chanq/worker.py
for p in $pkgs; do
    if contents "$p" | grep -E '\.la$|/usr/local/|/build/|/tmp/'; then
        fail "$p ships a libtool archive or a build path"
    fi
done
ok "each package has its files and nothing from the build"

# 2. and 3. In a throwaway root.
work=$(mktemp -d /tmp/chanq-debtest-XXXXXX)
# DEB_TEST_KEEP=1 keeps it (the overlay's changes in upper/) for a look.
cleanup() { [ -n "${DEB_TEST_KEEP:-}" ] && echo "deb-test: kept $work" >&2 || rm -rf "$work"; }
trap cleanup EXIT
mkdir "$work/upper" "$work/work" "$work/root" "$work/debs"
for p in $pkgs; do cp "$debs/${p}_"*.deb "$work/debs/"; done
cat >"$work/inside.sh" <<'EOF'
#!/bin/sh
# Runs in the throwaway root.
set -eu
fail() { echo "FAIL: $*" >&2; [ -f /tmp/chanqd.log ] && cat /tmp/chanqd.log >&2; exit 1; }
ok() { echo "ok: $*"; }
export DEBIAN_FRONTEND=noninteractive
dpkg -i /tmp/debs/*.deb >/tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log; fail "dpkg -i"; }
ok "dpkg -i installs the five packages (maintainer scripts included)"
cd /tmp
if systemd-analyze verify /lib/systemd/system/chanqd.socket /lib/systemd/system/chanqd.service \
    >/tmp/verify.log 2>&1; then
    ok "systemd-analyze verify: the units are sound"
else
    cat /tmp/verify.log
    fail "systemd-analyze verify"
fi
[ -L /etc/systemd/system/multi-user.target.wants/chanqd.service ] ||
    fail "chanqd.service not enabled"
[ -L /etc/systemd/system/sockets.target.wants/chanqd.socket ] || fail "chanqd.socket not enabled"
ok "chanqd.service and chanqd.socket are enabled"

# What the unit's DynamicUser and StateDirectory=chanqd set up, by hand:
# systemd keeps /var/lib/private 0700 and makes it reachable inside the
# service's own mount namespace; here it is only made traversable.
uid=61234
mkdir -p /var/lib/private/chanqd
chmod 0711 /var/lib/private
chown "$uid:$uid" /var/lib/private/chanqd
chmod 0750 /var/lib/private/chanqd
ln -s private/chanqd /var/lib/chanqd
: >/tmp/chanqd.log
setpriv --reuid "$uid" --regid "$uid" --clear-groups -- /usr/bin/chanqd \
    --config /etc/chanq/chanqd.conf --data-dir /var/lib/chanqd --listen 127.0.0.1:0 \
    >/tmp/chanqd.log 2>&1 &
dpid=$!
trap 'kill "$dpid" 2>/dev/null || true' EXIT
port=
for _ in $(seq 200); do
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' /tmp/chanqd.log | head -n 1)
    [ -n "$port" ] && break
    sleep 0.05
done
[ -n "$port" ] || fail "chanqd did not start"
export CHANQ_SERVER=127.0.0.1:$port
ls /var/lib/chanqd/ | grep -q . || fail "no journal in /var/lib/chanqd"
ok "chanqd runs as uid $uid with /etc/chanq/chanqd.conf, its journal in /var/lib/chanqd"

ldd /usr/bin/chanq | grep -q -E "libchanq\.so\.2 => (/usr)?/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)/libchanq\.so\.2 " ||
    fail "chanq does not use the packaged libchanq.so.2: $(ldd /usr/bin/chanq)"
id=$(chanq submit mail '{"to":"ann@example.org"}') || fail "chanq submit"
timeout 30 chanq work mail -q -- sh -c 'read -r p; echo "{\"sent\":$p}"' 2>/tmp/work.log &
wpid=$!
out=$(chanq wait "$id" --result --timeout-ms 10000) || fail "chanq wait: $out"
[ "$out" = '{"sent":{"to":"ann@example.org"}}' ] || fail "chanq work's result: $out"
kill -TERM "$wpid"
wait "$wpid" || fail "chanq work did not stop cleanly on SIGTERM"
ok "the packaged chanq submits a job and chanq work runs it"

/usr/bin/python3 - <<'PY' || fail "python3-chanq"
import os, chanq
addr = os.environ["CHANQ_SERVER"]
with chanq.Client(addr) as c:
    jid = c.submit({"from": "python"}, "py")
    [job] = c.fetch("py", timeout_ms=5000)
    assert job.id == jid and job.payload == {"from": "python"}, job
    c.ack(job.id, {"ok": 1})
    r = c.wait(jid, timeout_ms=5000)
    assert r.state == "done" and r.result == {"ok": 1}, r
    assert chanq.__file__.startswith("/usr/lib/python3/dist-packages/"), chanq.__file__
PY
ok "python3-chanq (from /usr/lib/python3/dist-packages) submits, fetches and acks"

cat >/tmp/app.c <<'C'
#include <chanq.h>
#include <stdio.h>
#include <stdlib.h>
int main(void)
{
    struct chanq_error e;
    struct chanq_conn *c = chanq_connect(getenv("CHANQ_SERVER"), NULL, &e);
    if (!c || chanq_ping(c) < 0)
        return 1;
    json_t *q;
    if (chanq_stats(c, NULL, &q) < 0)
        return 1;
    printf("%s\n", json_is_object(q) ? "ok" : "no stats");
    json_decref(q);
    chanq_conn_free(c);
    return 0;
}
C
cc -o /tmp/app /tmp/app.c $(pkg-config --cflags --libs libchanq) || fail "building against libchanq-dev"
[ "$(/tmp/app)" = ok ] || fail "the program built against libchanq-dev"
cc -o /tmp/app-static /tmp/app.c $(pkg-config --cflags --libs --static libchanq | sed 's/-lchanq /-l:libchanq.a /') ||
    fail "building against libchanq.a"
[ "$(/tmp/app-static)" = ok ] || fail "the program built against libchanq.a"
ok "a program builds against libchanq-dev with pkg-config, shared and static, and runs"

bash -c '. /usr/share/bash-completion/completions/chanq && complete -p chanq' | grep -q -- '-F _chanq' ||
    fail "the bash completion does not load"
ok "the bash completion loads"

kill -TERM "$dpid"
wait "$dpid" || fail "chanqd did not stop cleanly"
dpkg --purge python3-chanq libchanq-dev chanq chanqd libchanq2 >/tmp/dpkg.log 2>&1 ||
    { cat /tmp/dpkg.log; fail "dpkg --purge"; }
ok "dpkg --purge removes the five packages"
EOF
chmod +x "$work/inside.sh"

# Everything that changes in / goes to $work/upper. /run starts empty (no
# running systemd: the maintainer scripts enable units but start nothing).
unshare --mount --propagation private sh -eu -c '
    w=$1
    mount -t overlay overlay -o lowerdir=/,upperdir="$w/upper",workdir="$w/work" "$w/root"
    mount -t proc proc "$w/root/proc"
    mount --rbind /dev "$w/root/dev"
    mount --rbind /sys "$w/root/sys"
    mount -t tmpfs tmpfs "$w/root/run"
    mount -t tmpfs tmpfs "$w/root/tmp"
    cp -r "$w/debs" "$w/inside.sh" "$w/root/tmp/"
    chroot "$w/root" /tmp/inside.sh
' sh "$work"

# What the install and purge left in /: only dpkg's records and logs, and
# caches that triggers rebuilt (ld.so, man-db). systemd's
# /var/lib/private is made by the test itself, as systemd would on first
# start.
left=$(cd "$work/upper" && find . -mindepth 1 \( -type f -o -type l -o -type c \) |
    grep -v -E '^\./(var/lib/dpkg/|var/log/|var/cache/(man|debconf|ldconfig)/|etc/ld\.so\.cache$|root/)' || true)
if [ -n "$left" ]; then
    echo "$left" >&2
    fail "the purge left files behind"
fi
# Directories: overlayfs keeps the copy of one that existed in / once
# something was written in it, so only those new to / count.
leftdirs=$(cd "$work/upper" && find . -mindepth 1 -type d | sed 's|^\.||' |
    grep -v -E '^/(var/lib/dpkg|var/log|var/cache|var/lib/private$|root|tmp|run|proc|dev|sys)' |
    while read -r d; do [ -e "$d" ] || echo "$d"; done)
if [ -n "$leftdirs" ]; then
    echo "$leftdirs" >&2
    fail "the purge left directories behind"
fi
ok "after the purge nothing is left but dpkg's records and rebuilt caches"
echo "deb-test: ok"
