/* libchanq: one connection to chanqd: connect, write requests, split the
 * input into lines, hand answers back in order and events to the caller. */
#include "chanq_config.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "clients/client-internal.h"
#include "clients/tlsconn.h"

#define DEFAULT_CONNECT_TIMEOUT_MS 10000
#define READ_CHUNK 65536

int64_t
chanqi_conn_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Copies s into dst[size], cut short if needed, always terminated. */
static void
copy_str(char *dst, size_t size, const char *s)
{
    size_t n = strnlen(s, size - 1);
    memcpy(dst, s, n);
    dst[n] = '\0';
}

void
chanqi_error_set(struct chanq_error *err, const char *code, const char *msg, int e)
{
    if (!err)
        return;
    copy_str(err->code, sizeof err->code, code);
    copy_str(err->message, sizeof err->message, msg);
    err->sys_errno = e;
}

int
chanqi_conn_fail(struct chanq_conn *c, const char *code, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    chanqi_error_set(&c->err, code, msg, 0);
    return -1;
}

int
chanqi_conn_fail_io(struct chanq_conn *c, int e)
{
    chanqi_error_set(&c->err, "io", e == EPIPE ? "connection closed by the server" : strerror(e), e);
    c->broken = true;
    return -1;
}

int
chanqi_conn_wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int ms = -1;
        if (deadline >= 0) {
            int64_t left = deadline - chanqi_conn_now_ms();
            ms = left <= 0 ? 0 : (left > 1000000000 ? 1000000000 : (int)left);
        }
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, ms);
        if (r < 0 && errno == EINTR)
            continue;
        return r < 0 ? -1 : r;
    }
}

/* A connected non-blocking socket to one resolved address, or -1. */
static int
dial_addr(const struct sockaddr *sa, socklen_t salen, int family, int64_t deadline)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, sa, salen) != 0) {
        if (errno != EINPROGRESS)
            goto out_close_fd;
        int r = chanqi_conn_wait_fd(fd, POLLOUT, deadline);
        if (r <= 0) {
            if (r == 0)
                errno = ETIMEDOUT;
            goto out_close_fd;
        }
        int soerr = 0;
        socklen_t len = sizeof soerr;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
        if (soerr) {
            errno = soerr;
            goto out_close_fd;
        }
    }
    if (family != AF_UNIX) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
out_close_fd : {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
}
}

static int
dial_unix(const char *path, int64_t deadline)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sun.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(sun.sun_path, path);
    return dial_addr((struct sockaddr *)&sun, sizeof sun, AF_UNIX, deadline);
}

/* Splits "host:port" or "[v6]:port" (an empty host is 127.0.0.1). Returns
 * the port (inside server), or NULL when the form is wrong. */
static const char *
split_host(const char *server, char *host, size_t hostlen)
{
    const char *port;
    if (server[0] == '[') {
        const char *end = strchr(server, ']');
        if (!end || end[1] != ':' || (size_t)(end - server) > hostlen)
            return NULL;
        snprintf(host, hostlen, "%.*s", (int)(end - server - 1), server + 1);
        port = end + 2;
    } else {
        const char *colon = strrchr(server, ':');
        if (!colon || (size_t)(colon - server) >= hostlen)
            return NULL;
        snprintf(host, hostlen, "%.*s", (int)(colon - server), server);
        port = colon + 1;
    }
    if (!*host)
        snprintf(host, hostlen, "127.0.0.1");
    return *port ? port : NULL;
}

/* "host:port" or "[v6]:port" -> every resolved address in turn. */
static int
dial_tcp(const char *server, int64_t deadline, struct chanq_error *err)
{
    char host[256];
    const char *port = split_host(server, host, sizeof host);
    if (!port)
        goto out_bad_address;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0) {
        char msg[300];
        snprintf(msg, sizeof msg, "%s: %s", server, gai_strerror(gai));
        chanqi_error_set(err, "io", msg, EHOSTUNREACH);
        return -1;
    }
    int fd = -1, e = ECONNREFUSED;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = dial_addr(ai->ai_addr, ai->ai_addrlen, ai->ai_family, deadline);
        if (fd < 0)
            e = errno;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        char msg[300];
        snprintf(msg, sizeof msg, "%s: %s", server, strerror(e));
        chanqi_error_set(err, "io", msg, e);
    }
    return fd;
out_bad_address:
    chanqi_error_set(err, "io", "server address must be HOST:PORT, [V6]:PORT or unix:PATH", EINVAL);
    return -1;
}

static int
say_hello(struct chanq_conn *c, const struct chanq_connect_opts *o)
{
    json_t *req = json_pack("{s:s}", "op", "hello");
    if (o->token)
        json_object_set_new(req, "token", json_string(o->token));
    if (o->client)
        json_object_set_new(req, "client", json_string(o->client));
    int rc = chanqi_conn_call(c, req, 0, &c->server_info);
    json_decref(req);
    return rc;
}

struct chanq_conn *
chanqi_connect_one(const char *server, const struct chanq_connect_opts *o, bool hello,
                   struct chanq_error *err)
{
    int64_t timeout =
        o->connect_timeout_ms > 0 ? o->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
    int64_t deadline = chanqi_conn_now_ms() + timeout;
    if (!server || !*server) {
        chanqi_error_set(err, "io", "no server address", EINVAL);
        return NULL;
    }
    int fd;
    bool is_unix =
        strncmp(server, "unix:", 5) == 0 || server[0] == '/' || strncmp(server, "./", 2) == 0;
    if (o->tls && is_unix) {
        chanqi_error_set(err, "io", "TLS needs a HOST:PORT address, not a Unix socket", EINVAL);
        return NULL;
    }
    if (is_unix) {
        fd = dial_unix(server[0] == 'u' ? server + 5 : server, deadline);
        if (fd < 0) {
            char msg[300];
            int e = errno;
            snprintf(msg, sizeof msg, "%s: %s", server, strerror(e));
            chanqi_error_set(err, "io", msg, e);
        }
    } else {
        fd = dial_tcp(server, deadline, err);
    }
    if (fd < 0)
        return NULL;
    struct chanq_conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        chanqi_error_set(err, "io", strerror(ENOMEM), ENOMEM);
        return NULL;
    }
    c->fd = fd;
    c->read_timeout_ms = o->read_timeout_ms;
    char host[256];
    if (o->tls && (!split_host(server, host, sizeof host) ||
                   !(c->tls = chanqi_tlsconn_new(fd, host, o, deadline, err)))) {
        chanq_conn_free(c);
        return NULL;
    }
    if ((hello || o->token || o->client) && say_hello(c, o) < 0) {
        if (err)
            *err = c->err;
        chanq_conn_free(c);
        return NULL;
    }
    return c;
}

struct chanq_conn *
chanq_connect(const char *server, const struct chanq_connect_opts *opts, struct chanq_error *err)
{
    static const struct chanq_connect_opts none;
    const struct chanq_connect_opts *o = opts ? opts : &none;
    if (!chanqi_is_server_list(server))
        return chanqi_connect_one(server, o, false, err);
    struct chanqi_cluster *cl = chanqi_cluster_new(server, o, err);
    if (!cl)
        return NULL;
    struct chanq_conn *c = chanqi_cluster_dial(cl, NULL, err);
    if (!c) {
        chanqi_cluster_free(cl);
        return NULL;
    }
    c->cluster = cl;
    return c;
}

void
chanqi_conn_set_read_timeout(struct chanq_conn *c, int64_t ms)
{
    c->read_timeout_ms = ms;
}

void
chanq_conn_free(struct chanq_conn *c)
{
    if (!c)
        return;
    chanqi_tlsconn_free(c->tls);
    close(c->fd);
    chanqi_wbuf_free(&c->out);
    free(c->in);
    json_decref(c->server_info);
    chanqi_cluster_free(c->cluster);
    while (c->ev_head) {
        struct event_node *n = c->ev_head;
        c->ev_head = n->next;
        free(n->ev.type);
        free(n->ev.id);
        free(n->ev.reason);
        free(n);
    }
    free(c);
}

const struct chanq_error *
chanq_last_error(const struct chanq_conn *c)
{
    return &c->err;
}

int
chanq_fd(const struct chanq_conn *c)
{
    return c->fd;
}

const json_t *
chanq_server_info(const struct chanq_conn *c)
{
    return c->server_info;
}

size_t
chanq_pending(const struct chanq_conn *c)
{
    return c->pending;
}

void
chanq_set_event_fn(struct chanq_conn *c, chanq_event_fn *fn, void *arg)
{
    c->event_fn = fn;
    c->event_arg = arg;
}

struct chanq_event *
chanq_next_event(struct chanq_conn *c)
{
    struct event_node *n = c->ev_head;
    if (!n)
        return NULL;
    c->ev_head = n->next;
    if (!c->ev_head)
        c->ev_tail = NULL;
    /* ev is the first member: the node is the event. */
    return &n->ev;
}

void
chanq_event_free(struct chanq_event *ev)
{
    if (!ev)
        return;
    free(ev->type);
    free(ev->id);
    free(ev->reason);
    chanq_jobs_free(ev->jobs, ev->njobs);
    free((struct event_node *)ev);
}

char *
chanqi_json_dup_str(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? strdup(s) : NULL;
}

static void
deliver_event(struct chanq_conn *c, const json_t *j)
{
    struct event_node *n = calloc(1, sizeof *n);
    if (!n)
        return;
    n->ev.type = chanqi_json_dup_str(j, "event");
    n->ev.id = chanqi_json_dup_str(j, "id");
    n->ev.reason = chanqi_json_dup_str(j, "reason");
    if (chanqi_jobs_from_json(json_object_get(j, "jobs"), &n->ev.jobs, &n->ev.njobs) < 0) {
        /* Out of memory: the jobs stay reserved to the connection until
         * their ttr runs out or it closes. */
        n->ev.jobs = NULL;
        n->ev.njobs = 0;
    }
    if (c->event_fn) {
        c->event_fn(&n->ev, c->event_arg);
        chanq_event_free(&n->ev);
        return;
    }
    if (c->ev_tail)
        c->ev_tail->next = n;
    else
        c->ev_head = n;
    c->ev_tail = n;
}

/* An io error; a TLS one with OpenSSL's reason. -1. */
static int
transport_fail(struct chanq_conn *c, int e)
{
    const char *why = e == EPROTO && c->tls ? chanqi_tlsconn_error(c->tls) : NULL;
    if (!why)
        return chanqi_conn_fail_io(c, e);
    chanqi_error_set(&c->err, "io", why, e);
    c->broken = true;
    return -1;
}

/* read(2) and send(2) on the socket, or through its TLS session. */
static ssize_t
transport_read(struct chanq_conn *c, void *buf, size_t len)
{
    return c->tls ? chanqi_tlsconn_read(c->tls, buf, len) : read(c->fd, buf, len);
}

static ssize_t
transport_write(struct chanq_conn *c, const void *buf, size_t len)
{
    return c->tls ? chanqi_tlsconn_write(c->tls, buf, len) : send(c->fd, buf, len, MSG_NOSIGNAL);
}

/* Reads what is available into c->in (the fd is readable or about to be).
 * Over TLS it also takes what the session already holds, so that a poll
 * of the fd afterwards tells the truth. 0 (something read, or EAGAIN), or
 * -1 (io error recorded). */
static int
read_some(struct chanq_conn *c)
{
    if (c->in_off > 0 && c->in_off == c->in_len) {
        c->in_off = c->in_len = 0;
    } else if (c->in_off > c->in_cap / 2) {
        memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
        c->in_len -= c->in_off;
        c->in_off = 0;
    }
    for (;;) {
        if (c->in_cap - c->in_len < READ_CHUNK / 2) {
            size_t cap = c->in_cap ? c->in_cap * 2 : READ_CHUNK;
            char *p = realloc(c->in, cap);
            if (!p)
                return chanqi_conn_fail_io(c, ENOMEM);
            c->in = p;
            c->in_cap = cap;
        }
        ssize_t r = transport_read(c, c->in + c->in_len, c->in_cap - c->in_len);
        if (r > 0) {
            c->in_len += (size_t)r;
            if (c->tls && chanqi_tlsconn_pending(c->tls))
                continue;
            return 0;
        }
        if (r == 0)
            return chanqi_conn_fail_io(c, EPIPE);
        if (errno == EAGAIN || errno == EINTR)
            return 0;
        return transport_fail(c, errno);
    }
}

int
chanqi_conn_flush(struct chanq_conn *c)
{
    if (c->broken)
        return -1;
    size_t off = 0;
    while (off < c->out.len) {
        ssize_t w = transport_write(c, c->out.data + off, c->out.len - off);
        if (w > 0) {
            off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno != EAGAIN)
            return transport_fail(c, errno);
        /* The server is not reading (a submit waits for room, or it is
         * writing answers we have not read): keep reading meanwhile. */
        struct pollfd p = {.fd = c->fd, .events = POLLOUT | POLLIN};
        if (poll(&p, 1, -1) < 0 && errno != EINTR)
            return chanqi_conn_fail_io(c, errno);
        if ((p.revents & (POLLIN | POLLHUP | POLLERR)) && read_some(c) < 0)
            return -1;
    }
    c->out.len = 0;
    return 0;
}

/* The next complete line in c->in (NUL-terminated in place, without "\n"),
 * or NULL. Empty lines are skipped. */
static char *
next_line(struct chanq_conn *c, size_t *len)
{
    while (c->in_off < c->in_len) {
        char *start = c->in + c->in_off;
        char *nl = memchr(start, '\n', c->in_len - c->in_off);
        if (!nl)
            return NULL;
        size_t n = (size_t)(nl - start);
        c->in_off += n + 1;
        if (n > 0 && start[n - 1] == '\r')
            n--;
        if (n == 0)
            continue;
        start[n] = '\0';
        *len = n;
        return start;
    }
    return NULL;
}

/* Takes complete lines from c->in: events are delivered, the first answer
 * is returned (new reference; 1), or 0 when no answer is complete yet.
 * want_answer false: every line is taken and answers are dropped. */
static int
take_lines(struct chanq_conn *c, bool want_answer, json_t **answer, int *events)
{
    size_t len;
    char *line;
    while ((line = next_line(c, &len)) != NULL) {
        json_t *j = json_loadb(line, len, 0, NULL);
        if (!j || !json_is_object(j)) {
            json_decref(j);
            if (want_answer) {
                *answer = NULL;
                chanqi_conn_fail(c, "io", "not a JSON object from the server");
                return 1;
            }
            continue;
        }
        if (json_object_get(j, "event") && !json_object_get(j, "ok")) {
            deliver_event(c, j);
            json_decref(j);
            if (events)
                (*events)++;
            continue;
        }
        if (!want_answer) {
            json_decref(j);
            continue;
        }
        *answer = j;
        return 1;
    }
    return 0;
}

static int
answer_status(struct chanq_conn *c, const json_t *resp)
{
    if (json_is_true(json_object_get(resp, "ok")))
        return 0;
    const json_t *e = json_object_get(resp, "error");
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    chanqi_error_set(&c->err, code ? code : "internal", msg ? msg : "error answer without a message", 0);
    return -1;
}

int
chanqi_conn_recv(struct chanq_conn *c, int64_t wait_ms, json_t **resp)
{
    *resp = NULL;
    if (c->pending == 0)
        return chanqi_conn_fail(c, "bad_request", "no request is waiting for an answer");
    if (chanqi_conn_flush(c) < 0)
        return -1;
    int64_t deadline = -1;
    if (c->read_timeout_ms > 0 && wait_ms >= 0)
        deadline = chanqi_conn_now_ms() + wait_ms + c->read_timeout_ms;
    for (;;) {
        json_t *answer = NULL;
        if (take_lines(c, true, &answer, NULL)) {
            c->pending--;
            if (!answer)
                return -1;
            *resp = answer;
            return answer_status(c, answer);
        }
        int r = chanqi_conn_wait_fd(c->fd, POLLIN, deadline);
        if (r < 0)
            return chanqi_conn_fail_io(c, errno);
        if (r == 0)
            return chanqi_conn_fail_io(c, ETIMEDOUT);
        if (read_some(c) < 0)
            return -1;
    }
}

int
chanq_poll_events(struct chanq_conn *c, int64_t timeout_ms)
{
    if (c->broken)
        return -1;
    if (c->pending > 0)
        return chanqi_conn_fail(c, "bad_request", "requests are waiting for answers");
    int events = 0;
    take_lines(c, false, NULL, &events);
    /* Events already read (behind the last answer) are news enough: only
     * what else is there now is read then, without waiting. */
    int64_t deadline = events > 0 ? chanqi_conn_now_ms()
                       : timeout_ms < 0 ? -1
                                        : chanqi_conn_now_ms() + timeout_ms;
    int r = chanqi_conn_wait_fd(c->fd, POLLIN, deadline);
    if (r < 0)
        return chanqi_conn_fail_io(c, errno);
    while (r > 0) {
        if (read_some(c) < 0)
            return -1;
        take_lines(c, false, NULL, &events);
        r = chanqi_conn_wait_fd(c->fd, POLLIN, 0);
        if (r < 0)
            return chanqi_conn_fail_io(c, errno);
    }
    return events;
}

void
chanqi_conn_request_done(struct chanq_conn *c)
{
    c->pending++;
}

int
chanqi_conn_send_json(struct chanq_conn *c, const json_t *req)
{
    if (c->broken)
        return -1;
    char *text = json_dumps(req, JSON_COMPACT);
    if (!text)
        return chanqi_conn_fail(c, "bad_request", "request cannot be encoded");
    int rc = chanqi_wbuf_puts(&c->out, text);
    free(text);
    if (rc < 0 || chanqi_wbuf_put(&c->out, "\n", 1) < 0)
        return chanqi_conn_fail_io(c, ENOMEM);
    chanqi_conn_request_done(c);
    return 0;
}

int
chanqi_conn_call(struct chanq_conn *c, const json_t *req, int64_t wait_ms, json_t **resp)
{
    *resp = NULL;
    bool resend = chanqi_cluster_may_resend(json_string_value(json_object_get(req, "op")));
    if (resend && chanqi_conn_revive(c) < 0)
        return -1;
    if (chanqi_conn_send_json(c, req) < 0)
        return -1;
    return chanqi_conn_recv_again(c, wait_ms, resp, resend);
}

int
chanq_request(struct chanq_conn *c, const json_t *req, json_t **out)
{
    int64_t wait = -1;
    /* Bounded ops tell us how long the server may hold the answer. */
    json_t *t = json_object_get(req, "timeout_ms");
    if (json_is_integer(t))
        wait = json_integer_value(t);
    return chanqi_conn_call(c, req, wait, out);
}
