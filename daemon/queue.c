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
    q->name = strndup(name, name_len);
    q->name_len = name_len;
    q->set = *set;
    q->closing = chan_new(0, 0);
    q->drained = chan_new(0, 0);
    q->changed = chan_new(0, 0);
    if (!q->name || !q->closing || !q->drained || !q->changed ||
        (b->serving && queue_start(q) < 0)) {
        queue_free(q);
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

void
queue_free(struct queue *q)
{
    if (!q)
        return;
    struct job *j;
    while (q->jobs && chan_try_recv(q->jobs, &j) == 0)
        job_unref(j);
    unref_chan(q->jobs);
    unref_chan(q->closing);
    unref_chan(q->drained);
    unref_chan(q->changed);
    free(q->name);
    free(q);
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

void
queue_send_begin(struct queue *q, struct job *j)
{
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
            q->tombstones++; /* it left QUEUED while it was on its way in */
    } else if (!sent) {
        j->in_channel = CHAN_OUT;
    }
    queue_check_drained(q);
}

struct requeue {
    struct queue *q;
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
        if (go(requeue_fn, r) == 0)
            return;
        free(r);
    }
    /* No memory for a goroutine: the job stays QUEUED outside the channel;
     * a restart is the way back. Say so loudly. */
    log_error("out of memory requeueing job %llu: it waits for a restart",
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
        q->tombstones++; /* its pointer stays in the channel until a fetch skips it */
    }
    queue_check_drained(q);
}

bool
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
