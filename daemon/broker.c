/* The broker itself: creation, settings, the queue registry and the job
 * table. See broker.h; the ops are in broker_*.c. */
#include "chanq_config.h"

#include "daemon/broker-internal.h"
#include "daemon/fastrand.h"
#include "daemon/keytable.h"
#include "daemon/queue.h"
#include "daemon/schedule.h"

#include <stdlib.h>
#include <string.h>

static struct broker *
broker_alloc(const struct broker_config *cfg, struct ctx *root, bool serving)
{
    struct broker *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->cfg = *cfg;
    b->root = root;
    b->serving = serving;
    b->jobs = jobtable_new();
    b->keys = keytable_new(cfg->max_keys_kept);
    b->sched = schedules_new();
    if (!b->jobs || !b->keys || !b->sched) {
        jobtable_free(b->jobs);
        keytable_free(b->keys);
        schedules_free(b->sched);
        free(b);
        return NULL;
    }
    pthread_mutex_init(&b->lock, NULL);
    /* Ids start from the wall clock so they stay unique across restarts
     * even without a journal: 4096 ids per ms of uptime would be needed to
     * catch up with the next start's first id. */
    b->next_id = (uint64_t)clock_wall_ms() << 12;
    return b;
}

struct broker *
broker_new(const struct broker_config *cfg, struct ctx *root)
{
    return broker_alloc(cfg, root, false);
}

struct broker *
broker_new_standby(const struct broker_config *cfg)
{
    return broker_alloc(cfg, NULL, false);
}

struct membudget *
broker_membudget(struct broker *b)
{
    return &b->mem;
}

void
broker_set_config(struct broker *b, const struct broker_config *cfg)
{
    pthread_mutex_lock(&b->lock);
    b->cfg = *cfg;
    pthread_mutex_unlock(&b->lock);
}

static void
unref_job(struct job *j, void *arg)
{
    (void)arg;
    if (j->extra && j->extra->parent) {
        job_unref(j->extra->parent);
        j->extra->parent = NULL;
    }
    job_unref(j);
}

void
broker_free(struct broker *b)
{
    if (!b)
        return;
    /* The registry lets go of its queues; each is freed with the last job
     * that points at it, in the table's unref below. */
    for (size_t i = 0; i < b->nqueues; i++)
        queue_retire(b->queues[i]);
    free(b->queues);
    jobtable_each(b->jobs, unref_job, NULL);
    jobtable_free(b->jobs);
    keytable_free(b->keys);
    schedules_free(b->sched);
    pthread_mutex_destroy(&b->lock);
    free(b);
}

/* Binary search over the sorted registry; *pos is where name belongs. */
static struct queue *
search_queue(struct broker *b, const char *name, size_t len, size_t *pos)
{
    size_t lo = 0, hi = b->nqueues;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        struct queue *q = b->queues[mid];
        size_t n = q->name_len < len ? q->name_len : len;
        int c = memcmp(q->name, name, n);
        if (c == 0)
            c = q->name_len < len ? -1 : q->name_len > len ? 1 : 0;
        if (c == 0) {
            *pos = mid;
            return q;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *pos = lo;
    return NULL;
}

size_t
broker_queue_index_after(struct broker *b, const char *name, size_t len)
{
    size_t pos;
    return search_queue(b, name, len, &pos) ? pos + 1 : pos;
}

struct queue *
broker_find_queue(struct broker *b, const char *name, size_t len)
{
    size_t pos;
    return search_queue(b, name, len, &pos);
}

struct queue *
broker_get_queue(struct broker *b, const char *name, size_t len, const struct queue_settings *set,
                 struct proto_error *err)
{
    size_t pos;
    struct queue *q = search_queue(b, name, len, &pos);
    if (q)
        return q;
    if (b->serving && b->nqueues >= b->cfg.max_queues) {
        proto_error_set(err, PROTO_LIMIT, "server holds its maximum of %zu queues",
                        b->cfg.max_queues);
        return NULL;
    }
    if (b->nqueues == b->queues_cap) {
        size_t cap = b->queues_cap ? b->queues_cap * 2 : 16;
        struct queue **qs = realloc(b->queues, cap * sizeof *qs);
        if (!qs)
            goto out_nomem;
        b->queues = qs;
        b->queues_cap = cap;
    }
    q = queue_new(b, name, len, set ? set : &b->cfg.defaults);
    if (!q)
        goto out_nomem;
    memmove(&b->queues[pos + 1], &b->queues[pos], (b->nqueues - pos) * sizeof *b->queues);
    b->queues[pos] = q;
    b->nqueues++;
    return q;

out_nomem:
    proto_error_set(err, PROTO_LIMIT, "out of memory creating a queue");
    return NULL;
}

struct job *
broker_lookup(struct broker *b, const struct span *id, struct proto_error *err)
{
    uint64_t n;
    struct job *j = NULL;
    if (job_id_parse(id->ptr, id->len, &n))
        j = jobtable_get(b->jobs, n);
    if (!j)
        proto_error_set(err, PROTO_NOT_FOUND, "no job with id '%.*s'",
                        (int)(id->len > 64 ? 64 : id->len), id->ptr);
    return j;
}

struct job *
broker_untrack(struct broker *b, struct job *j)
{
    return jobtable_del(b->jobs, j->id);
}

void
broker_shuffle(struct queue **qs, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t k = (size_t)fast_rand_below(i);
        struct queue *t = qs[i - 1];
        qs[i - 1] = qs[k];
        qs[k] = t;
    }
}

int
broker_resolve_queues(struct broker *b, const struct request *req, struct queue **qs, size_t *nq,
                      struct proto_error *err)
{
    size_t n = req->nqueues ? req->nqueues : 1;
    *nq = 0;
    for (size_t i = 0; i < n; i++) {
        const struct span *name = req->nqueues ? &req->queues[i] : &req->queue;
        struct queue *q = broker_get_queue(b, name->ptr, name->len, NULL, err);
        if (!q) {
            broker_release_queues(qs, i);
            return -1;
        }
        queue_ref(q); /* the request's */
        qs[i] = q;
    }
    *nq = n;
    return 0;
}

void
broker_release_queues(struct queue **qs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        queue_unref(qs[i]);
}

size_t
broker_queues_allocated(struct broker *b)
{
    return atomic_load_explicit(&b->queues_allocated, memory_order_relaxed);
}
