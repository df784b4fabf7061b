/* A queue's statistics: the run-time histogram, the oldest job's age and
 * the stats document (see queue.h). */
#include "chanq_config.h"

#include "daemon/queue.h"

#include "core/chan.h"
#include "core/timer.h"

/* From a few ms (a quick handler) to half an hour (batch work); ttr is
 * at most 7 days, longer runs land in +Inf. */
const int64_t queue_run_le_ms[QUEUE_RUN_BUCKETS] = {
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 1800000,
};

void
queue_record_run(struct queue *q, int64_t ms)
{
    if (ms < 0)
        ms = 0;
    size_t i = 0;
    while (i < QUEUE_RUN_BUCKETS && ms > queue_run_le_ms[i])
        i++;
    q->runs.counts[i]++;
    q->runs.sum_ms += (uint64_t)ms;
}

json_t *
queue_run_hist_json(const struct queue *q)
{
    json_t *le = json_array(), *counts = json_array();
    uint64_t cum = 0;
    for (size_t i = 0; le && counts && i < QUEUE_RUN_BUCKETS; i++) {
        cum += q->runs.counts[i];
        json_array_append_new(le, json_integer(queue_run_le_ms[i]));
        json_array_append_new(counts, json_integer((json_int_t)cum));
    }
    cum += q->runs.counts[QUEUE_RUN_BUCKETS];
    return json_pack("{s:o*, s:o*, s:I, s:I}", "le_ms", le, "counts", counts, "sum_ms",
                     (json_int_t)q->runs.sum_ms, "count", (json_int_t)cum);
}

/* chan_peek_each callback: stops at the first job still queued (one that
 * left QUEUED is taken out of the buffer at once, but a job on its way in
 * may have left meanwhile). The broker lock is held, which guards the
 * job's fields. */
static bool
find_queued(const void *elem, void *arg)
{
    const struct job *j = *(struct job *const *)elem;
    if (j->state != JOB_QUEUED)
        return true;
    *(int64_t *)arg = j->since_ms;
    return false;
}

/* Age in ms of the job next in line for delivery (the oldest in the
 * buffer, since it became ready), 0 when none is queued. */
static int64_t
queue_oldest_age_ms(const struct queue *q)
{
    int64_t since = q->standby.head ? q->standby.head->since_ms : -1;
    if (q->lanes) { /* priority mode: the oldest lane head */
        for (int l = 0; l < JOB_PRIORITY_LEVELS; l++)
            if (q->lanes[l].head && (since < 0 || q->lanes[l].head->since_ms < since))
                since = q->lanes[l].head->since_ms;
    } else if (q->jobs) {
        chan_peek_each(q->jobs, find_queued, &since);
    }
    if (since < 0)
        return 0;
    int64_t age = timer_now_ms() - since;
    return age > 0 ? age : 0;
}

static void
snap_fill(const struct queue *q, struct queue_snap *out)
{
    *out = (struct queue_snap){
        .name = q->name,
        .set = q->set,
        .depth = queue_depth(q),
        .reserved = q->reserved,
        .delayed = q->delayed,
        .dead = q->dead.n,
        .waiting_submitters = q->waiting_submitters,
        .waiting_fetchers = q->waiting_fetchers,
        .paused = q->paused,
        .closed = q->closed,
        .count = q->count,
        .oldest_age_ms = queue_oldest_age_ms(q),
        .tokens = queue_tokens(q),
    };
}

void
queue_snapshot(struct queue *q, struct queue_snap *out)
{
    snap_fill(q, out);
    queue_ref(q); /* name is read after the lock is released */
    out->q = q;
}

void
queue_snap_release(struct queue_snap *s)
{
    if (s->q)
        queue_unref(s->q);
    s->q = NULL;
    s->name = NULL;
}

/* The delivery limits, only on a queue that has them, named as declare
 * names them: "concurrency" (the limit: "reserved" is its use), "rate",
 * "rate_per_ms", "burst", and "rate_tokens" (whole tokens in the bucket). */
static void
limits_json(json_t *o, const struct queue_snap *s)
{
    if (s->set.concurrency > 0)
        json_object_set_new(o, "concurrency", json_integer(s->set.concurrency));
    if (s->set.rate > 0) {
        json_object_set_new(o, "rate", json_integer(s->set.rate));
        json_object_set_new(o, "rate_per_ms", json_integer(s->set.rate_per_ms));
        json_object_set_new(o, "burst", json_integer(s->set.burst));
        json_object_set_new(o, "rate_tokens", json_integer(s->tokens));
    }
}

json_t *
queue_snap_json(const struct queue_snap *s)
{
    const struct queue_counters *c = &s->count;
    json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:b, "
                          "s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
                          "capacity", (json_int_t)s->set.capacity, "ttr_ms",
                          (json_int_t)s->set.ttr_ms, "max_attempts",
                          (json_int_t)s->set.max_attempts, "depth", (json_int_t)s->depth,
                          "reserved", (json_int_t)s->reserved, "delayed", (json_int_t)s->delayed,
                          "dead", (json_int_t)s->dead, "waiting_submitters",
                          (json_int_t)s->waiting_submitters, "paused", s->paused, "closed",
                          s->closed, "waiting_fetchers", (json_int_t)s->waiting_fetchers,
                          "submitted", (json_int_t)c->submitted, "delivered",
                          (json_int_t)c->delivered, "acked", (json_int_t)c->acked, "nacked",
                          (json_int_t)c->nacked, "expired", (json_int_t)c->expired, "cancelled",
                          (json_int_t)c->cancelled, "rejected_full", (json_int_t)c->rejected_full);
    if (o) {
        json_object_set_new(o, "blocked_ms", json_integer((json_int_t)c->blocked_ms));
        json_object_set_new(o, "oldest_age_ms", json_integer(s->oldest_age_ms));
        limits_json(o, s);
    }
    return o;
}

json_t *
queue_stats_json(const struct queue *q)
{
    struct queue_snap s;
    snap_fill(q, &s); /* lock held throughout: no reference needed */
    return queue_snap_json(&s);
}
