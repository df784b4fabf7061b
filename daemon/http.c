/* The HTTP monitoring endpoint: a path table in front of the snapshot
 * callback, served by libevent's evhttp on the daemon's loop. */
#include "chanq_config.h"

#include "daemon/http.h"
#include "daemon/listen.h"
#include "daemon/log.h"
#include "daemon/metrics.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define HTTP_TIMEOUT_S 10
#define HTTP_MAX_HEADERS 8192

struct http {
    struct evhttp *evh;          /* libevent's server */
    http_snapshot_fn *snapshot;  /* builds the stats document */
    http_stopping_fn *stopping;  /* for /healthz; may be NULL */
    void *arg;                   /* passed to both */
    int port;                    /* bound port, for logs and tests */
};

typedef void route_fn(struct http *h, struct evhttp_request *req);

static void
reply(struct evhttp_request *req, int code, const char *reason, const char *type,
      const char *body, size_t len)
{
    struct evbuffer *out = evbuffer_new();
    if (!out) {
        evhttp_send_error(req, 500, "Out of memory");
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
    evbuffer_add(out, body, len);
    evhttp_send_reply(req, code, reason, out);
    evbuffer_free(out);
}

static json_t *
take_snapshot(struct http *h, struct evhttp_request *req)
{
    json_t *doc = h->snapshot(h->arg);
    if (!doc)
        evhttp_send_error(req, 503, "Stats unavailable");
    return doc;
}

static void
route_metrics(struct http *h, struct evhttp_request *req)
{
    json_t *doc = take_snapshot(h, req);
    if (!doc)
        return;
    size_t len;
    char *text = metrics_render(doc, &len);
    json_decref(doc);
    if (!text) {
        evhttp_send_error(req, 500, "Out of memory");
        return;
    }
    reply(req, 200, "OK", METRICS_CONTENT_TYPE, text, len);
    free(text);
}

static void
route_stats(struct http *h, struct evhttp_request *req)
{
    json_t *doc = take_snapshot(h, req);
    if (!doc)
        return;
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (!text) {
        evhttp_send_error(req, 500, "Out of memory");
        return;
    }
    reply(req, 200, "OK", "application/json", text, strlen(text));
    free(text);
}

static void
route_healthz(struct http *h, struct evhttp_request *req)
{
    if (h->stopping && h->stopping(h->arg))
        reply(req, 503, "Stopping", "text/plain", "stopping\n", 9);
    else
        reply(req, 200, "OK", "text/plain", "ok\n", 3);
}

static const struct route {
    const char *path;
    route_fn *fn;
} routes[] = {
    {"/metrics", route_metrics},
    {"/stats", route_stats},
    {"/healthz", route_healthz},
};

static void
on_request(struct evhttp_request *req, void *arg)
{
    struct http *h = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    for (size_t i = 0; path && i < sizeof routes / sizeof routes[0]; i++) {
        if (strcmp(path, routes[i].path) == 0) {
            routes[i].fn(h, req);
            return;
        }
    }
    log_debug("http: 404 for %s", evhttp_request_get_uri(req));
    reply(req, 404, "Not Found", "text/plain", "not found: try /metrics, /stats or /healthz\n",
          44);
}

static int
bound_port(struct evhttp_bound_socket *bs)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char port[NI_MAXSERV];
    if (getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss, &len) != 0 ||
        getnameinfo((struct sockaddr *)&ss, len, NULL, 0, port, sizeof port, NI_NUMERICSERV) != 0)
        return -1;
    return atoi(port);
}

struct http *
http_new(struct event_base *base, const char *addr, http_snapshot_fn *snapshot,
         http_stopping_fn *stopping, void *arg)
{
    char host[256], port[32];
    if (listener_split_addr(addr, host, sizeof host, port, sizeof port) < 0) {
        log_error("bad --http address '%s' (want HOST:PORT or [V6]:PORT)", addr);
        return NULL;
    }
    struct http *h = calloc(1, sizeof *h);
    if (!h || !(h->evh = evhttp_new(base))) {
        log_error("cannot start the http endpoint: out of memory");
        free(h);
        return NULL;
    }
    h->snapshot = snapshot;
    h->stopping = stopping;
    h->arg = arg;
    evhttp_set_allowed_methods(h->evh, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_timeout(h->evh, HTTP_TIMEOUT_S);
    evhttp_set_max_headers_size(h->evh, HTTP_MAX_HEADERS);
    evhttp_set_max_body_size(h->evh, 0);
    evhttp_set_gencb(h->evh, on_request, h);
    struct evhttp_bound_socket *bs =
        evhttp_bind_socket_with_handle(h->evh, host, (ev_uint16_t)atoi(port));
    if (!bs) {
        log_error("cannot serve http on %s: %s", addr,
                  evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        http_free(h);
        return NULL;
    }
    h->port = bound_port(bs);
    log_info("http: serving /metrics /stats /healthz on %s%s%s:%d", strchr(host, ':') ? "[" : "",
             host, strchr(host, ':') ? "]" : "", h->port);
    return h;
}

void
http_free(struct http *h)
{
    if (!h)
        return;
    evhttp_free(h->evh);
    free(h);
}

int
http_port(const struct http *h)
{
    return h->port;
}
