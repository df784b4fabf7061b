/* The admin routes of the HTTP endpoint: turn POST /admin/OP and its
 * JSON fields into a protocol request, run it through the protocol's own
 * dispatch (daemon/ops.h) on a goroutine, answer on the loop with the op's
 * own JSON line. */
#include "chanq_config.h"

#include "daemon/http_admin.h"
#include "daemon/broker.h"
#include "daemon/http.h"
#include "daemon/log.h"
#include "daemon/conn_env.h"
#include "daemon/ops.h"
#include "daemon/tokens.h"

#include "core/evbridge.h"
#include "core/go.h"
#include "core/timer.h"
#include "proto/encode.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How long http_admin_free waits for ops in flight. They only wait for the
 * journal, so this is a bound for a stuck disk, not a normal delay. */
#define ADMIN_DRAIN_MS 5000

struct http_admin {
    const struct conn_env *env; /* broker, bridge, tokens, stop flag */
    atomic_int inflight; /* goroutines that may still use this struct */
};

/* One op from the HTTP request to its answer. Owned by the goroutine, then
 * by the loop callback that answers and frees it. */
struct admin_op {
    struct http_admin *a;   /* where it runs */
    struct http_call *call; /* what to answer */
    struct request req;     /* decoded like a protocol line */
    struct op_session os;   /* the asker as the ops see it: authenticated */
    struct holder holder;   /* the broker's view of the asker: holds no job */
    bool change;            /* logged at info (changes) or debug (reads) */
    char what[160];         /* "retry queue=mail id=..." for the log */
    char peer[80];          /* who asked */
    struct buf out;         /* the op's answer line */
    int status;             /* HTTP status of that answer */
};

/* The ops the routes run: those that change a queue or its jobs, and
 * those that read them for the page. None parks for long (no fetch, wait
 * or consume: an HTTP request holds no reservation). Ops this chanqd
 * does not know are refused by the decoder as on the wire. */
static const struct admin_entry {
    const char *name; /* the path's last part and the protocol op */
    bool change;      /* changes state: logged at info */
} admin_ops[] = {
    {"pause", true},  {"resume", true}, {"close", true},        {"kick", true},
    {"retry", true},  {"delete", true}, {"purge", true},        {"queue_delete", true},
    {"configure", true}, {"list", false}, {"job", false},       {"clients", false},
    {"queues", false},
};

static const struct admin_entry *
admin_find(const char *name)
{
    for (size_t i = 0; i < sizeof admin_ops / sizeof admin_ops[0]; i++)
        if (strcmp(admin_ops[i].name, name) == 0)
            return &admin_ops[i];
    return NULL;
}

static int
status_of(enum proto_err code)
{
    switch (code) {
    case PROTO_OK:
        return 200;
    case PROTO_BAD_REQUEST:
    case PROTO_UNKNOWN_OP:
        return 400;
    case PROTO_UNAUTHORIZED:
        return 401;
    case PROTO_NOT_FOUND:
        return 404;
    case PROTO_LIMIT:
        return 429;
    case PROTO_SHUTTING_DOWN:
        return 503;
    case PROTO_NOT_LEADER: /* a cluster follower: the message names the leader */
        return 421;
    case PROTO_INTERNAL:
        return 500;
    default:
        return 409;
    }
}

/* The HTTP status of an answer line: 200 for ok, else its error's. */
static int
status_of_line(const struct buf *out)
{
    static const char err[] = "{\"ok\":false";
    if (out->len < sizeof err - 1 || memcmp(out->data, err, sizeof err - 1) != 0)
        return out->len ? 200 : 500;
    json_t *doc = json_loadb(out->data, out->len, 0, NULL);
    const char *code = json_string_value(json_object_get(json_object_get(doc, "error"), "code"));
    enum proto_err e = PROTO_INTERNAL;
    if (!code || !proto_err_parse(code, strlen(code), &e))
        e = PROTO_INTERNAL;
    json_decref(doc);
    return status_of(e);
}

/* An answer that needs no goroutine: an error line with its status. */
static void
answer_now(struct http_call *call, enum proto_err code, const char *message)
{
    struct buf out;
    buf_init(&out);
    if (encode_error(&out, (struct span){NULL, 0}, code, message) < 0)
        http_call_reply(call, 500, "{\"ok\":false}\n", 13);
    else
        http_call_reply(call, status_of(code), out.data, out.len);
    buf_clear(&out);
}

static void
holder_send_event(struct holder *h, const char *line, size_t len)
{
    /* Nothing to send: an admin op reserves no job, so gets no event. */
}

static void
op_free(struct admin_op *op)
{
    request_clear(&op->req);
    buf_clear(&op->out);
    free(op);
}

/* Loop thread: the op's answer goes out. */
static void
op_answer(void *arg)
{
    struct admin_op *op = arg;
    http_call_reply(op->call, op->status, op->out.data, op->out.len);
    op_free(op);
}

/* Goroutine: run the op (it may park until the journal has the change). */
static void
op_goroutine(void *arg)
{
    struct admin_op *op = arg;
    struct http_admin *a = op->a;
    ops_handle(a->env, &op->os, &op->req, &op->out);
    op->status = status_of_line(&op->out);
    if (op->change)
        log_info("http: admin %s from %s: %d", op->what, op->peer, op->status);
    else
        log_debug("http: admin %s from %s: %d", op->what, op->peer, op->status);
    /* The bridge queues without blocking; only memory can stop it. */
    while (evbridge_call(a->env->bridge, op_answer, op) < 0)
        go_sleep(10, NULL);
    atomic_fetch_sub(&a->inflight, 1); /* the last touch of a */
}

/* "OP queue=Q id=I" of the request's fields, for the log. */
static void
describe(char *buf, size_t size, const char *op, json_t *fields)
{
    const char *q = json_string_value(json_object_get(fields, "queue"));
    const char *id = json_string_value(json_object_get(fields, "id"));
    json_t *ids = json_object_get(fields, "ids");
    int n = snprintf(buf, size, "%s", op);
    if (q && n >= 0 && (size_t)n < size)
        n += snprintf(buf + n, size - (size_t)n, " queue=%.64s", q);
    if (id && n >= 0 && (size_t)n < size)
        n += snprintf(buf + n, size - (size_t)n, " id=%.40s", id);
    if (json_is_array(ids) && n >= 0 && (size_t)n < size)
        snprintf(buf + n, size - (size_t)n, " ids=%zu", json_array_size(ids));
}

/* The protocol request of op with fields, decoded as a line from a client
 * would be (so every field is checked exactly as on the wire). Returns
 * the new op, or NULL after answering call. */
static struct admin_op *
decode_op(struct http_admin *a, struct http_call *call, const char *name, json_t *fields)
{
    json_t *line = json_deep_copy(fields);
    if (line) {
        json_object_del(line, "rid"); /* the answer must start {"ok": */
        json_object_set_new(line, "op", json_string(name));
    }
    char *text = line ? json_dumps(line, JSON_COMPACT) : NULL;
    json_decref(line);
    struct admin_op *op = text ? calloc(1, sizeof *op) : NULL;
    if (!op) {
        free(text);
        answer_now(call, PROTO_INTERNAL, "out of memory");
        return NULL;
    }
    struct proto_error err = {PROTO_OK, ""};
    struct msg_limits lim = conn_env_msg_limits(a->env);
    int rc = msg_decode(text, strlen(text), &lim, &op->req, &err);
    free(text);
    if (rc < 0) {
        answer_now(call, err.code, err.message);
        op_free(op);
        return NULL;
    }
    return op;
}

/* http_admin_fn: checks what the loop can check, then starts the op. */
static void
admin_run(void *arg, struct http_call *call, const char *name, json_t *fields, const char *token,
          const char *peer)
{
    struct http_admin *a = arg;
    if (tokens_required(a->env->tokens) &&
        !(token && tokens_accept(a->env->tokens, span_str(token)))) {
        log_warn_limited("http: admin %s from %s refused: no valid token", name, peer);
        answer_now(call, PROTO_UNAUTHORIZED, "token: send \"Authorization: Bearer TOKEN\"");
        return;
    }
    if (conn_env_stopping(a->env)) {
        answer_now(call, PROTO_SHUTTING_DOWN, "server is stopping");
        return;
    }
    const struct admin_entry *e = admin_find(name);
    if (!e) {
        answer_now(call, PROTO_UNKNOWN_OP,
                   "admin op: want pause, resume, close, kick, retry, delete, purge, "
                   "queue_delete, configure, list, job, clients or queues");
        return;
    }
    struct admin_op *op = decode_op(a, call, e->name, fields);
    if (!op)
        return;
    op->a = a;
    op->call = call;
    op->change = e->change;
    describe(op->what, sizeof op->what, e->name, fields);
    snprintf(op->peer, sizeof op->peer, "%s", peer);
    op->os.authed = true; /* the bearer token was checked above */
    op->os.s.holder = &op->holder;
    op->os.s.ctx = a->env->root;
    op->holder.send_event = holder_send_event;
    buf_init(&op->out);
    atomic_fetch_add(&a->inflight, 1);
    if (go(op_goroutine, op) < 0) {
        atomic_fetch_sub(&a->inflight, 1);
        answer_now(call, PROTO_INTERNAL, "out of memory starting the op");
        op_free(op);
    }
}

struct http_admin *
http_admin_new(struct http *h, const struct conn_env *env)
{
    struct http_admin *a = calloc(1, sizeof *a);
    if (!a) {
        log_error("cannot turn the http admin routes on: out of memory");
        return NULL;
    }
    a->env = env;
    atomic_init(&a->inflight, 0);
    bool token = tokens_required(env->tokens);
    http_set_admin(h, admin_run, token, a);
    if (token)
        log_info("http: admin routes on (POST /admin/OP), token required");
    else
        log_warn("http: admin routes on without a --token-file: whoever reaches the --http "
                 "address can read jobs, pause, close and purge queues");
    return a;
}

void
http_admin_free(struct http_admin *a)
{
    if (!a)
        return;
    struct timespec tick = {0, 1000 * 1000};
    int waited = 0;
    while (atomic_load(&a->inflight) > 0 && waited < ADMIN_DRAIN_MS) {
        nanosleep(&tick, NULL);
        waited++;
    }
    if (atomic_load(&a->inflight) > 0) {
        /* Leaked on purpose: a goroutine still holds it. */
        log_error("http: %d admin op(s) still running at exit", atomic_load(&a->inflight));
        return;
    }
    free(a);
}
