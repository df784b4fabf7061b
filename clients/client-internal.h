/* libchanq internals shared by client.c (connection, framing, events) and
 * ops.c / wbuf.c (requests). Never installed.
 *
 * Every function shared between libchanq's files is named chanqi_*: the
 * shared library exports only the chanq_* API (clients/local.am), but
 * libchanq.a hands all its global names to the application's link, where a
 * plain conn_call or wbuf_put could collide with the application's own. */
#ifndef CHANQ_CLIENT_INTERNAL_H
#define CHANQ_CLIENT_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clients/chanq.h"

/* A growable byte buffer (not NUL-terminated). */
struct wbuf {
    char *data; /* heap storage, NULL until first append */
    size_t len; /* bytes in use */
    size_t cap; /* bytes allocated */
};

/* Appends; 0 or -1 (ENOMEM, buffer unchanged). */
int chanqi_wbuf_put(struct wbuf *b, const void *p, size_t n);
int chanqi_wbuf_puts(struct wbuf *b, const char *s);
int chanqi_wbuf_put_i64(struct wbuf *b, int64_t v);
/* Appends s as a JSON string literal, quotes included. */
int chanqi_wbuf_put_jstr(struct wbuf *b, const char *s);
/* Appends JSON text compactly on one line (re-encoding it if it spans
 * lines); NULL appends null. -1 when it is not JSON. */
int chanqi_wbuf_put_jtext(struct wbuf *b, const char *json);
void chanqi_wbuf_free(struct wbuf *b);

/* One queued event. */
struct event_node {
    struct chanq_event ev;
    struct event_node *next;
};

struct chanq_conn {
    int fd;                  /* non-blocking socket */
    struct tlsconn *tls;     /* TLS session on fd (chanq_connect_opts.tls), or NULL */
    int64_t read_timeout_ms; /* extra time granted for an answer; <= 0 none */
    bool broken;             /* an io error happened: every call fails */
    struct wbuf out;         /* requests built but not written yet */
    char *in;                /* bytes read and not yet consumed */
    size_t in_off, in_len, in_cap; /* consumed prefix, filled length, size */
    size_t pending;          /* requests sent whose answer is not read */
    struct chanq_error err;  /* the last failure */
    bool submit_duplicate;   /* the last submit answer said "duplicate" */
    json_t *server_info;     /* hello's answer, or NULL */
    chanq_event_fn *event_fn; /* deliver events here, or queue them */
    void *event_arg;
    struct event_node *ev_head, *ev_tail; /* queued events, oldest first */
    struct chanqi_cluster *cluster; /* several servers given: how to find the
                                     * leader again (clients/cluster.c); else NULL */
    size_t failovers;               /* times the connection was made again */
};

/* Monotonic clock in ms. */
int64_t chanqi_conn_now_ms(void);

/* Waits until fd is ready for `events` (poll bits) or the absolute deadline
 * (chanqi_conn_now_ms clock; < 0: none) passes. 1 ready, 0 timed out, -1 error
 * (errno). */
int chanqi_conn_wait_fd(int fd, short events, int64_t deadline);

/* Records an error; returns -1. */
int chanqi_conn_fail(struct chanq_conn *c, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Records an io error with errno e and marks the connection broken; -1. */
int chanqi_conn_fail_io(struct chanq_conn *c, int e);

/* Marks the request just appended to c->out as sent (one more answer to
 * read). Appending is done with the wbuf_* functions on c->out. */
void chanqi_conn_request_done(struct chanq_conn *c);

/* Writes out c->out completely (reading incoming bytes meanwhile so the two
 * sides cannot deadlock). 0 or -1. */
int chanqi_conn_flush(struct chanq_conn *c);

/* Flushes, then reads the answer to the oldest unanswered request, waiting
 * up to wait_ms for it (the op's own time; < 0: no limit) plus the read
 * timeout, and delivering events met on the way. Stores the parsed answer in
 * *resp (new reference) and returns 0 when it says ok, -1 otherwise (error
 * set from the answer; *resp is NULL after an io error). */
int chanqi_conn_recv(struct chanq_conn *c, int64_t wait_ms, json_t **resp);

/* Appends one request in JSON (borrowed) to c->out and counts it. 0 or -1. */
int chanqi_conn_send_json(struct chanq_conn *c, const json_t *req);

/* chanqi_conn_send_json + chanqi_conn_recv. */
int chanqi_conn_call(struct chanq_conn *c, const json_t *req, int64_t wait_ms, json_t **resp);

/* strdup of a JSON string member, or NULL. */
char *chanqi_json_dup_str(const json_t *obj, const char *key);

/* Fills *out from a job object of a fetch answer or a jobs event. 0, or -1
 * (out of memory, or no id: what was filled is for chanq_jobs_free). */
int chanqi_job_from_json(const json_t *j, struct chanq_job *out);

/* The jobs of a JSON array of jobs (NULL when empty), their number in *n.
 * 0, or -1 when out of memory (nothing kept). */
int chanqi_jobs_from_json(const json_t *arr, struct chanq_job **jobs, size_t *n);

/* Fills *err (NULL: nothing) with code, message and errno. */
void chanqi_error_set(struct chanq_error *err, const char *code, const char *msg, int e);

/* chanq_connect() to one address; hello: say hello even without a token
 * or client name (to learn the node's role). */
struct chanq_conn *chanqi_connect_one(const char *server, const struct chanq_connect_opts *o,
                                      bool hello, struct chanq_error *err);
void chanqi_conn_set_read_timeout(struct chanq_conn *c, int64_t ms);

/* Several servers (clients/cluster.c). */
struct chanqi_cluster;

/* Whether `server` is a comma-separated list. */
bool chanqi_is_server_list(const char *server);
/* The list and a copy of the options; NULL with *err set when the list is
 * malformed or memory ran out. */
struct chanqi_cluster *chanqi_cluster_new(const char *list, const struct chanq_connect_opts *o,
                                          struct chanq_error *err);
void chanqi_cluster_free(struct chanqi_cluster *cl);
/* A new connection to the serving leader (trying prefer first when not
 * NULL), searching with backoff up to the connect timeout; NULL with *err
 * set ("io", or "unauthorized" at once). */
struct chanq_conn *chanqi_cluster_dial(const struct chanqi_cluster *cl, const char *prefer,
                                       struct chanq_error *err);
int64_t chanqi_cluster_search_ms(const struct chanqi_cluster *cl);
/* Whether a request of this op may be made again after its connection
 * died without its answer. */
bool chanqi_cluster_may_resend(const char *op);
/* Replaces c's connection by one to the leader (unanswered requests are
 * dropped; event function and queued events kept). 0, or -1 (c broken). */
int chanqi_conn_reconnect(struct chanq_conn *c, const char *prefer);
/* A broken connection of several servers is made again; 0, or -1 when c is
 * broken and stays so. */
int chanqi_conn_revive(struct chanq_conn *c);
/* After a failed answer on a connection of several servers: when nothing
 * was done (not_leader, shutting_down) or the connection died and resend
 * is true, connects to the leader (the one not_leader named first) and
 * returns 0: the caller makes its unanswered requests again. Else -1, c
 * unchanged, or broken when no leader was found. */
int chanqi_conn_failover(struct chanq_conn *c, bool resend);
/* chanqi_conn_recv, and with several servers, when the request is alone and
 * unwritten, made again on the leader after not_leader or shutting_down,
 * and (resend) after the connection died. */
int chanqi_conn_recv_again(struct chanq_conn *c, int64_t wait_ms, json_t **resp, bool resend);

#endif
