#!/bin/sh
# Runs tests/ui/test_admin_ui.py (the status page's admin side in headless
# Chromium through Selenium) with Debian's python3, where the packages
# python3-selenium and chromium-driver put their code: the python3 first
# on PATH may be another one without them. Bounded: the script stops
# itself after 300 s, and timeout(1) kills it 60 s after that.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON_SELENIUM:-/usr/bin/python3}
[ -x "$py" ] || py=python3
exec timeout -k 10 360 "$py" "$here/test_admin_ui.py"
