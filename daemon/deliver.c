/* Delivery: ready jobs out of a set of queues, reserved for a holder (see
 * deliver.h). */
#include "chanq_config.h"

#include "daemon/deliver.h"

#include "daemon/commit.h"
#include "daemon/queue.h"

#include "core/chan.h"
#include "core/select.h"

#include <errno.h>
#include <string.h>

struct job *
deliver_reserve(struct broker *b, struct queue *q, struct job *x, struct holder *h)
{
    struct job *j = queue_take(q, x);
    if (!j)
        return NULL;
    broker_landed_in(b, q, j);
    struct jrec r = {.type = JREC_RESERVE};
    r.u.reserve = (struct jrec_reserve){.id = j->id, .attempt = j->attempt + 1u};
    struct apply_how how = {.holder = h};
    if (commit(b, &r, &how, NULL) < 0) {
        queue_place(q, j); /* refused (logged): it stays queued */
        job_unref(j);
        return NULL;
    }
    q->count.delivered++;
    if (queue_limited(q))
        queue_spent(q);
    return j;
}

void
deliver_put_back(struct queue *q, struct job *x)
{
    struct job *j = queue_take(q, x);
    if (j) {
        broker_landed_in(q->broker, q, j);
        queue_place(j->queue, j); /* takes a reference of its own */
        job_unref(j);
    }
    queue_room_freed(q); /* the slot it would have taken */
}

int
deliver_give_back(struct broker *b, struct job *j, struct durable *w)
{
    uint32_t attempt = j->attempt > 0 ? j->attempt - 1u : 0;
    return commit_state(b, j, (struct jrec_state){.state = JREC_QUEUED, .attempt = attempt}, w);
}

size_t
deliver_take(struct broker *b, struct pick *p, struct holder *h, struct job **got, size_t max,
             size_t max_bytes)
{
    memcpy(p->order, p->qs, p->nq * sizeof *p->qs);
    if (!p->strict)
        broker_shuffle(p->order, p->nq);
    size_t n = 0, bytes = 0;
    for (size_t i = 0; i < p->nq && n < max && bytes < max_bytes; i++) {
        struct queue *q = p->order[i];
        if (q->paused)
            continue;
        /* Room under the queue's limits; the unlimited queue's path pays
         * two comparisons. */
        size_t room = queue_limited(q) ? queue_room(q) : SIZE_MAX;
        struct job *j;
        while (n < max && bytes < max_bytes && room > 0 && chan_try_recv(q->jobs, &j) == 0) {
            if ((j = deliver_reserve(b, q, j, h)) != NULL) {
                got[n++] = j;
                bytes += j->payload_len;
                room--;
            }
        }
        queue_check_drained(q);
    }
    return n;
}

/* How a parked delivery stands with a queue's limits. */
enum limit_wait {
    LIMIT_NONE,    /* the queue has none: receive */
    LIMIT_ARMED,   /* room for one more: receive, counted in q->armed */
    LIMIT_STARVED, /* no room: wait on the gate, counted in q->starved */
};

static enum limit_wait
limit_plan(struct queue *q)
{
    if (!queue_limited(q))
        return LIMIT_NONE;
    if (queue_room(q) > 0) {
        q->armed++;
        return LIMIT_ARMED;
    }
    q->starved++;
    queue_starving(q);
    return LIMIT_STARVED;
}

/* The park is over; got: this queue handed over the job (its slot is
 * taken by the reservation that follows under the same lock). */
static void
limit_unplan(struct queue *q, enum limit_wait w, bool got)
{
    if (w == LIMIT_ARMED) {
        q->armed--;
        if (!got)
            queue_room_freed(q);
    } else if (w == LIMIT_STARVED) {
        q->starved--;
    }
}

bool
deliver_all_drained(struct pick *p)
{
    for (size_t i = 0; i < p->nq; i++) {
        queue_check_drained(p->qs[i]);
        if (!p->qs[i]->drained_sent)
            return false;
    }
    return true;
}

int
deliver_park(struct broker *b, const struct pick *p, struct session *s, struct chan *extra,
             struct ctx *ctx, int64_t timeout_ms, struct job **j, struct queue **from)
{
    /* The queues as they are now: p may be changed (a consume told to take
     * from others) while the lock is released. */
    struct queue *qs[MSG_MAX_QUEUES];
    struct chan *changed[MSG_MAX_QUEUES];
    enum limit_wait lw[MSG_MAX_QUEUES];
    struct chan_case cases[4 * MSG_MAX_QUEUES + 1];
    size_t nq = p->nq;
    for (size_t i = 0; i < nq; i++) {
        struct queue *q = qs[i] = p->qs[i];
        queue_ref(q); /* p's may go while we wait (a consume told to take from others) */
        changed[i] = q->changed;
        chan_ref(changed[i]); /* pause/resume replaces it while we wait */
        q->waiting_fetchers++;
        lw[i] = q->paused ? LIMIT_NONE : limit_plan(q);
        bool take = !q->paused && lw[i] != LIMIT_STARVED;
        cases[4 * i] = (struct chan_case){take ? q->jobs : NULL, CHAN_RECV, j, false};
        cases[4 * i + 1] = (struct chan_case){changed[i], CHAN_RECV, NULL, false};
        /* Once drained, `drained` stays ready: waiting on it would wake
         * this park at once, again and again (a fetch that lists a deleted
         * queue and another one spun so, starving the other goroutines). */
        bool drained_news = q->closed && !q->drained_sent;
        cases[4 * i + 2] =
            (struct chan_case){drained_news ? q->drained : NULL, CHAN_RECV, NULL, false};
        cases[4 * i + 3] = (struct chan_case){lw[i] == LIMIT_STARVED ? q->gate : NULL,
                                              CHAN_RECV, NULL, false};
    }
    cases[4 * nq] = (struct chan_case){extra, CHAN_RECV, NULL, false};
    pthread_mutex_unlock(&b->lock);
    if (s)
        session_before_park(s);
    int r = chan_select(cases, 4 * nq + 1, ctx, timeout_ms);
    pthread_mutex_lock(&b->lock);
    bool got = r >= 0 && (size_t)r < 4 * nq && r % 4 == 0;
    for (size_t i = 0; i < nq; i++) {
        qs[i]->waiting_fetchers--;
        chan_unref(changed[i]);
        limit_unplan(qs[i], lw[i], got && (size_t)r == 4 * i);
        if (!got || (size_t)r != 4 * i)
            queue_unref(qs[i]);
    }
    if (r < 0)
        return r;
    if (!got)
        return -EAGAIN;
    *from = qs[r / 4]; /* the caller's reference now */
    return 0;
}

struct proto_job
deliver_describe(const struct job *j, char *idbuf)
{
    return (struct proto_job){
        .id = broker_id_span(j->id, idbuf),
        .queue = {j->queue->name, j->queue->name_len},
        .payload = {j->payload, j->payload_len},
        .attempt = j->attempt,
        .ttr_ms = j->ttr_ms,
        .deadline = j->deadline_ms,
        .traceparent = span_str(job_traceparent(j)),
    };
}
