#!/bin/sh
# libchanq installed the way a C library is used: `make install
# DESTDIR=...`, then a program written outside the source tree is built
# with nothing but `pkg-config --cflags --libs libchanq` (and `--static`),
# and run against a chanqd of this build: linked to the installed
# libchanq.so.2, then to libchanq.a. Also checks what the libraries export:
# the shared one exactly the functions chanq.h declares, the static one no
# global name outside chanq_* / chanqi_*.
set -u
builddir=$(cd "${top_builddir:-.}" && pwd)
make=${MAKE:-make}
cc=${CHANQ_TEST_CC:-cc}
cflags=${CHANQ_TEST_CFLAGS:-}
ldflags=${CHANQ_TEST_LDFLAGS:-}
pkgconfig=${PKG_CONFIG:-pkg-config}
passed=0
fail() { echo "FAIL: $*"; echo "$passed passed, 1 failed"; exit 1; }
ok() { echo "ok: $*"; passed=$((passed + 1)); }

tmp=$(mktemp -d /tmp/chanq-libinst-XXXXXX)
dpid=
cleanup() {
    if [ -n "$dpid" ]; then
        kill "$dpid" 2>/dev/null
        wait "$dpid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

dest=$tmp/root
if ! (unset MAKEFLAGS MFLAGS; timeout 300 $make -C "$builddir" --no-print-directory install \
        DESTDIR="$dest") >"$tmp/install.log" 2>&1; then
    cat "$tmp/install.log"
    fail "make install DESTDIR=$dest failed"
fi
eval "$(unset MAKEFLAGS MFLAGS; $make -s -C "$builddir" --no-print-directory print-install-dirs)"
lib=$dest$libdir
for f in "$lib/libchanq.so.2" "$lib/libchanq.a" "$lib/pkgconfig/libchanq.pc" \
    "$dest$includedir/chanq.h"; do
    [ -e "$f" ] || fail "$f not installed"
done
ok "make install put libchanq.so.2, libchanq.a, libchanq.pc and chanq.h in place"

# The API: every function chanq.h declares (comments gone, the function
# types of its typedefs left out), against what the libraries define.
$cc -E -P -I"$dest$includedir" -x c "$dest$includedir/chanq.h" >"$tmp/chanq.i" ||
    fail "the installed chanq.h does not preprocess"
grep '^typedef' "$tmp/chanq.i" | grep -o '\bchanq_[a-z0-9_]*(' | tr -d '(' | sort -u >"$tmp/types"
grep -o '\bchanq_[a-z0-9_]*(' "$tmp/chanq.i" | tr -d '(' | sort -u | comm -23 - "$tmp/types" >"$tmp/api"
[ "$(wc -l <"$tmp/api")" -gt 40 ] || fail "found only $(wc -l <"$tmp/api") functions in chanq.h"
nm -D --defined-only "$lib/libchanq.so.2" | awk '$2 ~ /^[TWDBR]$/ { print $3 }' | sort -u >"$tmp/exported"
if ! cmp -s "$tmp/api" "$tmp/exported"; then
    diff "$tmp/api" "$tmp/exported"
    fail "libchanq.so.2 exports other names than chanq.h declares (< header, > library)"
fi
soname=$(readelf -d "$lib/libchanq.so.2" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = libchanq.so.2 ] || fail "soname is '$soname', not libchanq.so.2"
stray=$(nm -g --defined-only "$lib/libchanq.a" | awk 'NF == 3 { print $3 }' | grep -v '^chanqi\{0,1\}_' || true)
[ -z "$stray" ] || fail "libchanq.a defines global names outside chanq_/chanqi_: $stray"
ok "libchanq.so.2 (soname libchanq.so.2) exports the $(wc -l <"$tmp/api") functions of chanq.h and nothing else; libchanq.a only chanq_/chanqi_ names"

# A producer and a worker in one program, outside the tree. It uses
# jansson directly too (chanq_wait hands out a json_t), which the .pc's
# Requires must make linkable.
mkdir "$tmp/app"
cat >"$tmp/app/app.c" <<'EOF'
#include <chanq.h>
#include <stdio.h>
#include <stdlib.h>

static struct chanq_worker *worker;

static enum chanq_verdict
echo(struct chanq_work *w, const struct chanq_job *job, void *arg)
{
    char result[256];
    snprintf(result, sizeof result, "{\"echo\":%s}", job->payload);
    return chanq_work_set_result(w, result) == 0 ? CHANQ_WORK_ACK : CHANQ_WORK_FAIL;
}

static void
one_is_enough(const struct chanq_job *job, const struct chanq_work_outcome *o, void *arg)
{
    chanq_worker_stop(worker, false);
}

int
main(int argc, char **argv)
{
    struct chanq_error err;
    struct chanq_conn *c = chanq_connect(argv[1], NULL, &err);
    if (!c) {
        fprintf(stderr, "connect: %s: %s\n", err.code, err.message);
        return 1;
    }
    struct chanq_submit_opts so = {.queue = "installed"};
    char *id;
    if (chanq_submit(c, &so, "{\"from\":\"outside\"}", &id, NULL) < 0) {
        fprintf(stderr, "submit: %s\n", chanq_last_error(c)->message);
        return 1;
    }
    const char *queues[] = {"installed"};
    struct chanq_worker_opts wo = {.queues = queues, .nqueues = 1, .fn = echo,
                                   .outcome = one_is_enough};
    if (!(worker = chanq_worker_new(argv[1], NULL, &wo, &err)) ||
        chanq_worker_run(worker, &err) < 0) {
        fprintf(stderr, "worker: %s: %s\n", err.code, err.message);
        return 1;
    }
    chanq_worker_free(worker);
    json_t *res;
    if (chanq_wait(c, id, 5000, &res) < 0) {
        fprintf(stderr, "wait: %s\n", chanq_last_error(c)->message);
        return 1;
    }
    char *text = json_dumps(json_object_get(res, "result"), JSON_COMPACT);
    printf("%s\n", text);
    free(text);
    json_decref(res);
    free(id);
    chanq_conn_free(c);
    return 0;
}
EOF

PKG_CONFIG_SYSROOT_DIR=$dest PKG_CONFIG_PATH=$lib/pkgconfig
export PKG_CONFIG_SYSROOT_DIR PKG_CONFIG_PATH
flags=$($pkgconfig --cflags --libs libchanq) || fail "pkg-config --cflags --libs libchanq failed"
static_flags=$($pkgconfig --cflags --libs --static libchanq) || fail "pkg-config --static failed"
echo "pkg-config --cflags --libs libchanq: $flags"
echo "pkg-config --cflags --libs --static libchanq: $static_flags"
cd "$tmp/app" || fail "no $tmp/app"
# shellcheck disable=SC2086
$cc -std=c11 -Wall -Wextra -Wno-unused-parameter -Werror $cflags app.c -o app-shared $ldflags $flags ||
    fail "app.c does not build with pkg-config --cflags --libs libchanq"
readelf -d app-shared | grep -q 'NEEDED.*\[libchanq\.so\.2\]' || fail "app-shared does not need libchanq.so.2"
# The static variant: libchanq.a, and whatever --static adds for it.
static_flags=$(printf '%s\n' "$static_flags" | sed 's/-lchanq\b/-l:libchanq.a/')
# shellcheck disable=SC2086
$cc -std=c11 -Wall -Wextra -Wno-unused-parameter -Werror $cflags app.c -o app-static $ldflags $static_flags ||
    fail "app.c does not build against libchanq.a with pkg-config --static"
if readelf -d app-static | grep -q 'libchanq'; then
    fail "app-static still needs a shared libchanq"
fi
if command -v c++ >/dev/null 2>&1; then
    printf '#include <chanq.h>\nint main() { return chanq_worker_new(nullptr, nullptr, nullptr, nullptr) != nullptr; }\n' >app.cc
    # shellcheck disable=SC2086
    c++ -std=c++11 -Wall -Wextra -Wno-unused-parameter -Werror $cflags app.cc -o app-cxx $ldflags $flags ||
        fail "chanq.h does not build as C++"
fi
ok "a program outside the tree builds with pkg-config, shared and static"

"$builddir/daemon/chanqd" --memory --listen 127.0.0.1:0 2>"$tmp/chanqd.log" &
dpid=$!
port=
for _ in $(seq 200); do
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$tmp/chanqd.log" | head -n 1)
    [ -n "$port" ] && break
    sleep 0.05
done
[ -n "$port" ] || { cat "$tmp/chanqd.log"; fail "chanqd did not start"; }

# LD_LIBRARY_PATH only: nothing of the build directory is on the way.
out=$(LD_LIBRARY_PATH=$lib timeout 30 ./app-shared "127.0.0.1:$port") || fail "app-shared failed: $out"
[ "$out" = '{"echo":{"from":"outside"}}' ] || fail "app-shared printed '$out'"
LD_LIBRARY_PATH=$lib ldd ./app-shared | grep -q "libchanq.so.2 => $lib/libchanq.so.2" ||
    fail "app-shared did not load the installed library: $(LD_LIBRARY_PATH=$lib ldd ./app-shared)"
out=$(timeout 30 ./app-static "127.0.0.1:$port") || fail "app-static failed: $out"
[ "$out" = '{"echo":{"from":"outside"}}' ] || fail "app-static printed '$out'"
ok "both programs submit a job, work it with chanq_worker_run and read its result back"
echo "$passed passed, 0 failed"
