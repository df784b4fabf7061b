/* Queues: construction and the placement of queued jobs (see queue.h). */
#include "chanq_config.h"

#include "daemon/queue.h"

#include "daemon/broker-internal.h"
#include "daemon/log.h"

#include "core/chan.h"
#include "core/go.h"
#include "core/timer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct queue *
queue_new(struct broker *b, const char *name, size_t name_len, const struct queue_settings *set)
{
    struct queue *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->broker = b;
    atomic_init(&q->refs, 1); /* the registry's */
    atomic_fetch_add_explicit(&b->queues_allocated, 1, memory_order_relaxed);
    q->name = strndup(name, name_len);
    q->name_len = name_len;
    q->set = *set;
    q->closing = chan_new(0, 0);
    q->drained = chan_new(0, 0);
    q->changed = chan_new(0, 0);
    if (!q->name || !q->closing || !q->drained || !q->changed || queue_limits_init(q) < 0 ||
        (b->serving && queue_start(q) < 0)) {
        queue_unref(q);
        return NULL;
    }
    return q;
}

static void
unref_chan(struct chan *c)
{
    if (c)
        chan_unref(c);
}

/* The last reference went: nothing reaches q any more (any thread). */
static void
queue_free(struct queue *q)
{
    struct job *j;
    while (q->jobs && chan_try_recv(q->jobs, &j) == 0)
        job_unref(j);
    unref_chan(q->jobs);
    unref_chan(q->closing);
    unref_chan(q->drained);
    unref_chan(q->changed);
    queue_limits_free(q);
    free(q->lanes);
    free(q->name);
    atomic_fetch_sub_explicit(&q->broker->queues_allocated, 1, memory_order_relaxed);
    free(q);
}

void
queue_ref(struct queue *q)
{
    atomic_fetch_add_explicit(&q->refs, 1, memory_order_relaxed);
}

void
queue_unref(struct queue *q)
{
    /* acq_rel: whoever frees sees every write made under the lock by the
     * holders that let go before it. */
    if (atomic_fetch_sub_explicit(&q->refs, 1, memory_order_acq_rel) == 1)
        queue_free(q);
}

void
queue_retire(struct queue *q)
{
    struct job *j;
    while (q->jobs && chan_try_recv(q->jobs, &j) == 0)
        job_unref(j);
    queue_limits_stop(q);
    queue_unref(q);
}

int
queue_configure(struct queue *q, const struct queue_settings *set)
{
    /* A live channel changes its capacity in place: growing lets parked
     * submitters in at once, shrinking keeps the jobs it holds. */
    if (q->jobs && set->capacity != q->set.capacity &&
        chan_set_cap(q->jobs, (size_t)set->capacity) < 0)
        return -1;
    q->set.capacity = set->capacity;
    q->set.ttr_ms = set->ttr_ms;
    q->set.max_attempts = set->max_attempts;
    if (q->set.concurrency != set->concurrency || q->set.rate != set->rate ||
        q->set.rate_per_ms != set->rate_per_ms || q->set.burst != set->burst) {
        q->set.concurrency = set->concurrency;
        q->set.rate = set->rate;
        q->set.rate_per_ms = set->rate_per_ms;
        q->set.burst = set->burst;
        if (queue_limits_init(q) < 0)
            log_error("queue %s: out of memory setting its limits: starved deliveries "
                      "wait for the next change", q->name);
    }
    return 0;
}

int
queue_start(struct queue *q)
{
    if (q->jobs)
        return 0;
    q->jobs = chan_new(sizeof(struct job *), (size_t)q->set.capacity);
    return q->jobs ? 0 : -ENOMEM;
}

struct job *
queue_standby_pop(struct queue *q)
{
    struct job *j = q->standby.head;
    if (j) {
        job_list_remove(&q->standby, j);
        j->in_channel = CHAN_OUT;
    }
    return j;
}

size_t
queue_depth(const struct queue *q)
{
    size_t len = q->jobs ? chan_len(q->jobs) : 0;
    len += q->standby.n;
    return len > q->tombstones ? len - q->tombstones : 0;
}

void
queue_check_drained(struct queue *q)
{
    if (q->closed && !q->drained_sent && q->inflight_sends == 0 && queue_depth(q) == 0 &&
        q->jobs && chan_len(q->jobs) == 0) {
        q->drained_sent = true;
        chan_close(q->drained);
    }
}

static bool
is_job(const void *elem, void *arg)
{
    return *(struct job *const *)elem == arg;
}

/* Priority mode: the channel holds tickets, any of which stands for the
 * best job of the lanes; one whose job is still on its way in (its sender
 * has not seen it arrive) must stay, queue_take counts on it. */
struct spare {
    bool taken;
    struct job *ticket;
};

static bool
take_spare_ticket(const void *elem, void *arg)
{
    struct job *t = *(struct job *const *)elem;
    struct spare *s = arg;
    if (s->taken || t->in_channel == CHAN_SENDING)
        return false;
    s->taken = true;
    s->ticket = t;
    return true;
}

/* A job left QUEUED in priority mode: out of its lane, and one ticket out
 * of the channel with it (a tombstone ticket when none can go now: a
 * fetch holds the last ones). */
static void
leave_lanes(struct queue *q, struct job *j, bool in_lane)
{
    if (in_lane)
        job_list_remove(&q->lanes[j->priority], j);
    j->in_channel = CHAN_OUT;
    struct spare s = {0};
    if (chan_remove_each(q->jobs, take_spare_ticket, &s) == 1)
        job_unref(s.ticket); /* the ticket's reference */
    else
        q->tombstones++;
}

/* A job that left QUEUED while its pointer is in the channel: the pointer
 * is taken out, so that it holds no slot of the capacity (a submit would
 * be refused with room left, a closed queue would never drain). When a
 * fetch has just received it and not yet reached queue_took, it is not
 * there any more: it counts as a tombstone until queue_took. */
static void
leave_channel(struct queue *q, struct job *j, bool in_lane)
{
    if (q->lanes) {
        leave_lanes(q, j, in_lane);
        return;
    }
    if (chan_remove_each(q->jobs, is_job, j) == 1) {
        j->in_channel = CHAN_OUT;
        job_unref(j); /* the channel's reference */
    } else {
        q->tombstones++;
    }
}

/* ---- priority mode ---- */

static bool queue_took(struct queue *q, struct job *j);

static bool
lane_existing(const void *elem, void *arg)
{
    struct job *j = *(struct job *const *)elem;
    struct queue *q = arg;
    if (j->state == JOB_QUEUED && j->in_channel == CHAN_IN)
        job_list_append(&q->lanes[j->priority], j);
    return true;
}

/* The first job with a priority comes to q: from now on the channel holds
 * tickets (queue_take). The jobs already in it (each there once: without
 * priorities an entry is its job) join their lanes in channel order. */
static void
lanes_start(struct queue *q)
{
    q->lanes = calloc(JOB_PRIORITY_LEVELS, sizeof *q->lanes);
    if (!q->lanes) {
        log_error("queue %s: out of memory for priorities: it delivers in submit order",
                  q->name);
        return;
    }
    chan_peek_each(q->jobs, lane_existing, q);
}

struct job *
queue_take(struct queue *q, struct job *x)
{
    if (!q->lanes) {
        if (queue_took(q, x))
            return x;
        job_unref(x);
        return NULL;
    }
    bool flying = x->in_channel == CHAN_SENDING; /* its sender has not seen it arrive */
    if (flying && x->state != JOB_QUEUED) {
        x->in_channel = CHAN_OUT; /* as queue_took: its sender counts no tombstone */
        job_unref(x);
        return NULL;
    }
    struct job *best = NULL;
    for (int l = JOB_MAX_PRIORITY; l >= 0 && !best; l--)
        best = q->lanes[l].head;
    if (flying && (!best || best->priority < x->priority)) {
        x->in_channel = CHAN_OUT;
        return x;
    }
    if (flying) {
        /* An older or higher job goes first, so x arrives now: it joins
         * its lane (its sender, seeing it no longer on its way, leaves it
         * there), and the ticket best leaves behind stands for it. It is
         * recorded as landed here first, as its sender would: its lane
         * is this queue's. */
        broker_landed_in(q->broker, q, x);
        x->in_channel = CHAN_IN;
        job_list_append(&q->lanes[x->priority], x);
    }
    if (!best) { /* a tombstone's ticket */
        if (q->tombstones)
            q->tombstones--;
        job_unref(x);
        return NULL;
    }
    job_list_remove(&q->lanes[best->priority], best);
    best->in_channel = CHAN_OUT;
    if (best != x) { /* x's ticket was best's; best's own stays for another job */
        job_ref(best);
        job_unref(x);
    }
    return best;
}

void
queue_send_begin(struct queue *q, struct job *j)
{
    if (j->priority && !q->lanes && q->jobs)
        lanes_start(q);
    j->in_channel = CHAN_SENDING;
    q->inflight_sends++;
}

void
queue_send_finished(struct queue *q, struct job *j, bool sent)
{
    q->inflight_sends--;
    if (sent && j->in_channel == CHAN_SENDING) {
        j->in_channel = CHAN_IN;
        if (j->state != JOB_QUEUED)
            leave_channel(q, j, false); /* it left QUEUED while it was on its way in */
        else if (q->lanes)
            job_list_append(&q->lanes[j->priority], j);
    } else if (!sent) {
        j->in_channel = CHAN_OUT;
    }
    queue_check_drained(q);
}

struct requeue {
    struct queue *q; /* a reference of the goroutine's */
    struct job *j; /* carries the channel's reference */
};

static void
requeue_fn(void *arg)
{
    struct requeue *r = arg;
    struct queue *q = r->q;
    struct job *j = r->j;
    struct broker *b = q->broker;
    free(r);
    int rc = chan_send(q->jobs, &j, b->root);
    pthread_mutex_lock(&b->lock);
    queue_send_finished(q, j, rc == 0);
    pthread_mutex_unlock(&b->lock);
    if (rc != 0)
        job_unref(j); /* shutting down: the job stays where it is */
    queue_unref(q); /* the goroutine's */
}

void
queue_place(struct queue *q, struct job *j)
{
    j->since_ms = timer_now_ms();
    if (!q->jobs) {
        j->in_channel = CHAN_STANDBY;
        job_list_append(&q->standby, j);
        return;
    }
    job_ref(j); /* the channel's reference */
    queue_send_begin(q, j);
    if (chan_try_send(q->jobs, &j) == 0) {
        queue_send_finished(q, j, true);
        return;
    }
    struct requeue *r = malloc(sizeof *r);
    if (r) {
        r->q = q;
        r->j = j;
        queue_ref(q); /* the goroutine's, until its send ended */
        if (go(requeue_fn, r) == 0)
            return;
        queue_unref(q);
        free(r);
    }
    /* No memory for a goroutine: the job stays QUEUED outside the channel;
     * a restart is the way back. Say so loudly. */
    log_error_kv(LOG_FIELDS(LOG_UINT("job", j->id), LOG_STR("queue", q->name)),
                 "out of memory requeueing job %llu: it waits for a restart",
                 (unsigned long long)j->id);
    queue_send_finished(q, j, false);
    job_unref(j);
}

void
queue_unplace(struct queue *q, struct job *j)
{
    if (j->in_channel == CHAN_STANDBY) {
        job_list_remove(&q->standby, j);
        j->in_channel = CHAN_OUT;
    } else if (j->in_channel == CHAN_IN) {
        leave_channel(q, j, true);
    }
    queue_check_drained(q);
}

/* Without priorities: j, taken out of q's channel, is deliverable (QUEUED);
 * otherwise its tombstone is gone. */
static bool
queue_took(struct queue *q, struct job *j)
{
    if (j->in_channel == CHAN_IN && j->state != JOB_QUEUED)
        q->tombstones--;
    j->in_channel = CHAN_OUT;
    return j->state == JOB_QUEUED;
}

int
queue_signal_change(struct queue *q)
{
    struct chan *fresh = chan_new(0, 0);
    if (!fresh)
        return -ENOMEM;
    struct chan *old = q->changed;
    q->changed = fresh;
    chan_close(old);
    chan_unref(old);
    return 0;
}
