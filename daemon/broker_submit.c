/* The submit op: a new job is recorded (its SUBMIT record applied and
 * journaled), then put into one of its queues (a send-side select in
 * random order), parking for room up to wait_ms; a job that finds no room
 * is taken back (DROP). See broker.h. */
#include "chanq_config.h"

#include "daemon/commit.h"
#include "daemon/keytable.h"
#include "daemon/queue.h"
#include "daemon/reservation.h"
#include "daemon/run_at.h"

#include "core/chan.h"
#include "core/select.h"
#include "core/timer.h"
#include "proto/encode.h"

#include <errno.h>
#include <string.h>

/* A submit's plan: the open queues it may go to, in the order tried. */
struct submit {
    struct queue *qs[MSG_MAX_QUEUES];   /* the plan (borrowed from held) */
    size_t nq;
    struct queue *held[MSG_MAX_QUEUES]; /* every queue named, a reference each: the
                                         * plan drops closed ones, which the answer
                                         * and the park may still read */
    size_t nheld;
    struct job *parent; /* borrowed; NULL for none */
    struct job *job;    /* the new job (a reference of ours) */
};

/* Checks what a submit needs before any job exists. Lock held. */
static int
submit_precheck(struct broker_op *op, struct submit *sub)
{
    struct broker *b = op->b;
    const struct request *req = op->req;
    if (broker_resolve_queues(b, req, sub->held, &sub->nheld, op->err) < 0)
        return -1;
    memcpy(sub->qs, sub->held, sub->nheld * sizeof *sub->qs);
    sub->nq = sub->nheld;
    size_t open = 0;
    for (size_t i = 0; i < sub->nq; i++)
        if (!sub->qs[i]->closed)
            sub->qs[open++] = sub->qs[i];
    if (open == 0) {
        proto_error_set(op->err, PROTO_CLOSED, "queue '%s' is closed", sub->qs[0]->name);
        return -1;
    }
    sub->nq = open;
    if (req->parent.len) {
        sub->parent = broker_lookup(b, &req->parent, op->err);
        if (!sub->parent)
            return -1;
        if (sub->parent->state == JOB_CANCELLED || sub->parent->state == JOB_EXPIRED) {
            proto_error_set(op->err, PROTO_CANCELLED, "parent job %.*s is %s",
                            (int)req->parent.len, req->parent.ptr,
                            job_state_name(sub->parent->state));
            return -1;
        }
    }
    /* One budget with the connections' buffers (daemon/membudget.h), less
     * this request's own line: its payload takes the line's place. */
    size_t used = membudget_used(&b->mem);
    used -= used < op->s->line_bytes ? used : op->s->line_bytes;
    if (used + req->payload.len > b->cfg.max_payload_bytes) {
        proto_error_set(op->err, PROTO_LIMIT, "memory budget of %zu bytes is used up",
                        b->cfg.max_payload_bytes);
        return -1;
    }
    return 0;
}

/* Commits the SUBMIT record (naming the first queue to try): the job
 * exists from here on, the submit op places it. Lock held. */
static int
submit_record(struct broker_op *op, struct submit *sub)
{
    struct broker *b = op->b;
    const struct request *req = op->req;
    struct queue *q = sub->qs[0]; /* the first listed: the job's defaults */
    int64_t now = clock_wall_ms();
    int64_t delay_ms = req->has_delay_ms ? req->delay_ms : 0;
    if (req->has_run_at && run_at_delay(req->run_at, now, &delay_ms, op->err) < 0)
        return -1; /* run_at: an absolute delay */
    bool delayed = delay_ms > 0;
    struct jrec r = {.type = JREC_SUBMIT};
    r.u.submit = (struct jrec_submit){
        .id = b->next_id,
        .queue = q->name,
        .queue_len = q->name_len,
        .payload = req->payload.ptr,
        .payload_len = req->payload.len,
        .ttr_ms = req->has_ttr_ms ? req->ttr_ms : q->set.ttr_ms,
        .max_attempts = (uint32_t)(req->has_max_attempts ? req->max_attempts : q->set.max_attempts),
        .created_ms = now,
        .deadline_ms = req->has_deadline_ms ? now + req->deadline_ms : 0,
        .due_ms = delayed ? now + delay_ms : 0,
        .parent_id = sub->parent ? sub->parent->id : 0,
        .key = req->key.ptr,
        .key_len = req->key.len,
        .priority = req->has_priority ? (uint32_t)req->priority : 0,
        .traceparent = req->traceparent.ptr,
        .traceparent_len = req->traceparent.len,
    };
    if (!delayed && sub->nq > 1) {
        /* A send-side select tries its queues in random order; the record
         * names the first it will try (a MOVE follows if another wins). A
         * delayed job waits in the first listed queue. */
        broker_shuffle(sub->qs, sub->nq);
        r.u.submit.queue = sub->qs[0]->name;
        r.u.submit.queue_len = sub->qs[0]->name_len;
    }
    struct apply_how how = {.caller_places = true};
    if (commit(b, &r, &how, &op->w) < 0) {
        proto_error_set(op->err, PROTO_LIMIT, "out of memory for a new job");
        return -1;
    }
    sub->job = jobtable_get(b->jobs, r.u.submit.id);
    job_ref(sub->job);
    if (op->w.rc == 0)
        return 0;
    /* Its record could not even be queued: the job never existed. */
    commit_drop(b, sub->job, NULL);
    durable_finish(&op->w, op->err);
    return -1;
}

/* j landed in q, not the queue its record names: recorded, unless someone
 * (its fetcher) already did. Lock held. */
static void
landed_in(struct broker *b, struct queue *q, struct job *j)
{
    if (j->state != JOB_QUEUED || j->queue == q)
        return;
    struct jrec r = {.type = JREC_MOVE};
    r.u.move = (struct jrec_move){.id = j->id, .queue = q->name, .queue_len = q->name_len};
    commit(b, &r, NULL, NULL);
}

void
broker_landed_in(struct broker *b, struct queue *q, struct job *j)
{
    landed_in(b, q, j);
}

/* A submit's job is in q's channel: queued from now on (its age in
 * `oldest_age_ms` counts from here; before, its producer was waiting),
 * unless a fetcher that took it straight away already reserved it. */
static void
submitted_into(struct broker *b, struct queue *q, struct job *j)
{
    if (j->state == JOB_QUEUED)
        j->since_ms = timer_now_ms();
    landed_in(b, q, j);
}

/* Tries to put j into one of the queues now, in order. Lock held. */
static bool
submit_try_now(struct broker *b, struct submit *sub)
{
    struct job *j = sub->job;
    for (size_t i = 0; i < sub->nq; i++) {
        struct queue *q = sub->qs[i];
        job_ref(j); /* the channel's reference */
        queue_send_begin(q, j);
        if (chan_try_send(q->jobs, &j) == 0) {
            submitted_into(b, q, j);
            queue_send_finished(q, j, true);
            return true;
        }
        queue_send_finished(q, j, false);
        job_unref(j);
    }
    return false;
}

/* Parks until one of the queues has room (or closes, or time runs out).
 * Called with the lock held; returns with it held. 0 once j is sent. */
static int
submit_wait(struct broker_op *op, struct submit *sub, int64_t wait_ms)
{
    struct broker *b = op->b;
    struct job *j = sub->job;
    int64_t start = timer_now_ms();
    int64_t until = start + wait_ms;
    job_ref(j); /* the channel's reference, whichever queue takes it */
    for (;;) {
        struct chan_case cases[2 * MSG_MAX_QUEUES];
        for (size_t i = 0; i < sub->nq; i++) {
            queue_send_begin(sub->qs[i], j);
            sub->qs[i]->waiting_submitters++;
            cases[2 * i] = (struct chan_case){sub->qs[i]->jobs, CHAN_SEND, &j, false};
            cases[2 * i + 1] = (struct chan_case){sub->qs[i]->closing, CHAN_RECV, NULL, false};
        }
        pthread_mutex_unlock(&b->lock);
        session_before_park(op->s);
        int64_t left = until - timer_now_ms();
        int r = left > 0 ? chan_select(cases, 2 * sub->nq, op->s->ctx, left) : -ETIMEDOUT;
        pthread_mutex_lock(&b->lock);
        int64_t waited = timer_now_ms() - start;
        int sent_to = r >= 0 && r % 2 == 0 ? r / 2 : -1;
        size_t kept = 0;
        for (size_t i = 0; i < sub->nq; i++) {
            struct queue *q = sub->qs[i];
            q->waiting_submitters--;
            q->count.blocked_ms += (uint64_t)waited;
            if ((int)i == sent_to) {
                submitted_into(b, q, j);
                queue_send_finished(q, j, true);
                continue;
            }
            q->inflight_sends--;
            queue_check_drained(q);
            if (!q->closed)
                sub->qs[kept++] = q;
        }
        if (sent_to >= 0)
            return 0;
        if (r < 0 || kept == 0) {
            if (j->in_channel == CHAN_SENDING)
                j->in_channel = CHAN_OUT;
            job_unref(j);
            return r < 0 ? r : -EPIPE;
        }
        sub->nq = kept; /* a queue closed under us: go on with the others */
    }
}

static void
submit_failed(struct broker_op *op, struct submit *sub, int rc, struct durable *dw)
{
    struct queue *q = sub->qs[0];
    if (rc == -ETIMEDOUT || rc == -EAGAIN) {
        for (size_t i = 0; i < sub->nq; i++)
            sub->qs[i]->count.rejected_full++;
        if (q->set.capacity == 0)
            proto_error_set(op->err, PROTO_TIMEOUT, "no consumer took the job from '%s' in time",
                            q->name);
        else
            proto_error_set(op->err, PROTO_QUEUE_FULL, "queue '%s' is at capacity %lld",
                            q->name, (long long)q->set.capacity);
    } else if (rc == -EPIPE) {
        proto_error_set(op->err, PROTO_CLOSED, "queue '%s' is closed", q->name);
    } else {
        proto_error_set(op->err, PROTO_SHUTTING_DOWN, "the wait was cancelled");
    }
    /* A job cancelled or expired while it waited is final and kept as such;
     * any other never existed for the client. */
    if (!job_state_is_final(sub->job->state))
        commit_drop(op->b, sub->job, dw);
}

static int
submit_place(struct broker_op *op, struct submit *sub, struct durable *dw)
{
    struct job *j = sub->job;
    if (j->state != JOB_QUEUED)
        return 0; /* delayed; or cancelled with its parent while it was recorded */
    if (submit_try_now(op->b, sub))
        return 0;
    const struct request *req = op->req;
    int64_t wait_ms = req->has_wait_ms ? req->wait_ms : op->b->cfg.submit_wait_ms;
    int rc = wait_ms > 0 ? submit_wait(op, sub, wait_ms) : -EAGAIN;
    if (rc < 0) {
        submit_failed(op, sub, rc, dw);
        return -1;
    }
    return 0;
}

/* answer_done_fn of a deferred submit answer: the job, if its record did
 * not reach the disk, is taken back. Takes over a job reference. */
static void
submit_durable_done(void *arg, int rc)
{
    struct job *j = arg;
    if (rc < 0) {
        struct broker *b = job_broker(j);
        pthread_mutex_lock(&b->lock);
        if (!job_state_is_final(j->state)) {
            if (j->state == JOB_RESERVED)
                holder_send_cancel(j);
            j->queue->count.submitted--;
            commit_drop(b, j, NULL);
        }
        pthread_mutex_unlock(&b->lock);
    }
    job_unref(j);
}

/* Waits until the submit record is durable (or hands that wait over to
 * the connection's answers). If it is not durable, the answer from `mark`
 * on is dropped and the job taken back from wherever it got meanwhile.
 * Lock not held. Takes over our job reference. */
static int
submit_settle(struct broker_op *op, struct job *j, size_t mark)
{
    if (durable_defer(op, mark, submit_durable_done, j) == 0)
        return 0;
    int rc = durable_finish(&op->w, op->err);
    if (rc < 0)
        op->out->len = mark;
    submit_durable_done(j, rc);
    return rc < 0 ? -1 : 0;
}

static int
submit_ok(struct broker_op *op, struct job *j)
{
    char idbuf[24];
    struct span qname = {NULL, 0};
    if (op->req->nqueues > 0) {
        qname.ptr = j->queue->name;
        qname.len = j->queue->name_len;
    }
    j->queue->count.submitted++;
    return encode_ok_id(op->out, op->req->rid, broker_id_span(j->id, idbuf), qname);
}

/* A submit whose key is bound: the answer names the job that holds it,
 * and nothing else happens. Ends op. */
static int
submit_duplicate(struct broker_op *op, const struct key_entry *e)
{
    char idbuf[24];
    struct span id = broker_id_span(e->id, idbuf);
    json_t *fields = json_pack("{s:s%, s:b}", "id", id.ptr, id.len, "duplicate", 1);
    int rc = fields ? encode_ok_fields(op->out, op->req->rid, fields) : -1;
    json_decref(fields);
    return op_end(op, rc);
}

int
broker_op_submit(struct broker *b, struct session *s, const struct request *req, struct buf *out,
                 struct proto_error *err)
{
    struct broker_op op;
    struct submit sub = {.nq = 0};
    struct durable dw; /* a DROP record's */
    durable_init(&dw);
    op_begin(&op, b, s, req, out, err);
    /* The key is looked up and bound (by the SUBMIT record) under one hold
     * of the lock: of two submits with one key, exactly one makes a job. */
    const struct key_entry *dup = req->key.len ? broker_key_find(b, req->key.ptr, req->key.len)
                                               : NULL;
    if (dup)
        return submit_duplicate(&op, dup);
    if (submit_precheck(&op, &sub) < 0 || submit_record(&op, &sub) < 0) {
        if (sub.job)
            job_unref(sub.job);
        broker_release_queues(sub.held, sub.nheld);
        return op_end(&op, -1);
    }
    int placed = submit_place(&op, &sub, &dw);
    broker_release_queues(sub.held, sub.nheld); /* the job holds its own queue */
    if (placed < 0) {
        op_end(&op, -1);
        durable_finish(&op.w, NULL); /* the submit record, then */
        durable_finish(&dw, NULL);   /* the drop record */
        job_unref(sub.job);
        return -1;
    }
    size_t mark = out->len;
    int rc = submit_ok(&op, sub.job);
    pthread_mutex_unlock(&b->lock);
    if (rc < 0) {
        out->len = mark;
        submit_settle(&op, sub.job, mark);
        proto_error_set(err, PROTO_INTERNAL, "out of memory encoding the answer");
        return -1;
    }
    return submit_settle(&op, sub.job, mark);
}
