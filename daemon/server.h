/* struct server: everything chanqd owns (config, loop, listeners, the
 * goroutine runtime's bridge, the broker, the root context); no globals.
 * Built once in main.c and passed down. */
#ifndef CHANQ_DAEMON_SERVER_H
#define CHANQ_DAEMON_SERVER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "daemon/config.h"
#include "proto/msg.h"
#include "proto/span.h"

struct server;
struct conn;
struct broker;
struct ctx;
struct evbridge;

/* Starts the goroutine threads, creates the event loop and binds every
 * listener. Returns NULL after logging the reason. Borrows cfg for the
 * server's life (SIGHUP may change its reloadable fields). Main thread. */
struct server *server_new(struct config *cfg);

/* Serves until SIGTERM or SIGINT, then stops gracefully: stops accepting,
 * answers `shutting_down`, lets requests in flight finish within
 * --grace-ms, closes connections. Returns 0 after a clean stop. */
int server_run(struct server *srv);

void server_free(struct server *srv);

/* SIGHUP: applies the reloadable keys of fresh to the live configuration
 * and to the broker and TLS context that keep their own copies (see
 * config_reload). Returns the number of keys changed. Loop thread. */
int server_reload(struct server *srv, const struct config *fresh);

/* Accessors for conn.c and ops.c. Any thread unless noted. */
struct event_base *server_base(struct server *srv);
struct evbridge *server_bridge(struct server *srv);
struct broker *server_broker(struct server *srv);
struct ctx *server_root_ctx(struct server *srv);
const struct config *server_config(const struct server *srv);
/* What the decoder enforces now (--max-job may change on SIGHUP). */
struct msg_limits server_msg_limits(const struct server *srv);
bool server_stopping(const struct server *srv);
/* NULL while healthy, else why not: "stopping", or the journal's failure
 * and the way back (a restart). Valid until the next call. Loop thread. */
const char *server_unhealthy(const struct server *srv);
/* Where connections watch for their peer's close while not reading it
 * (daemon/closewatch.h). Loop thread only. */
struct closewatch *server_closewatch(struct server *srv);
/* Logs "listening on ..." for every listener (they all accept since
 * server_new). Loop thread, once everything else the daemon serves on is
 * bound too: clients (and the test harness) connect on that line. */
void server_announce(struct server *srv);
/* True when the caller runs on the loop thread (also a goroutine the loop
 * thread runs between polls). Any thread. */
bool server_on_loop_thread(const struct server *srv);
/* The TLS context of --tls-listen connections, or NULL when none is
 * configured (SIGHUP reloads it). Loop thread only. */
struct tls *server_tls(struct server *srv);
/* True when --token-file is set, and whether token is one it accepts. */
bool server_needs_token(const struct server *srv);
bool server_token_ok(const struct server *srv, struct span token);

/* Per-address connection counts and failed hellos. Any thread. */
struct peers *server_peers(struct server *srv);

/* Connection accounting. Loop thread only. */
void server_conn_opened(struct server *srv, struct conn *c);
/* The first live connection (conn_next for the others). Loop thread. */
struct conn *server_conns(struct server *srv);
/* How many connections are open. Any thread. */
size_t server_connections(const struct server *srv);
void server_conn_closed(struct server *srv, struct conn *c);

/* The server half of the stats op: uptime, connections, goroutines,
 * threads, jobs by state, journal, RSS. New reference or NULL. Any thread. */
json_t *server_stats_json(struct server *srv);

/* The stats document behind /metrics and /stats (shape in daemon/http.h),
 * for http_new's snapshot callback; srv is the struct server.
 * Returns a new reference, or NULL when out of memory. */
json_t *server_snapshot(void *srv);

#endif
