/* The fetch op: a select across queues for the first ready jobs, each
 * reserved for the asking connection (daemon/deliver.h), after the acks it
 * carries; and release. See broker.h. */
#include "chanq_config.h"

#include "daemon/commit.h"
#include "daemon/deliver.h"
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
    struct pick pick;
    struct job **got; /* reserved so far; each carries the channel's reference */
    size_t n, max;
};

static int
encode_fetched(struct broker_op *op, const struct fetch *f, size_t n, const struct id_errors *e)
{
    struct proto_job pj[n ? n : 1];
    char ids[n ? n : 1][24];
    for (size_t i = 0; i < n; i++)
        pj[i] = deliver_describe(f->got[i], ids[i]);
    return encode_jobs_acked(op->out, op->req->rid, pj, n, e->v, e->n);
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
        f->n = deliver_take(op->b, &f->pick, h, f->got, f->max, SIZE_MAX);
        if (f->n > 0)
            return 0;
        if (deliver_all_drained(&f->pick)) {
            proto_error_set(op->err, PROTO_CLOSED, "queue '%s' is closed and drained",
                            f->pick.qs[0]->name);
            return -1;
        }
        int64_t left = until ? until - timer_now_ms() : timeout;
        if (timeout == 0 || (until && left <= 0))
            return 0;
        struct job *j = NULL;
        struct queue *from = NULL;
        int k = deliver_park(op->b, &f->pick, op->s, NULL, op->s->ctx, left, &j, &from);
        if (k == 0) {
            j = deliver_reserve(op->b, from, j, h);
            queue_unref(from); /* deliver_park's; the pick holds it too */
            if (!j)
                continue;
            f->got[0] = j;
            f->n = 1 + deliver_take(op->b, &f->pick, h, f->got + 1, f->max - 1, SIZE_MAX);
            return 0;
        }
        if (k == -ETIMEDOUT && ctx_err(op->s->ctx) == 0)
            return 0;
        if (k != -EAGAIN)
            return fetch_fail(op, k);
    }
}

/* The jobs of a fetch whose connection is closing: nobody will read the
 * answer, so they were never delivered and must not lose an attempt
 * (10,000 fetchers closed at once made a job dead after three such
 * "deliveries"). */
static void
fetch_give_back(struct broker *b, struct fetch *f)
{
    for (size_t i = 0; i < f->n; i++)
        deliver_give_back(b, f->got[i], NULL);
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
    f.pick.strict = req->strict;
    struct id_errors acked = {0};
    struct broker_op op;
    op_begin(&op, b, s, req, out, err);
    /* The acks it carries come first: the jobs they free may be the ones
     * this fetch gets, and they stand whatever the fetch finds. */
    if (req->nids)
        broker_ack_ids(b, s->holder, req->ids, req->nids, &op.w, &acked);
    int rc = broker_resolve_queues(b, req, f.pick.qs, &f.pick.nq, err);
    if (rc == 0)
        rc = fetch_gather(&op, &f);
    bool closing = ctx_err(s->ctx) != 0;
    if (rc == 0 && f.n > 0 && closing)
        fetch_give_back(b, &f);
    size_t mark = out->len;
    if (rc == 0 && encode_fetched(&op, &f, closing ? 0 : f.n, &acked) < 0) {
        if (!closing)
            fetch_give_back(b, &f);
        proto_error_set(err, PROTO_INTERNAL, "out of memory encoding the answer");
        rc = -1;
    }
    /* With acks the answer stands only once they are durable (a journal
     * failure answers an error and the jobs fetched stay reserved until
     * their ttr runs out or the connection closes). */
    rc = op_end_durable(&op, rc, mark);
    broker_release_queues(f.pick.qs, f.pick.nq);
    id_errors_free(&acked);
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
    struct job *j = broker_reserved_by(b, &req->id, s->holder, err);
    if (!j || deliver_give_back(b, j, &op.w) < 0)
        return op_end(&op, -1);
    size_t mark = out->len;
    return op_end_durable(&op, encode_ok(out, req->rid), mark);
}
