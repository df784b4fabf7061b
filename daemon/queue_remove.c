/* Deleting jobs and queues for the operator ops (the state machine's part
 * of REMOVE records: see broker-internal.h). Every job leaves through
 * job_deleted, so the lifecycle keeps its counts, lists and indexes. */
#include "chanq_config.h"

#include "daemon/broker-internal.h"
#include "daemon/queue.h"

#include "core/chan.h"

#include <string.h>

size_t
broker_purge(struct broker *b, struct queue *q, enum jobindex_kind k)
{
    (void)b;
    size_t n = 0;
    while (q->ix[k].root) {
        job_deleted(q->ix[k].root);
        n++;
    }
    if (q->jobs)
        queue_check_drained(q);
    return n;
}

size_t
broker_queue_jobs(const struct queue *q)
{
    size_t n = 0;
    for (int k = 0; k < JOBINDEX_N; k++)
        n += q->ix[k].n;
    return n;
}

/* The deleted queue's channel: the pointers left in it are tombstones
 * now. Taking them out lets parked requeuers finish their sends; then the
 * buffer goes (holders may keep the queue a while, its buffer need not). */
static void
empty_channel(struct queue *q)
{
    struct job *j;
    while (chan_try_recv(q->jobs, &j) == 0) {
        struct job *left = queue_take(q, j); /* takes j's reference */
        if (left)
            job_unref(left);
    }
    chan_set_cap(q->jobs, 0);
}

static void
unlist(struct broker *b, struct queue *q)
{
    for (size_t i = 0; i < b->nqueues; i++) {
        if (b->queues[i] != q)
            continue;
        memmove(&b->queues[i], &b->queues[i + 1], (b->nqueues - i - 1) * sizeof *b->queues);
        b->nqueues--;
        break;
    }
    q->deleted = true;
    queue_retire(q); /* the registry's reference: freed now, or by its last holder */
}

size_t
broker_delete_queue(struct broker *b, struct queue *q)
{
    /* Closed first: purging the queued jobs makes room, which would let
     * a parked submitter's job in instead of telling it `closed`. */
    if (!q->closed) {
        q->closed = true;
        chan_close(q->closing); /* parked submitters answer `closed` */
    }
    size_t n = 0;
    for (int k = 0; k < JOBINDEX_N; k++)
        n += broker_purge(b, q, (enum jobindex_kind)k);
    q->paused = false;
    queue_signal_change(q); /* parked fetchers and consumers re-plan: it is drained */
    if (q->jobs) {
        empty_channel(q);
        queue_check_drained(q);
    }
    unlist(b, q);
    return n;
}
