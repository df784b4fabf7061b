/* Jobs: allocation, references, ids, and the lifecycle (see job.h).
 *
 * A transition's effects belong to the modules that own them: placement
 * to queue.c, holders and timers to reservation.c. Those call back into
 * the lifecycle only through records (a timer that fires commits one,
 * which apply.c turns into a transition here), so the files call each
 * other in that one loop, on purpose; no header includes another that
 * includes it back. */
#include "chanq_config.h"

#include "daemon/job.h"

#include "daemon/broker-internal.h"
#include "daemon/jobindex.h"
#include "daemon/log.h"
#include "daemon/queue.h"
#include "daemon/reservation.h"

#include "core/chan.h"
#include "core/timer.h"

#include <stdlib.h>
#include <string.h>

static const char *const state_names[] = {
    [JOB_DELAYED] = "delayed", [JOB_QUEUED] = "queued",       [JOB_RESERVED] = "reserved",
    [JOB_DONE] = "done",       [JOB_DEAD] = "dead",           [JOB_CANCELLED] = "cancelled",
    [JOB_EXPIRED] = "expired",
};

/* The transition table: allowed[from] is the set of states a job in
 * `from` may enter (bit per state). Leaving the table (drop, eviction) is
 * checked by job_dropped and the kept-results list. */
#define TO(s) (1u << (s))
static const unsigned allowed[JOB_NSTATES] = {
    [JOB_DELAYED] = TO(JOB_QUEUED) | TO(JOB_CANCELLED) | TO(JOB_EXPIRED),
    [JOB_QUEUED] = TO(JOB_RESERVED) | TO(JOB_CANCELLED) | TO(JOB_EXPIRED),
    [JOB_RESERVED] = TO(JOB_QUEUED) | TO(JOB_DELAYED) | TO(JOB_DEAD) | TO(JOB_DONE) |
                     TO(JOB_CANCELLED) | TO(JOB_EXPIRED),
    [JOB_DEAD] = TO(JOB_QUEUED),
    [JOB_DONE] = 0,
    [JOB_CANCELLED] = 0,
    [JOB_EXPIRED] = 0,
};

/* ---- allocation, references, names ---- */

struct job *
job_new(uint64_t id, struct queue *q, const char *payload, size_t len)
{
    struct job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->payload = malloc(len + 1);
    if (!j->payload) {
        free(j);
        return NULL;
    }
    memcpy(j->payload, payload, len);
    j->payload[len] = '\0';
    j->payload_len = (uint32_t)len;
    j->id = id;
    j->queue = q;
    queue_ref(q); /* j->queue: held for the job's life (queue.h) */
    j->state = JOB_NSTATES; /* none yet */
    atomic_init(&j->refs, 1);
    return j;
}

void
job_ref(struct job *j)
{
    atomic_fetch_add_explicit(&j->refs, 1, memory_order_relaxed);
}

static void
extra_free(struct job_extra *x)
{
    if (!x)
        return;
    free(x->result);
    free(x->error);
    free(x->traceparent);
    if (x->done)
        chan_unref(x->done);
    timer_free(x->deadline_timer);
    job_errors_free(x->errors);
    if (x->parent)
        job_unref(x->parent);
    free(x);
}

void
job_unref(struct job *j)
{
    if (atomic_fetch_sub_explicit(&j->refs, 1, memory_order_acq_rel) != 1)
        return;
    timer_free(j->timer);
    extra_free(j->extra);
    free(j->payload);
    queue_unref(j->queue);
    free(j);
}

struct job_extra *
job_extra(struct job *j)
{
    if (!j->extra)
        j->extra = calloc(1, sizeof *j->extra);
    return j->extra;
}

static int
replace_text(struct job *j, char **slot_of(struct job_extra *), const char *s, size_t len)
{
    struct job_extra *x = job_extra(j);
    char *text = x ? strndup(s, len) : NULL;
    if (!text)
        return -1;
    char **slot = slot_of(x);
    free(*slot);
    *slot = text;
    return 0;
}

static char **
error_slot(struct job_extra *x)
{
    return &x->error;
}

static char **
result_slot(struct job_extra *x)
{
    return &x->result;
}

int
job_set_error(struct job *j, const char *s, size_t len)
{
    return replace_text(j, error_slot, s, len);
}

int
job_set_result(struct job *j, const char *s, size_t len)
{
    return replace_text(j, result_slot, s, len);
}

static char **
traceparent_slot(struct job_extra *x)
{
    return &x->traceparent;
}

int
job_set_traceparent(struct job *j, const char *s, size_t len)
{
    return replace_text(j, traceparent_slot, s, len);
}

const char *
job_traceparent(const struct job *j)
{
    return j->extra ? j->extra->traceparent : NULL;
}

bool
job_state_is_final(enum job_state s)
{
    return s == JOB_DONE || s == JOB_DEAD || s == JOB_CANCELLED || s == JOB_EXPIRED;
}

const char *
job_state_name(enum job_state s)
{
    return s < JOB_NSTATES ? state_names[s] : "none";
}

size_t
job_id_format(uint64_t id, char *buf)
{
    char tmp[21];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + id % 10);
        id /= 10;
    } while (id);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    buf[n] = '\0';
    return n;
}

bool
job_id_parse(const char *s, size_t len, uint64_t *out)
{
    if (len == 0 || len > 20)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* ---- lists ---- */

void
job_list_append(struct job_list *l, struct job *j)
{
    j->next = NULL;
    j->prev = l->tail;
    if (l->tail)
        l->tail->next = j;
    else
        l->head = j;
    l->tail = j;
    l->n++;
}

void
job_list_remove(struct job_list *l, struct job *j)
{
    if (j->prev)
        j->prev->next = j->next;
    else
        l->head = j->next;
    if (j->next)
        j->next->prev = j->prev;
    else
        l->tail = j->prev;
    j->prev = j->next = NULL;
    l->n--;
}

/* ---- the parent/child tree ---- */

static void
tree_link(struct job *j, struct job *parent)
{
    struct job_extra *x = j->extra, *px = parent->extra;
    job_ref(parent);
    x->parent = parent;
    x->next_sibling = px->first_child;
    px->first_child = j;
}

/* j leaves the table: its parent forgets it, and its children forget j
 * (children hold a reference to their parent, not the other way round:
 * a parent that is gone is gone for them too, as after a replay of a
 * journal that no longer holds the parent). */
static void
tree_unlink(struct job *j)
{
    struct job_extra *x = j->extra;
    if (!x)
        return;
    if (x->parent) {
        struct job_extra *px = x->parent->extra;
        for (struct job **pp = &px->first_child; *pp; pp = &(*pp)->extra->next_sibling) {
            if (*pp == j) {
                *pp = x->next_sibling;
                break;
            }
        }
        x->next_sibling = NULL;
    }
    for (struct job *c = x->first_child; c;) {
        struct job *next = c->extra->next_sibling;
        c->extra->next_sibling = NULL;
        c->extra->parent = NULL;
        job_unref(j);
        c = next;
    }
    x->first_child = NULL;
}

/* ---- leaving and entering states ---- */

bool
job_may(enum job_state from, enum job_state to)
{
    return from < JOB_NSTATES && to < JOB_NSTATES && (allowed[from] & TO(to)) != 0;
}

/* A transition the table forbids is a bug in the caller: loud in debug
 * builds, refused (and logged) in release builds. */
static int
refuse(const struct job *j, enum job_state to)
{
    log_error_kv(LOG_FIELDS(LOG_UINT("job", j->id), LOG_STR("state", job_state_name(j->state))),
                 "job %llu: %s -> %s is not a transition of the lifecycle (refused)",
                 (unsigned long long)j->id, job_state_name(j->state), job_state_name(to));
#ifndef NDEBUG
    abort();
#endif
    return -1;
}

/* The index of j's queue that holds the jobs of j's state. */
static struct jobindex *
state_index(struct job *j)
{
    static const unsigned char kind[JOB_NSTATES] = {
        [JOB_DELAYED] = JOBINDEX_DELAYED, [JOB_QUEUED] = JOBINDEX_QUEUED,
        [JOB_RESERVED] = JOBINDEX_RESERVED, [JOB_DEAD] = JOBINDEX_DEAD,
        [JOB_DONE] = JOBINDEX_FINISHED, [JOB_CANCELLED] = JOBINDEX_FINISHED,
        [JOB_EXPIRED] = JOBINDEX_FINISHED,
    };
    return &j->queue->ix[kind[j->state]];
}

/* j has just entered its state: it joins that state's index. */
static void
indexed(struct job *j)
{
    jobindex_insert(state_index(j), j);
}

static void
leave(struct job *j)
{
    struct queue *q = j->queue;
    if (j->state < JOB_NSTATES)
        jobindex_remove(state_index(j), j);
    switch (j->state) {
    case JOB_DELAYED:
        q->delayed--;
        job_timer_stop(j);
        break;
    case JOB_QUEUED:
        queue_unplace(q, j);
        break;
    case JOB_RESERVED:
        reservation_end(j);
        q->reserved--;
        if (q->starved)
            queue_room_freed(q); /* a concurrency slot came free */
        break;
    case JOB_DEAD:
        job_list_remove(&q->dead, j);
        if (j->extra && j->extra->done) {
            /* It is live again: a later `wait` must wait anew. */
            chan_unref(j->extra->done);
            j->extra->done = NULL;
        }
        break;
    default:
        break;
    }
}

static void
wake_waiters(struct job *j)
{
    if (j->extra && j->extra->done && !chan_is_closed(j->extra->done))
        chan_close(j->extra->done);
}

int
job_submitted(struct job *j, int64_t due, struct job *parent, bool place)
{
    struct broker *b = j->queue->broker;
    if ((parent || j->deadline_ms) && (!job_extra(j) || (parent && !job_extra(parent))))
        return -1;
    if (parent)
        tree_link(j, parent);
    broker_payload_held(b, j->payload_len);
    if (j->deadline_ms && b->serving)
        job_deadline_arm(j);
    if (due > 0) {
        j->state = JOB_DELAYED;
        j->due = due;
        j->queue->delayed++;
        indexed(j);
        if (b->serving)
            job_timer_arm(j, due - clock_wall_ms());
        return 0;
    }
    j->state = JOB_QUEUED;
    j->in_channel = CHAN_OUT;
    indexed(j);
    if (place)
        queue_place(j->queue, j);
    return 0;
}

int
job_to_queued(struct job *j)
{
    if (!job_may(j->state, JOB_QUEUED))
        return refuse(j, JOB_QUEUED);
    leave(j);
    j->state = JOB_QUEUED;
    indexed(j);
    queue_place(j->queue, j);
    return 0;
}

int
job_to_delayed(struct job *j, int64_t due)
{
    if (!job_may(j->state, JOB_DELAYED))
        return refuse(j, JOB_DELAYED);
    leave(j);
    j->state = JOB_DELAYED;
    j->due = due;
    j->queue->delayed++;
    indexed(j);
    if (j->queue->broker->serving)
        job_timer_arm(j, due - clock_wall_ms());
    return 0;
}

int
job_to_reserved(struct job *j, struct holder *h, uint16_t attempt)
{
    if (!job_may(j->state, JOB_RESERVED))
        return refuse(j, JOB_RESERVED);
    leave(j);
    j->state = JOB_RESERVED;
    j->attempt = attempt;
    j->queue->reserved++;
    indexed(j);
    reservation_begin(j, h);
    return 0;
}

int
job_to_dead(struct job *j)
{
    if (!job_may(j->state, JOB_DEAD))
        return refuse(j, JOB_DEAD);
    leave(j);
    j->state = JOB_DEAD;
    indexed(j);
    job_list_append(&j->queue->dead, j);
    wake_waiters(j);
    return 0;
}

/* Forgets the oldest kept result (the bound on kept results). */
static void
evict_oldest_finished(struct broker *b)
{
    struct job *old = b->finished.head;
    job_list_remove(&b->finished, old);
    jobindex_remove(state_index(old), old);
    tree_unlink(old);
    job_unref(broker_untrack(b, old));
}

int
job_to_final(struct job *j, enum job_state final)
{
    struct broker *b = j->queue->broker;
    if (final == JOB_DEAD || !job_may(j->state, final))
        return refuse(j, final);
    leave(j);
    j->state = (uint8_t)final;
    indexed(j);
    broker_payload_freed(b, j->payload_len);
    free(j->payload);
    j->payload = NULL;
    j->payload_len = 0;
    job_deadline_stop(j);
    if (final == JOB_DONE)
        b->total_done++;
    else if (final == JOB_CANCELLED)
        b->total_cancelled++;
    else
        b->total_expired++;
    broker_key_finished(b, j);
    /* Waiters first: with --keep-results 0 the eviction below frees j. */
    wake_waiters(j);
    job_list_append(&b->finished, j);
    if (b->finished.n > b->cfg.max_finished)
        evict_oldest_finished(b);
    return 0;
}

int
job_dropped(struct job *j)
{
    struct broker *b = j->queue->broker;
    if (j->state != JOB_DELAYED && j->state != JOB_QUEUED && j->state != JOB_RESERVED)
        return refuse(j, JOB_NSTATES);
    leave(j);
    j->state = JOB_CANCELLED; /* its timers and a parked submitter see a dead end */
    broker_payload_freed(b, j->payload_len);
    job_deadline_stop(j);
    tree_unlink(j);
    broker_key_dropped(b, j);
    job_unref(broker_untrack(b, j));
    return 0;
}

void
job_moved(struct job *j, struct queue *to)
{
    bool on_index = j->state == JOB_QUEUED; /* not a job taken back meanwhile */
    if (on_index)
        jobindex_remove(state_index(j), j);
    struct queue *from = j->queue;
    queue_ref(to);
    job_set_queue(j, to);
    queue_unref(from); /* never the last: it is listed, or held by the submit moving j */
    if (on_index)
        indexed(j);
}

int
job_deleted(struct job *j)
{
    struct broker *b = j->queue->broker;
    if (j->state >= JOB_NSTATES)
        return refuse(j, JOB_NSTATES);
    if (j->state != JOB_DEAD && job_state_is_final(j->state)) {
        /* A kept result: its payload is gone already. */
        jobindex_remove(state_index(j), j);
        job_list_remove(&b->finished, j);
    } else {
        leave(j);
        broker_payload_freed(b, j->payload_len);
        job_deadline_stop(j);
    }
    j->state = JOB_CANCELLED; /* its timers, a tombstone and a parked submitter see a dead end */
    j->deleted = 1;
    wake_waiters(j);
    tree_unlink(j);
    job_unref(broker_untrack(b, j));
    return 0;
}
