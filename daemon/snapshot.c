/* Snapshots: a standby state built by applying records, and the records
 * that rebuild a state, which is what a compaction writes (see broker.h,
 * broker_snapshotter). */
#include "chanq_config.h"

#include "daemon/broker-internal.h"
#include "daemon/journal/journal.h"
#include "daemon/jrec.h"
#include "daemon/keytable.h"
#include "daemon/queue.h"
#include "daemon/schedule.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* One record out through emit. */
struct writer {
    journal_emit_fn *emit;
    void *arg;
    uint8_t *buf;
    size_t cap;
};

static int
put(struct writer *w, const struct jrec *r)
{
    size_t size = jrec_size(r);
    if (size == 0)
        return -EINVAL;
    if (size > w->cap) {
        uint8_t *p = realloc(w->buf, size);
        if (!p)
            return -ENOMEM;
        w->buf = p;
        w->cap = size;
    }
    int n = jrec_encode(r, w->buf, w->cap);
    return n < 0 ? n : w->emit(w->arg, w->buf, (size_t)n);
}

/* schedules_snapshot's put. */
static int
put_any(void *w, const struct jrec *r)
{
    return put(w, r);
}

static int
put_queue(struct writer *w, const struct queue *q)
{
    struct jrec r = {.type = JREC_QUEUE};
    r.u.queue = (struct jrec_queue){
        .name = q->name,
        .name_len = q->name_len,
        .capacity = q->set.capacity,
        .ttr_ms = q->set.ttr_ms,
        .max_attempts = (uint32_t)q->set.max_attempts,
        .concurrency = (uint64_t)q->set.concurrency,
        .rate = (uint64_t)q->set.rate,
        .rate_per_ms = (uint64_t)q->set.rate_per_ms,
        .burst = (uint64_t)q->set.burst,
        .paused = q->paused,
        .closed = q->closed,
    };
    return put(w, &r);
}

static const enum jrec_job_state to_jrec[] = {
    [JOB_QUEUED] = JREC_QUEUED,       [JOB_DELAYED] = JREC_DELAYED,
    [JOB_RESERVED] = JREC_RESERVED,   [JOB_DEAD] = JREC_DEAD,
    [JOB_DONE] = JREC_DONE,           [JOB_CANCELLED] = JREC_CANCELLED,
    [JOB_EXPIRED] = JREC_EXPIRED,
};

static size_t
text_len(const char *s)
{
    return s ? strlen(s) : 0;
}

/* A job's error history, right after its JOB record. */
static int
put_errors(struct writer *w, const struct job *j)
{
    struct jrec_error v[JOB_ERROR_HISTORY];
    size_t n = job_errors_count(j);
    for (size_t i = 0; i < n; i++) {
        const struct job_error *e = job_error_at(j, i);
        v[i] = (struct jrec_error){e->attempt, e->text != NULL, e->text, text_len(e->text)};
    }
    struct jrec r = {.type = JREC_ERRORS};
    r.u.errors = (struct jrec_errors){.id = j->id, .n = n, .v = v};
    return put(w, &r);
}

static int
put_job(struct writer *w, const struct job *j)
{
    const struct job_extra *x = j->extra;
    struct jrec r = {.type = JREC_JOB};
    r.u.job = (struct jrec_job){
        .s = {
            .id = j->id,
            .queue = j->queue->name,
            .queue_len = j->queue->name_len,
            .payload = j->payload,
            .payload_len = j->payload ? j->payload_len : 0,
            .ttr_ms = j->ttr_ms,
            .max_attempts = j->max_attempts,
            .created_ms = j->created_ms,
            .deadline_ms = j->deadline_ms,
            .due_ms = j->state == JOB_DELAYED ? j->due : 0,
            .parent_id = x && x->parent ? x->parent->id : 0,
            .key = x && x->key ? x->key->key : NULL,
            .key_len = x && x->key ? x->key->len : 0,
            .priority = j->priority,
            .traceparent = x ? x->traceparent : NULL,
            .traceparent_len = text_len(x ? x->traceparent : NULL),
        },
        .state = to_jrec[j->state],
        .attempt = j->attempt,
        .error = x ? x->error : NULL,
        .error_len = text_len(x ? x->error : NULL),
        .result = x ? x->result : NULL,
        .result_len = text_len(x ? x->result : NULL),
    };
    int rc = put(w, &r);
    return rc == 0 && job_errors_count(j) ? put_errors(w, j) : rc;
}

/* The order of one list, JREC_ORDER_CHUNK ids per record. */
static int
put_order(struct writer *w, enum jrec_order_kind kind, const struct queue *q,
          const struct job_list *l)
{
    uint64_t *ids = malloc(JREC_ORDER_CHUNK * sizeof *ids);
    if (!ids)
        return -ENOMEM;
    int rc = 0;
    const struct job *j = l->head;
    while (rc == 0 && j) {
        size_t n = 0;
        for (; j && n < JREC_ORDER_CHUNK; j = j->next)
            ids[n++] = j->id;
        struct jrec r = {.type = JREC_ORDER};
        r.u.order = (struct jrec_order){
            .kind = kind,
            .queue = q ? q->name : NULL,
            .queue_len = q ? q->name_len : 0,
            .n = n,
            .ids = ids,
        };
        rc = put(w, &r);
    }
    free(ids);
    return rc;
}

/* A finished job's key, still in its window (live jobs' keys are in
 * their JOB records). */
static int
put_key(const struct key_entry *e, void *arg)
{
    struct jrec r = {.type = JREC_KEY};
    r.u.key = (struct jrec_key){
        .key = e->key, .key_len = e->len, .id = e->id, .until_ms = e->until_ms};
    return put(arg, &r);
}

struct job_vec {
    struct job **v;
    size_t n;
};

static void
collect(struct job *j, void *arg)
{
    struct job_vec *l = arg;
    l->v[l->n++] = j;
}

static int
cmp_id(const void *a, const void *b)
{
    uint64_t x = (*(struct job *const *)a)->id, y = (*(struct job *const *)b)->id;
    return x < y ? -1 : x > y;
}

struct job **
broker_jobs_by_id(struct broker *b, size_t *n)
{
    struct job_vec l = {malloc((jobtable_count(b->jobs) + 1) * sizeof(struct job *)), 0};
    if (l.v) {
        jobtable_each(b->jobs, collect, &l);
        qsort(l.v, l.n, sizeof *l.v, cmp_id);
    }
    *n = l.n;
    return l.v;
}

/* Every queue, every job in id order (a parent before its children),
 * then the order of every list. */
static int
write_state(struct broker *b, struct writer *w)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < b->nqueues; i++)
        rc = put_queue(w, b->queues[i]);
    if (rc == 0)
        rc = schedules_snapshot(b, put_any, w);
    size_t n;
    struct job **jobs = broker_jobs_by_id(b, &n);
    if (!jobs)
        return -ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = put_job(w, jobs[i]);
    free(jobs);
    for (size_t i = 0; rc == 0 && i < b->nqueues; i++) {
        struct queue *q = b->queues[i];
        rc = put_order(w, JREC_ORDER_QUEUED, q, &q->standby);
        if (rc == 0)
            rc = put_order(w, JREC_ORDER_DEAD, q, &q->dead);
    }
    if (rc == 0)
        rc = put_order(w, JREC_ORDER_FINISHED, NULL, &b->finished);
    return rc == 0 ? keytable_each_finished(b->keys, put_key, w) : rc;
}

int
broker_snapshot_write(struct broker *b, int (*emit)(void *arg, const void *rec, size_t len),
                      void *arg)
{
    struct writer w = {emit, arg, NULL, 0};
    pthread_mutex_lock(&b->lock);
    int rc = b->serving ? -EINVAL : write_state(b, &w);
    pthread_mutex_unlock(&b->lock);
    free(w.buf);
    return rc;
}

/* ---- the snapshotter a compaction uses ---- */

static void *
snap_begin(void *arg)
{
    struct broker *live = arg;
    pthread_mutex_lock(&live->lock);
    struct broker_config cfg = live->cfg;
    pthread_mutex_unlock(&live->lock);
    return broker_new_standby(&cfg);
}

static int
snap_write(void *state, journal_emit_fn *emit, void *arg)
{
    return broker_snapshot_write(state, emit, arg);
}

static void
snap_end(void *state)
{
    broker_free(state);
}

const struct journal_snapshotter broker_snapshotter = {
    .begin = snap_begin,
    .apply = broker_replay_apply,
    .write = snap_write,
    .end = snap_end,
};
