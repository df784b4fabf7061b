#!/bin/sh
# Bootstrap, configure and build chanq out of tree in BUILD_DIR (default
# ./build). Only does what is stale: a second run with nothing changed is
# just a quick `make`. Extra configure flags: CHANQ_CONFIGURE_FLAGS.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$top/build}

cd "$top"
if [ ! -x configure ] || [ ! -f Makefile.in ] || [ configure.ac -nt configure ]; then
    echo "build: bootstrapping (autoreconf)" >&2
    autoreconf -fi >&2
fi
mkdir -p "$build"
cd "$build"
if [ ! -f Makefile ]; then
    echo "build: configuring in $build ${CHANQ_CONFIGURE_FLAGS:-}" >&2
    # shellcheck disable=SC2086
    "$top/configure" ${CHANQ_CONFIGURE_FLAGS:-} >&2
fi
make -s -j"$(nproc)" >&2
