/* The broker's durability: every state change becomes a journal record,
 * queued under the broker lock (so the log's order is the order of the
 * changes) and waited for after the lock is released (so a request's `ok`
 * leaves only once its record is durable). Also replay (records -> state)
 * and compaction's liveness test. docs/durability.md, "Integration". */
#include "chanq_config.h"

#include "daemon/broker-internal.h"
#include "daemon/idset.h"
#include "daemon/journal/journal.h"
#include "daemon/jrec.h"
#include "daemon/log.h"

#include "core/chan.h"
#include "core/timer.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- writing ---- */

static int
log_record(struct broker *b, const struct jrec *r, struct bj_waits *w)
{
    if (!b->journal)
        return 0;
    size_t size = jrec_size(r);
    uint8_t stackbuf[512];
    uint8_t *buf = size <= sizeof stackbuf ? stackbuf : malloc(size);
    if (!buf)
        return -ENOMEM;
    int rc = jrec_encode(r, buf, size);
    if (rc > 0) {
        struct journal_wait *jw = NULL;
        rc = journal_append_async(b->journal, buf, size, w ? &jw : NULL);
        if (rc == 0 && jw && bj_waits_add(w, jw) < 0) {
            journal_wait_release(jw);
            rc = -ENOMEM;
        }
    }
    if (buf != stackbuf)
        free(buf);
    if (rc < 0)
        log_error("journal: cannot queue a %s record: %s", jrec_type_name(r->type),
                  strerror(-rc));
    return rc < 0 ? rc : 0;
}

int
bj_waits_add(struct bj_waits *w, struct journal_wait *jw)
{
    if (w->n && w->v[w->n - 1] == jw) {
        /* Same batch as the previous record: one wait covers both. */
        journal_wait_release(jw);
        return 0;
    }
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 4;
        struct journal_wait **v = w->v == w->inline_v ? malloc(cap * sizeof *v)
                                                        : realloc(w->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        if (w->v == w->inline_v)
            memcpy(v, w->inline_v, w->n * sizeof *v);
        w->v = v;
        w->cap = cap;
    }
    w->v[w->n++] = jw;
    return 0;
}

void
bj_waits_init(struct bj_waits *w)
{
    w->v = w->inline_v;
    w->n = 0;
    w->cap = sizeof w->inline_v / sizeof w->inline_v[0];
    w->rc = 0;
}

/* Empties w (its waits were used up or handed over). */
static void
waits_reset(struct bj_waits *w)
{
    if (w->v != w->inline_v)
        free(w->v);
    bj_waits_init(w);
}

int
bj_waits_finish(struct bj_waits *w, struct ctx *ctx, struct proto_error *err)
{
    int r = journal_wait_all(w->v, w->n, ctx);
    int rc = w->rc < 0 ? w->rc : r;
    waits_reset(w);
    if (rc < 0 && err)
        answers_durable_error(rc, err);
    return rc;
}

int
bj_waits_defer(struct bj_waits *w, struct session *s, struct span rid, struct buf *out,
               size_t mark, answer_done_fn *done, void *arg)
{
    if (!s || !s->answers || w->n == 0 || w->rc < 0 ||
        answers_defer(s->answers, out, mark, w->v, w->n, rid, done, arg) < 0)
        return -1;
    waits_reset(w);
    return 0;
}

static int64_t
due_wall_ms(const struct job *j)
{
    return j->ttr_due; /* a delayed job's due time is wall-clock ms */
}

void
bj_log_submit(struct broker *b, struct job *j, int64_t delay_ms, struct bj_waits *w)
{
    const struct job_extra *x = j->extra;
    struct jrec r = {.type = JREC_SUBMIT};
    r.u.submit = (struct jrec_submit){
        .id = j->id,
        .queue = j->queue->name,
        .queue_len = j->queue->name_len,
        .payload = j->payload,
        .payload_len = j->payload_len,
        .ttr_ms = j->ttr_ms,
        .max_attempts = j->max_attempts,
        .created_ms = j->created_ms,
        .deadline_ms = j->deadline_ms,
        .due_ms = delay_ms > 0 ? j->ttr_due : 0,
        .parent_id = x && x->parent ? x->parent->id : 0,
    };
    if (log_record(b, &r, w) < 0)
        w->rc = -EIO;
}

void
bj_log_reserve(struct broker *b, struct job *j)
{
    struct jrec r = {.type = JREC_RESERVE};
    r.u.reserve = (struct jrec_reserve){.id = j->id, .attempt = j->attempt};
    log_record(b, &r, NULL);
}

void
bj_log_state(struct broker *b, struct job *j, struct bj_waits *w)
{
    static const enum jrec_job_state map[] = {
        [JOB_DELAYED] = JREC_DELAYED, [JOB_QUEUED] = JREC_QUEUED, [JOB_DEAD] = JREC_DEAD};
    const struct job_extra *x = j->extra;
    struct jrec r = {.type = JREC_STATE};
    r.u.state = (struct jrec_state){
        .id = j->id,
        .state = map[j->state],
        .attempt = j->attempt,
        .due_ms = j->state == JOB_DELAYED ? due_wall_ms(j) : 0,
        .error = x && x->error ? x->error : NULL,
        .error_len = x && x->error ? strlen(x->error) : 0,
    };
    if (log_record(b, &r, w) < 0 && w)
        w->rc = -EIO;
}

void
bj_log_final(struct broker *b, struct job *j, struct bj_waits *w)
{
    enum jrec_job_state st = j->state == JOB_DONE        ? JREC_DONE
                             : j->state == JOB_CANCELLED ? JREC_CANCELLED
                                                         : JREC_EXPIRED;
    const struct job_extra *x = j->extra;
    const char *result = st == JREC_DONE && x && x->result ? x->result : NULL;
    struct jrec r = {.type = JREC_FINAL};
    r.u.final = (struct jrec_final){
        .id = j->id, .state = st, .result = result, .result_len = result ? strlen(result) : 0};
    if (log_record(b, &r, w) < 0 && w)
        w->rc = -EIO;
}

void
bj_log_drop(struct broker *b, uint64_t id, struct bj_waits *w)
{
    struct jrec r = {.type = JREC_DROP};
    r.u.drop.id = id;
    if (log_record(b, &r, w) < 0 && w)
        w->rc = -EIO;
}

void
bj_log_queue(struct broker *b, const struct queue *q, struct bj_waits *w)
{
    struct jrec r = {.type = JREC_QUEUE};
    r.u.queue = (struct jrec_queue){
        .name = q->name,
        .name_len = q->name_len,
        .capacity = q->set.capacity,
        .ttr_ms = q->set.ttr_ms,
        .max_attempts = (uint32_t)q->set.max_attempts,
        .paused = q->paused,
        .closed = q->closed,
    };
    if (log_record(b, &r, w) < 0 && w)
        w->rc = -EIO;
}

/* ---- replay: records -> state (main thread, before serving) ---- */

/* Queued jobs in replay order, linked through res_prev/res_next (no job is
 * reserved during a replay); enqueued in that order when it ends. */
static void
replay_link(struct broker *b, struct job *j)
{
    j->res_next = NULL;
    j->res_prev = b->replay_tail;
    if (b->replay_tail)
        b->replay_tail->res_next = j;
    else
        b->replay_head = j;
    b->replay_tail = j;
}

static void
replay_unlink(struct broker *b, struct job *j)
{
    if (j->res_prev)
        j->res_prev->res_next = j->res_next;
    else
        b->replay_head = j->res_next;
    if (j->res_next)
        j->res_next->res_prev = j->res_prev;
    else
        b->replay_tail = j->res_prev;
    j->res_prev = j->res_next = NULL;
}

/* Takes a replayed job out of its current state's bookkeeping. */
static void
replay_leave(struct broker *b, struct job *j)
{
    switch (j->state) {
    case JOB_QUEUED:
        replay_unlink(b, j);
        break;
    case JOB_DELAYED:
        j->queue->delayed--;
        break;
    case JOB_DEAD:
        queue_dead_remove(j->queue, j);
        break;
    default:
        break;
    }
}

static void
replay_delay(struct job *j, int64_t due_ms)
{
    j->state = JOB_DELAYED;
    j->queue->delayed++;
    j->ttr_due = due_ms;
}

static int
replay_submit(struct broker *b, const struct jrec_submit *s)
{
    struct proto_error err;
    struct queue *q = broker_get_queue(b, s->queue, s->queue_len, &err);
    if (!q)
        return -ENOMEM;
    if (jobtable_get(b->jobs, s->id))
        return 0; /* already known: a duplicate is harmless */
    struct job *j = job_new(s->id, q, s->payload, s->payload_len);
    if (!j || jobtable_put(b->jobs, j) < 0) {
        if (j)
            job_unref(j);
        return -ENOMEM;
    }
    broker_payload_held(b, s->payload_len);
    j->ttr_ms = (int32_t)s->ttr_ms;
    j->max_attempts = (uint16_t)s->max_attempts;
    j->created_ms = s->created_ms;
    j->deadline_ms = s->deadline_ms;
    struct job *parent = s->parent_id ? jobtable_get(b->jobs, s->parent_id) : NULL;
    struct job_extra *x = parent || s->deadline_ms ? job_extra(j) : NULL;
    struct job_extra *px = parent ? job_extra(parent) : NULL;
    if (x && px) {
        job_ref(parent);
        x->parent = parent;
        x->next_sibling = px->first_child;
        px->first_child = j;
    }
    if (s->due_ms > broker_wall_ms()) {
        replay_delay(j, s->due_ms);
    } else {
        j->state = JOB_QUEUED;
        replay_link(b, j);
    }
    if (s->id >= b->next_id)
        b->next_id = s->id + 1;
    return 0;
}

static int
replay_state(struct broker *b, const struct jrec_state *s)
{
    struct job *j = jobtable_get(b->jobs, s->id);
    if (!j || (job_state_is_final(j->state) && j->state != JOB_DEAD))
        return 0;
    replay_leave(b, j);
    j->attempt = (uint16_t)s->attempt;
    if (s->error_len) {
        struct job_extra *x = job_extra(j);
        char *text = strndup(s->error, s->error_len);
        if (!x || !text) {
            free(text);
            return -ENOMEM;
        }
        free(x->error);
        x->error = text;
    }
    if (s->state == JREC_DEAD) {
        j->state = JOB_DEAD;
        queue_dead_push(j->queue, j);
    } else if (s->state == JREC_DELAYED && s->due_ms > broker_wall_ms()) {
        replay_delay(j, s->due_ms);
    } else {
        j->state = JOB_QUEUED;
        replay_link(b, j);
    }
    return 0;
}

static int
replay_final(struct broker *b, const struct jrec_final *f)
{
    struct job *j = jobtable_get(b->jobs, f->id);
    if (!j || (job_state_is_final(j->state) && j->state != JOB_DEAD))
        return 0;
    replay_leave(b, j);
    if (f->result_len) {
        struct job_extra *x = job_extra(j);
        char *text = strndup(f->result, f->result_len);
        if (!x || !text) {
            free(text);
            return -ENOMEM;
        }
        free(x->result);
        x->result = text;
    }
    enum job_state st = f->state == JREC_DONE        ? JOB_DONE
                        : f->state == JREC_CANCELLED ? JOB_CANCELLED
                                                     : JOB_EXPIRED;
    broker_finalize(b, j, st);
    return 0;
}

static int
replay_drop(struct broker *b, uint64_t id)
{
    struct job *j = jobtable_get(b->jobs, id);
    if (!j || job_state_is_final(j->state))
        return 0;
    replay_leave(b, j);
    broker_forget_job(b, j);
    return 0;
}

static int
replay_queue(struct broker *b, const struct jrec_queue *r)
{
    struct proto_error err;
    struct queue *q = broker_get_queue(b, r->name, r->name_len, &err);
    if (!q)
        return -ENOMEM;
    if (q->set.capacity != r->capacity) {
        /* Nothing is in the channel during a replay: resize it. */
        struct chan *c = chan_new(sizeof(struct job *), (size_t)r->capacity);
        if (!c)
            return -ENOMEM;
        chan_unref(q->jobs);
        q->jobs = c;
    }
    q->set.capacity = r->capacity;
    q->set.ttr_ms = r->ttr_ms;
    q->set.max_attempts = r->max_attempts;
    q->paused = r->paused;
    if (r->closed && !q->closed) {
        q->closed = true;
        chan_close(q->closing);
    }
    return 0;
}

int
broker_replay_apply(void *arg, const void *rec, size_t len)
{
    struct broker *b = arg;
    struct jrec r;
    const char *why = NULL;
    if (jrec_decode(rec, len, &r, &why) < 0) {
        log_error("journal: undecodable record (%s)", why ? why : "?");
        return -EBADMSG;
    }
    switch (r.type) {
    case JREC_SUBMIT:
        return replay_submit(b, &r.u.submit);
    case JREC_RESERVE: {
        struct job *j = jobtable_get(b->jobs, r.u.reserve.id);
        if (j && !job_state_is_final(j->state)) {
            /* It was being worked on when the log ended: back to the tail
             * of its queue, the interrupted delivery counted. */
            replay_leave(b, j);
            j->attempt = (uint16_t)r.u.reserve.attempt;
            j->state = JOB_QUEUED;
            replay_link(b, j);
        }
        return 0;
    }
    case JREC_STATE:
        return replay_state(b, &r.u.state);
    case JREC_FINAL:
        return replay_final(b, &r.u.final);
    case JREC_DROP:
        return replay_drop(b, r.u.drop.id);
    case JREC_QUEUE:
        return replay_queue(b, &r.u.queue);
    }
    return -EBADMSG;
}

struct replay_counts {
    size_t queued, delayed, dead, kept;
};

static void
arm_replayed(struct job *j, void *arg)
{
    struct replay_counts *n = arg;
    if (j->state == JOB_DELAYED) {
        broker_arm_timer(j, j->ttr_due - broker_wall_ms());
        n->delayed++;
    } else if (j->state == JOB_DEAD) {
        n->dead++;
    } else if (job_state_is_final(j->state)) {
        n->kept++;
    }
    if (j->deadline_ms && !job_state_is_final(j->state))
        broker_arm_deadline(j, j->deadline_ms - broker_wall_ms());
}

void
broker_replay_finish(struct broker *b)
{
    struct replay_counts n = {0, 0, 0, 0};
    pthread_mutex_lock(&b->lock);
    while (b->replay_head) {
        struct job *j = b->replay_head;
        replay_unlink(b, j);
        broker_enqueue(b, j);
        n.queued++;
    }
    jobtable_each(b->jobs, arm_replayed, &n);
    for (size_t i = 0; i < b->nqueues; i++)
        broker_check_drained(b->queues[i]);
    pthread_mutex_unlock(&b->lock);
    log_info("journal: restored %zu queues, %zu queued, %zu delayed, %zu dead jobs, %zu results",
             b->nqueues, n.queued, n.delayed, n.dead, n.kept);
}

/* ---- the replayed state as text, for comparing two replays ---- */

static int
cmp_job_id(const void *a, const void *b)
{
    uint64_t x = (*(struct job *const *)a)->id, y = (*(struct job *const *)b)->id;
    return x < y ? -1 : x > y;
}

struct job_list {
    struct job **v;
    size_t n;
};

static void
collect_job(struct job *j, void *arg)
{
    struct job_list *l = arg;
    l->v[l->n++] = j;
}

static void
dump_job(FILE *f, const struct job *j)
{
    const struct job_extra *x = j->extra;
    fprintf(f, "job %" PRIu64 " q=%.*s %s attempt=%u/%u ttr=%d created=%" PRId64
               " deadline=%" PRId64 " parent=%" PRIu64 " payload=%.*s error=%s result=%s\n",
            j->id, (int)j->queue->name_len, j->queue->name, job_state_name(j->state), j->attempt,
            j->max_attempts, j->ttr_ms, j->created_ms, j->deadline_ms,
            x && x->parent ? x->parent->id : 0, (int)j->payload_len,
            j->payload ? j->payload : "", x && x->error ? x->error : "-",
            x && x->result ? x->result : "-");
}

static void
dump_queue(FILE *f, struct broker *b, const struct queue *q)
{
    fprintf(f, "queue %.*s capacity=%lld ttr=%lld max_attempts=%lld paused=%d closed=%d\n",
            (int)q->name_len, q->name, (long long)q->set.capacity, (long long)q->set.ttr_ms,
            (long long)q->set.max_attempts, q->paused, q->closed);
    fputs("  queued:", f);
    for (const struct job *j = b->replay_head; j; j = j->res_next)
        if (j->queue == q)
            fprintf(f, " %" PRIu64, j->id);
    fputs("\n  dead:", f);
    for (const struct job *j = q->dead_head; j; j = j->dead_next)
        fprintf(f, " %" PRIu64, j->id);
    fputc('\n', f);
}

char *
broker_replay_dump(struct broker *b)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    pthread_mutex_lock(&b->lock);
    for (size_t i = 0; i < b->nqueues; i++)
        dump_queue(f, b, b->queues[i]);
    struct job_list l = {malloc((jobtable_count(b->jobs) + 1) * sizeof(struct job *)), 0};
    if (l.v) {
        jobtable_each(b->jobs, collect_job, &l);
        qsort(l.v, l.n, sizeof *l.v, cmp_job_id);
        for (size_t i = 0; i < l.n; i++)
            dump_job(f, l.v[i]);
        fprintf(f, "finished kept=%zu\n", b->nfinished);
    }
    pthread_mutex_unlock(&b->lock);
    free(l.v);
    if (fclose(f) != 0 || !l.v) {
        free(text);
        return NULL;
    }
    return text;
}

/* ---- compaction: which old records still matter ----
 *
 * The invariant: replaying the compacted journal gives the same state as
 * replaying the uncompacted one. A job's records are kept or dropped
 * together: all of them while the job is in the table, none once it is
 * forgotten (evicted after its final state, or withdrawn). A job forgotten
 * while a compaction runs counts as live until that compaction ends;
 * otherwise its submit, judged while it lived, would be kept and its ack,
 * judged after, dropped: the acked job would come back on restart. */

struct job *
broker_untrack(struct broker *b, struct job *j)
{
    if (b->compact_forgotten && idset_add(b->compact_forgotten, j->id) < 0)
        b->compact_oom = true;
    return jobtable_del(b->jobs, j->id);
}

void
broker_compact_window(void *arg, bool open)
{
    struct broker *b = arg;
    pthread_mutex_lock(&b->lock);
    idset_free(b->compact_forgotten);
    b->compact_forgotten = open ? idset_new() : NULL;
    b->compact_oom = open && !b->compact_forgotten;
    pthread_mutex_unlock(&b->lock);
}

static bool
job_is_live(struct broker *b, uint64_t id)
{
    /* Out of memory for the forgotten set: nothing can be dropped safely. */
    return b->compact_oom || jobtable_get(b->jobs, id) ||
           (b->compact_forgotten && idset_has(b->compact_forgotten, id));
}

static uint64_t
record_job_id(const struct jrec *r)
{
    switch (r->type) {
    case JREC_SUBMIT:
        return r->u.submit.id;
    case JREC_RESERVE:
        return r->u.reserve.id;
    case JREC_STATE:
        return r->u.state.id;
    case JREC_FINAL:
        return r->u.final.id;
    case JREC_DROP:
        return r->u.drop.id;
    case JREC_QUEUE:
        break;
    }
    return 0;
}

void
broker_keep_batch(void *arg, const struct journal_rec *recs, size_t n, bool *keep)
{
    struct broker *b = arg;
    pthread_mutex_lock(&b->lock);
    for (size_t i = 0; i < n; i++) {
        struct jrec r;
        keep[i] = true; /* when in doubt (undecodable, a queue record), keep */
        if (jrec_decode(recs[i].data, recs[i].len, &r, NULL) == 0 && r.type != JREC_QUEUE)
            keep[i] = job_is_live(b, record_job_id(&r));
    }
    pthread_mutex_unlock(&b->lock);
}
