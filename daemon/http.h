/* --http HOST:PORT: chanqd's monitoring endpoint on the daemon's libevent
 * loop (evhttp), decoupled from the broker by a snapshot callback.
 *   GET /metrics  Prometheus text format 0.0.4 (daemon/metrics.h)
 *   GET /stats    the stats document as JSON
 *   GET /healthz  200 "ok" while the loop runs; 503 with the reason while
 *                 stopping or when the journal refuses writes
 *   GET /history  the rate history (daemon/history.h), after
 *                 http_set_history (404 before)
 *   GET /         the status page (daemon/status_page.html, built in), with
 *                 a fresh page token (daemon/page_token.h) in it
 *   GET /admin    {"admin": the admin routes are on, "token": they want
 *                 "Authorization: Bearer TOKEN"} (both bool), for the page,
 *                 and "page_token": a fresh page token
 *   POST /admin/OP[?queue=NAME]  body: a JSON object of OP's fields
 *                 the admin ops, only after http_set_admin (403 before);
 *                 403 too without a valid X-Chanq-Page-Token header, and
 *                 when the browser says it comes from another site
 *                 (Sec-Fetch-Site, else Origin, else Referer, against Host)
 * Loop thread only; never blocks.
 *
 * The stats document the snapshot returns (fields may be missing; numbers
 * are integers unless noted):
 *   {"server": {"uptime_s", "connections", "goroutines", "threads",
 *               "rss_bytes", "version": "x.y.z",
 *               "jobs": {"queued", "reserved", "delayed", "dead" (now),
 *                        "done", "cancelled", "expired" (reached so far),
 *                        "tracked", "payload_bytes"},
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
 *                        "cancelled", "rejected_full", "blocked_ms",
 *                        "oldest_age_ms" (0 when none is queued),
 *                        "run_hist": {"le_ms": [upper bounds, increasing],
 *                                     "counts": [acked runs <= each bound,
 *                                                cumulative],
 *                                     "sum_ms", "count" (all acked runs)}}}} */
#ifndef CHANQ_DAEMON_HTTP_H
#define CHANQ_DAEMON_HTTP_H

#include <event2/event.h>
#include <jansson.h>
#include <stdbool.h>

struct http;

/* Returns the stats document (a new reference), or NULL when it cannot be
 * built (the request then gets 503). Called on the loop thread. */
typedef json_t *http_snapshot_fn(void *arg);

/* NULL while the daemon is healthy, else why it is not ("stopping", "journal
 * failed: ..."): /healthz answers 503 with that text. The string must stay
 * valid until the next call. Called on the loop thread. */
typedef const char *http_unhealthy_fn(void *arg);

/* Serves on addr ("HOST:PORT", "[::1]:PORT"; port 0 picks one) and logs
 * "http: serving /metrics /stats /healthz on HOST:PORT". unhealthy may be
 * NULL. Returns the endpoint, or NULL after logging why. */
struct http *http_new(struct event_base *base, const char *addr, http_snapshot_fn *snapshot,
                      http_unhealthy_fn *unhealthy, void *arg);

/* Closes the socket and any HTTP connection in progress; admin calls still
 * in flight are orphaned (their http_call_reply only frees them). NULL is
 * allowed. */
void http_free(struct http *h);

/* One POST /admin/... request waiting for its answer. Owned by http.c; the
 * admin callback borrows it until it calls http_call_reply. */
struct http_call;

/* Runs the admin op `op` (the path's last part, e.g. "pause") with
 * `fields` (a JSON object: the body's fields, and the query's queue= over
 * them). `token` is the bearer token of the Authorization header, or NULL;
 * `peer` the client's "HOST:PORT", for the log. All borrowed for the call
 * only. Must call http_call_reply(call, ...) exactly once, now or later on
 * the loop thread. Loop thread; never blocks. */
typedef void http_admin_fn(void *arg, struct http_call *call, const char *op, json_t *fields,
                           const char *token, const char *peer);

/* Answers call with status and the JSON text body[0..len), then frees it;
 * when the client hung up or the endpoint was freed meanwhile, only frees
 * it. Loop thread (or the thread freeing the loop once it stopped). */
void http_call_reply(struct http_call *call, int status, const char *body, size_t len);

/* Turns the admin routes on: POST /admin/OP?queue=NAME calls admin(arg,
 * ...). needs_token only tells the page (through GET /admin) to ask for one;
 * checking it is admin's job. Loop thread, before serving. */
void http_set_admin(struct http *h, http_admin_fn *admin, bool needs_token, void *arg);

struct history;

/* Serves GET /history from history (borrowed: it outlives h, or is unset
 * with NULL first). Loop thread. */
void http_set_history(struct http *h, struct history *history);

/* The port actually bound. */
int http_port(const struct http *h);

#endif
