/* struct server: everything chanqd owns (config, loop, listeners); no
 * globals. Built once in main.c and passed down. */
#ifndef CHANQ_DAEMON_SERVER_H
#define CHANQ_DAEMON_SERVER_H

#include <stddef.h>

#include "daemon/config.h"

struct server;

/* Creates the event loop and binds every configured listener.
 * Returns NULL after logging the reason. Borrows cfg for the server's life. */
struct server *server_new(const struct config *cfg);

/* Serves until SIGTERM or SIGINT. Returns 0 after a clean stop. */
int server_run(struct server *srv);

void server_free(struct server *srv);

/* For conn.c: the loop connections register with. */
struct event_base *server_base(struct server *srv);
const struct config *server_config(const struct server *srv);
/* Connection accounting (loop thread only). */
void server_conn_opened(struct server *srv);
void server_conn_closed(struct server *srv);

#endif
