#!/bin/sh
# Prints daemon/status_page.html as a C byte array (daemon/status_page.h),
# so that chanqd serves the page from its own binary. Portable: od and sed,
# no xxd. Usage: status_page.sh FILE > status_page_data.c
set -eu
[ -r "$1" ] || { echo "status_page.sh: cannot read $1" >&2; exit 1; }
echo "/* Generated from daemon/status_page.html by daemon/status_page.sh. Do not edit. */"
echo '#include "daemon/status_page.h"'
echo
echo 'const unsigned char status_page_html[] = {'
od -An -v -t x1 "$1" | sed -e 's/[0-9a-f][0-9a-f]/0x&,/g' -e 's/^ *//' -e 's/, *$/,/'
echo '0x00};'
echo
echo 'const size_t status_page_html_len = sizeof status_page_html - 1;'
