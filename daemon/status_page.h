/* The status page served at GET / on the --http listener: one
 * self-contained HTML document (daemon/status_page.html), turned into this
 * byte array at build time by daemon/status_page.sh. */
#ifndef CHANQ_DAEMON_STATUS_PAGE_H
#define CHANQ_DAEMON_STATUS_PAGE_H

#include <stddef.h>

/* The page's bytes (UTF-8 HTML), followed by a NUL not counted in the
 * length. Read-only; any thread. */
extern const unsigned char status_page_html[];
extern const size_t status_page_html_len;

#endif
