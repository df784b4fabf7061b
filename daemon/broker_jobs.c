/* The broker's per-job ops: ack, nack, release, touch, cancel, wait, job; the
 * delay, ttr and deadline timers; reservations given back on disconnect. */
#include "chanq_config.h"

#include "daemon/broker-internal.h"

#include "core/chan.h"
#include "core/ctx.h"
#include "core/select.h"
#include "core/timer.h"
#include "proto/encode.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_BASE_MS 1000
#define BACKOFF_CAP_MS (3600 * 1000)

/* ---- timers ---- */

static void job_timer_fired(void *arg);

void
broker_arm_timer(struct job *j, int64_t delay_ms)
{
    if (!j->timer) {
        j->timer = timer_new(job_timer_fired, j);
        if (!j->timer)
            return; /* out of memory: ttr/delay not enforced for this job */
    } else if (timer_stop(j->timer)) {
        timer_reset(j->timer, delay_ms); /* keeps the armed timer's reference */
        return;
    }
    job_ref(j); /* the armed timer's reference, dropped when it fires */
    timer_reset(j->timer, delay_ms);
}

void
broker_stop_timer(struct job *j)
{
    if (j->timer && timer_stop(j->timer))
        job_unref(j);
}

static void
deadline_fired(void *arg);

void
broker_arm_deadline(struct job *j, int64_t delay_ms)
{
    struct job_extra *x = j->extra;
    x->deadline_timer = timer_new(deadline_fired, j);
    if (!x->deadline_timer)
        return;
    job_ref(j);
    timer_reset(x->deadline_timer, delay_ms);
}

static void
send_event_revoked(struct job *j, enum revoke_reason why)
{
    struct holder *h = j->holder;
    char idbuf[24];
    struct buf line;
    buf_init(&line);
    if (h && encode_event_revoked(&line, broker_id_span(j->id, idbuf), why) == 0)
        h->send_event(h, line.data, line.len);
    buf_clear(&line);
}

static void
send_event_cancel(struct job *j)
{
    struct holder *h = j->holder;
    char idbuf[24];
    struct buf line;
    buf_init(&line);
    if (h && encode_event_cancel(&line, broker_id_span(j->id, idbuf)) == 0)
        h->send_event(h, line.data, line.len);
    buf_clear(&line);
}

/* A reserved job leaves its reservation for another try (or the dead
 * list), recorded in the journal (w may be NULL: nobody waits). */
static void
retry_or_bury(struct broker *b, struct job *j, int64_t delay_ms, bool bury, struct bj_waits *w)
{
    struct queue *q = j->queue;
    if (bury || j->attempt >= j->max_attempts) {
        j->state = JOB_DEAD;
        queue_dead_push(q, j);
        bj_log_state(b, j, w);
        broker_finalize(b, j, JOB_DEAD);
    } else if (delay_ms > 0) {
        j->state = JOB_DELAYED;
        q->delayed++;
        j->ttr_due = broker_wall_ms() + delay_ms;
        bj_log_state(b, j, w);
        broker_arm_timer(j, delay_ms);
    } else {
        j->state = JOB_QUEUED;
        bj_log_state(b, j, w);
        broker_enqueue(b, j);
    }
}

/* Why a reservation ended without an ack or nack: kept as the job's error
 * (what `job`, a dead job's `wait` and the journal's state record show).
 * Out of memory, the previous text stays. */
static void
set_attempt_error(struct job *j, const char *why)
{
    struct job_extra *x = job_extra(j);
    char *text = x ? strdup(why) : NULL;
    if (!text)
        return;
    free(x->error);
    x->error = text;
}

static void
job_timer_fired(void *arg)
{
    struct job *j = arg;
    struct broker *b = job_broker(j);
    pthread_mutex_lock(&b->lock);
    if (j->state == JOB_DELAYED) {
        j->queue->delayed--;
        broker_enqueue(b, j);
    } else if (j->state == JOB_RESERVED && timer_now_ms() >= j->ttr_due) {
        send_event_revoked(j, REVOKE_TTR);
        j->queue->count.expired++; /* `expired` counts ttr revocations too */
        broker_unreserve(b, j);
        set_attempt_error(j, "ttr expired");
        retry_or_bury(b, j, 0, false, NULL);
    }
    pthread_mutex_unlock(&b->lock);
    job_unref(j);
}

/* Takes a live job out of whatever state it is in, before a final state. */
static void
leave_state(struct broker *b, struct job *j)
{
    struct queue *q = j->queue;
    switch (j->state) {
    case JOB_DELAYED:
        q->delayed--;
        broker_stop_timer(j);
        break;
    case JOB_QUEUED:
        if (j->in_channel == CHAN_IN)
            q->tombstones++; /* its pointer stays in the channel until a fetch skips it */
        broker_check_drained(q);
        break;
    case JOB_RESERVED:
        broker_unreserve(b, j);
        break;
    default:
        break;
    }
}

void
broker_withdraw(struct broker *b, struct job *j)
{
    if (job_state_is_final(j->state))
        return;
    if (j->state == JOB_RESERVED)
        send_event_cancel(j);
    leave_state(b, j);
    j->queue->count.submitted--;
    broker_forget_job(b, j);
}

static void
deadline_fired(void *arg)
{
    struct job *j = arg;
    struct broker *b = job_broker(j);
    pthread_mutex_lock(&b->lock);
    if (!job_state_is_final(j->state)) {
        if (j->state == JOB_RESERVED)
            send_event_revoked(j, REVOKE_DEADLINE);
        leave_state(b, j);
        j->queue->count.expired++;
        broker_finalize(b, j, JOB_EXPIRED);
        bj_log_final(b, j, NULL);
    }
    pthread_mutex_unlock(&b->lock);
    job_unref(j);
}

/* ---- reservations and final states ---- */

void
broker_unreserve(struct broker *b, struct job *j)
{
    struct holder *h = j->holder;
    if (h) {
        if (j->res_prev)
            j->res_prev->res_next = j->res_next;
        else
            h->reserved = j->res_next;
        if (j->res_next)
            j->res_next->res_prev = j->res_prev;
        h->nreserved--;
    }
    j->holder = NULL;
    j->res_prev = j->res_next = NULL;
    j->queue->reserved--;
    broker_stop_timer(j);
}

static void
evict_oldest_finished(struct broker *b)
{
    struct job *old = b->fin_head;
    b->fin_head = old->fin_next;
    if (!b->fin_head)
        b->fin_tail = NULL;
    b->nfinished--;
    broker_untrack(b, old);
    struct job_extra *x = old->extra;
    if (x && x->parent) {
        struct job_extra *px = x->parent->extra;
        for (struct job **pp = &px->first_child; *pp; pp = &(*pp)->extra->next_sibling) {
            if (*pp == old) {
                *pp = x->next_sibling;
                break;
            }
        }
    }
    /* Children keep a reference to a parent, not the other way round: an
     * evicted parent is gone for them too (as it is after a replay of a
     * compacted journal, which no longer holds the parent's records). */
    for (struct job *c = x ? x->first_child : NULL; c;) {
        struct job *next = c->extra->next_sibling;
        c->extra->next_sibling = NULL;
        c->extra->parent = NULL;
        job_unref(old);
        c = next;
    }
    if (x)
        x->first_child = NULL;
    job_unref(old);
}

void
broker_finalize(struct broker *b, struct job *j, enum job_state final)
{
    j->state = (uint8_t)final;
    if (final != JOB_DEAD) {
        broker_payload_freed(b, j->payload_len);
        free(j->payload);
        j->payload = NULL;
        j->payload_len = 0;
        if (j->extra && j->extra->deadline_timer && timer_stop(j->extra->deadline_timer))
            job_unref(j);
        if (final == JOB_DONE)
            b->total_done++;
        else if (final == JOB_CANCELLED)
            b->total_cancelled++;
        else
            b->total_expired++;
        j->fin_next = NULL;
        if (b->fin_tail)
            b->fin_tail->fin_next = j;
        else
            b->fin_head = j;
        b->fin_tail = j;
        if (++b->nfinished > b->cfg.max_finished)
            evict_oldest_finished(b);
    }
    if (j->extra && j->extra->done && !chan_is_closed(j->extra->done))
        chan_close(j->extra->done);
}

/* ---- ops ---- */

/* The job named by req->id if h holds it; else err says why. Lock held. */
static struct job *
reserved_by(struct broker *b, const struct request *req, struct holder *h,
            struct proto_error *err)
{
    struct job *j = broker_lookup(b, &req->id, err);
    if (!j)
        return NULL;
    if (j->state == JOB_CANCELLED) {
        proto_error_set(err, PROTO_CANCELLED, "job %.*s was cancelled", (int)req->id.len,
                        req->id.ptr);
        return NULL;
    }
    if (j->state != JOB_RESERVED || j->holder != h) {
        proto_error_set(err, PROTO_NOT_RESERVED, "job %.*s is not reserved by this connection",
                        (int)req->id.len, req->id.ptr);
        return NULL;
    }
    return j;
}

int
broker_op_ack(struct broker *b, struct session *s, const struct request *req, struct buf *out,
              struct proto_error *err)
{
    pthread_mutex_lock(&b->lock);
    struct job *j = reserved_by(b, req, s->holder, err);
    if (!j)
        return broker_answer(b, -1, err);
    char *result = NULL;
    if (req->result.len && !(result = strndup(req->result.ptr, req->result.len)))
        return broker_answer(b, -1, err);
    struct job_extra *x = result ? job_extra(j) : j->extra;
    if (result && !x) {
        free(result);
        return broker_answer(b, -1, err);
    }
    if (x) {
        free(x->result);
        x->result = result;
    }
    queue_record_run(j->queue, timer_now_ms() - j->since_ms);
    broker_unreserve(b, j);
    j->queue->count.acked++;
    broker_finalize(b, j, JOB_DONE);
    struct bj_waits w;
    bj_waits_init(&w);
    bj_log_final(b, j, &w);
    size_t mark = out->len;
    return broker_answer_durable(b, s, req->rid, encode_ok(out, req->rid), &w, out, mark, err);
}

static int64_t
backoff_ms(unsigned attempt)
{
    int64_t base = BACKOFF_BASE_MS;
    for (unsigned i = 1; i < attempt && base < BACKOFF_CAP_MS; i++)
        base *= 2;
    if (base > BACKOFF_CAP_MS)
        base = BACKOFF_CAP_MS;
    /* Jitter in [base/2, base]: retries of a burst spread out. */
    return base / 2 + (int64_t)((uint64_t)rand() % (uint64_t)(base / 2 + 1));
}

int
broker_op_nack(struct broker *b, struct session *s, const struct request *req, struct buf *out,
               struct proto_error *err)
{
    pthread_mutex_lock(&b->lock);
    struct job *j = reserved_by(b, req, s->holder, err);
    if (!j)
        return broker_answer(b, -1, err);
    if (req->error.len) {
        struct job_extra *x = job_extra(j);
        char *text = strndup(req->error.ptr, req->error.len);
        if (!x || !text) {
            free(text);
            return broker_answer(b, -1, err);
        }
        free(x->error);
        x->error = text;
    }
    broker_unreserve(b, j);
    j->queue->count.nacked++;
    int64_t delay = req->has_delay_ms ? req->delay_ms : backoff_ms(j->attempt);
    struct bj_waits w;
    bj_waits_init(&w);
    retry_or_bury(b, j, delay, req->dead, &w);
    size_t mark = out->len;
    int rc = encode_ok_str(out, req->rid, "state", span_str(job_state_name(j->state)));
    return broker_answer_durable(b, s, req->rid, rc, &w, out, mark, err);
}

/* The holder could not even start on the job: it goes to the tail of its
 * queue as if this delivery had not happened (the attempt fetch counted is
 * taken back; no error, no delay). The STATE record carries the restored
 * attempt, so a replay does not count the delivery either. */
void
broker_give_back_uncounted(struct broker *b, struct job *j, struct bj_waits *w)
{
    broker_unreserve(b, j);
    if (j->attempt > 0)
        j->attempt--;
    j->state = JOB_QUEUED;
    bj_log_state(b, j, w);
    broker_enqueue(b, j);
}

int
broker_op_release(struct broker *b, struct session *s, const struct request *req, struct buf *out,
                  struct proto_error *err)
{
    pthread_mutex_lock(&b->lock);
    struct job *j = reserved_by(b, req, s->holder, err);
    if (!j)
        return broker_answer(b, -1, err);
    struct bj_waits w;
    bj_waits_init(&w);
    broker_give_back_uncounted(b, j, &w);
    size_t mark = out->len;
    return broker_answer_durable(b, s, req->rid, encode_ok(out, req->rid), &w, out, mark, err);
}

int
broker_op_touch(struct broker *b, struct session *s, const struct request *req, struct buf *out,
                struct proto_error *err)
{
    pthread_mutex_lock(&b->lock);
    struct job *j = reserved_by(b, req, s->holder, err);
    if (!j)
        return broker_answer(b, -1, err);
    int64_t ttr = req->has_ttr_ms ? req->ttr_ms : j->ttr_ms;
    j->ttr_due = timer_now_ms() + ttr;
    broker_arm_timer(j, ttr);
    return broker_answer(b, encode_ok(out, req->rid), err);
}

/* Cancels j and its live descendants; returns how many changed. */
static int64_t
cancel_tree(struct broker *b, struct job *j, int depth, struct bj_waits *w)
{
    int64_t n = 0;
    if (!job_state_is_final(j->state)) {
        if (j->state == JOB_RESERVED)
            send_event_cancel(j);
        leave_state(b, j);
        j->queue->count.cancelled++;
        broker_finalize(b, j, JOB_CANCELLED);
        bj_log_final(b, j, w);
        n++;
    }
    /* Bounded recursion: a chain deeper than this is cut (and documented). */
    if (depth < 1000 && j->extra)
        for (struct job *c = j->extra->first_child; c; c = c->extra->next_sibling)
            n += cancel_tree(b, c, depth + 1, w);
    return n;
}

int
broker_op_cancel(struct broker *b, struct session *s, const struct request *req,
                 struct buf *out, struct proto_error *err)
{
    pthread_mutex_lock(&b->lock);
    struct job *j = broker_lookup(b, &req->id, err);
    if (!j)
        return broker_answer(b, -1, err);
    job_ref(j); /* finalizing may evict it from the retention list */
    struct bj_waits w;
    bj_waits_init(&w);
    int64_t n = cancel_tree(b, j, 0, &w);
    job_unref(j);
    size_t mark = out->len;
    return broker_answer_durable(b, s, req->rid, encode_ok_int(out, req->rid, "cancelled", n), &w, out, mark, err);
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

int
broker_op_wait(struct broker *b, struct session *s, const struct request *req, struct buf *out,
               struct proto_error *err)
{
    pthread_mutex_lock(&b->lock);
    struct job *j = broker_lookup(b, &req->id, err);
    if (!j)
        return broker_answer(b, -1, err);
    if (job_state_is_final(j->state))
        return broker_answer(b, encode_final(req, j, out), err);
    int64_t timeout = req->has_timeout_ms ? req->timeout_ms : -1;
    struct job_extra *x = job_extra(j);
    if (!x || (!x->done && !(x->done = chan_new(0, 0))))
        return broker_answer(b, -1, err);
    if (timeout == 0) {
        proto_error_set(err, PROTO_TIMEOUT, "job %.*s is %s", (int)req->id.len, req->id.ptr,
                        job_state_name(j->state));
        return broker_answer(b, -1, err);
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
    int rc;
    if (r == 0 && job_state_is_final(j->state)) {
        rc = encode_final(req, j, out);
    } else if (ctx_err(b->root) != 0) {
        /* Like every other parked request on a stop (see broker_op_fetch). */
        proto_error_set(err, PROTO_SHUTTING_DOWN, "server is stopping");
        rc = -1;
    } else if (ctx_err(s->ctx) != 0) {
        proto_error_set(err, PROTO_TIMEOUT, "the connection is closing");
        rc = -1;
    } else {
        proto_error_set(err, PROTO_TIMEOUT, "job %.*s did not finish in time (%s)",
                        (int)req->id.len, req->id.ptr, job_state_name(j->state));
        rc = -1;
    }
    pthread_mutex_unlock(&b->lock);
    job_unref(j);
    if (rc < 0 && err->code == PROTO_OK)
        proto_error_set(err, PROTO_INTERNAL, "out of memory encoding the answer");
    return rc < 0 ? -1 : 0;
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
    pthread_mutex_lock(&b->lock);
    struct job *j = broker_lookup(b, &req->id, err);
    if (!j)
        return broker_answer(b, -1, err);
    json_t *o = json_pack("{s:o}", "job", job_json(j));
    int rc = o ? encode_ok_fields(out, req->rid, o) : -1;
    json_decref(o);
    return broker_answer(b, rc, err);
}

void
broker_release_holder(struct broker *b, struct holder *h)
{
    pthread_mutex_lock(&b->lock);
    while (h->reserved) {
        struct job *j = h->reserved;
        broker_unreserve(b, j);
        set_attempt_error(j, "connection lost");
        retry_or_bury(b, j, 0, false, NULL);
    }
    pthread_mutex_unlock(&b->lock);
}

bool
broker_holder_busy(struct broker *b, struct holder *h)
{
    pthread_mutex_lock(&b->lock);
    bool busy = h->nreserved > 0;
    pthread_mutex_unlock(&b->lock);
    return busy;
}
