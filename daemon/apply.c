/* The state machine: records -> transitions (see apply.h). */
#include "chanq_config.h"

#include "daemon/apply.h"

#include "daemon/broker-internal.h"
#include "daemon/jrec.h"
#include "daemon/log.h"
#include "daemon/queue.h"
#include "daemon/schedule.h"

#include "core/chan.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static const enum job_state from_jrec[] = {
    [JREC_QUEUED] = JOB_QUEUED,   [JREC_DELAYED] = JOB_DELAYED,
    [JREC_DEAD] = JOB_DEAD,       [JREC_DONE] = JOB_DONE,
    [JREC_CANCELLED] = JOB_CANCELLED, [JREC_EXPIRED] = JOB_EXPIRED,
    [JREC_RESERVED] = JOB_RESERVED,
};

/* A record the state cannot take. Live, that is a bug: loud in debug
 * builds (abort), refused and logged in release builds (-1: the op
 * answers `internal`). In a replay or a standby, the journal may name a job
 * a compaction forgot, so it is skipped. */
static int
skip(struct broker *b, const struct jrec *r, uint64_t id, const char *why)
{
    if (b->serving) {
        log_error_kv(LOG_FIELDS(LOG_UINT("job", id), LOG_STR("record", jrec_type_name(r->type))),
                     "state machine: %s record for job %" PRIu64 " refused: %s",
                     jrec_type_name(r->type), id, why);
#ifndef NDEBUG
        abort();
#endif
        return -1;
    }
    log_debug_kv(LOG_FIELDS(LOG_UINT("job", id), LOG_STR("record", jrec_type_name(r->type))),
                 "journal: %s record for job %" PRIu64 " skipped: %s", jrec_type_name(r->type), id,
                 why);
    return 0;
}

/* The job a record names, in a state that may enter `to`; NULL after
 * *rc = skip(...) otherwise. */
static struct job *
job_for(struct broker *b, const struct jrec *r, uint64_t id, enum job_state to, int *rc)
{
    struct job *j = jobtable_get(b->jobs, id);
    if (!j)
        *rc = skip(b, r, id, "no such job");
    else if (!job_may(j->state, to))
        *rc = skip(b, r, id, job_state_name(j->state));
    else
        return j;
    return NULL;
}

/* Creates the job of a SUBMIT or JOB record, in the table, in no state. */
static struct job *
create(struct broker *b, const struct jrec *r, const struct jrec_submit *s, int *rc)
{
    struct proto_error err;
    struct queue *q = broker_get_queue(b, s->queue, s->queue_len, NULL, &err);
    if (!q) {
        log_error_kv(LOG_FIELDS(LOG_UINT("job", s->id)), "state machine: job %" PRIu64 ": %s",
                     s->id, err.message);
        *rc = -1;
        return NULL;
    }
    if (jobtable_get(b->jobs, s->id)) {
        *rc = skip(b, r, s->id, "a job with this id exists");
        return NULL;
    }
    struct job *j = job_new(s->id, q, s->payload, s->payload_len);
    if (!j ||
        (s->traceparent_len && job_set_traceparent(j, s->traceparent, s->traceparent_len) < 0) ||
        jobtable_put(b->jobs, j) < 0) {
        if (j)
            job_unref(j);
        log_error_kv(LOG_FIELDS(LOG_UINT("job", s->id)),
                     "state machine: out of memory for job %" PRIu64, s->id);
        *rc = -1;
        return NULL;
    }
    j->ttr_ms = (int32_t)s->ttr_ms;
    j->max_attempts = (uint16_t)s->max_attempts;
    j->created_ms = s->created_ms;
    j->deadline_ms = s->deadline_ms;
    /* A level past the top (only a foreign log has one) is the top. */
    j->priority = (uint8_t)(s->priority > JOB_MAX_PRIORITY ? JOB_MAX_PRIORITY : s->priority);
    if (s->id >= b->next_id)
        b->next_id = s->id + 1;
    if (s->key_len)
        broker_key_bind(b, j, s->key, s->key_len); /* out of memory: logged, no key */
    return j;
}

/* The job's first state; on failure it leaves the table again. */
static int
submitted(struct broker *b, struct job *j, const struct jrec_submit *s, bool place)
{
    struct job *parent = s->parent_id ? jobtable_get(b->jobs, s->parent_id) : NULL;
    if (job_submitted(j, s->due_ms, parent, place) == 0)
        return 0;
    log_error_kv(LOG_FIELDS(LOG_UINT("job", s->id)),
                 "state machine: out of memory for job %" PRIu64, s->id);
    job_unref(broker_untrack(b, j));
    return -1;
}

static int
apply_submit(struct broker *b, const struct jrec *r, const struct apply_how *how)
{
    int rc = 0;
    struct job *j = create(b, r, &r->u.submit, &rc);
    if (!j)
        return rc;
    return submitted(b, j, &r->u.submit, !(how && how->caller_places));
}

static int
apply_reserve(struct broker *b, const struct jrec *r, const struct apply_how *how)
{
    const struct jrec_reserve *rr = &r->u.reserve;
    struct job *j = jobtable_get(b->jobs, rr->id);
    /* Journals written before restarts recorded their requeue have a
     * RESERVE after a RESERVE: the reservation ended with that restart. */
    if (j && !b->serving && j->state == JOB_RESERVED)
        job_to_queued(j);
    int rc = 0;
    j = job_for(b, r, rr->id, JOB_RESERVED, &rc);
    if (!j)
        return rc;
    return job_to_reserved(j, how ? how->holder : NULL, (uint16_t)rr->attempt);
}

/* A record's error (or result) text replaces the job's; out of memory the
 * old text stays (the transition still happens). */
static void
set_text(struct job *j, const char *s, size_t len, bool result)
{
    if (len == 0)
        return;
    const char *old = j->extra ? (result ? j->extra->result : j->extra->error) : NULL;
    if (old && strlen(old) == len && memcmp(old, s, len) == 0)
        return;
    if ((result ? job_set_result(j, s, len) : job_set_error(j, s, len)) < 0)
        log_warn_kv(LOG_FIELDS(LOG_UINT("job", j->id)),
                    "job %" PRIu64 ": out of memory keeping its %s text", j->id,
                    result ? "result" : "error");
}

static int
enter(struct job *j, enum job_state to, int64_t due)
{
    switch (to) {
    case JOB_QUEUED:
        return job_to_queued(j);
    case JOB_DELAYED:
        return job_to_delayed(j, due);
    case JOB_DEAD:
        return job_to_dead(j);
    default:
        return job_to_final(j, to);
    }
}

static int
apply_state(struct broker *b, const struct jrec *r)
{
    const struct jrec_state *s = &r->u.state;
    enum job_state to = from_jrec[s->state];
    int rc = 0;
    struct job *j = job_for(b, r, s->id, to, &rc);
    if (!j)
        return rc;
    /* A reservation that ends without its delivery given back (release
     * lowers the attempt) is a failed attempt: its error goes to the history. */
    bool failed = j->state == JOB_RESERVED && s->attempt >= j->attempt;
    set_text(j, s->error, s->error_len, false);
    if (failed) {
        const char *e = j->extra ? j->extra->error : NULL;
        if (job_error_push(j, j->attempt, e, e ? strlen(e) : 0) < 0)
            log_warn("job %" PRIu64 ": out of memory keeping its error history", j->id);
    }
    j->attempt = (uint16_t)s->attempt;
    return enter(j, to, s->due_ms);
}

static int
apply_final(struct broker *b, const struct jrec *r)
{
    const struct jrec_final *f = &r->u.final;
    enum job_state to = from_jrec[f->state];
    int rc = 0;
    struct job *j = job_for(b, r, f->id, to, &rc);
    if (!j)
        return rc;
    set_text(j, f->result, f->result_len, true);
    return job_to_final(j, to);
}

static int
apply_drop(struct broker *b, const struct jrec *r)
{
    struct job *j = jobtable_get(b->jobs, r->u.drop.id);
    if (!j || job_state_is_final(j->state))
        return skip(b, r, r->u.drop.id, j ? job_state_name(j->state) : "no such job");
    return job_dropped(j);
}

static int
apply_move(struct broker *b, const struct jrec *r)
{
    const struct jrec_move *m = &r->u.move;
    struct job *j = jobtable_get(b->jobs, m->id);
    struct queue *to = broker_find_queue(b, m->queue, m->queue_len);
    if (!j || !to || j->state != JOB_QUEUED)
        return skip(b, r, m->id, "not a queued job, or no such queue");
    if (j->queue == to)
        return 0;
    if (j->in_channel == CHAN_STANDBY) {
        /* A replay: it takes its place at the tail of its new queue. */
        queue_unplace(j->queue, j);
        job_moved(j, to);
        queue_place(to, j);
    } else {
        job_moved(j, to); /* live: the select already put it there */
    }
    return 0;
}

/* A record's delivery limits, when they are ones declare could set (a
 * rate comes with its interval and burst); else none, logged. */
static void
record_limits(const struct jrec_queue *r, struct queue_settings *set)
{
    bool ok = r->concurrency <= MSG_MAX_LIMIT && r->rate <= MSG_MAX_LIMIT &&
              r->burst <= MSG_MAX_LIMIT && r->rate_per_ms <= 86400000u &&
              (r->rate == 0) == (r->rate_per_ms == 0) && (r->rate == 0) == (r->burst == 0);
    if (!ok) {
        log_error("state machine: queue %.*s: limits out of range, ignored", (int)r->name_len,
                  r->name);
        return;
    }
    set->concurrency = (int64_t)r->concurrency;
    set->rate = (int64_t)r->rate;
    set->rate_per_ms = (int64_t)r->rate_per_ms;
    set->burst = (int64_t)r->burst;
}

static int
apply_queue(struct broker *b, const struct jrec_queue *r)
{
    struct proto_error err;
    struct queue_settings set = {
        .capacity = r->capacity, .ttr_ms = r->ttr_ms, .max_attempts = r->max_attempts};
    record_limits(r, &set);
    struct queue *q = broker_get_queue(b, r->name, r->name_len, &set, &err);
    if (!q) {
        log_error("state machine: queue %.*s: %s", (int)r->name_len, r->name, err.message);
        return -1;
    }
    if (queue_configure(q, &set) < 0) {
        log_error("state machine: queue %.*s: out of memory resizing it", (int)r->name_len, r->name);
        return -1;
    }
    if (q->paused != r->paused) {
        q->paused = r->paused;
        queue_signal_change(q); /* parked fetchers re-plan their select */
    }
    if (r->closed && !q->closed) {
        q->closed = true;
        chan_close(q->closing); /* parked submitters answer `closed` */
        queue_signal_change(q); /* parked fetchers start watching `drained` */
        if (q->jobs)
            queue_check_drained(q);
    }
    return 0;
}

/* A snapshot's job: created straight into its state, at the tail of that
 * state's list (ORDER records then put the lists in order). */
static int
apply_job(struct broker *b, const struct jrec *r)
{
    const struct jrec_job *ji = &r->u.job;
    int rc = 0;
    struct job *j = create(b, r, &ji->s, &rc);
    if (!j)
        return rc;
    struct jrec_submit first = ji->s;
    if (ji->state != JREC_DELAYED)
        first.due_ms = 0;
    if (submitted(b, j, &first, true) < 0)
        return -1;
    set_text(j, ji->error, ji->error_len, false);
    set_text(j, ji->result, ji->result_len, true);
    enum job_state to = from_jrec[ji->state];
    /* The table's way there: dead and done jobs were reserved first. */
    bool via_reserved = to == JOB_RESERVED || to == JOB_DEAD || to == JOB_DONE;
    if (via_reserved && job_to_reserved(j, NULL, (uint16_t)ji->attempt) < 0)
        return -1;
    j->attempt = (uint16_t)ji->attempt;
    if (to == JOB_QUEUED || to == JOB_DELAYED || to == JOB_RESERVED)
        return 0;
    return enter(j, to, 0);
}

static struct job_list *
order_list(struct broker *b, const struct jrec_order *o, struct job *j)
{
    if (o->kind == JREC_ORDER_FINISHED)
        return j->state != JOB_DEAD && job_state_is_final(j->state) ? &b->finished : NULL;
    struct queue *q = j->queue;
    if (q->name_len != o->queue_len || memcmp(q->name, o->queue, o->queue_len) != 0)
        return NULL;
    if (o->kind == JREC_ORDER_DEAD)
        return j->state == JOB_DEAD ? &q->dead : NULL;
    bool waiting = j->state == JOB_QUEUED || (j->state == JOB_RESERVED && !j->holder);
    return waiting && j->in_channel == CHAN_STANDBY ? &q->standby : NULL;
}

static int
apply_order(struct broker *b, const struct jrec *r)
{
    const struct jrec_order *o = &r->u.order;
    if (b->serving)
        return skip(b, r, 0, "an order record outside a snapshot");
    size_t pos = 0;
    uint64_t id;
    while (jrec_order_next(o, &pos, &id)) {
        struct job *j = jobtable_get(b->jobs, id);
        struct job_list *l = j ? order_list(b, o, j) : NULL;
        if (!l) {
            skip(b, r, id, "not on the list the record orders");
            continue;
        }
        job_list_remove(l, j);
        job_list_append(l, j);
    }
    return 0;
}

/* A schedule's firing: the job it made (when it made one) and its planned
 * time, from one record. */
static int
apply_fire(struct broker *b, const struct jrec *r, const struct apply_how *how)
{
    const struct jrec_fire *f = &r->u.fire;
    if (f->s.id) {
        int rc = 0;
        struct job *j = create(b, r, &f->s, &rc);
        if (!j)
            return rc;
        if (submitted(b, j, &f->s, !(how && how->caller_places)) < 0)
            return -1;
    }
    return schedule_apply_fire(b, f);
}

static int
apply_remove(struct broker *b, const struct jrec *r)
{
    const struct jrec_remove *rm = &r->u.remove;
    if (rm->kind == JREC_REMOVE_JOB) {
        struct job *j = jobtable_get(b->jobs, rm->id);
        return j ? job_deleted(j) : skip(b, r, rm->id, "no such job");
    }
    struct queue *q = broker_find_queue(b, rm->queue, rm->queue_len);
    if (!q)
        return skip(b, r, 0, "no such queue");
    if (rm->kind == JREC_REMOVE_QUEUE) {
        broker_delete_queue(b, q);
        return 0;
    }
    static const enum jobindex_kind which[] = {
        [JREC_PURGE_QUEUED] = JOBINDEX_QUEUED, [JREC_PURGE_DELAYED] = JOBINDEX_DELAYED,
        [JREC_PURGE_DEAD] = JOBINDEX_DEAD, [JREC_PURGE_FINISHED] = JOBINDEX_FINISHED,
    };
    broker_purge(b, q, which[rm->purge]);
    return 0;
}

/* A snapshot's error history of a job (its JOB record came before). */
static int
apply_errors(struct broker *b, const struct jrec *r)
{
    const struct jrec_errors *e = &r->u.errors;
    struct job *j = jobtable_get(b->jobs, e->id);
    if (!j || job_errors_count(j) > 0)
        return skip(b, r, e->id, j ? "it has a history already" : "no such job");
    size_t pos = 0;
    struct jrec_error er;
    while (jrec_errors_next(e, &pos, &er)) {
        if (job_error_push(j, er.attempt, er.has_text ? er.text : NULL, er.text_len) < 0) {
            log_error("state machine: out of memory for job %" PRIu64 "'s errors", e->id);
            return -1;
        }
    }
    return 0;
}

int
apply_record(struct broker *b, const struct jrec *r, const struct apply_how *how)
{
    switch (r->type) {
    case JREC_SUBMIT:
        return apply_submit(b, r, how);
    case JREC_RESERVE:
        return apply_reserve(b, r, how);
    case JREC_STATE:
        return apply_state(b, r);
    case JREC_FINAL:
        return apply_final(b, r);
    case JREC_DROP:
        return apply_drop(b, r);
    case JREC_QUEUE:
        return apply_queue(b, &r->u.queue);
    case JREC_MOVE:
        return apply_move(b, r);
    case JREC_JOB:
        return apply_job(b, r);
    case JREC_ORDER:
        return apply_order(b, r);
    case JREC_KEY:
        return broker_key_apply(b, &r->u.key);
    case JREC_SCHEDULE:
        return schedule_apply(b, &r->u.schedule);
    case JREC_FIRE:
        return apply_fire(b, r, how);
    case JREC_REMOVE:
        return apply_remove(b, r);
    case JREC_ERRORS:
        return apply_errors(b, r);
    }
    return skip(b, r, 0, "unknown record type");
}
