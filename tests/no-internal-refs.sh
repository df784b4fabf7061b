#!/bin/sh
# The shipped tree must stand alone: no file may point at texts that are not
# part of it (the design notes kept in a sibling directory of the
# repository) or at internal work-item numbers. docs/ says what those texts
# said that users need. Scans the tracked files of a git checkout, or the
# files of an unpacked release tarball (without the generated ones).
set -eu
top=$(cd "${top_srcdir:-.}" && pwd -P)

# Each pattern is written so that it does not match its own text here.
pattern='\.\./shared|(PROTOCOL|STYLE|DESIGN|REVIEW)[.]md|go-concurrency-[l]esson|[Tt]he lesson|[Ll]esson'"'"'s|[Ii]ssues? #?[0-9]|[Tt]asks? #?[0-9]|design [i]nputs?'

cd "$top"
if [ "$(git rev-parse --show-toplevel 2>/dev/null)" = "$top" ]; then
    list() { git ls-files -z; }
else
    # A tarball: what autotools generated, and build trees (test.sh's
    # ./build, distcheck's _build), are not ours to check.
    list() {
        find . -type f ! -path './autom4te.cache/*' ! -path './build-aux/*' \
            ! -path './m4/*' ! -path './_build/*' ! -path './_inst/*' \
            ! -path './build/*' ! -path './build-*' ! -path './var/*' \
            ! -name configure ! -name Makefile.in ! -name aclocal.m4 \
            ! -name 'chanq_config.h.in' -print0
    }
fi
found=$(list | xargs -0 grep -I -s -n -E "$pattern" || true)
if [ -n "$found" ]; then
    echo "FAIL: shipped files refer to texts outside the repository or to internal work items:" >&2
    printf '%s\n' "$found" >&2
    exit 1
fi
echo "no-internal-refs: ok"
