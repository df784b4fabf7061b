/* The broker's queue administration: declare, close, pause, resume, kick
 * (each commits a record: daemon/commit.h), and the stats documents. */
#include "chanq_config.h"

#include "daemon/commit.h"
#include "daemon/keytable.h"
#include "daemon/queue.h"

#include "core/go.h"
#include "proto/encode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* ---- declare's delivery limits ---- */

/* The limits a declare asks for, over set's: "rate_per_ms" and "burst"
 * only with "rate" (1 s and the rate itself by default). -1 with err set
 * when they do not go together. */
static int
declared_limits(const struct request *req, struct queue_settings *set, struct proto_error *err)
{
    if ((req->has_rate_per_ms || req->has_burst) && !(req->has_rate && req->rate > 0)) {
        proto_error_set(err, PROTO_BAD_REQUEST,
                        "fields 'rate_per_ms' and 'burst' need a 'rate' above 0");
        return -1;
    }
    if (req->has_concurrency)
        set->concurrency = req->concurrency;
    if (req->has_rate) {
        set->rate = req->rate;
        set->rate_per_ms = req->rate ? (req->has_rate_per_ms ? req->rate_per_ms : 1000) : 0;
        set->burst = req->rate ? (req->has_burst ? req->burst : req->rate) : 0;
    }
    return 0;
}

/* Like settings_differ for the limits a declare names. */
static bool
limits_differ(const struct queue_settings *s, const struct request *req, char *what, size_t len)
{
    struct queue_settings want = *s;
    struct proto_error ignored;
    if (declared_limits(req, &want, &ignored) < 0)
        return false; /* refused before */
    if (want.concurrency != s->concurrency)
        snprintf(what, len, "concurrency %lld", (long long)s->concurrency);
    else if (want.rate != s->rate || want.rate_per_ms != s->rate_per_ms || want.burst != s->burst)
        snprintf(what, len, "rate %lld per %lld ms, burst %lld", (long long)s->rate,
                 (long long)s->rate_per_ms, (long long)s->burst);
    else
        return false;
    return true;
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
        return limits_differ(s, req, what, len);
    return true;
}

/* The queue declare names, made with the declared settings (defaults for
 * the rest) when it does not exist; NULL with err set. */
static struct queue *
declared_queue(struct broker *b, const struct request *req, struct proto_error *err)
{
    struct queue *q = broker_find_queue(b, req->queue.ptr, req->queue.len);
    char what[96];
    struct queue_settings set = b->cfg.defaults;
    if (declared_limits(req, &set, err) < 0)
        return NULL;
    if (q && settings_differ(q, req, what, sizeof what)) {
        proto_error_set(err, PROTO_CONFLICT, "queue '%s' exists with %s", q->name, what);
        return NULL;
    }
    if (q)
        return q;
    broker_request_settings(req, &set);
    return broker_get_queue(b, req->queue.ptr, req->queue.len, &set, err);
}

void
broker_request_settings(const struct request *req, struct queue_settings *set)
{
    if (req->has_capacity)
        set->capacity = req->capacity;
    if (req->has_ttr_ms)
        set->ttr_ms = req->ttr_ms;
    if (req->has_max_attempts)
        set->max_attempts = req->max_attempts;
}

int
op_end_with_queue(struct broker_op *op, const struct queue *q)
{
    json_t *stats = queue_stats_json(q);
    if (stats)
        json_object_set_new(stats, "name", json_string(q->name));
    json_t *fields = stats ? json_pack("{s:o}", "queue", stats) : NULL;
    size_t mark = op->out->len;
    int rc = fields ? encode_ok_fields(op->out, op->req->rid, fields) : -1;
    json_decref(fields);
    return op_end_durable(op, rc, mark);
}

int
broker_op_declare(struct broker *b, struct session *s, const struct request *req,
                  struct buf *out, struct proto_error *err)
{
    struct broker_op op;
    op_begin(&op, b, s, req, out, err);
    struct queue *q = declared_queue(b, req, err);
    /* Recorded also for a queue made on first use: its settings now count. */
    if (!q || commit_queue(b, q, q->paused, q->closed, &op.w) < 0)
        return op_end(&op, -1);
    return op_end_with_queue(&op, q);
}

/* close, pause and resume: a QUEUE record with the new flags (paused < 0:
 * unchanged). Ends op. */
static int
set_flags(struct broker_op *op, int paused, bool close)
{
    struct queue *q = existing_queue(op->b, op->req, op->err);
    if (!q)
        return op_end(op, -1);
    bool p = paused < 0 ? q->paused : paused != 0;
    bool c = q->closed || close;
    if ((p != q->paused || c != q->closed) && commit_queue(op->b, q, p, c, &op->w) < 0)
        return op_end(op, -1);
    size_t mark = op->out->len;
    return op_end_durable(op, encode_ok(op->out, op->req->rid), mark);
}

int
broker_op_close(struct broker *b, struct session *s, const struct request *req, struct buf *out,
                struct proto_error *err)
{
    struct broker_op op;
    op_begin(&op, b, s, req, out, err);
    return set_flags(&op, -1, true);
}

int
broker_op_pause(struct broker *b, struct session *s, const struct request *req, struct buf *out,
                struct proto_error *err)
{
    struct broker_op op;
    op_begin(&op, b, s, req, out, err);
    return set_flags(&op, 1, false);
}

int
broker_op_resume(struct broker *b, struct session *s, const struct request *req,
                 struct buf *out, struct proto_error *err)
{
    struct broker_op op;
    op_begin(&op, b, s, req, out, err);
    return set_flags(&op, 0, false);
}

int
broker_op_kick(struct broker *b, struct session *s, const struct request *req, struct buf *out,
               struct proto_error *err)
{
    struct broker_op op;
    op_begin(&op, b, s, req, out, err);
    struct queue *q = existing_queue(b, req, err);
    if (!q)
        return op_end(&op, -1);
    int64_t max = req->has_count ? req->count : INT64_MAX;
    int64_t n = 0;
    /* Fresh attempts; back to the tail of the queue, oldest dead first. */
    while (n < max && q->dead.head && commit_state(b, q->dead.head, (struct jrec_state){.state = JREC_QUEUED}, &op.w) == 0)
        n++;
    size_t mark = out->len;
    return op_end_durable(&op, encode_ok_int(out, req->rid, "kicked", n), mark);
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
    for (size_t i = 0; i < n; i++)
        queue_snap_release(&snaps[i]);
    free(snaps);
    if (rc < 0)
        proto_error_set(err, PROTO_INTERNAL, "out of memory");
    return rc;
}

int
broker_op_stats(struct broker *b, struct session *s, const struct request *req, struct buf *out,
                struct proto_error *err)
{
    struct broker_op op;
    op_begin(&op, b, s, req, out, err);
    struct queue *q = existing_queue(b, req, err);
    if (!q)
        return op_end(&op, -1);
    json_t *fields = json_pack("{s:o}", "queue", queue_stats_json(q));
    int rc = fields ? encode_ok_fields(out, req->rid, fields) : -1;
    json_decref(fields);
    return op_end(&op, rc);
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
        dead += q->dead.n;
    }
    json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "queued",
                          (json_int_t)queued, "reserved", (json_int_t)reserved, "delayed",
                          (json_int_t)delayed, "dead", (json_int_t)dead, "done",
                          (json_int_t)b->total_done, "cancelled", (json_int_t)b->total_cancelled,
                          "expired", (json_int_t)b->total_expired, "tracked",
                          (json_int_t)jobtable_count(b->jobs), "payload_bytes",
                          (json_int_t)b->payload_bytes);
    if (o) /* idempotency keys: bound to live jobs, or in their window */
        json_object_set_new(o, "keys", json_integer((json_int_t)keytable_count(b->keys)));
    pthread_mutex_unlock(&b->lock);
    return o;
}
