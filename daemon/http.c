/* The HTTP monitoring endpoint: a path table in front of the snapshot
 * callback, served by libevent's evhttp on the daemon's loop; also the
 * built-in status page and the admin routes' plumbing (the ops themselves
 * are daemon/http_admin.c's). */
#include "chanq_config.h"

#include "daemon/http.h"
#include "daemon/accept_guard.h"
#include "daemon/history.h"
#include "daemon/listen.h"
#include "daemon/log.h"
#include "daemon/metrics.h"
#include "daemon/page_token.h"
#include "daemon/status_page.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netdb.h>
#include <strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#define HTTP_TIMEOUT_S 10
/* Connections at once on the HTTP endpoint: a scraper and a few browser
 * tabs need a handful; past this they are answered 503 and closed. */
#define HTTP_MAX_CONNECTIONS 64
#define HTTP_MAX_HEADERS 8192
/* An admin request's JSON body: a few fields and ids, never a payload. */
#define HTTP_MAX_BODY (64 * 1024)
/* Where the page's token goes in daemon/status_page.html. */
#define PAGE_TOKEN_MARK "@CHANQ_PAGE_TOKEN@"

struct http {
    struct evhttp *evh;          /* libevent's server */
    struct accept_guard *guard;  /* keeps a failing accept from spinning */
    http_snapshot_fn *snapshot;  /* builds the stats document */
    http_unhealthy_fn *unhealthy; /* for /healthz; may be NULL */
    void *arg;                   /* passed to both */
    int port;                    /* bound port, for logs and tests */
    http_admin_fn *admin;        /* runs POST /admin/...; NULL = routes off (403) */
    void *admin_arg;             /* passed to admin */
    bool admin_needs_token;      /* told to the page through GET /admin */
    struct page_tokens *page_tokens; /* what the page sends back with admin POSTs */
    size_t page_mark;            /* offset of PAGE_TOKEN_MARK in the page */
    struct history *history;     /* GET /history; NULL: 404 */
    struct http_call *calls;     /* admin calls awaiting their answer */
    size_t conns;                /* connections counted against HTTP_MAX_CONNECTIONS */
    struct event *admit;         /* counts or refuses the connections just accepted */
    struct bufferevent **fresh;  /* those connections' bufferevents (one reference each) */
    size_t nfresh, capfresh;
};

/* An admin request between the admin callback and its answer. It outlives
 * neither the client (libevent then detaches req and frees it at our reply)
 * nor the endpoint (http_free orphans it: h and req become NULL). */
struct http_call {
    struct http *h;                /* the endpoint, NULL once freed */
    struct evhttp_request *req;    /* the request to answer */
    struct http_call *prev, *next; /* h->calls links */
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

static const struct reason {
    int status;         /* HTTP status code */
    const char *phrase; /* its reason phrase */
} reasons[] = {
    {200, "OK"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {409, "Conflict"},
    {429, "Too Many Requests"},
    {500, "Internal Server Error"},
    {503, "Service Unavailable"},
};

static const char *
reason_of(int status)
{
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
        if (reasons[i].status == status)
            return reasons[i].phrase;
    return status < 500 ? "Client Error" : "Server Error";
}

/* An error in the protocol's shape: {"ok":false,"error":{"code","message"}}. */
static void
reply_error(struct evhttp_request *req, int status, const char *code, const char *message)
{
    json_t *doc =
        json_pack("{s:b, s:{s:s, s:s}}", "ok", 0, "error", "code", code, "message", message);
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!text) {
        evhttp_send_error(req, 500, "Out of memory");
        return;
    }
    reply(req, status, reason_of(status), "application/json", text, strlen(text));
    free(text);
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
    const char *why = h->unhealthy ? h->unhealthy(h->arg) : NULL;
    if (!why) {
        reply(req, 200, "OK", "text/plain", "ok\n", 3);
        return;
    }
    char body[512];
    int n = snprintf(body, sizeof body, "%s\n", why);
    reply(req, 503, "Service Unavailable", "text/plain", body,
          n < (int)sizeof body ? (size_t)n : sizeof body - 1);
}

/* The page is static and self-contained: it may talk to us and nothing
 * else, and may not be framed (its buttons must not be clickjacked). */
static void
route_page(struct http *h, struct evhttp_request *req)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    evhttp_add_header(out, "Content-Security-Policy",
                      "default-src 'none'; script-src 'unsafe-inline'; "
                      "style-src 'unsafe-inline'; connect-src 'self'; img-src data:; "
                      "base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
    evhttp_add_header(out, "X-Frame-Options", "DENY");
    evhttp_add_header(out, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(out, "Referrer-Policy", "no-referrer");
    char token[PAGE_TOKEN_LEN + 1];
    if (page_token_issue(h->page_tokens, token) < 0) {
        evhttp_send_error(req, 503, "No random bytes for the page token");
        return;
    }
    /* The page with its token in place of the mark: three pieces. */
    const char *page = (const char *)status_page_html;
    size_t after = h->page_mark + strlen(PAGE_TOKEN_MARK);
    struct evbuffer *body = evbuffer_new();
    if (!body || evbuffer_add(body, page, h->page_mark) != 0 ||
        evbuffer_add(body, token, PAGE_TOKEN_LEN) != 0 ||
        evbuffer_add(body, page + after, status_page_html_len - after) != 0) {
        evbuffer_free(body);
        evhttp_send_error(req, 500, "Out of memory");
        return;
    }
    evhttp_add_header(out, "Content-Type", "text/html; charset=utf-8");
    evhttp_add_header(out, "Cache-Control", "no-store");
    evhttp_send_reply(req, 200, "OK", body);
    evbuffer_free(body);
}

static void
route_history(struct http *h, struct evhttp_request *req)
{
    json_t *doc = h->history ? history_json(h->history) : NULL;
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!text) {
        reply_error(req, h->history ? 500 : 404, h->history ? "internal" : "not_found",
                    h->history ? "out of memory" : "no rate history on this endpoint");
        return;
    }
    reply(req, 200, "OK", "application/json", text, strlen(text));
    free(text);
}

/* True unless url ("scheme://HOST[:PORT][/...]") names host (the Host
 * header, "HOST[:PORT]"). "null" and anything unparsable are foreign. */
static bool
foreign_origin(const char *url, const char *host)
{
    const char *p = strstr(url, "://");
    if (!host || !p)
        return true;
    p += 3;
    size_t n = strcspn(p, "/?#");
    return n != strlen(host) || strncasecmp(p, host, n) != 0;
}

/* A browser tells where a request comes from: another site's page must not
 * be able to POST to us (a plain form needs no CORS preflight). Asked in
 * turn: Sec-Fetch-Site, Origin, Referer; clients other than browsers send
 * none of them (and the page token stops forgeries that hide them). */
static bool
cross_site(struct evhttp_request *req)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    const char *site = evhttp_find_header(in, "Sec-Fetch-Site");
    if (site)
        return strcmp(site, "same-origin") != 0 && strcmp(site, "none") != 0;
    const char *host = evhttp_find_header(in, "Host");
    const char *origin = evhttp_find_header(in, "Origin");
    if (origin)
        return foreign_origin(origin, host);
    const char *referer = evhttp_find_header(in, "Referer");
    return referer && foreign_origin(referer, host);
}

/* The token of "Authorization: Bearer TOKEN", borrowed from req, or NULL. */
static const char *
bearer_token(struct evhttp_request *req)
{
    const char *v = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (!v || strncasecmp(v, "Bearer ", 7) != 0)
        return NULL;
    v += 7;
    while (*v == ' ')
        v++;
    return *v ? v : NULL;
}

static struct http_call *
call_new(struct http *h, struct evhttp_request *req)
{
    struct http_call *call = calloc(1, sizeof *call);
    if (!call)
        return NULL;
    call->h = h;
    call->req = req;
    call->next = h->calls;
    if (h->calls)
        h->calls->prev = call;
    h->calls = call;
    return call;
}

static void
call_unlink(struct http_call *call)
{
    if (call->prev)
        call->prev->next = call->next;
    else
        call->h->calls = call->next;
    if (call->next)
        call->next->prev = call->prev;
}

void
http_call_reply(struct http_call *call, int status, const char *body, size_t len)
{
    if (call->h) {
        reply(call->req, status, reason_of(status), "application/json", body, len);
        call_unlink(call);
    }
    free(call);
}

/* What the page needs to know to show its buttons, and a page token: a
 * page served by an earlier run of chanqd gets a valid one here, and so
 * do scripts (another site cannot read it: no CORS). */
static void
route_admin_info(struct http *h, struct evhttp_request *req)
{
    char token[PAGE_TOKEN_LEN + 1];
    if (page_token_issue(h->page_tokens, token) < 0) {
        reply_error(req, 503, "internal", "no random bytes for a page token");
        return;
    }
    char body[128];
    int n = snprintf(body, sizeof body, "{\"admin\":%s,\"token\":%s,\"page_token\":\"%s\"}",
                     h->admin ? "true" : "false",
                     h->admin && h->admin_needs_token ? "true" : "false", token);
    reply(req, 200, "OK", "application/json", body, (size_t)n);
}

/* The request's fields: its JSON object body (none is {}), then the
 * query's queue= over it. A new reference, or NULL after answering 400. */
static json_t *
admin_fields(struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    json_t *fields = NULL;
    json_error_t jerr;
    if (len == 0)
        fields = json_object();
    else if (!(fields = json_loadb((const char *)evbuffer_pullup(in, -1), len,
                                   JSON_REJECT_DUPLICATES, &jerr)))
        reply_error(req, 400, "bad_request", "body: not JSON");
    if (fields && !json_is_object(fields)) {
        json_decref(fields);
        reply_error(req, 400, "bad_request", "body: want a JSON object of the op's fields");
        return NULL;
    }
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    struct evkeyvalq args;
    TAILQ_INIT(&args);
    if (fields && query && evhttp_parse_query_str(query, &args) != 0) {
        json_decref(fields);
        reply_error(req, 400, "bad_request", "query: cannot parse");
        return NULL;
    }
    const char *queue = evhttp_find_header(&args, "queue");
    if (fields && queue)
        json_object_set_new(fields, "queue", json_string(queue));
    evhttp_clear_headers(&args);
    return fields;
}

/* The client's address, for the log: "HOST:PORT". */
static void
peer_name(struct evhttp_request *req, char *buf, size_t size)
{
    char *addr = NULL;
    ev_uint16_t port = 0;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (evcon)
        evhttp_connection_get_peer(evcon, &addr, &port);
    snprintf(buf, size, "%s:%u", addr ? addr : "?", (unsigned)port);
}

static void
route_admin(struct http *h, struct evhttp_request *req)
{
    if (!h->admin) {
        reply_error(req, 403, "forbidden",
                    "the admin routes are off: start chanqd with --http-admin");
        return;
    }
    if (cross_site(req)) {
        log_warn_limited("http: refused a cross-site admin request for %s",
                         evhttp_request_get_uri(req));
        reply_error(req, 403, "forbidden", "cross-site admin request refused");
        return;
    }
    const char *pt = evhttp_find_header(evhttp_request_get_input_headers(req),
                                        "X-Chanq-Page-Token");
    if (!page_token_valid(h->page_tokens, pt)) {
        log_warn_limited("http: refused an admin request without a valid page token for %s",
                         evhttp_request_get_uri(req));
        reply_error(req, 403, "forbidden",
                    "page token: send X-Chanq-Page-Token from GET /admin (or reload the page)");
        return;
    }
    json_t *fields = admin_fields(req);
    if (!fields)
        return;
    char peer[80];
    peer_name(req, peer, sizeof peer);
    struct http_call *call = call_new(h, req);
    if (call)
        h->admin(h->admin_arg, call,
                 evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req)) + strlen("/admin/"),
                 fields, bearer_token(req), peer);
    else
        reply_error(req, 500, "internal", "out of memory");
    json_decref(fields);
}

enum { ROUTE_GET = EVHTTP_REQ_GET | EVHTTP_REQ_HEAD, ROUTE_POST = EVHTTP_REQ_POST };

static const struct route {
    const char *path;  /* the whole path, or its start when prefix is set */
    bool prefix;       /* path is a prefix ("/admin/") */
    unsigned methods;  /* others get 405 */
    const char *allow; /* the Allow header of that 405 */
    route_fn *fn;      /* serves it */
} routes[] = {
    {"/", false, ROUTE_GET, "GET, HEAD", route_page},
    {"/metrics", false, ROUTE_GET, "GET, HEAD", route_metrics},
    {"/stats", false, ROUTE_GET, "GET, HEAD", route_stats},
    {"/healthz", false, ROUTE_GET, "GET, HEAD", route_healthz},
    {"/history", false, ROUTE_GET, "GET, HEAD", route_history},
    {"/admin", false, ROUTE_GET, "GET, HEAD", route_admin_info},
    {"/admin/", true, ROUTE_POST, "POST", route_admin},
};

static bool
route_matches(const struct route *r, const char *path)
{
    if (r->prefix)
        return strncmp(path, r->path, strlen(r->path)) == 0;
    return strcmp(path, r->path) == 0;
}

static void
on_request(struct evhttp_request *req, void *arg)
{
    struct http *h = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    for (size_t i = 0; path && i < sizeof routes / sizeof routes[0]; i++) {
        const struct route *r = &routes[i];
        if (!route_matches(r, path))
            continue;
        if (!(evhttp_request_get_command(req) & r->methods)) {
            evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", r->allow);
            reply(req, 405, "Method Not Allowed", "text/plain", "method not allowed\n", 19);
            return;
        }
        r->fn(h, req);
        return;
    }
    log_debug("http: 404 for %s", evhttp_request_get_uri(req));
    static const char nf[] = "not found: try /, /metrics, /stats, /history or /healthz\n";
    reply(req, 404, "Not Found", "text/plain", nf, sizeof nf - 1);
}

/* evhttp (libevent 2.1) has neither a connection limit nor an accept
 * hook, but it asks us for each accepted connection's bufferevent; once it
 * has wired the connection, the bufferevent's callback argument is the
 * connection, which then gets our close callback. So each new bufferevent
 * is kept (with a reference) until admit_fresh, run right after evhttp's
 * accept, counts the connection or refuses it. */
static struct bufferevent *
on_new_bufferevent(struct event_base *base, void *arg)
{
    struct http *h = arg;
    if (h->nfresh == h->capfresh) {
        size_t cap = h->capfresh ? 2 * h->capfresh : 16;
        struct bufferevent **grown = realloc(h->fresh, cap * sizeof *grown);
        if (!grown)
            return NULL; /* evhttp makes its own, uncounted */
        h->fresh = grown;
        h->capfresh = cap;
    }
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!bev)
        return NULL;
    bufferevent_incref(bev);
    h->fresh[h->nfresh++] = bev;
    event_active(h->admit, EV_TIMEOUT, 0);
    return bev;
}

static void
on_conn_closed(struct evhttp_connection *evcon, void *arg)
{
    struct http *h = arg;
    h->conns--;
}

/* Past the cap: a best-effort 503, then shut the socket down; evhttp sees
 * the end of input and frees the connection itself. */
static void
refuse(struct bufferevent *bev)
{
    static const char msg[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                              "Content-Length: 21\r\nConnection: close\r\n\r\n"
                              "too many connections\n";
    evutil_socket_t fd = bufferevent_getfd(bev);
    ssize_t w = write(fd, msg, sizeof msg - 1);
    (void)w; /* the client may learn why; it is closed either way */
    shutdown(fd, SHUT_RDWR);
    log_warn_limited("http: refused a connection: %d connections is the limit",
                     HTTP_MAX_CONNECTIONS);
}

static void
admit_fresh(evutil_socket_t fd, short what, void *arg)
{
    struct http *h = arg;
    for (size_t i = 0; i < h->nfresh; i++) {
        struct bufferevent *bev = h->fresh[i];
        bufferevent_data_cb readcb = NULL;
        void *evcon = NULL;
        bufferevent_getcb(bev, &readcb, NULL, NULL, &evcon);
        if (readcb && evcon) { /* still evhttp's connection */
            if (h->conns >= HTTP_MAX_CONNECTIONS) {
                refuse(bev);
            } else {
                h->conns++;
                evhttp_connection_set_closecb(evcon, on_conn_closed, h);
            }
        }
        bufferevent_decref(bev);
    }
    h->nfresh = 0;
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
         http_unhealthy_fn *unhealthy, void *arg)
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
    h->unhealthy = unhealthy;
    h->arg = arg;
    const char *mark = strstr((const char *)status_page_html, PAGE_TOKEN_MARK);
    if (!mark || !(h->page_tokens = page_tokens_new())) {
        log_error("cannot start the http endpoint: %s",
                  mark ? "no page tokens" : "the page has no token mark");
        http_free(h);
        return NULL;
    }
    h->page_mark = (size_t)(mark - (const char *)status_page_html);
    evhttp_set_allowed_methods(h->evh, ROUTE_GET | ROUTE_POST);
    evhttp_set_timeout(h->evh, HTTP_TIMEOUT_S);
    evhttp_set_max_headers_size(h->evh, HTTP_MAX_HEADERS);
    evhttp_set_max_body_size(h->evh, HTTP_MAX_BODY);
    evhttp_set_gencb(h->evh, on_request, h);
    evhttp_set_bevcb(h->evh, on_new_bufferevent, h);
    if (!(h->admit = event_new(base, -1, 0, admit_fresh, h))) {
        log_error("cannot start the http endpoint: out of memory");
        http_free(h);
        return NULL;
    }
    struct evhttp_bound_socket *bs =
        evhttp_bind_socket_with_handle(h->evh, host, (ev_uint16_t)atoi(port));
    if (!bs) {
        log_error("cannot serve http on %s: %s", addr,
                  evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        http_free(h);
        return NULL;
    }
    h->port = bound_port(bs);
    char name[300];
    bool v6 = strchr(host, ':') != NULL;
    snprintf(name, sizeof name, "http:%s%s%s:%d", v6 ? "[" : "", host, v6 ? "]" : "", h->port);
    if (!(h->guard = accept_guard_new(evhttp_bound_socket_get_listener(bs), name))) {
        log_error("cannot start the http endpoint: out of memory");
        http_free(h);
        return NULL;
    }
    log_info("http: serving /metrics /stats /healthz on %s%s%s:%d", strchr(host, ':') ? "[" : "",
             host, strchr(host, ':') ? "]" : "", h->port);
    log_info("http: status page on http://%s%s%s:%d/", strchr(host, ':') ? "[" : "", host,
             strchr(host, ':') ? "]" : "", h->port);
    return h;
}

void
http_set_admin(struct http *h, http_admin_fn *admin, bool needs_token, void *arg)
{
    h->admin = admin;
    h->admin_arg = arg;
    h->admin_needs_token = needs_token;
}

void
http_set_history(struct http *h, struct history *history)
{
    h->history = history;
}

void
http_free(struct http *h)
{
    if (!h)
        return;
    page_tokens_free(h->page_tokens);
    /* evhttp_free frees the requests still waiting: orphan their calls. */
    for (struct http_call *call = h->calls; call; call = call->next) {
        call->h = NULL;
        call->req = NULL;
    }
    accept_guard_free(h->guard);
    if (h->evh)
        evhttp_free(h->evh);
    for (size_t i = 0; i < h->nfresh; i++)
        bufferevent_decref(h->fresh[i]);
    free(h->fresh);
    if (h->admit)
        event_free(h->admit);
    free(h);
}

int
http_port(const struct http *h)
{
    return h->port;
}
