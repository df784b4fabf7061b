/* The consume op: streaming delivery with credit. A connection subscribes
 * to queues with a prefetch (how many unacked jobs it may hold); a
 * goroutine of its own (the pusher) then delivers jobs to it as `jobs`
 * events, as fast as they come and as long as the connection holds fewer
 * than prefetch jobs. Each delivery is a RESERVE record, exactly as a
 * fetch's (daemon/deliver.h); each job that leaves the connection (ack,
 * nack, release, ttr, cancel) gives its credit back. A worker that stops
 * reading gets no more than its credit, and nothing while its unsent
 * output is over its share of the memory budget.
 *
 * Ownership: the pusher goroutine owns its struct consumer and frees it
 * when it ends. The holder points at it while it is attached; either side
 * detaches (the pusher when it ends on its own; cancel_consume, the
 * connection going away or the server stopping through consume_stop),
 * always under the broker lock, and the pusher touches the holder only
 * under the lock while attached. So nothing is pushed to a holder once
 * consume_stop returned. */
#include "chanq_config.h"

#include "daemon/commit.h"
#include "daemon/deliver.h"
#include "daemon/queue.h"

#include "core/chan.h"
#include "core/ctx.h"
#include "core/go.h"
#include "core/select.h"
#include "proto/encode.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* One event carries at most this many jobs, and stops growing once their
 * payloads pass PUSH_MAX_BYTES (one job always fits): a long line would
 * hold back the others behind it and make clients buffer it whole. */
#define PUSH_MAX_JOBS 64
#define PUSH_MAX_BYTES (64u << 10)

struct consumer {
    struct broker *b;
    struct holder *h;               /* the connection; NULL once detached (lock) */
    struct pick pick;               /* the queues it takes from, held (lock) */
    size_t prefetch;                /* pushes wait while h holds this many jobs (lock) */
    bool want_credit;               /* the pusher waits for a job to leave h (lock) */
    struct chan *wake;              /* cap 1: credit came back, or the settings changed */
    struct ctx *ctx;                /* a child of the connection's; cancelled on detach */
    struct buf line;                /* the event being encoded (the pusher, lock) */
    struct job *got[PUSH_MAX_JOBS]; /* the jobs of that event */
};

static void
consumer_free(struct consumer *c)
{
    broker_release_queues(c->pick.qs, c->pick.nq);
    if (c->wake)
        chan_unref(c->wake);
    if (c->ctx)
        ctx_release(c->ctx);
    buf_clear(&c->line);
    free(c);
}

/* Detaches c from its holder (lock held). */
static void
detach(struct consumer *c)
{
    if (c->h) {
        c->h->consumer = NULL;
        c->h = NULL;
    }
    ctx_cancel(c->ctx);
}

static void
wake(struct consumer *c)
{
    char one = 1;
    (void)chan_try_send(c->wake, &one); /* full: a wake is pending already */
}

void
consume_credit_back(struct holder *h)
{
    struct consumer *c = h->consumer;
    if (c && c->want_credit) {
        c->want_credit = false;
        wake(c);
    }
}

void
consume_stop(struct holder *h)
{
    if (h->consumer)
        detach(h->consumer);
}

/* Sends the jobs in c->got[0..n) as one event and drops the channel's
 * references they carry. Jobs that cannot be encoded were never
 * delivered: they go back with their attempt uncounted. */
static void
push(struct consumer *c, size_t n)
{
    struct proto_job pj[PUSH_MAX_JOBS];
    char ids[PUSH_MAX_JOBS][24];
    for (size_t i = 0; i < n; i++)
        pj[i] = deliver_describe(c->got[i], ids[i]);
    buf_reset(&c->line);
    if (encode_event_jobs(&c->line, pj, n) == 0) {
        c->h->send_event(c->h, c->line.data, c->line.len);
    } else {
        for (size_t i = 0; i < n; i++)
            deliver_give_back(c->b, c->got[i], NULL);
    }
    for (size_t i = 0; i < n; i++)
        job_unref(c->got[i]);
    if (c->line.cap > 4 * PUSH_MAX_BYTES)
        buf_clear(&c->line); /* one huge payload does not pin its buffer */
}

/* Tells the client the server ended its consume, and detaches. */
static void
end_with(struct consumer *c, const char *reason)
{
    buf_reset(&c->line);
    if (encode_event_consume_end(&c->line, reason) == 0)
        c->h->send_event(c->h, c->line.data, c->line.len);
    detach(c);
}

/* The pusher's context is done: detached, the connection closing, or the
 * server stopping (then the client is told). -1: the pusher ends. */
static int
ended(struct consumer *c)
{
    if (c->h && ctx_err(c->b->root) != 0)
        end_with(c, "shutting_down");
    return -1;
}

/* Parks until the wake channel or room (may be NULL) is ready; lock
 * released meanwhile. 0, or -1 when the pusher ends. */
static int
wait_for(struct consumer *c, struct chan *room)
{
    struct broker *b = c->b;
    c->want_credit = room == NULL;
    struct chan_case cases[2] = {
        {c->wake, CHAN_RECV, NULL, false},
        {room, CHAN_RECV, NULL, false},
    };
    pthread_mutex_unlock(&b->lock);
    int r = chan_select(cases, 2, c->ctx, -1);
    pthread_mutex_lock(&b->lock);
    c->want_credit = false;
    return r < 0 ? ended(c) : 0;
}

/* How many more jobs h may hold (lock held, attached). */
static size_t
credit_left(const struct consumer *c)
{
    size_t held = c->h->reserved.n;
    return held < c->prefetch ? c->prefetch - held : 0;
}

/* True while q is one of the queues c takes from. */
static bool
subscribed(const struct consumer *c, const struct queue *q)
{
    for (size_t i = 0; i < c->pick.nq; i++)
        if (c->pick.qs[i] == q)
            return true;
    return false;
}

/* The park handed over j from q. It is pushed, with whatever else is
 * ready, unless the consume ended, was moved to other queues, or its room
 * was taken meanwhile (a fetch on the connection, a lower prefetch): then
 * it goes back to its queue. */
static int
got_one(struct consumer *c, struct queue *q, struct job *j)
{
    if (!c->h || ctx_err(c->ctx) != 0 || credit_left(c) == 0 || !subscribed(c, q)) {
        deliver_put_back(q, j);
        return c->h && ctx_err(c->ctx) == 0 ? 0 : ended(c);
    }
    if (!(j = deliver_reserve(c->b, q, j, c->h)))
        return 0;
    c->got[0] = j;
    size_t n = 1, more = credit_left(c);
    if (more > PUSH_MAX_JOBS - 1)
        more = PUSH_MAX_JOBS - 1;
    if (more && j->payload_len < PUSH_MAX_BYTES)
        n += deliver_take(c->b, &c->pick, c->h, c->got + 1, more, PUSH_MAX_BYTES - j->payload_len);
    push(c, n);
    return 0;
}

/* One step of the pusher: push what is ready within the credit, or wait
 * for credit, for output room or for a job. Lock held. 0, or -1 when the
 * pusher ends. */
static int
step(struct consumer *c)
{
    size_t credit = credit_left(c);
    if (credit == 0)
        return wait_for(c, NULL);
    struct chan *room = c->h->output_room ? c->h->output_room(c->h) : NULL;
    if (room) {
        int rc = wait_for(c, room);
        chan_unref(room);
        return rc;
    }
    size_t n = deliver_take(c->b, &c->pick, c->h, c->got,
                            credit < PUSH_MAX_JOBS ? credit : PUSH_MAX_JOBS, PUSH_MAX_BYTES);
    if (n > 0) {
        push(c, n);
        return 0;
    }
    if (deliver_all_drained(&c->pick)) {
        end_with(c, "closed");
        return -1;
    }
    struct job *j = NULL;
    struct queue *from = NULL;
    int k = deliver_park(c->b, &c->pick, NULL, c->wake, c->ctx, -1, &j, &from);
    if (k == 0) {
        int rc = got_one(c, from, j);
        queue_unref(from); /* deliver_park's: c->pick may have let go of it */
        return rc;
    }
    return k == -EAGAIN ? 0 : ended(c);
}

/* The pusher goroutine. */
static void
consume_run(void *arg)
{
    struct consumer *c = arg;
    struct broker *b = c->b;
    pthread_mutex_lock(&b->lock);
    while (c->h && step(c) == 0)
        ;
    detach(c);
    pthread_mutex_unlock(&b->lock);
    consumer_free(c);
}

/* A consume for s's connection, attached and running; NULL when out of
 * memory. Lock held. */
static struct consumer *
consumer_start(struct broker *b, struct session *s)
{
    struct consumer *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->b = b;
    c->prefetch = 1;
    buf_init(&c->line);
    c->wake = chan_new(1, 1);
    c->ctx = ctx_with_cancel(s->ctx);
    if (!c->wake || !c->ctx || go(consume_run, c) < 0) {
        consumer_free(c);
        return NULL;
    }
    /* The pusher waits for the lock the caller holds: attach before it runs. */
    c->h = s->holder;
    s->holder->consumer = c;
    return c;
}

int
broker_op_consume(struct broker *b, struct session *s, const struct request *req, struct buf *out,
                  struct proto_error *err)
{
    struct pick pick = {.strict = req->strict};
    struct broker_op op;
    op_begin(&op, b, s, req, out, err);
    struct consumer *c = s->holder->consumer;
    if (!c && !req->nqueues) {
        proto_error_set(err, PROTO_BAD_REQUEST,
                        "field 'queues': missing (the connection does not consume yet)");
        return op_end(&op, -1);
    }
    if (req->nqueues && broker_resolve_queues(b, req, pick.qs, &pick.nq, err) < 0)
        return op_end(&op, -1);
    if (!c && !(c = consumer_start(b, s))) {
        broker_release_queues(pick.qs, pick.nq);
        proto_error_set(err, PROTO_INTERNAL, "out of memory starting a consume");
        return op_end(&op, -1);
    }
    if (req->nqueues) {
        broker_release_queues(c->pick.qs, c->pick.nq); /* the old ones (none when new) */
        c->pick = pick;
    }
    if (req->has_prefetch)
        c->prefetch = (size_t)req->prefetch;
    wake(c); /* the pusher re-plans with the new settings */
    return op_end(&op, encode_ok(out, req->rid));
}

int
broker_op_cancel_consume(struct broker *b, struct session *s, const struct request *req,
                         struct buf *out, struct proto_error *err)
{
    struct broker_op op;
    op_begin(&op, b, s, req, out, err);
    consume_stop(s->holder);
    return op_end(&op, encode_ok(out, req->rid));
}
