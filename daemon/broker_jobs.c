/* The per-job ops: ack, nack (of one job or several), touch, cancel,
 * wait, job. Each checks the request against the state, then commits the
 * record of its transition (daemon/commit.h). See broker.h. */
#include "chanq_config.h"

#include "daemon/commit.h"
#include "daemon/fastrand.h"
#include "daemon/keytable.h"
#include "daemon/queue.h"
#include "daemon/reservation.h"
#include "daemon/run_at.h"

#include "core/chan.h"
#include "core/ctx.h"
#include "core/select.h"
#include "core/timer.h"
#include "proto/encode.h"

#include <stdlib.h>
#include <string.h>

#define BACKOFF_BASE_MS 1000
#define BACKOFF_CAP_MS (3600 * 1000)

struct job *
broker_reserved_by(struct broker *b, const struct span *id, struct holder *h,
                   struct proto_error *err)
{
    struct job *j = broker_lookup(b, id, err);
    if (!j)
        return NULL;
    if (j->state == JOB_CANCELLED) {
        proto_error_set(err, PROTO_CANCELLED, "job %.*s was cancelled", (int)id->len, id->ptr);
        return NULL;
    }
    if (j->state != JOB_RESERVED || j->holder != h) {
        proto_error_set(err, PROTO_NOT_RESERVED, "job %.*s is not reserved by this connection",
                        (int)id->len, id->ptr);
        return NULL;
    }
    return j;
}

/* ---- requests that name several jobs ---- */

void
id_errors_free(struct id_errors *e)
{
    free(e->v);
    free(e->why);
    *e = (struct id_errors){0};
}

/* Records why id failed; room for cap entries is made on the first one
 * (out of memory, the failure goes unreported: the client sees the job
 * still reserved, or finds it with `job`). */
static void
id_errors_add(struct id_errors *e, size_t cap, const struct span *id,
              const struct proto_error *why)
{
    if (!e->v) {
        e->v = malloc(cap * sizeof *e->v);
        e->why = malloc(cap * sizeof *e->why);
        if (!e->v || !e->why) {
            id_errors_free(e);
            return;
        }
        e->cap = cap;
    }
    if (e->n == e->cap)
        return;
    e->why[e->n] = *why;
    e->v[e->n] = (struct proto_id_error){*id, why->code, e->why[e->n].message};
    e->n++;
}

/* ---- ack ---- */

/* Acks j (held by the caller), with result (NULL: none). Lock held. */
static int
ack_one(struct broker *b, struct job *j, const struct span *result, struct durable *w)
{
    struct queue *q = j->queue;
    int64_t ran_ms = timer_now_ms() - j->since_ms;
    if (commit_final(b, j, JREC_DONE, result, w) < 0)
        return -1;
    queue_record_run(q, ran_ms);
    q->count.acked++;
    return 0;
}

size_t
broker_ack_ids(struct broker *b, struct holder *h, const struct span *ids, size_t n,
               struct durable *w, struct id_errors *e)
{
    size_t done = 0;
    for (size_t i = 0; i < n; i++) {
        struct proto_error why = {PROTO_OK, ""};
        struct job *j = broker_reserved_by(b, &ids[i], h, &why);
        if (j && ack_one(b, j, NULL, w) == 0) {
            done++;
            continue;
        }
        if (why.code == PROTO_OK)
            proto_error_set(&why, PROTO_INTERNAL, "the ack could not be recorded");
        id_errors_add(e, n, &ids[i], &why);
    }
    return done;
}

int
broker_op_ack(struct broker *b, struct session *s, const struct request *req, struct buf *out,
              struct proto_error *err)
{
    struct broker_op op;
    op_begin(&op, b, s, req, out, err);
    size_t mark = out->len;
    if (req->nids) {
        struct id_errors e = {0};
        size_t n = broker_ack_ids(b, s->holder, req->ids, req->nids, &op.w, &e);
        int rc = encode_ok_count(out, req->rid, "acked", (int64_t)n, e.v, e.n);
        rc = op_end_durable(&op, rc, mark);
        id_errors_free(&e);
        return rc;
    }
    struct job *j = broker_reserved_by(b, &req->id, s->holder, err);
    if (!j || ack_one(b, j, &req->result, &op.w) < 0)
        return op_end(&op, -1);
    return op_end_durable(&op, encode_ok(out, req->rid), mark);
}

/* ---- nack ---- */

static int64_t
backoff_ms(unsigned attempt)
{
    int64_t base = BACKOFF_BASE_MS;
    for (unsigned i = 1; i < attempt && base < BACKOFF_CAP_MS; i++)
        base *= 2;
    if (base > BACKOFF_CAP_MS)
        base = BACKOFF_CAP_MS;
    /* Jitter in [base/2, base]: retries of a burst spread out. */
    return base / 2 + (int64_t)fast_rand_below((uint64_t)(base / 2 + 1));
}

/* Nacks j (held by the caller) as req says; error is req's text as a
 * C string (NULL: none). Lock held. */
static int
nack_one(struct broker *b, struct job *j, const struct request *req, const char *error,
         struct durable *w)
{
    int64_t delay = req->has_delay_ms ? req->delay_ms : backoff_ms(j->attempt);
    if (req->has_run_at) /* checked by broker_op_nack */
        delay = req->run_at > clock_wall_ms() ? req->run_at - clock_wall_ms() : 0;
    if (reservation_retry(b, j, delay, req->dead, error, w) < 0)
        return -1;
    j->queue->count.nacked++;
    return 0;
}

/* The nack of several ids: each that h holds, the others reported. */
static int
nack_ids(struct broker_op *op, const char *error)
{
    const struct request *req = op->req;
    struct id_errors e = {0};
    size_t done = 0;
    for (size_t i = 0; i < req->nids; i++) {
        struct proto_error why = {PROTO_OK, ""};
        struct job *j = broker_reserved_by(op->b, &req->ids[i], op->s->holder, &why);
        if (j && nack_one(op->b, j, req, error, &op->w) == 0) {
            done++;
            continue;
        }
        if (why.code == PROTO_OK)
            proto_error_set(&why, PROTO_INTERNAL, "the nack could not be recorded");
        id_errors_add(&e, req->nids, &req->ids[i], &why);
    }
    size_t mark = op->out->len;
    int rc = encode_ok_count(op->out, req->rid, "nacked", (int64_t)done, e.v, e.n);
    rc = op_end_durable(op, rc, mark);
    id_errors_free(&e);
    return rc;
}

int
broker_op_nack(struct broker *b, struct session *s, const struct request *req, struct buf *out,
               struct proto_error *err)
{
    int64_t run_at_delay_ms;
    if (req->has_run_at && run_at_delay(req->run_at, clock_wall_ms(), &run_at_delay_ms, err) < 0)
        return -1;
    char *error = req->error.len ? strndup(req->error.ptr, req->error.len) : NULL;
    if (req->error.len && !error) {
        proto_error_set(err, PROTO_INTERNAL, "out of memory");
        return -1;
    }
    struct broker_op op;
    op_begin(&op, b, s, req, out, err);
    int rc;
    if (req->nids) {
        rc = nack_ids(&op, error);
    } else {
        struct job *j = broker_reserved_by(b, &req->id, s->holder, err);
        if (!j || nack_one(b, j, req, error, &op.w) < 0) {
            rc = op_end(&op, -1);
        } else {
            size_t mark = out->len;
            rc = encode_ok_str(out, req->rid, "state", span_str(job_state_name(j->state)));
            rc = op_end_durable(&op, rc, mark);
        }
    }
    free(error);
    return rc;
}

int
broker_op_touch(struct broker *b, struct session *s, const struct request *req, struct buf *out,
                struct proto_error *err)
{
    struct broker_op op;
    op_begin(&op, b, s, req, out, err);
    struct job *j = broker_reserved_by(b, &req->id, s->holder, err);
    if (!j)
        return op_end(&op, -1);
    /* Not a transition: the ttr is the holder's, not durable state. */
    reservation_touch(j, req->has_ttr_ms ? req->ttr_ms : j->ttr_ms);
    return op_end(&op, encode_ok(out, req->rid));
}

/* j and its descendants, each with a reference, depth first (a chain
 * deeper than CANCEL_MAX_DEPTH is cut, as documented). Collected before
 * any is cancelled: cancelling may push a job of the tree out of the kept
 * results, which unlinks its children while a walk would be on them. */
#define CANCEL_MAX_DEPTH 1000

struct tree_walk {
    struct job **v;
    size_t n, cap;
};

static int
walk_add(struct tree_walk *w, struct job *j)
{
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 16;
        struct job **v = realloc(w->v, cap * sizeof *v);
        if (!v)
            return -1;
        w->v = v;
        w->cap = cap;
    }
    job_ref(j);
    w->v[w->n++] = j;
    return 0;
}

static int
collect_tree(struct job *j, int depth, struct tree_walk *w)
{
    if (walk_add(w, j) < 0)
        return -1;
    if (depth >= CANCEL_MAX_DEPTH || !j->extra)
        return 0;
    for (struct job *c = j->extra->first_child; c; c = c->extra->next_sibling)
        if (collect_tree(c, depth + 1, w) < 0)
            return -1;
    return 0;
}

/* Cancels the live jobs of the walk; returns how many changed. */
static int64_t
cancel_walk(struct broker *b, struct tree_walk *w, struct durable *d)
{
    int64_t n = 0;
    for (size_t i = 0; i < w->n; i++) {
        struct job *j = w->v[i];
        if (job_state_is_final(j->state))
            continue;
        if (j->state == JOB_RESERVED)
            holder_send_cancel(j);
        struct queue *q = j->queue;
        if (commit_final(b, j, JREC_CANCELLED, NULL, d) == 0) {
            q->count.cancelled++;
            n++;
        }
    }
    return n;
}

int
broker_op_cancel(struct broker *b, struct session *s, const struct request *req,
                 struct buf *out, struct proto_error *err)
{
    struct broker_op op;
    op_begin(&op, b, s, req, out, err);
    struct job *j = broker_lookup(b, &req->id, err);
    if (!j)
        return op_end(&op, -1);
    struct tree_walk w = {NULL, 0, 0};
    int rc = collect_tree(j, 0, &w);
    int64_t n = rc == 0 ? cancel_walk(b, &w, &op.w) : 0;
    for (size_t i = 0; i < w.n; i++)
        job_unref(w.v[i]);
    free(w.v);
    if (rc < 0) {
        proto_error_set(err, PROTO_INTERNAL, "out of memory walking the job's tree");
        return op_end(&op, -1);
    }
    size_t mark = out->len;
    return op_end_durable(&op, encode_ok_int(out, req->rid, "cancelled", n), mark);
}

static int
encode_final(const struct request *req, struct job *j, struct buf *out)
{
    /* done always carries result and dead error (null without one), as
     * docs/protocol.md lists them. */
    const struct job_extra *x = j->extra;
    struct span result = {NULL, 0}, error = {NULL, 0};
    if (j->state == JOB_DONE)
        result = x && x->result ? span_str(x->result) : encode_null();
    if (j->state == JOB_DEAD)
        error = x && x->error ? span_str(x->error) : encode_null();
    return encode_wait(out, req->rid, span_str(job_state_name(j->state)), result, error);
}

/* After a parked wait for j ended (r: chan_select's result). Lock held. */
static int
wait_outcome(struct broker_op *op, struct job *j, int r)
{
    const struct request *req = op->req;
    if (j->deleted) { /* an operator deleted it */
        proto_error_set(op->err, PROTO_NOT_FOUND, "job %.*s was deleted", (int)req->id.len,
                        req->id.ptr);
        return -1;
    }
    if (r == 0 && job_state_is_final(j->state))
        return encode_final(req, j, op->out);
    if (ctx_err(op->b->root) != 0)
        /* Like every other parked request on a stop (see broker_op_fetch). */
        proto_error_set(op->err, PROTO_SHUTTING_DOWN, "server is stopping");
    else if (ctx_err(op->s->ctx) != 0)
        proto_error_set(op->err, PROTO_TIMEOUT, "the connection is closing");
    else
        proto_error_set(op->err, PROTO_TIMEOUT, "job %.*s did not finish in time (%s)",
                        (int)req->id.len, req->id.ptr, job_state_name(j->state));
    return -1;
}

int
broker_op_wait(struct broker *b, struct session *s, const struct request *req, struct buf *out,
               struct proto_error *err)
{
    struct broker_op op;
    op_begin(&op, b, s, req, out, err);
    struct job *j = broker_lookup(b, &req->id, err);
    if (!j)
        return op_end(&op, -1);
    if (job_state_is_final(j->state))
        return op_end(&op, encode_final(req, j, out));
    int64_t timeout = req->has_timeout_ms ? req->timeout_ms : -1;
    struct job_extra *x = job_extra(j);
    if (!x || (!x->done && !(x->done = chan_new(0, 0))))
        return op_end(&op, -1);
    if (timeout == 0) {
        proto_error_set(err, PROTO_TIMEOUT, "job %.*s is %s", (int)req->id.len, req->id.ptr,
                        job_state_name(j->state));
        return op_end(&op, -1);
    }
    struct chan *done = x->done;
    chan_ref(done);
    job_ref(j);
    pthread_mutex_unlock(&b->lock);
    session_before_park(s);
    struct chan_case c = {done, CHAN_RECV, NULL, false};
    int r = chan_select(&c, 1, s->ctx, timeout);
    chan_unref(done);
    pthread_mutex_lock(&b->lock);
    int rc = op_end(&op, wait_outcome(&op, j, r));
    job_unref(j);
    return rc;
}

/* v, or JSON null when v is NULL (no value, or it could not be built). */
static json_t *
or_null(json_t *v)
{
    return v ? v : json_null();
}

/* The job answer: every field docs/protocol.md lists is present, null when
 * the job has no value for it, so clients need not tell absent from null. */
static json_t *
job_json(const struct job *j)
{
    char idbuf[24], parentbuf[24];
    job_id_format(j->id, idbuf);
    json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I}", "id", idbuf, "queue",
                          j->queue->name, "state", job_state_name(j->state), "attempt",
                          (json_int_t)j->attempt, "max_attempts", (json_int_t)j->max_attempts,
                          "ttr_ms", (json_int_t)j->ttr_ms, "created", (json_int_t)j->created_ms);
    if (!o)
        return NULL;
    const struct job_extra *x = j->extra;
    const char *result = x ? x->result : NULL;
    json_object_set_new(o, "deadline", j->deadline_ms ? json_integer(j->deadline_ms) : json_null());
    if (x && x->parent)
        job_id_format(x->parent->id, parentbuf);
    json_object_set_new(o, "parent", x && x->parent ? json_string(parentbuf) : json_null());
    json_object_set_new(o, "priority", json_integer(j->priority));
    json_object_set_new(o, "key", x && x->key ? json_stringn(x->key->key, x->key->len)
                                              : json_null());
    json_object_set_new(o, "traceparent",
                        x && x->traceparent ? json_string(x->traceparent) : json_null());
    json_object_set_new(o, "error", x && x->error ? json_string(x->error) : json_null());
    json_object_set_new(o, "result",
                        or_null(result ? json_loads(result, JSON_DECODE_ANY, NULL) : NULL));
    json_object_set_new(
        o, "payload",
        or_null(j->payload ? json_loadb(j->payload, j->payload_len, JSON_DECODE_ANY, NULL) : NULL));
    return o;
}

int
broker_op_job(struct broker *b, struct session *s, const struct request *req, struct buf *out,
              struct proto_error *err)
{
    struct broker_op op;
    op_begin(&op, b, s, req, out, err);
    struct job *j = broker_lookup(b, &req->id, err);
    if (!j)
        return op_end(&op, -1);
    json_t *o = json_pack("{s:o}", "job", job_json(j));
    int rc = o ? encode_ok_fields(out, req->rid, o) : -1;
    json_decref(o);
    return op_end(&op, rc);
}
