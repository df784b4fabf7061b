#!/bin/sh
# Install the Debian packages chanq needs to build and test, only those
# that are missing, and say which. Used by run.sh and test.sh.
# Usage: scripts/deps.sh [build|test|deb]   (deb: what scripts/deb.sh needs)
set -eu

want_build="gcc make pkg-config autoconf automake libtool libevent-dev \
libjansson-dev check libssl-dev libraft-dev libuv1-dev"
want_test="netcat-openbsd python3 python3-venv procps systemd openssl chromium golang-go zsh \
tzdata chromium-driver python3-selenium"

# Debian packaging (scripts/deb.sh): debian/control's Build-Depends and
# the tools that build and check the packages.
want_deb="debhelper dh-python pybuild-plugin-pyproject python3-all systemd dpkg-dev \
fakeroot lintian"

want=$want_build
case ${1:-build} in
test) want="$want_build $want_test" ;;
deb) want="$want_build $want_deb" ;;
esac

missing=""
for p in $want; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

echo "deps: installing missing Debian packages:$missing" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >&2
