/* The fetch op: a select across queues for the first ready jobs, each
 * reserved for the asking connection (a RESERVE record). See broker.h. */
#include "chanq_config.h"

#include "daemon/commit.h"
#include "daemon/queue.h"

#include "core/chan.h"
#include "core/ctx.h"
#include "core/select.h"
#include "core/timer.h"
#include "proto/encode.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Jobs one fetch returns at most, whatever "count" says. */
#define FETCH_MAX_COUNT 1000

/* One fetch in progress. */
struct fetch {
    struct queue *qs[MSG_MAX_QUEUES];    /* as asked */
    struct queue *order[MSG_MAX_QUEUES]; /* as tried this round */
    size_t nq;
    struct job **got; /* reserved so far; each carries the channel's reference */
    size_t n, max;
};

/* j, just taken out of q's channel, is reserved for h (the attempt
 * counted). False when it is not deliverable (a tombstone). */
static bool
reserve(struct broker *b, struct queue *q, struct job *j, struct holder *h)
{
    if (!queue_took(q, j))
        return false;
    broker_landed_in(b, q, j);
    struct jrec r = {.type = JREC_RESERVE};
    r.u.reserve = (struct jrec_reserve){.id = j->id, .attempt = j->attempt + 1u};
    struct apply_how how = {.holder = h};
    if (commit(b, &r, &how, NULL) < 0) {
        queue_place(q, j); /* refused (logged): it stays queued */
        return false;
    }
    q->count.delivered++;
    return true;
}

/* The holder could not even start on the job: it goes to the tail of its
 * queue as if this delivery had not happened (the attempt fetch counted is
 * taken back; no error, no delay), recorded (w may be NULL). */
static int
give_back_uncounted(struct broker *b, struct job *j, struct durable *w)
{
    uint32_t attempt = j->attempt > 0 ? j->attempt - 1u : 0;
    return commit_state(b, j, (struct jrec_state){.state = JREC_QUEUED, .attempt = attempt}, w);
}

/* Takes up to f->max ready jobs from f->order. Lock held. */
static void
take_ready(struct broker *b, struct fetch *f, struct holder *h)
{
    for (size_t i = 0; i < f->nq && f->n < f->max; i++) {
        struct queue *q = f->order[i];
        if (q->paused)
            continue;
        struct job *j;
        while (f->n < f->max && chan_try_recv(q->jobs, &j) == 0) {
            if (reserve(b, q, j, h))
                f->got[f->n++] = j;
            else
                job_unref(j);
        }
        queue_check_drained(q);
    }
}

static bool
all_closed_and_drained(const struct fetch *f)
{
    for (size_t i = 0; i < f->nq; i++) {
        queue_check_drained(f->qs[i]);
        if (!f->qs[i]->drained_sent)
            return false;
    }
    return true;
}

static int
encode_fetched(struct broker_op *op, const struct fetch *f, size_t n)
{
    struct proto_job pj[n ? n : 1];
    char ids[n ? n : 1][24];
    for (size_t i = 0; i < n; i++) {
        struct job *j = f->got[i];
        pj[i] = (struct proto_job){
            .id = broker_id_span(j->id, ids[i]),
            .queue = {j->queue->name, j->queue->name_len},
            .payload = {j->payload, j->payload_len},
            .attempt = j->attempt,
            .ttr_ms = j->ttr_ms,
            .deadline = j->deadline_ms,
        };
    }
    return encode_jobs(op->out, op->req->rid, pj, n);
}

/* One parked wait for the first ready job. Lock held on entry and exit.
 * Returns the index of the queue that delivered into *j, -EAGAIN when the
 * plan changed (pause, resume, close), or -ETIMEDOUT / -ECANCELED. */
static int
fetch_park(struct broker_op *op, struct fetch *f, int64_t left, struct job **j)
{
    struct chan_case cases[3 * MSG_MAX_QUEUES];
    struct chan *changed[MSG_MAX_QUEUES];
    for (size_t i = 0; i < f->nq; i++) {
        struct queue *q = f->qs[i];
        changed[i] = q->changed;
        chan_ref(changed[i]); /* pause/resume replaces it while we wait */
        q->waiting_fetchers++;
        cases[3 * i] = (struct chan_case){q->paused ? NULL : q->jobs, CHAN_RECV, j, false};
        cases[3 * i + 1] = (struct chan_case){changed[i], CHAN_RECV, NULL, false};
        cases[3 * i + 2] = (struct chan_case){q->closed ? q->drained : NULL, CHAN_RECV, NULL, false};
    }
    pthread_mutex_unlock(&op->b->lock);
    session_before_park(op->s);
    int r = chan_select(cases, 3 * f->nq, op->s->ctx, left);
    pthread_mutex_lock(&op->b->lock);
    for (size_t i = 0; i < f->nq; i++) {
        f->qs[i]->waiting_fetchers--;
        chan_unref(changed[i]);
    }
    if (r < 0)
        return r;
    return r % 3 == 0 ? r / 3 : -EAGAIN;
}

static int
fetch_fail(struct broker_op *op, int rc)
{
    if (ctx_err(op->b->root) != 0)
        proto_error_set(op->err, PROTO_SHUTTING_DOWN, "server is stopping");
    else
        proto_error_set(op->err, PROTO_TIMEOUT, "the connection is closing (%d)", rc);
    return -1;
}

/* Gathers jobs until at least one is reserved, the time is up, or every
 * queue is closed and drained. Lock held. 0, or -1 with err set. */
static int
fetch_gather(struct broker_op *op, struct fetch *f)
{
    const struct request *req = op->req;
    struct holder *h = op->s->holder;
    int64_t timeout = req->has_timeout_ms ? req->timeout_ms : -1;
    int64_t until = timeout > 0 ? timer_now_ms() + timeout : 0;
    for (;;) {
        memcpy(f->order, f->qs, f->nq * sizeof *f->qs);
        if (!req->strict)
            broker_shuffle(f->order, f->nq);
        take_ready(op->b, f, h);
        if (f->n > 0)
            return 0;
        if (all_closed_and_drained(f)) {
            proto_error_set(op->err, PROTO_CLOSED, "queue '%s' is closed and drained",
                            f->qs[0]->name);
            return -1;
        }
        int64_t left = until ? until - timer_now_ms() : timeout;
        if (timeout == 0 || (until && left <= 0))
            return 0;
        struct job *j = NULL;
        int k = fetch_park(op, f, left, &j);
        if (k >= 0) {
            if (!reserve(op->b, f->qs[k], j, h)) {
                job_unref(j);
                continue;
            }
            f->got[f->n++] = j;
            take_ready(op->b, f, h);
            return 0;
        }
        if (k == -ETIMEDOUT && ctx_err(op->s->ctx) == 0)
            return 0;
        if (k != -EAGAIN)
            return fetch_fail(op, k);
    }
}

int
broker_op_fetch(struct broker *b, struct session *s, const struct request *req, struct buf *out,
                struct proto_error *err)
{
    struct fetch f = {.max = req->has_count ? (size_t)req->count : 1};
    if (f.max > FETCH_MAX_COUNT)
        f.max = FETCH_MAX_COUNT;
    f.got = malloc(f.max * sizeof *f.got);
    if (!f.got) {
        proto_error_set(err, PROTO_INTERNAL, "out of memory");
        return -1;
    }
    struct broker_op op;
    op_begin(&op, b, s, req, out, err);
    int rc = broker_resolve_queues(b, req, f.qs, &f.nq, err);
    if (rc == 0)
        rc = fetch_gather(&op, &f);
    bool closing = ctx_err(s->ctx) != 0;
    if (rc == 0 && f.n > 0 && closing) {
        /* The connection is closing: nobody will read this answer, so the
         * jobs were never delivered and must not lose an attempt (10,000
         * fetchers closed at once made a job dead after three such
         * "deliveries"). */
        for (size_t i = 0; i < f.n; i++)
            give_back_uncounted(b, f.got[i], NULL);
    }
    if (rc == 0 && encode_fetched(&op, &f, closing ? 0 : f.n) < 0) {
        proto_error_set(err, PROTO_INTERNAL, "out of memory encoding the answer");
        rc = -1;
    }
    op_end(&op, rc);
    for (size_t i = 0; i < f.n; i++)
        job_unref(f.got[i]); /* the channel's reference; the table keeps the job */
    free(f.got);
    return rc < 0 ? -1 : 0;
}

int
broker_op_release(struct broker *b, struct session *s, const struct request *req, struct buf *out,
                  struct proto_error *err)
{
    struct broker_op op;
    op_begin(&op, b, s, req, out, err);
    struct job *j = broker_reserved_by(b, req, s->holder, err);
    if (!j || give_back_uncounted(b, j, &op.w) < 0)
        return op_end(&op, -1);
    size_t mark = out->len;
    return op_end_durable(&op, encode_ok(out, req->rid), mark);
}
