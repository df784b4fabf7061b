/* The broker's queue administration: declare, close, pause, resume, kick,
 * and the stats documents. */
#include "chanq_config.h"

#include "daemon/broker-internal.h"

#include "core/go.h"

#include "core/chan.h"
#include "proto/encode.h"

#include <string.h>

static int
answer_fields(struct broker *b, const struct request *req, json_t *fields, struct buf *out,
              struct proto_error *err)
{
    int rc = fields ? encode_ok_fields(out, req->rid, fields) : -1;
    json_decref(fields);
    return broker_answer(b, rc, err);
}

/* An existing queue named by req->queue, or NULL with not_found. */
static struct queue *
existing_queue(struct broker *b, const struct request *req, struct proto_error *err)
{
    struct queue *q = broker_find_queue(b, req->queue.ptr, req->queue.len);
    if (!q)
        proto_error_set(err, PROTO_NOT_FOUND, "no queue named '%.*s'", (int)req->queue.len,
                        req->queue.ptr);
    return q;
}

static bool
settings_differ(const struct queue *q, const struct request *req, char *what, size_t len)
{
    const struct queue_settings *s = &q->set;
    if (req->has_capacity && req->capacity != s->capacity)
        snprintf(what, len, "capacity %lld", (long long)s->capacity);
    else if (req->has_ttr_ms && req->ttr_ms != s->ttr_ms)
        snprintf(what, len, "ttr_ms %lld", (long long)s->ttr_ms);
    else if (req->has_max_attempts && req->max_attempts != s->max_attempts)
        snprintf(what, len, "max_attempts %lld", (long long)s->max_attempts);
    else
        return false;
    return true;
}

int
broker_op_declare(struct broker *b, struct session *s, const struct request *req,
                  struct buf *out, struct proto_error *err)
{
    pthread_mutex_lock(&b->lock);
    struct queue *q = broker_find_queue(b, req->queue.ptr, req->queue.len);
    char what[64];
    if (q && settings_differ(q, req, what, sizeof what)) {
        proto_error_set(err, PROTO_CONFLICT, "queue '%s' exists with %s", q->name, what);
        return broker_answer(b, -1, err);
    }
    if (!q) {
        /* A new queue takes the declared settings, defaults for the rest. */
        struct queue_settings saved = b->cfg.defaults;
        if (req->has_capacity)
            b->cfg.defaults.capacity = req->capacity;
        if (req->has_ttr_ms)
            b->cfg.defaults.ttr_ms = req->ttr_ms;
        if (req->has_max_attempts)
            b->cfg.defaults.max_attempts = req->max_attempts;
        q = broker_get_queue(b, req->queue.ptr, req->queue.len, err);
        b->cfg.defaults = saved;
        if (!q)
            return broker_answer(b, -1, err);
    }
    struct bj_waits w;
    bj_waits_init(&w);
    bj_log_queue(b, q, &w); /* also for a queue made on first use: its settings now count */
    json_t *stats = queue_stats_json(q);
    if (stats)
        json_object_set_new(stats, "name", json_string(q->name));
    json_t *fields = stats ? json_pack("{s:o}", "queue", stats) : NULL;
    size_t mark = out->len;
    int rc = fields ? encode_ok_fields(out, req->rid, fields) : -1;
    json_decref(fields);
    return broker_answer_durable(b, s, req->rid, rc, &w, out, mark, err);
}

int
broker_op_close(struct broker *b, struct session *s, const struct request *req, struct buf *out,
                struct proto_error *err)
{
    pthread_mutex_lock(&b->lock);
    struct queue *q = existing_queue(b, req, err);
    if (!q)
        return broker_answer(b, -1, err);
    struct bj_waits w;
    bj_waits_init(&w);
    if (!q->closed) {
        q->closed = true;
        chan_close(q->closing); /* parked submitters answer `closed` */
        queue_signal_change(q); /* parked fetchers start watching `drained` */
        broker_check_drained(q);
        bj_log_queue(b, q, &w);
    }
    size_t mark = out->len;
    return broker_answer_durable(b, s, req->rid, encode_ok(out, req->rid), &w, out, mark, err);
}

static int
set_paused(struct broker *b, struct session *s, const struct request *req, bool paused,
           struct buf *out, struct proto_error *err)
{
    pthread_mutex_lock(&b->lock);
    struct queue *q = existing_queue(b, req, err);
    if (!q)
        return broker_answer(b, -1, err);
    struct bj_waits w;
    bj_waits_init(&w);
    if (q->paused != paused) {
        q->paused = paused;
        queue_signal_change(q); /* parked fetchers re-plan their select */
        bj_log_queue(b, q, &w);
    }
    size_t mark = out->len;
    return broker_answer_durable(b, s, req->rid, encode_ok(out, req->rid), &w, out, mark, err);
}

int
broker_op_pause(struct broker *b, struct session *s, const struct request *req, struct buf *out,
                struct proto_error *err)
{
    return set_paused(b, s, req, true, out, err);
}

int
broker_op_resume(struct broker *b, struct session *s, const struct request *req,
                 struct buf *out, struct proto_error *err)
{
    return set_paused(b, s, req, false, out, err);
}

int
broker_op_kick(struct broker *b, struct session *s, const struct request *req, struct buf *out,
               struct proto_error *err)
{
    pthread_mutex_lock(&b->lock);
    struct queue *q = existing_queue(b, req, err);
    if (!q)
        return broker_answer(b, -1, err);
    int64_t max = req->has_count ? req->count : INT64_MAX;
    int64_t n = 0;
    struct job *j;
    struct bj_waits w;
    bj_waits_init(&w);
    while (n < max && (j = queue_dead_pop(q))) {
        j->attempt = 0; /* fresh attempts */
        if (j->extra && j->extra->done) {
            /* It is live again: a later `wait` must wait anew. */
            chan_unref(j->extra->done);
            j->extra->done = NULL;
        }
        j->state = JOB_QUEUED;
        bj_log_state(b, j, &w);
        broker_enqueue(b, j);
        n++;
    }
    size_t mark = out->len;
    return broker_answer_durable(b, s, req->rid, encode_ok_int(out, req->rid, "kicked", n), &w, out, mark, err);
}

#define QUEUES_YIELD_EVERY 32 /* queues encoded between two yields */

/* Appends `"NAME":{stats}` for one snapshot. */
static int
append_queue(struct buf *out, const struct queue_snap *s)
{
    json_t *name = json_string(s->name), *stats = queue_snap_json(s);
    char *k = name ? json_dumps(name, JSON_ENCODE_ANY) : NULL;
    char *v = stats ? json_dumps(stats, JSON_COMPACT) : NULL;
    int rc = k && v && buf_append_str(out, k) == 0 && buf_append_char(out, ':') == 0 &&
                     buf_append_str(out, v) == 0
                 ? 0
                 : -1;
    free(k);
    free(v);
    json_decref(name);
    json_decref(stats);
    return rc;
}

/* Encodes a `queues` page from snapshots, after the lock is released:
 * {"ok":true[,"rid":..][,"next":NAME],"queues":{...}}. A page of 1000
 * queues is ~300 KB of JSON and tens of ms of work: the goroutine yields
 * every QUEUES_YIELD_EVERY queues, so that a flood of such requests shares
 * the threads with everyone else's small ones instead of queueing them. */
static int
queues_page_encode(struct buf *out, struct span rid, const struct queue_snap *snaps, size_t n,
                   bool more)
{
    json_t *head = more ? json_pack("{s:s}", "next", snaps[n - 1].name) : json_object();
    size_t mark = out->len;
    int rc = head ? encode_ok_fields(out, rid, head) : -1;
    json_decref(head);
    if (rc < 0)
        return -1;
    out->len -= 2; /* reopen the object: drop its "}\n" */
    rc = buf_append_str(out, ",\"queues\":{");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (i > 0 && i % QUEUES_YIELD_EVERY == 0 && go_on_goroutine())
            go_yield();
        if (i > 0)
            rc = buf_append_char(out, ',');
        if (rc == 0)
            rc = append_queue(out, &snaps[i]);
    }
    if (rc == 0)
        rc = buf_append_str(out, "}}\n");
    if (rc < 0)
        out->len = mark;
    return rc < 0 ? -1 : 0;
}

/* Lists up to `count` queues in name order, after `after` when given. The
 * lock is held only to copy their stats: building thousands of JSON objects
 * under it stalled every other request (5,000 queues: 2-3 s per answer). */
int
broker_op_queues(struct broker *b, struct session *s, const struct request *req,
                 struct buf *out, struct proto_error *err)
{
    size_t limit = req->has_count ? (size_t)req->count : QUEUES_PAGE_DEFAULT;
    struct queue_snap *snaps = malloc(limit * sizeof *snaps);
    if (!snaps) {
        proto_error_set(err, PROTO_INTERNAL, "out of memory");
        return -1;
    }
    pthread_mutex_lock(&b->lock);
    size_t first = req->after.len ? broker_queue_index_after(b, req->after.ptr, req->after.len) : 0;
    size_t n = 0;
    for (size_t i = first; i < b->nqueues && n < limit; i++)
        queue_snapshot(b->queues[i], &snaps[n++]);
    bool more = first + n < b->nqueues;
    pthread_mutex_unlock(&b->lock);
    int rc = queues_page_encode(out, req->rid, snaps, n, more);
    free(snaps);
    if (rc < 0)
        proto_error_set(err, PROTO_INTERNAL, "out of memory");
    return rc;
}

int
broker_op_stats(struct broker *b, struct session *s, const struct request *req, struct buf *out,
                struct proto_error *err)
{
    pthread_mutex_lock(&b->lock);
    struct queue *q = existing_queue(b, req, err);
    if (!q)
        return broker_answer(b, -1, err);
    json_t *fields = json_pack("{s:o}", "queue", queue_stats_json(q));
    return answer_fields(b, req, fields, out, err);
}

json_t *
broker_queues_json(struct broker *b)
{
    pthread_mutex_lock(&b->lock);
    json_t *all = json_object();
    for (size_t i = 0; all && i < b->nqueues; i++) {
        /* The run-time histogram only here (/stats, /metrics): too bulky
         * for every `queues` answer. */
        json_t *q = queue_stats_json(b->queues[i]);
        if (q)
            json_object_set_new(q, "run_hist", queue_run_hist_json(b->queues[i]));
        json_object_set_new(all, b->queues[i]->name, q);
    }
    pthread_mutex_unlock(&b->lock);
    return all;
}

json_t *
broker_jobs_json(struct broker *b)
{
    pthread_mutex_lock(&b->lock);
    size_t queued = 0, reserved = 0, delayed = 0, dead = 0;
    for (size_t i = 0; i < b->nqueues; i++) {
        const struct queue *q = b->queues[i];
        queued += queue_depth(q);
        reserved += q->reserved;
        delayed += q->delayed;
        dead += q->dead;
    }
    json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "queued",
                          (json_int_t)queued, "reserved", (json_int_t)reserved, "delayed",
                          (json_int_t)delayed, "dead", (json_int_t)dead, "done",
                          (json_int_t)b->total_done, "cancelled", (json_int_t)b->total_cancelled,
                          "expired", (json_int_t)b->total_expired, "tracked",
                          (json_int_t)jobtable_count(b->jobs), "payload_bytes",
                          (json_int_t)b->payload_bytes);
    pthread_mutex_unlock(&b->lock);
    return o;
}
