/* --http HOST:PORT: chanqd's monitoring endpoint on the daemon's libevent
 * loop (evhttp), decoupled from the broker by a snapshot callback.
 *   GET /metrics  Prometheus text format 0.0.4 (daemon/metrics.h)
 *   GET /stats    the stats document as JSON
 *   GET /healthz  200 "ok" while the loop runs (503 while stopping)
 * Loop thread only; never blocks.
 *
 * The stats document the snapshot returns (fields may be missing; numbers
 * are integers unless noted):
 *   {"server": {"uptime_s", "connections", "goroutines", "threads",
 *               "rss_bytes", "version": "x.y.z",
 *               "jobs": {"queued", "reserved", "delayed", "dead", "done", ...},
 *               "journal": {"bytes", "fsync": "always|interval|never|none",
 *                           "last_fsync_us",
 *                           "fsync_hist": {"le_us": [upper bounds, increasing],
 *                                          "counts": [fsyncs <= each bound,
 *                                                     cumulative],
 *                                          "sum_us", "count" (all fsyncs)}}},
 *    "queues": {"NAME": {"capacity", "depth", "reserved", "delayed", "dead",
 *                        "waiting_submitters", "waiting_fetchers",
 *                        "paused" (bool), "closed" (bool), "submitted",
 *                        "delivered", "acked", "nacked", "expired",
 *                        "cancelled", "rejected_full", "blocked_ms"}}} */
#ifndef CHANQ_DAEMON_HTTP_H
#define CHANQ_DAEMON_HTTP_H

#include <event2/event.h>
#include <jansson.h>
#include <stdbool.h>

struct http;

/* Returns the stats document (a new reference), or NULL when it cannot be
 * built (the request then gets 503). Called on the loop thread. */
typedef json_t *http_snapshot_fn(void *arg);

/* True while the daemon is stopping (/healthz answers 503). */
typedef bool http_stopping_fn(void *arg);

/* Serves on addr ("HOST:PORT", "[::1]:PORT"; port 0 picks one) and logs
 * "http: serving /metrics /stats /healthz on HOST:PORT". stopping may be
 * NULL. Returns the endpoint, or NULL after logging why. */
struct http *http_new(struct event_base *base, const char *addr, http_snapshot_fn *snapshot,
                      http_stopping_fn *stopping, void *arg);

/* Closes the socket and any HTTP connection in progress. NULL is allowed. */
void http_free(struct http *h);

/* The port actually bound. */
int http_port(const struct http *h);

#endif
