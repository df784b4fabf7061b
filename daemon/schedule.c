/* Schedules: the registry, its records, the runner goroutine that fires
 * them and the `schedule` op (see schedule.h and docs/scheduling.md). */
#include "chanq_config.h"

#include "daemon/schedule.h"

#include "daemon/commit.h"
#include "daemon/cron.h"
#include "daemon/log.h"
#include "daemon/queue.h"

#include "core/chan.h"
#include "core/ctx.h"
#include "core/go.h"
#include "core/select.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How often the runner looks at the clock at the least: a wall clock
 * stepped forward is noticed within a second; the test clock (a file) is
 * polled. */
#define RUNNER_MAX_SLEEP_MS 1000
#define TEST_CLOCK_POLL_MS 25

struct schedule {
    char *name; /* owned; queue-name syntax */
    size_t name_len;
    char *cron_text;  /* the expression as given (owned) */
    struct cron cron; /* parsed */
    char *tz;         /* zone name, "" = UTC (owned) */
    char *queue;      /* target queue (owned) */
    size_t queue_len;
    char *payload; /* the template, compact JSON (owned; counted as payload) */
    size_t payload_len;
    int64_t ttr_ms;        /* 0 = the queue's */
    uint32_t max_attempts; /* 0 = the queue's */
    bool paused;
    bool missed_once; /* after a downtime: fire once for what was missed */
    int64_t since_ms; /* durable: only planned times after this */
    int64_t last_ms;  /* durable: the last planned time fired, 0 = none */
    /* Not durable: the runner's view. */
    int64_t floor_ms; /* planned times up to this are past (skip policy at start) */
    int64_t next_ms;  /* the next planned time, 0 = to compute, INT64_MAX = never */
    uint64_t fired;   /* firings since chanqd started */
    uint64_t skipped; /* firings that made no job (queue closed, no room) */
};

struct schedules {
    struct schedule **v; /* sorted by name */
    size_t n, cap;
    struct chan *wake;       /* capacity 1: a definition changed, the runner re-plans */
    struct ctx *ctx;         /* the runner's; cancelled to stop it */
    bool started;            /* the broker serves: schedules fire */
    bool running;            /* the runner goroutine is alive (it runs while there
                              * are schedules, so a broker without any has none) */
    char *clock_file;        /* the test clock (CHANQ_TEST_CLOCK_FILE), or NULL */
    int64_t started_ms;      /* when the runner started: earlier planned times were missed */
    uint64_t fired, skipped; /* totals since start */
    int64_t last_fire_ms;    /* planned time of the latest firing, 0 = none */
};

struct schedules *
schedules_new(void)
{
    struct schedules *ss = calloc(1, sizeof *ss);
    if (ss && !(ss->wake = chan_new(sizeof(int), 1))) {
        free(ss);
        ss = NULL;
    }
    return ss;
}

static void
schedule_free(struct schedule *s)
{
    if (!s)
        return;
    free(s->name);
    free(s->cron_text);
    free(s->tz);
    free(s->queue);
    free(s->payload);
    free(s);
}

void
schedules_free(struct schedules *ss)
{
    if (!ss)
        return;
    if (ss->ctx) {
        ctx_cancel(ss->ctx);
        ctx_release(ss->ctx);
    }
    for (size_t i = 0; i < ss->n; i++)
        schedule_free(ss->v[i]);
    free(ss->v);
    chan_unref(ss->wake);
    free(ss->clock_file);
    free(ss);
}

/* ---- the clock ---- */

/* Wall clock ms, or the test clock's. */
static int64_t
schedules_now(const struct schedules *ss)
{
    if (ss->clock_file) {
        FILE *f = fopen(ss->clock_file, "r");
        long long t = 0;
        int n = f ? fscanf(f, "%lld", &t) : 0;
        if (f)
            fclose(f);
        if (n == 1 && t > 0)
            return t;
    }
    return clock_wall_ms();
}

/* ---- the registry ---- */

static struct schedule *
find(struct schedules *ss, const char *name, size_t len, size_t *pos)
{
    size_t lo = 0, hi = ss->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const struct schedule *s = ss->v[mid];
        size_t n = s->name_len < len ? s->name_len : len;
        int c = memcmp(s->name, name, n);
        if (c == 0)
            c = s->name_len < len ? -1 : s->name_len > len;
        if (c == 0) {
            *pos = mid;
            return ss->v[mid];
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *pos = lo;
    return NULL;
}

static void runner(void *arg);

/* Lock held: the runner runs while there are schedules. It holds its own
 * references to the channel and context it parks on, so that freeing the
 * broker never frees them under it. */
static void
spawn_runner(struct broker *b)
{
    struct schedules *ss = b->sched;
    if (!ss->started || ss->running || ss->n == 0 || ctx_err(ss->ctx))
        return;
    ss->running = true;
    chan_ref(ss->wake);
    ctx_ref(ss->ctx);
    if (go(runner, b) < 0) {
        ss->running = false;
        chan_unref(ss->wake);
        ctx_unref(ss->ctx);
        log_error("out of memory starting the schedule runner: schedules do not fire");
    }
}

static void
poke(struct broker *b)
{
    int one = 1;
    chan_try_send(b->sched->wake, &one); /* full: a wake-up is pending anyway */
    spawn_runner(b);
}

/* A schedule from its record; NULL when out of memory or the expression
 * does not parse (why says so). */
static struct schedule *
from_record(const struct jrec_schedule *r, char *why, size_t why_len)
{
    struct schedule *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    s->name = strndup(r->name, r->name_len);
    s->name_len = r->name_len;
    s->cron_text = strndup(r->cron, r->cron_len);
    s->tz = strndup(r->tz, r->tz_len);
    s->queue = strndup(r->queue, r->queue_len);
    s->queue_len = r->queue_len;
    s->payload = malloc(r->payload_len + 1);
    if (!s->name || !s->cron_text || !s->tz || !s->queue || !s->payload) {
        snprintf(why, why_len, "out of memory");
        schedule_free(s);
        return NULL;
    }
    memcpy(s->payload, r->payload, r->payload_len);
    s->payload[r->payload_len] = '\0';
    s->payload_len = r->payload_len;
    if (cron_parse(s->cron_text, &s->cron, why, why_len) < 0) {
        schedule_free(s);
        return NULL;
    }
    s->ttr_ms = r->ttr_ms;
    s->max_attempts = r->max_attempts;
    s->paused = r->paused;
    s->missed_once = r->missed_once;
    s->since_ms = r->since_ms;
    s->last_ms = r->last_ms;
    return s;
}

static int
insert(struct schedules *ss, struct schedule *s, size_t pos)
{
    if (ss->n == ss->cap) {
        size_t cap = ss->cap ? ss->cap * 2 : 8;
        struct schedule **v = realloc(ss->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        ss->v = v;
        ss->cap = cap;
    }
    memmove(&ss->v[pos + 1], &ss->v[pos], (ss->n - pos) * sizeof *ss->v);
    ss->v[pos] = s;
    ss->n++;
    return 0;
}

int
schedule_apply(struct broker *b, const struct jrec_schedule *r)
{
    struct schedules *ss = b->sched;
    size_t pos;
    struct schedule *old = find(ss, r->name, r->name_len, &pos);
    if (r->deleted) {
        if (old) {
            memmove(&ss->v[pos], &ss->v[pos + 1], (ss->n - pos - 1) * sizeof *ss->v);
            ss->n--;
            broker_payload_freed(b, old->payload_len);
            schedule_free(old);
        }
        return 0;
    }
    char why[256];
    struct schedule *s = from_record(r, why, sizeof why);
    if (!s || (!old && insert(ss, s, pos) < 0)) {
        log_error("schedule %.*s: record not applied: %s", (int)r->name_len, r->name,
                  s ? "out of memory" : why);
        schedule_free(s);
        return b->serving ? -1 : 0;
    }
    if (old) {
        s->fired = old->fired;
        s->skipped = old->skipped;
        ss->v[pos] = s;
        broker_payload_freed(b, old->payload_len);
        schedule_free(old);
    }
    broker_payload_held(b, s->payload_len);
    poke(b);
    return 0;
}

int
schedule_apply_fire(struct broker *b, const struct jrec_fire *r)
{
    struct schedules *ss = b->sched;
    size_t pos;
    struct schedule *s = find(ss, r->name, r->name_len, &pos);
    if (!s) {
        log_debug("journal: fire record for schedule %.*s skipped: no such schedule",
                  (int)r->name_len, r->name);
        return 0;
    }
    s->last_ms = r->planned_ms;
    s->next_ms = 0;
    if (r->planned_ms > ss->last_fire_ms)
        ss->last_fire_ms = r->planned_ms;
    if (!b->serving)
        return 0; /* the counters count this run's firings */
    s->fired++;
    ss->fired++;
    if (r->s.id == 0) {
        s->skipped++;
        ss->skipped++;
    }
    return 0;
}

/* The record of s as it is, with what the op changes. */
static struct jrec
record_of(const struct schedule *s)
{
    struct jrec r = {.type = JREC_SCHEDULE};
    r.u.schedule = (struct jrec_schedule){
        .name = s->name,
        .name_len = s->name_len,
        .paused = s->paused,
        .missed_once = s->missed_once,
        .cron = s->cron_text,
        .cron_len = strlen(s->cron_text),
        .tz = s->tz,
        .tz_len = strlen(s->tz),
        .queue = s->queue,
        .queue_len = s->queue_len,
        .payload = s->payload,
        .payload_len = s->payload_len,
        .ttr_ms = s->ttr_ms,
        .max_attempts = s->max_attempts,
        .since_ms = s->since_ms,
        .last_ms = s->last_ms,
    };
    return r;
}

int
schedules_snapshot(struct broker *b, int (*put)(void *w, const struct jrec *r), void *w)
{
    struct schedules *ss = b->sched;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < ss->n; i++) {
        struct jrec r = record_of(ss->v[i]);
        rc = put(w, &r);
    }
    return rc;
}

void
schedules_digest(struct broker *b, void (*feed)(void *arg, const void *p, size_t n), void *arg)
{
    struct schedules *ss = b->sched;
    for (size_t i = 0; i < ss->n; i++) {
        const struct schedule *s = ss->v[i];
        char line[640];
        int n = snprintf(
            line, sizeof line,
            "schedule %zu:%s %zu:%s %zu:%s %zu:%s %lld %u %d %d %lld %lld %zu:", s->name_len,
            s->name, strlen(s->cron_text), s->cron_text, strlen(s->tz), s->tz, s->queue_len,
            s->queue, (long long)s->ttr_ms, s->max_attempts, s->paused, s->missed_once,
            (long long)s->since_ms, (long long)s->last_ms, s->payload_len);
        feed(arg, line, n > 0 && (size_t)n < sizeof line ? (size_t)n : 0);
        feed(arg, s->payload, s->payload_len);
        feed(arg, "\n", 1);
    }
}

/* ---- firing ---- */

/* A job made by a firing, placed once its record is durable. */
struct fired {
    struct job *job;    /* a reference of ours */
    char *name;         /* the schedule's (owned) */
    int64_t planned_ms; /* the time the record set */
    int64_t prev_last;  /* what last_ms was before it */
};

struct pass {
    struct fired *v;
    size_t n, cap;
    struct durable w; /* the FIRE records' */
};

/* {"schedule":NAME,"planned":MS,"payload":TEMPLATE}: what the worker gets. */
static char *
envelope(const struct schedule *s, int64_t planned_ms, size_t *len)
{
    size_t cap = s->name_len + s->payload_len + 64;
    char *p = malloc(cap);
    if (!p)
        return NULL;
    int n = snprintf(p, cap, "{\"schedule\":\"%s\",\"planned\":%lld,\"payload\":%s}", s->name,
                     (long long)planned_ms, s->payload);
    if (n < 0 || (size_t)n >= cap) {
        free(p);
        return NULL;
    }
    *len = (size_t)n;
    return p;
}

/* Why a firing makes no job (a FIRE record without one is written all the
 * same: the planned time is used up, as a submit would have been refused);
 * NULL when it can make one. */
static const char *
cannot_fire(struct broker *b, struct queue *q, size_t len)
{
    if (!q)
        return "its queue cannot be created (max-queues or memory)";
    if (q->closed)
        return "its queue is closed";
    if (membudget_used(&b->mem) + len > b->cfg.max_payload_bytes)
        return "the memory budget is used up";
    return NULL;
}

/* Records the firing of s for planned_ms (lock held); its job, if any,
 * joins p to be placed once durable. */
static void
fire(struct broker *b, struct schedule *s, int64_t planned_ms, struct pass *p)
{
    struct proto_error err;
    struct queue *q = broker_get_queue(b, s->queue, s->queue_len, NULL, &err);
    size_t len = 0;
    char *payload = envelope(s, planned_ms, &len);
    const char *why = payload ? cannot_fire(b, q, len) : "out of memory";
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 8;
        struct fired *v = realloc(p->v, cap * sizeof *v);
        if (v) {
            p->v = v;
            p->cap = cap;
        } else {
            why = "out of memory";
        }
    }
    int64_t prev = s->last_ms;
    struct jrec r = {.type = JREC_FIRE};
    r.u.fire =
        (struct jrec_fire){.name = s->name, .name_len = s->name_len, .planned_ms = planned_ms};
    if (!why) {
        r.u.fire.s = (struct jrec_submit){
            .id = b->next_id,
            .queue = q->name,
            .queue_len = q->name_len,
            .payload = payload,
            .payload_len = len,
            .ttr_ms = s->ttr_ms ? s->ttr_ms : q->set.ttr_ms,
            .max_attempts = (uint32_t)(s->max_attempts ? s->max_attempts : q->set.max_attempts),
            .created_ms = clock_wall_ms(),
        };
    } else {
        log_warn("schedule %s: the run planned for %lld makes no job: %s", s->name,
                 (long long)planned_ms, why);
    }
    struct apply_how how = {.caller_places = true};
    if (commit(b, &r, &how, &p->w) < 0) {
        log_error("schedule %s: the firing could not be applied", s->name);
    } else if (!why) {
        struct job *j = jobtable_get(b->jobs, r.u.fire.s.id);
        char *name = strdup(s->name);
        if (j && name) {
            job_ref(j);
            j->queue->count.submitted++;
            p->v[p->n++] = (struct fired){j, name, planned_ms, prev};
        } else {
            free(name);
        }
    }
    free(payload);
}

/* The firings' records are durable (or not): jobs go into their queues,
 * or are taken back and the schedule will fire that time again. Lock
 * held. */
static void
settle(struct broker *b, struct pass *p, int rc)
{
    for (size_t i = 0; i < p->n; i++) {
        struct fired *f = &p->v[i];
        struct job *j = f->job;
        if (rc < 0) {
            if (!job_state_is_final(j->state))
                commit_drop(b, j, NULL);
            size_t pos;
            struct schedule *s = find(b->sched, f->name, strlen(f->name), &pos);
            if (s && s->last_ms == f->planned_ms) {
                s->last_ms = f->prev_last;
                s->next_ms = 0;
            }
        } else if (j->state == JOB_QUEUED && j->in_channel == CHAN_OUT) {
            queue_place(j->queue, j);
        }
        job_unref(j);
        free(f->name);
    }
    p->n = 0;
}

/* Fires what is due at now (lock held); returns the ms until the next
 * planned time (capped). */
static int64_t
due_pass(struct broker *b, int64_t now, struct pass *p)
{
    struct schedules *ss = b->sched;
    int64_t wait = RUNNER_MAX_SLEEP_MS;
    for (size_t i = 0; i < ss->n; i++) {
        struct schedule *s = ss->v[i];
        if (s->paused)
            continue;
        int64_t floor = s->last_ms > s->since_ms ? s->last_ms : s->since_ms;
        if (s->floor_ms > floor)
            floor = s->floor_ms;
        if (s->next_ms == 0 && cron_next(&s->cron, s->tz, s->since_ms, floor, &s->next_ms) < 0)
            s->next_ms = INT64_MAX;
        if (s->next_ms > now) {
            if (s->next_ms - now < wait)
                wait = s->next_ms - now;
            continue;
        }
        /* Several planned times may be due (a clock step, a downtime with
         * "once"): the latest one fires, once. */
        int64_t planned;
        if (cron_latest(&s->cron, s->tz, s->since_ms, floor, now, &planned) == 0) {
            fire(b, s, planned, p);
            if (s->last_ms != planned)
                s->floor_ms = planned; /* not applied (logged): on to the next time */
        }
        s->next_ms = 0;
        wait = 0;
    }
    return wait;
}

/* Planned times missed while chanqd was down: "skip" drops them; "once"
 * leaves them to the first pass, which fires the latest. Lock held. */
static void
apply_missed_policy(struct schedules *ss, int64_t now)
{
    ss->started_ms = now;
    for (size_t i = 0; i < ss->n; i++) {
        struct schedule *s = ss->v[i];
        s->floor_ms = s->missed_once ? 0 : now;
        s->next_ms = 0;
    }
}

static void
runner(void *arg)
{
    struct broker *b = arg;
    struct schedules *ss = b->sched;
    struct chan *wake = ss->wake;
    struct ctx *ctx = ss->ctx;
    struct pass p = {0};
    durable_init(&p.w);
    for (;;) {
        int64_t now = schedules_now(ss);
        pthread_mutex_lock(&b->lock);
        if (ctx_err(ctx) || ss->n == 0) {
            ss->running = false; /* ss may be gone once the lock is released */
            pthread_mutex_unlock(&b->lock);
            break;
        }
        int64_t wait = due_pass(b, now, &p);
        pthread_mutex_unlock(&b->lock);
        if (p.n || p.w.n || p.w.rc) {
            int rc = durable_finish(&p.w, NULL);
            pthread_mutex_lock(&b->lock);
            settle(b, &p, rc);
            pthread_mutex_unlock(&b->lock);
            if (rc < 0)
                wait = RUNNER_MAX_SLEEP_MS; /* the journal refuses: retry calmly */
        }
        if (wait == 0)
            continue;
        if (ss->clock_file && wait > TEST_CLOCK_POLL_MS)
            wait = TEST_CLOCK_POLL_MS;
        int token;
        struct chan_case c = {wake, CHAN_RECV, &token, false};
        chan_select(&c, 1, ctx, wait); /* a cancel is seen at the top */
    }
    free(p.v);
    chan_unref(wake);
    ctx_unref(ctx);
}

int
schedules_start(struct broker *b)
{
    struct schedules *ss = b->sched;
    const char *clock = getenv("CHANQ_TEST_CLOCK_FILE");
    if (clock && *clock) {
        ss->clock_file = strdup(clock);
        log_warn("schedules run on the test clock in %s (CHANQ_TEST_CLOCK_FILE): a test "
                 "setting, never for production",
                 clock);
    }
    ss->ctx = ctx_with_cancel(b->root);
    if (!ss->ctx) {
        log_error("out of memory starting the schedule runner: schedules do not fire");
        return -ENOMEM;
    }
    pthread_mutex_lock(&b->lock);
    apply_missed_policy(ss, schedules_now(ss));
    ss->started = true;
    spawn_runner(b);
    pthread_mutex_unlock(&b->lock);
    return 0;
}

void
schedules_stop(struct broker *b)
{
    if (b->sched && b->sched->ctx)
        ctx_cancel(b->sched->ctx);
}

/* ---- the op ---- */

static json_t *
schedule_json(const struct schedule *s)
{
    json_t *payload = json_loadb(s->payload, s->payload_len, JSON_DECODE_ANY, NULL);
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:o, s:b, s:s, s:I, s:I}", "name", s->name, "cron",
                          s->cron_text, "tz", s->tz[0] ? s->tz : "UTC", "queue", s->queue,
                          "payload", payload ? payload : json_null(), "paused", s->paused, "missed",
                          s->missed_once ? "once" : "skip", "fired", (json_int_t)s->fired,
                          "skipped", (json_int_t)s->skipped);
    if (!o)
        return NULL;
    json_object_set_new(o, "ttr_ms", s->ttr_ms ? json_integer(s->ttr_ms) : json_null());
    json_object_set_new(o, "max_attempts",
                        s->max_attempts ? json_integer(s->max_attempts) : json_null());
    json_object_set_new(o, "last", s->last_ms ? json_integer(s->last_ms) : json_null());
    int64_t next = 0;
    if (!s->paused) {
        int64_t floor = s->last_ms > s->since_ms ? s->last_ms : s->since_ms;
        if (s->floor_ms > floor)
            floor = s->floor_ms;
        if (cron_next(&s->cron, s->tz, s->since_ms, floor, &next) < 0)
            next = 0;
    }
    json_object_set_new(o, "next", next ? json_integer(next) : json_null());
    return o;
}

static int
answer_list(struct broker_op *op)
{
    struct schedules *ss = op->b->sched;
    json_t *list = json_array();
    for (size_t i = 0; list && i < ss->n; i++) {
        json_t *o = schedule_json(ss->v[i]);
        if (!o || json_array_append_new(list, o) < 0) {
            json_decref(list);
            list = NULL;
        }
    }
    json_t *fields = list ? json_pack("{s:o}", "schedules", list) : NULL;
    int rc = fields ? encode_ok_fields(op->out, op->req->rid, fields) : -1;
    json_decref(fields);
    return op_end(op, rc);
}

static bool
span_is(const struct span *sp, const char *word)
{
    return sp->len == strlen(word) && memcmp(sp->ptr, word, sp->len) == 0;
}

/* The definition a create or replace asks for, checked: expression, zone,
 * memory. Lock not needed. */
static int
requested(const struct request *req, struct jrec_schedule *r, char *cron, char *tz,
          struct proto_error *err)
{
    snprintf(cron, MSG_MAX_CRON + 1, "%.*s", (int)req->cron.len,
             req->cron.len ? req->cron.ptr : "");
    snprintf(tz, MSG_MAX_TZ + 1, "%.*s", (int)req->tz.len, req->tz.len ? req->tz.ptr : "");
    char why[256];
    struct cron c;
    if (cron_parse(cron, &c, why, sizeof why) < 0) {
        proto_error_set(err, PROTO_BAD_REQUEST, "field 'cron': %s", why);
        return -1;
    }
    if (cron_tz_check(tz, why, sizeof why) < 0) {
        proto_error_set(err, PROTO_BAD_REQUEST, "field 'tz': %s", why);
        return -1;
    }
    if (strcmp(tz, "UTC") == 0)
        tz[0] = '\0';
    *r = (struct jrec_schedule){
        .name = req->name.ptr,
        .name_len = req->name.len,
        .missed_once = span_is(&req->missed, "once"),
        .cron = cron,
        .cron_len = strlen(cron),
        .tz = tz,
        .tz_len = strlen(tz),
        .queue = req->queue.ptr,
        .queue_len = req->queue.len,
        .payload = req->payload.ptr,
        .payload_len = req->payload.len,
        .ttr_ms = req->has_ttr_ms ? req->ttr_ms : 0,
        .max_attempts = (uint32_t)(req->has_max_attempts ? req->max_attempts : 0),
    };
    return 0;
}

static bool
same_definition(const struct schedule *s, const struct jrec_schedule *r)
{
    return strcmp(s->cron_text, r->cron) == 0 && strcmp(s->tz, r->tz) == 0 &&
           s->queue_len == r->queue_len && memcmp(s->queue, r->queue, r->queue_len) == 0 &&
           s->payload_len == r->payload_len &&
           memcmp(s->payload, r->payload, r->payload_len) == 0 && s->ttr_ms == r->ttr_ms &&
           s->max_attempts == r->max_attempts && s->missed_once == r->missed_once;
}

/* create / replace, lock held. */
static int
define(struct broker_op *op, struct jrec_schedule *r, struct schedule *old, bool replace)
{
    struct broker *b = op->b;
    struct schedules *ss = b->sched;
    if (old && !replace) {
        if (same_definition(old, r))
            return 0; /* as declare: the same again is a no-op */
        proto_error_set(op->err, PROTO_CONFLICT,
                        "schedule '%s' exists with another definition (replace it)", old->name);
        return -1;
    }
    if (!old && ss->n >= b->cfg.max_schedules) {
        proto_error_set(op->err, PROTO_LIMIT, "server holds its maximum of %zu schedules",
                        b->cfg.max_schedules);
        return -1;
    }
    size_t held = membudget_used(&b->mem) - (old ? old->payload_len : 0);
    if (held + r->payload_len > b->cfg.max_payload_bytes) {
        proto_error_set(op->err, PROTO_LIMIT, "memory budget of %zu bytes is used up",
                        b->cfg.max_payload_bytes);
        return -1;
    }
    r->since_ms = schedules_now(ss);
    r->last_ms = old ? old->last_ms : 0; /* a planned time never fires twice */
    r->paused = old ? old->paused : false;
    struct jrec rec = {.type = JREC_SCHEDULE, .u.schedule = *r};
    if (commit(b, &rec, NULL, &op->w) < 0) {
        proto_error_set(op->err, PROTO_INTERNAL, "out of memory for a schedule");
        return -1;
    }
    return 0;
}

/* pause / resume / delete, lock held. The record is applied before it is
 * encoded, and applying it frees s: it must point at copies. */
static int
change(struct broker_op *op, struct schedule *s, const char *action)
{
    struct jrec rec = record_of(s);
    struct jrec_schedule *r = &rec.u.schedule;
    char *copy = NULL;
    if (strcmp(action, "delete") == 0) {
        *r = (struct jrec_schedule){
            .name = op->req->name.ptr, .name_len = op->req->name.len, .deleted = true};
    } else {
        bool pause = strcmp(action, "pause") == 0;
        if (s->paused == pause)
            return 0;
        r->paused = pause;
        if (!pause) /* the times that passed while paused do not run */
            r->since_ms = schedules_now(op->b->sched);
        size_t n = r->cron_len + r->tz_len + r->queue_len + r->payload_len;
        copy = malloc(n + 1);
        if (!copy) {
            proto_error_set(op->err, PROTO_INTERNAL, "out of memory changing a schedule");
            return -1;
        }
        char *w = copy;
        const char **fields[] = {&r->cron, &r->tz, &r->queue, &r->payload};
        size_t lens[] = {r->cron_len, r->tz_len, r->queue_len, r->payload_len};
        for (size_t i = 0; i < 4; i++) {
            memcpy(w, *fields[i], lens[i]);
            *fields[i] = w;
            w += lens[i];
        }
        r->name = op->req->name.ptr;
    }
    int rc = commit(op->b, &rec, NULL, &op->w);
    free(copy);
    if (rc < 0) {
        proto_error_set(op->err, PROTO_INTERNAL, "out of memory changing a schedule");
        return -1;
    }
    return 0;
}

int
broker_op_schedule(struct broker *b, struct session *sess, const struct request *req,
                   struct buf *out, struct proto_error *err)
{
    struct broker_op op;
    char action[16] = "";
    memcpy(action, req->action.ptr, req->action.len < 15 ? req->action.len : 15);
    bool define_op = strcmp(action, "create") == 0 || strcmp(action, "replace") == 0;
    char cron[MSG_MAX_CRON + 1], tz[MSG_MAX_TZ + 1];
    struct jrec_schedule r;
    if (define_op && requested(req, &r, cron, tz, err) < 0)
        return -1;
    op_begin(&op, b, sess, req, out, err);
    if (strcmp(action, "list") == 0)
        return answer_list(&op);
    size_t pos;
    struct schedule *s = find(b->sched, req->name.ptr, req->name.len, &pos);
    int rc;
    if (define_op) {
        rc = define(&op, &r, s, strcmp(action, "replace") == 0);
    } else if (!s) {
        proto_error_set(err, PROTO_NOT_FOUND, "no schedule named '%.*s'", (int)req->name.len,
                        req->name.ptr);
        rc = -1;
    } else {
        rc = change(&op, s, action);
    }
    if (rc < 0)
        return op_end(&op, -1);
    size_t mark = out->len;
    s = find(b->sched, req->name.ptr, req->name.len, &pos);
    json_t *o = s ? schedule_json(s) : NULL;
    json_t *fields = o ? json_pack("{s:o}", "schedule", o) : json_object();
    rc = fields ? encode_ok_fields(out, req->rid, fields) : -1;
    json_decref(fields);
    return op_end_durable(&op, rc, mark);
}

/* ---- stats ---- */

json_t *
broker_schedules_json(struct broker *b)
{
    pthread_mutex_lock(&b->lock);
    struct schedules *ss = b->sched;
    size_t paused = 0;
    json_t *list = json_array();
    for (size_t i = 0; i < ss->n; i++) {
        const struct schedule *s = ss->v[i];
        paused += s->paused;
        json_array_append_new(list, json_pack("{s:s, s:I, s:I, s:b}", "name", s->name, "last_ms",
                                              (json_int_t)s->last_ms, "fired", (json_int_t)s->fired,
                                              "paused", s->paused));
    }
    json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:o}", "count", (json_int_t)ss->n, "paused",
                          (json_int_t)paused, "fired", (json_int_t)ss->fired, "skipped",
                          (json_int_t)ss->skipped, "last_fire_ms", (json_int_t)ss->last_fire_ms,
                          "list", list ? list : json_array());
    pthread_mutex_unlock(&b->lock);
    return o;
}
