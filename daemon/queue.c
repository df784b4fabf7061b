/* Queue construction, the dead list and the stats document. */
#include "chanq_config.h"

#include "daemon/queue.h"
#include "daemon/job.h"

#include "core/chan.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct queue *
queue_new(const char *name, size_t name_len, const struct queue_settings *set)
{
    struct queue *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->name = strndup(name, name_len);
    q->name_len = name_len;
    q->set = *set;
    q->jobs = chan_new(sizeof(struct job *), (size_t)set->capacity);
    q->closing = chan_new(0, 0);
    q->drained = chan_new(0, 0);
    q->changed = chan_new(0, 0);
    if (!q->name || !q->jobs || !q->closing || !q->drained || !q->changed) {
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
    unref_chan(q->jobs);
    unref_chan(q->closing);
    unref_chan(q->drained);
    unref_chan(q->changed);
    free(q->name);
    free(q);
}

size_t
queue_depth(const struct queue *q)
{
    size_t len = chan_len(q->jobs);
    return len > q->tombstones ? len - q->tombstones : 0;
}

void
queue_dead_push(struct queue *q, struct job *j)
{
    j->dead_next = NULL;
    if (q->dead_tail)
        q->dead_tail->dead_next = j;
    else
        q->dead_head = j;
    q->dead_tail = j;
    q->dead++;
}

struct job *
queue_dead_pop(struct queue *q)
{
    struct job *j = q->dead_head;
    if (!j)
        return NULL;
    q->dead_head = j->dead_next;
    if (!q->dead_head)
        q->dead_tail = NULL;
    j->dead_next = NULL;
    q->dead--;
    return j;
}

void
queue_dead_remove(struct queue *q, struct job *j)
{
    struct job **pp = &q->dead_head;
    struct job *prev = NULL;
    while (*pp && *pp != j) {
        prev = *pp;
        pp = &(*pp)->dead_next;
    }
    if (!*pp)
        return;
    *pp = j->dead_next;
    if (q->dead_tail == j)
        q->dead_tail = prev;
    j->dead_next = NULL;
    q->dead--;
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

json_t *
queue_stats_json(const struct queue *q)
{
    const struct queue_counters *c = &q->count;
    json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:b, "
                     "s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
                     "capacity", (json_int_t)q->set.capacity, "ttr_ms", (json_int_t)q->set.ttr_ms,
                     "max_attempts", (json_int_t)q->set.max_attempts, "depth",
                     (json_int_t)queue_depth(q), "reserved", (json_int_t)q->reserved, "delayed",
                     (json_int_t)q->delayed, "dead", (json_int_t)q->dead, "waiting_submitters",
                     (json_int_t)q->waiting_submitters, "paused", q->paused, "closed", q->closed,
                     "waiting_fetchers", (json_int_t)q->waiting_fetchers, "submitted",
                     (json_int_t)c->submitted, "delivered", (json_int_t)c->delivered, "acked",
                     (json_int_t)c->acked, "nacked", (json_int_t)c->nacked, "expired",
                     (json_int_t)c->expired, "cancelled", (json_int_t)c->cancelled,
                     "rejected_full", (json_int_t)c->rejected_full);
    if (o)
        json_object_set_new(o, "blocked_ms", json_integer((json_int_t)c->blocked_ms));
    return o;
}
