/* The admin routes of the HTTP endpoint: decode POST /admin/OP?queue=NAME
 * into a protocol request, run the broker's op on a goroutine, answer on
 * the loop with the op's own JSON line. */
#include "chanq_config.h"

#include "daemon/http_admin.h"
#include "daemon/broker.h"
#include "daemon/http.h"
#include "daemon/log.h"
#include "daemon/conn_env.h"
#include "daemon/tokens.h"

#include "core/evbridge.h"
#include "core/go.h"
#include "core/timer.h"
#include "proto/encode.h"

#include <errno.h>
#include <stdatomic.h>
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
    broker_op_fn *fn;       /* the broker's op */
    struct request req;     /* decoded like a protocol line */
    struct holder holder;   /* the broker's view of the asker: holds no job */
    struct buf out;         /* the op's answer line */
    int status;             /* HTTP status of that answer */
};

static const struct admin_entry {
    const char *name; /* the path's last part and the protocol op */
    broker_op_fn *fn; /* what runs it */
} admin_ops[] = {
    {"pause", broker_op_pause},
    {"resume", broker_op_resume},
    {"close", broker_op_close},
    {"kick", broker_op_kick},
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
    case PROTO_INTERNAL:
        return 500;
    default:
        return 409;
    }
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
    struct session s = {.holder = &op->holder, .ctx = a->env->root};
    struct proto_error err = {PROTO_OK, ""};
    op->status = 200;
    if (op->fn(a->env->broker, &s, &op->req, &op->out, &err) < 0) {
        if (err.code == PROTO_OK)
            proto_error_set(&err, PROTO_INTERNAL, "out of memory");
        op->out.len = 0;
        op->status = status_of(err.code);
        if (encode_proto_error(&op->out, op->req.rid, &err) < 0)
            op->status = 500;
    }
    log_info_kv(LOG_FIELDS(LOG_STR("op", msg_op_name(op->req.op)),
                           LOG_STR("queue", op->req.queue.ptr), LOG_INT("status", op->status)),
                "http: admin %s %s: %d", msg_op_name(op->req.op), op->req.queue.ptr, op->status);
    /* The bridge queues without blocking; only memory can stop it. */
    while (evbridge_call(a->env->bridge, op_answer, op) < 0)
        go_sleep(10, NULL);
    atomic_fetch_sub(&a->inflight, 1); /* the last touch of a */
}

/* http_admin_fn: checks what the loop can check, then starts the op. */
static void
admin_run(void *arg, struct http_call *call, const char *name, const char *queue, const char *token)
{
    struct http_admin *a = arg;
    if (tokens_required(a->env->tokens) &&
        !(token && tokens_accept(a->env->tokens, span_str(token)))) {
        answer_now(call, PROTO_UNAUTHORIZED, "token: send \"Authorization: Bearer TOKEN\"");
        return;
    }
    if (conn_env_stopping(a->env)) {
        answer_now(call, PROTO_SHUTTING_DOWN, "server is stopping");
        return;
    }
    const struct admin_entry *e = admin_find(name);
    if (!e) {
        answer_now(call, PROTO_UNKNOWN_OP, "admin op: want pause, resume, close or kick");
        return;
    }
    /* Through the protocol's decoder, so a queue name is validated (and
     * reported) exactly as on the wire. */
    json_t *line = queue ? json_pack("{s:s, s:s}", "op", e->name, "queue", queue)
                         : json_pack("{s:s}", "op", e->name);
    char *text = line ? json_dumps(line, JSON_COMPACT) : NULL;
    json_decref(line);
    struct admin_op *op = text ? calloc(1, sizeof *op) : NULL;
    if (!op) {
        free(text);
        answer_now(call, PROTO_INTERNAL, "out of memory");
        return;
    }
    struct proto_error err = {PROTO_OK, ""};
    struct msg_limits lim = conn_env_msg_limits(a->env);
    int rc = msg_decode(text, strlen(text), &lim, &op->req, &err);
    free(text);
    if (rc < 0) {
        answer_now(call, err.code, err.message);
        op_free(op);
        return;
    }
    op->a = a;
    op->call = call;
    op->fn = e->fn;
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
        log_info("http: admin routes on (POST /admin/{pause,resume,close,kick}), token required");
    else
        log_warn("http: admin routes on without a --token-file: whoever reaches the --http "
                 "address can pause, close and kick queues");
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
