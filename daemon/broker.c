/* The broker's registry and the two waiting ops at its heart: submit (park
 * for room) and fetch (select across queues). See broker.h. */
#include "chanq_config.h"

#include "daemon/broker-internal.h"
#include "daemon/idset.h"

#include "core/chan.h"
#include "core/ctx.h"
#include "core/go.h"
#include "core/select.h"
#include "core/timer.h"
#include "proto/encode.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_SELECT_QUEUES MSG_MAX_QUEUES
/* Jobs one fetch returns at most, whatever "count" says. */
#define FETCH_MAX_COUNT 1000

int64_t
broker_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct span
broker_id_span(uint64_t id, char *buf)
{
    struct span s = {buf, job_id_format(id, buf)};
    return s;
}

int
broker_answer(struct broker *b, int rc, struct proto_error *err)
{
    pthread_mutex_unlock(&b->lock);
    if (rc < 0 && err->code == PROTO_OK)
        proto_error_set(err, PROTO_INTERNAL, "out of memory encoding the answer");
    return rc < 0 ? -1 : 0;
}

int
broker_answer_durable(struct broker *b, struct session *s, struct span rid, int rc,
                      struct bj_waits *w, struct buf *out, size_t mark, struct proto_error *err)
{
    rc = broker_answer(b, rc, err);
    if (rc == 0 && bj_waits_defer(w, s, rid, out, mark, NULL, NULL) == 0)
        return 0;
    if (bj_waits_finish(w, NULL, rc == 0 ? err : NULL) < 0 && rc == 0) {
        out->len = mark;
        rc = -1;
    }
    return rc;
}

struct broker *
broker_new(const struct broker_config *cfg, struct ctx *root)
{
    struct broker *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->cfg = *cfg;
    b->root = root;
    b->jobs = jobtable_new();
    if (!b->jobs) {
        free(b);
        return NULL;
    }
    pthread_mutex_init(&b->lock, NULL);
    /* Ids start from the wall clock so they stay unique across restarts
     * even without a journal: 4096 ids per ms of uptime would be needed to
     * catch up with the next start's first id. */
    b->next_id = (uint64_t)broker_wall_ms() << 12;
    return b;
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
    if (j->extra && j->extra->parent) {
        job_unref(j->extra->parent);
        j->extra->parent = NULL;
    }
    job_unref(j);
}

static void
drop_channel_refs(struct queue *q)
{
    struct job *j;
    while (chan_try_recv(q->jobs, &j) == 0)
        job_unref(j);
}

void
broker_free(struct broker *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->nqueues; i++) {
        drop_channel_refs(b->queues[i]);
        queue_free(b->queues[i]);
    }
    free(b->queues);
    jobtable_each(b->jobs, unref_job, NULL);
    jobtable_free(b->jobs);
    idset_free(b->compact_forgotten);
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
broker_get_queue(struct broker *b, const char *name, size_t len, struct proto_error *err)
{
    size_t pos;
    struct queue *q = search_queue(b, name, len, &pos);
    if (q)
        return q;
    if (b->nqueues >= b->cfg.max_queues) {
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
    q = queue_new(name, len, &b->cfg.defaults);
    if (!q)
        goto out_nomem;
    q->broker = b;
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

void
broker_check_drained(struct queue *q)
{
    if (q->closed && !q->drained_sent && q->inflight_sends == 0 && queue_depth(q) == 0 &&
        chan_len(q->jobs) == 0) {
        q->drained_sent = true;
        chan_close(q->drained);
    }
}

/* After a send of j into q's channel ended (sent says whether it got in). */
static void
send_finished(struct queue *q, struct job *j, bool sent)
{
    q->inflight_sends--;
    if (sent && j->in_channel == CHAN_SENDING) {
        j->in_channel = CHAN_IN;
        if (j->state != JOB_QUEUED)
            q->tombstones++; /* cancelled while it was on its way in */
    }
    broker_check_drained(q);
}

struct requeue {
    struct broker *b;
    struct job *j; /* carries the channel's reference */
};

static void
requeue_fn(void *arg)
{
    struct requeue *r = arg;
    struct broker *b = r->b;
    struct job *j = r->j;
    free(r);
    struct queue *q = j->queue;
    int rc = chan_send(q->jobs, &j, b->root);
    pthread_mutex_lock(&b->lock);
    send_finished(q, j, rc == 0);
    pthread_mutex_unlock(&b->lock);
    if (rc != 0)
        job_unref(j); /* shutting down: the job stays where it is */
}

void
broker_enqueue(struct broker *b, struct job *j)
{
    struct queue *q = j->queue;
    j->state = JOB_QUEUED;
    j->since_ms = timer_now_ms();
    job_ref(j); /* the channel's reference */
    j->in_channel = CHAN_SENDING;
    q->inflight_sends++;
    if (chan_try_send(q->jobs, &j) == 0) {
        send_finished(q, j, true);
        return;
    }
    struct requeue *r = malloc(sizeof *r);
    if (r) {
        r->b = b;
        r->j = j;
        if (go(requeue_fn, r) == 0)
            return;
        free(r);
    }
    /* No memory for a goroutine: the job stays QUEUED outside the channel;
     * a kick or restart is the way back. Say so loudly. */
    send_finished(q, j, false);
    job_unref(j);
}

bool
broker_took_from_channel(struct broker *b, struct queue *q, struct job *j)
{
    if (j->in_channel == CHAN_IN && j->state != JOB_QUEUED)
        q->tombstones--;
    j->in_channel = CHAN_OUT;
    if (j->state != JOB_QUEUED)
        return false;
    job_set_queue(j, q); /* a send-side select may have put it here */
    return true;
}

static void
holder_link(struct holder *h, struct job *j)
{
    j->holder = h;
    j->res_prev = NULL;
    j->res_next = h->reserved;
    if (h->reserved)
        h->reserved->res_prev = j;
    h->reserved = j;
    h->nreserved++;
}

void
broker_reserve(struct broker *b, struct job *j, struct holder *h)
{
    struct queue *q = j->queue;
    j->state = JOB_RESERVED;
    j->attempt++;
    q->reserved++;
    q->count.delivered++;
    holder_link(h, j);
    j->since_ms = timer_now_ms();
    j->ttr_due = j->since_ms + j->ttr_ms;
    broker_arm_timer(j, j->ttr_ms);
    bj_log_reserve(b, j);
}

/* A per-thread xorshift: fair queue order without a shared lock. */
static uint32_t
fast_rand(void)
{
    static _Thread_local uint32_t state;
    if (state == 0)
        state = (uint32_t)(uintptr_t)&state ^ (uint32_t)timer_now_ms() ^ 0x9e3779b9u;
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    return state;
}

static void
shuffle(struct queue **qs, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t k = fast_rand() % i;
        struct queue *t = qs[i - 1];
        qs[i - 1] = qs[k];
        qs[k] = t;
    }
}

/* Resolves "queue" or "queues" into qs (created on first use). Lock held. */
static int
resolve_queues(struct broker *b, const struct request *req, struct queue **qs, size_t *nq,
               struct proto_error *err)
{
    if (req->nqueues == 0) {
        qs[0] = broker_get_queue(b, req->queue.ptr, req->queue.len, err);
        *nq = 1;
        return qs[0] ? 0 : -1;
    }
    for (size_t i = 0; i < req->nqueues; i++) {
        qs[i] = broker_get_queue(b, req->queues[i].ptr, req->queues[i].len, err);
        if (!qs[i])
            return -1;
    }
    *nq = req->nqueues;
    return 0;
}

/* ---- submit ---- */

void
broker_set_journal(struct broker *b, struct journal *j)
{
    b->journal = j;
}

/* Undoes a submit that could not place its job: it never existed. */
void
broker_forget_job(struct broker *b, struct job *j)
{
    broker_untrack(b, j);
    broker_payload_freed(b, j->payload_len);
    j->state = JOB_CANCELLED; /* its timers see a final job and do nothing */
    if (j->extra && j->extra->deadline_timer && timer_stop(j->extra->deadline_timer))
        job_unref(j);
    if (j->extra && j->extra->parent) {
        struct job_extra *px = j->extra->parent->extra;
        for (struct job **pp = &px->first_child; *pp; pp = &(*pp)->extra->next_sibling) {
            if (*pp == j) {
                *pp = j->extra->next_sibling;
                break;
            }
        }
    }
    job_unref(j);
}

static struct job *
create_job(struct broker *b, const struct request *req, struct queue *q, struct job *parent,
           struct proto_error *err)
{
    struct job *j = job_new(b->next_id, q, req->payload.ptr, req->payload.len);
    struct job_extra *x = NULL;
    if (j && (parent || req->has_deadline_ms))
        x = job_extra(j);
    if (!j || ((parent || req->has_deadline_ms) && !x) || jobtable_put(b->jobs, j) < 0) {
        if (j)
            job_unref(j);
        proto_error_set(err, PROTO_LIMIT, "out of memory for a new job");
        return NULL;
    }
    b->next_id++;
    broker_payload_held(b, req->payload.len);
    j->state = JOB_QUEUED; /* not in the channel yet: submit_place puts it there */
    j->in_channel = CHAN_OUT;
    j->ttr_ms = (int32_t)(req->has_ttr_ms ? req->ttr_ms : q->set.ttr_ms);
    j->max_attempts = (uint16_t)(req->has_max_attempts ? req->max_attempts : q->set.max_attempts);
    j->created_ms = broker_wall_ms();
    j->since_ms = timer_now_ms();
    if (parent) {
        job_ref(parent);
        x->parent = parent;
        struct job_extra *px = job_extra(parent);
        if (px) {
            x->next_sibling = px->first_child;
            px->first_child = j;
        }
    }
    if (req->has_delay_ms && req->delay_ms > 0)
        j->ttr_due = j->created_ms + req->delay_ms;
    if (req->has_deadline_ms) {
        j->deadline_ms = j->created_ms + req->deadline_ms;
        broker_arm_deadline(j, req->deadline_ms);
    }
    return j;
}

/* Checks what a submit needs before any job exists. Lock held. */
static int
submit_precheck(struct broker *b, const struct session *s, const struct request *req,
                struct queue **qs, size_t *nq, struct job **parent, struct proto_error *err)
{
    if (resolve_queues(b, req, qs, nq, err) < 0)
        return -1;
    size_t open = 0;
    for (size_t i = 0; i < *nq; i++)
        if (!qs[i]->closed)
            qs[open++] = qs[i];
    if (open == 0) {
        proto_error_set(err, PROTO_CLOSED, "queue '%s' is closed", qs[0]->name);
        return -1;
    }
    *nq = open;
    *parent = NULL;
    if (req->parent.len) {
        *parent = broker_lookup(b, &req->parent, err);
        if (!*parent)
            return -1;
        if ((*parent)->state == JOB_CANCELLED || (*parent)->state == JOB_EXPIRED) {
            proto_error_set(err, PROTO_CANCELLED, "parent job %.*s is %s", (int)req->parent.len,
                            req->parent.ptr, job_state_name((*parent)->state));
            return -1;
        }
    }
    /* One budget with the connections' buffers (daemon/membudget.h), less
     * this request's own line: its payload takes the line's place. */
    size_t used = membudget_used(&b->mem);
    used -= used < s->line_bytes ? used : s->line_bytes;
    if (used + req->payload.len > b->cfg.max_payload_bytes) {
        proto_error_set(err, PROTO_LIMIT, "memory budget of %zu bytes is used up",
                        b->cfg.max_payload_bytes);
        return -1;
    }
    return 0;
}

static int
submit_ok(struct broker *b, struct job *j, const struct request *req, struct buf *out)
{
    char idbuf[24];
    struct span qname = {NULL, 0};
    if (req->nqueues > 0) {
        qname.ptr = j->queue->name;
        qname.len = j->queue->name_len;
    }
    j->queue->count.submitted++;
    return encode_ok_id(out, req->rid, broker_id_span(j->id, idbuf), qname);
}

/* Tries to put j into one of qs now (random order among them). Lock held;
 * j already carries the channel's reference and CHAN_SENDING. */
static bool
submit_try_now(struct queue **qs, size_t nq, struct job *j)
{
    shuffle(qs, nq);
    for (size_t i = 0; i < nq; i++) {
        if (chan_try_send(qs[i]->jobs, &j) == 0) {
            job_set_queue(j, qs[i]);
            qs[i]->inflight_sends++;
            send_finished(qs[i], j, true);
            return true;
        }
    }
    return false;
}

static void
submit_failed(struct broker *b, struct queue **qs, size_t nq, struct job *j, int rc,
              struct bj_waits *w, struct proto_error *err)
{
    bool unbuffered = qs[0]->set.capacity == 0;
    if (rc == -ETIMEDOUT || rc == -EAGAIN) {
        for (size_t i = 0; i < nq; i++)
            qs[i]->count.rejected_full++;
        if (unbuffered)
            proto_error_set(err, PROTO_TIMEOUT, "no consumer took the job from '%s' in time",
                            qs[0]->name);
        else
            proto_error_set(err, PROTO_QUEUE_FULL, "queue '%s' is at capacity %lld",
                            qs[0]->name, (long long)qs[0]->set.capacity);
    } else if (rc == -EPIPE) {
        proto_error_set(err, PROTO_CLOSED, "queue '%s' is closed", qs[0]->name);
    } else {
        proto_error_set(err, PROTO_SHUTTING_DOWN, "the wait was cancelled");
    }
    j->in_channel = CHAN_OUT;
    job_unref(j); /* the channel's reference */
    /* A job cancelled or expired while it waited is final and kept as such;
     * any other never existed for the client. */
    if (!job_state_is_final(j->state)) {
        bj_log_drop(b, j->id, w);
        broker_forget_job(b, j);
    }
}

/* Parks until one of qs has room (or closes, or time runs out). Called
 * with the lock held; returns with it held. Returns 0 with j sent. */
static int
submit_wait(struct broker *b, struct session *s, struct queue **qs, size_t *nq, struct job *j,
            int64_t wait_ms)
{
    int64_t start = timer_now_ms();
    int64_t until = start + wait_ms;
    for (;;) {
        struct chan_case cases[2 * MAX_SELECT_QUEUES];
        for (size_t i = 0; i < *nq; i++) {
            qs[i]->inflight_sends++;
            qs[i]->waiting_submitters++;
            cases[2 * i] = (struct chan_case){qs[i]->jobs, CHAN_SEND, &j, false};
            cases[2 * i + 1] = (struct chan_case){qs[i]->closing, CHAN_RECV, NULL, false};
        }
        pthread_mutex_unlock(&b->lock);
        session_before_park(s);
        int64_t left = until - timer_now_ms();
        int r = left > 0 ? chan_select(cases, 2 * *nq, s->ctx, left) : -ETIMEDOUT;
        pthread_mutex_lock(&b->lock);
        int64_t waited = timer_now_ms() - start;
        size_t kept = 0;
        int sent_to = r >= 0 && r % 2 == 0 ? r / 2 : -1;
        for (size_t i = 0; i < *nq; i++) {
            struct queue *q = qs[i];
            q->waiting_submitters--;
            q->count.blocked_ms += (uint64_t)waited;
            if ((int)i == sent_to) {
                job_set_queue(j, q);
                send_finished(q, j, true);
                continue;
            }
            q->inflight_sends--;
            broker_check_drained(q);
            if (!q->closed)
                qs[kept++] = q;
        }
        if (sent_to >= 0) {
            qs[0] = j->queue;
            *nq = 1;
            return 0;
        }
        if (r < 0)
            return r;
        /* A queue closed under us: go on with the others, if any. */
        if (kept == 0)
            return -EPIPE;
        *nq = kept;
    }
}

static int
submit_place(struct broker *b, struct session *s, const struct request *req, struct queue **qs,
             size_t nq, struct job *j, struct bj_waits *w, struct proto_error *err)
{
    if (job_state_is_final(j->state))
        return 0; /* cancelled with its parent while it was being recorded */
    if (req->has_delay_ms && req->delay_ms > 0) {
        j->state = JOB_DELAYED;
        j->queue->delayed++;
        broker_arm_timer(j, j->ttr_due - broker_wall_ms());
        return 0;
    }
    job_ref(j); /* the channel's reference */
    j->in_channel = CHAN_SENDING;
    if (submit_try_now(qs, nq, j))
        return 0;
    int64_t wait_ms = req->has_wait_ms ? req->wait_ms : b->cfg.submit_wait_ms;
    int rc = wait_ms > 0 ? submit_wait(b, s, qs, &nq, j, wait_ms) : -EAGAIN;
    if (rc < 0) {
        submit_failed(b, qs, nq, j, rc, w, err);
        return -1;
    }
    return 0;
}

/* Records the submit of j in the journal, if there is one. The job is
 * placed at once, while the record is on its way to the disk (store and
 * dispatch run concurrently: a worker may get the job before its submit is
 * durable; only the producer's `ok` waits, in submit_settle). Lock held.
 * -1 with err set when the record could not even be queued (the job is
 * forgotten). */
static int
submit_record(struct broker *b, struct job *j, const struct request *req, struct bj_waits *sw,
              struct proto_error *err)
{
    if (!b->journal)
        return 0;
    bj_log_submit(b, j, req->has_delay_ms ? req->delay_ms : 0, sw);
    if (sw->rc == 0)
        return 0;
    bj_waits_finish(sw, NULL, err);
    broker_forget_job(b, j);
    return -1;
}

/* answer_done_fn of a deferred submit answer: the job, if its record did
 * not reach the disk, is withdrawn. Takes over a job reference. */
static void
submit_durable_done(void *arg, int rc)
{
    struct job *j = arg;
    if (rc < 0) {
        struct broker *b = job_broker(j);
        pthread_mutex_lock(&b->lock);
        broker_withdraw(b, j);
        pthread_mutex_unlock(&b->lock);
    }
    job_unref(j);
}

/* Waits until the submit record of j is durable (or hands that wait over
 * to the connection's answers, s->answers). If it is not durable, the
 * answer already encoded from `mark` on is dropped and the job withdrawn
 * from wherever it got meanwhile. Lock not held. Takes over the caller's
 * job reference. */
static int
submit_settle(struct session *s, struct span rid, struct job *j, struct bj_waits *sw,
              struct buf *out, size_t mark, struct proto_error *err)
{
    if (bj_waits_defer(sw, s, rid, out, mark, submit_durable_done, j) == 0)
        return 0;
    int rc = bj_waits_finish(sw, NULL, err);
    if (rc < 0)
        out->len = mark;
    submit_durable_done(j, rc);
    return rc < 0 ? -1 : 0;
}

int
broker_op_submit(struct broker *b, struct session *s, const struct request *req, struct buf *out,
                 struct proto_error *err)
{
    struct queue *qs[MAX_SELECT_QUEUES];
    size_t nq;
    struct job *parent;
    struct bj_waits w, sw; /* a drop record's; the submit record's */
    bj_waits_init(&w);
    bj_waits_init(&sw);
    pthread_mutex_lock(&b->lock);
    int rc = submit_precheck(b, s, req, qs, &nq, &parent, err);
    struct job *j = rc == 0 ? create_job(b, req, qs[0], parent, err) : NULL;
    if (!j || submit_record(b, j, req, &sw, err) < 0)
        goto out_unlock_err;
    job_ref(j); /* for submit_settle */
    if (submit_place(b, s, req, qs, nq, j, &w, err) < 0) {
        job_unref(j);
        goto out_unlock_err;
    }
    size_t mark = out->len;
    rc = submit_ok(b, j, req, out);
    pthread_mutex_unlock(&b->lock);
    if (rc < 0) {
        out->len = mark;
        submit_settle(NULL, req->rid, j, &sw, out, mark, err);
        proto_error_set(err, PROTO_INTERNAL, "out of memory encoding the answer");
        return -1;
    }
    return submit_settle(s, req->rid, j, &sw, out, mark, err);

out_unlock_err:
    pthread_mutex_unlock(&b->lock);
    bj_waits_finish(&sw, NULL, NULL); /* the submit record, if any, then */
    bj_waits_finish(&w, NULL, NULL);  /* a drop record, if any */
    return -1;
}

/* ---- fetch ---- */

/* Takes up to max ready jobs from qs (in the given order), reserving them
 * for h. Lock held. Returns how many; each got[] carries the channel's
 * reference. */
static size_t
take_ready(struct broker *b, struct queue **qs, size_t nq, struct holder *h, struct job **got,
           size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < nq && n < max; i++) {
        struct queue *q = qs[i];
        if (q->paused)
            continue;
        struct job *j;
        while (n < max && chan_try_recv(q->jobs, &j) == 0) {
            if (broker_took_from_channel(b, q, j)) {
                broker_reserve(b, j, h);
                got[n++] = j;
            } else {
                job_unref(j);
            }
        }
        broker_check_drained(q);
    }
    return n;
}

static bool
all_closed_and_drained(struct queue **qs, size_t nq)
{
    for (size_t i = 0; i < nq; i++) {
        broker_check_drained(qs[i]);
        if (!qs[i]->drained_sent)
            return false;
    }
    return true;
}

static int
encode_fetched(const struct request *req, struct job **got, size_t n, struct buf *out)
{
    struct proto_job pj[n ? n : 1];
    char ids[n ? n : 1][24];
    for (size_t i = 0; i < n; i++) {
        struct job *j = got[i];
        pj[i] = (struct proto_job){
            .id = broker_id_span(j->id, ids[i]),
            .queue = {j->queue->name, j->queue->name_len},
            .payload = {j->payload, j->payload_len},
            .attempt = j->attempt,
            .ttr_ms = j->ttr_ms,
            .deadline = j->deadline_ms,
        };
    }
    return encode_jobs(out, req->rid, pj, n);
}

/* One parked wait for the first ready job. Lock held on entry and exit.
 * Returns the index of the queue that delivered into *j, -EAGAIN when the
 * plan changed (pause, resume, close), or -ETIMEDOUT / -ECANCELED. */
static int
fetch_park(struct broker *b, struct session *s, struct queue **qs, size_t nq, int64_t left,
           struct job **j)
{
    struct chan_case cases[3 * MAX_SELECT_QUEUES];
    struct chan *changed[MAX_SELECT_QUEUES];
    for (size_t i = 0; i < nq; i++) {
        struct queue *q = qs[i];
        changed[i] = q->changed;
        chan_ref(changed[i]); /* pause/resume replaces it while we wait */
        q->waiting_fetchers++;
        cases[3 * i] = (struct chan_case){q->paused ? NULL : q->jobs, CHAN_RECV, j, false};
        cases[3 * i + 1] = (struct chan_case){changed[i], CHAN_RECV, NULL, false};
        cases[3 * i + 2] = (struct chan_case){q->closed ? q->drained : NULL, CHAN_RECV, NULL, false};
    }
    pthread_mutex_unlock(&b->lock);
    session_before_park(s);
    int r = chan_select(cases, 3 * nq, s->ctx, left);
    pthread_mutex_lock(&b->lock);
    for (size_t i = 0; i < nq; i++) {
        qs[i]->waiting_fetchers--;
        chan_unref(changed[i]);
    }
    if (r < 0)
        return r;
    return r % 3 == 0 ? r / 3 : -EAGAIN;
}

static int
fetch_fail(struct broker *b, int rc, struct proto_error *err)
{
    if (ctx_err(b->root) != 0)
        proto_error_set(err, PROTO_SHUTTING_DOWN, "server is stopping");
    else
        proto_error_set(err, PROTO_TIMEOUT, "the connection is closing (%d)", rc);
    return -1;
}

int
broker_op_fetch(struct broker *b, struct session *s, const struct request *req, struct buf *out,
                struct proto_error *err)
{
    struct queue *qs[MAX_SELECT_QUEUES];
    size_t nq;
    size_t max = req->has_count ? (size_t)req->count : 1;
    if (max > FETCH_MAX_COUNT)
        max = FETCH_MAX_COUNT;
    struct job **got = malloc(max * sizeof *got);
    if (!got) {
        proto_error_set(err, PROTO_INTERNAL, "out of memory");
        return -1;
    }
    int64_t timeout = req->has_timeout_ms ? req->timeout_ms : -1;
    int64_t until = timeout > 0 ? timer_now_ms() + timeout : 0;
    size_t n = 0;
    int rc = 0;
    pthread_mutex_lock(&b->lock);
    if (resolve_queues(b, req, qs, &nq, err) < 0) {
        rc = -1;
        goto out_unlock;
    }
    struct queue *order[MAX_SELECT_QUEUES];
    for (;;) {
        memcpy(order, qs, nq * sizeof *qs);
        if (!req->strict)
            shuffle(order, nq);
        n = take_ready(b, order, nq, s->holder, got, max);
        if (n > 0)
            break;
        if (all_closed_and_drained(qs, nq)) {
            proto_error_set(err, PROTO_CLOSED, "queue '%s' is closed and drained",
                            qs[0]->name);
            rc = -1;
            goto out_unlock;
        }
        int64_t left = until ? until - timer_now_ms() : timeout;
        if (timeout == 0 || (until && left <= 0))
            break;
        struct job *j = NULL;
        int k = fetch_park(b, s, qs, nq, left, &j);
        if (k >= 0) {
            if (!broker_took_from_channel(b, qs[k], j)) {
                job_unref(j);
                continue;
            }
            broker_reserve(b, j, s->holder);
            got[n++] = j;
            n += take_ready(b, order, nq, s->holder, got + n, max - n);
            break;
        }
        if (k == -ETIMEDOUT && ctx_err(s->ctx) == 0)
            break;
        if (k != -EAGAIN) {
            rc = fetch_fail(b, k, err);
            goto out_unlock;
        }
    }
    if (n > 0 && ctx_err(s->ctx) != 0) {
        /* The connection is closing: nobody will read this answer, so the
         * jobs were never delivered and must not lose an attempt (10,000
         * fetchers closed at once made a job dead after three such
         * "deliveries"). */
        for (size_t i = 0; i < n; i++)
            broker_give_back_uncounted(b, got[i], NULL);
    }
    if (encode_fetched(req, got, ctx_err(s->ctx) != 0 ? 0 : n, out) < 0) {
        proto_error_set(err, PROTO_INTERNAL, "out of memory encoding the answer");
        rc = -1;
    }
out_unlock:
    pthread_mutex_unlock(&b->lock);
    for (size_t i = 0; i < n; i++)
        job_unref(got[i]); /* the channel's reference; the table keeps the job */
    free(got);
    return rc;
}
