/* One client connection: reads NDJSON requests, writes one response line
 * per request, in order. Loop thread only; never blocks. */
#ifndef CHANQ_DAEMON_CONN_H
#define CHANQ_DAEMON_CONN_H

#include <event2/util.h>

struct server;
struct conn;

/* Takes ownership of fd (closed on error and when the connection ends).
 * Returns the connection, or NULL (fd closed) when out of memory. The
 * connection frees itself when the peer goes away. */
struct conn *conn_new(struct server *srv, evutil_socket_t fd);

#endif
