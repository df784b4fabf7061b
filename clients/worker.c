/* libchanq's worker (chanq.h): one connection that consumes, owned by an
 * I/O thread, and a thread per slot that runs the job function.
 *
 * The I/O thread says `consume` (prefetch: the number of slots), and the
 * server pushes jobs to it as events; it puts them in the inbox, where the
 * slots take them. A slot runs the job function, then hands its verdict
 * (ack, nack, release) to the I/O thread as a call and waits for the
 * answer, so that the outcome hook runs on the slot's thread, after the
 * server answered, as before. The I/O thread sends what the slots handed
 * it since its last write in one write (the acks without a result as one
 * request of several ids), touches running jobs before their ttr runs
 * out, and reads the server's events, so that a cancel reaches the job
 * function while it runs. No slot ever asks for a job: it is pushed while
 * the slot works on the previous one.
 *
 * Threads and locks: the connection is the I/O thread's alone. Everything
 * the threads share (inbox, calls, the running jobs, the end of input) is
 * guarded by the worker's lock; a slot waits on its condition variable, the
 * I/O thread polls eventfds (a stop must be async-signal-safe). */
#include "chanq_config.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "clients/client-internal.h"

#define RETRY_MS 1000          /* pause before connecting again after a failure */
#define IDLE_READY_MS 500      /* an idle pool asks the ready hook this often */
#define DEFAULT_TOUCH_MS 15000 /* touch interval of a job without a ttr */
#define ACK_BATCH 1000         /* the most ids one ack carries (the protocol's limit) */

/* Why a running job should end; the first three mean the server has it back. */
enum cancel_reason { CANCEL_NONE, CANCEL_CANCEL, CANCEL_REVOKED, CANCEL_LOST, CANCEL_STOP };
static const char *const cancel_names[] = {NULL, "cancel", "revoked", "lost", "stop"};

/* The job function's view of its job: what it sets, and why it should end. */
struct chanq_work {
    struct slot *slot;
    char *result;     /* compact JSON text for the ack, or NULL */
    char *error;      /* the nack's text, or NULL */
    int64_t retry_ms; /* nack delay; < 0: the server's backoff */
};

/* A job pushed to the worker's connection, waiting for a slot. */
struct pushed {
    struct pushed *next;
    struct chanq_job job;
    unsigned gen;   /* the connection it came on */
    char gone[320]; /* why the server took it back before it ran, or "" */
    enum cancel_reason gone_why;
};

/* What a slot asks the I/O thread to send: the request that settles a job. */
enum call_kind { CALL_ACK, CALL_NACK, CALL_RELEASE };
struct call {
    struct call *next;
    enum call_kind kind;
    const char *id;     /* borrowed from the job, valid until answered */
    const char *result; /* ack: JSON text or NULL (borrowed) */
    const char *error;  /* nack (borrowed) */
    int64_t retry_ms;   /* nack: < 0 the server's backoff */
    bool bury;          /* nack dead */
    unsigned gen;       /* the connection the job is held on */
    /* the answer, filled by the I/O thread */
    bool done, refused, lost;
    char why[320]; /* refused: "code: message" */
};

struct slot {
    struct chanq_worker *w;
    int n; /* 0-based slot number */
    pthread_t thread;
    bool thread_started;
    atomic_int cancel;     /* enum cancel_reason of the running job */
    char revoked_why[320]; /* the revoked event's reason or the refused touch */
    int cancel_fd;         /* eventfd: readable once cancel is set */
    struct chanq_work work;
    /* The running job, for the I/O thread's touches and events (lock). */
    const char *run_id; /* NULL between jobs */
    unsigned run_gen;
    int64_t run_interval; /* touch every */
    int64_t next_touch;   /* when (chanqi_conn_now_ms clock) */
    bool touching;        /* a touch is on its way */
};

struct chanq_worker {
    char *server;
    struct chanq_connect_opts copts; /* strings are copies, owned */
    struct chanq_worker_opts o;      /* queues is a copy, owned */
    atomic_bool stopping;            /* take no more jobs */
    atomic_bool cancel_running;      /* chanq_worker_stop(w, true) */
    atomic_bool ran;                 /* chanq_worker_run() was called */
    int stop_fd;                     /* eventfd: a stop (async-signal-safe) */
    int wake_fd;                     /* eventfd: a call, or a slot ended */
    pthread_t io;
    bool io_started;
    pthread_mutex_t lock; /* guards everything below and the slots' run_* */
    pthread_cond_t cond;  /* the inbox grew, a call was answered, input ended */
    bool lock_ready;
    struct pushed *in_head, *in_tail;     /* the inbox, oldest first */
    struct call *calls_head, *calls_tail; /* calls not sent yet */
    bool input_done;                      /* no job will be pushed any more */
    unsigned live_gen;                    /* the connected connection's number; 0: none */
    int slots_running;                    /* slot threads not ended */
    struct slot *slots;
    int nslots;
    struct sent *sent; /* the I/O thread's requests in flight (MAX_SENT) */
};

/* Wakes whoever polls fd. Async-signal-safe. */
static void
fd_signal(int fd)
{
    uint64_t one = 1;
    ssize_t r = write(fd, &one, sizeof one);
    (void)r; /* a full counter (EAGAIN) still wakes */
}

static void
fd_drain(int fd)
{
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof v);
    (void)r; /* EAGAIN: nothing to drain */
}

static void __attribute__((format(printf, 2, 3)))
wlog(const struct chanq_worker *w, const char *fmt, ...)
{
    if (!w->o.log)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    w->o.log(msg, w->o.arg);
}

/* Marks the running job as cancelled for `why`, unless it already is for a
 * reason that outranks it: the server taking the job back (cancel, revoked,
 * lost) outranks a stop, which only asks the function to hurry.
 * Async-signal-safe. */
static void
slot_cancel(struct slot *s, enum cancel_reason why)
{
    int cur = atomic_load(&s->cancel);
    for (;;) {
        if (cur != CANCEL_NONE && (cur != CANCEL_STOP || why == CANCEL_STOP))
            return;
        if (atomic_compare_exchange_weak(&s->cancel, &cur, (int)why))
            break;
    }
    fd_signal(s->cancel_fd);
}

/* ---- the I/O thread's side ---- */

/* No job will come any more: the slots end once the inbox is empty. */
static void
end_input(struct chanq_worker *w)
{
    pthread_mutex_lock(&w->lock);
    w->input_done = true;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

static void
pushed_free(struct pushed *p)
{
    free(p->job.id);
    free(p->job.queue);
    free(p->job.payload);
    free(p->job.traceparent);
    free(p);
}

/* Lock held: the running slot of job id on connection gen, or NULL. */
static struct slot *
running_slot(struct chanq_worker *w, const char *id, unsigned gen)
{
    for (int i = 0; i < w->nslots; i++) {
        struct slot *s = &w->slots[i];
        if (s->run_id && s->run_gen == gen && strcmp(s->run_id, id) == 0)
            return s;
    }
    return NULL;
}

/* A job the server took back: the running one hears of it, a waiting one
 * is skipped. Lock held. */
static void
taken_back(struct chanq_worker *w, const char *id, enum cancel_reason why, const char *detail)
{
    struct slot *s = running_slot(w, id, w->live_gen);
    if (s) {
        if (why == CANCEL_REVOKED)
            snprintf(s->revoked_why, sizeof s->revoked_why, "%s", detail);
        slot_cancel(s, why);
        return;
    }
    for (struct pushed *p = w->in_head; p; p = p->next) {
        if (p->gen == w->live_gen && strcmp(p->job.id, id) == 0 && !p->gone[0]) {
            snprintf(p->gone, sizeof p->gone, "%s", detail[0] ? detail : cancel_names[why]);
            p->gone_why = why;
        }
    }
}

/* Copies a pushed job into the inbox. Lock held. */
static void
inbox_add(struct chanq_worker *w, const struct chanq_job *job)
{
    struct pushed *p = calloc(1, sizeof *p);
    if (!p)
        return; /* out of memory: its ttr gives the job back */
    p->job = *job;
    p->job.id = strdup(job->id);
    p->job.queue = job->queue ? strdup(job->queue) : NULL;
    p->job.payload = strdup(job->payload);
    p->job.traceparent = job->traceparent ? strdup(job->traceparent) : NULL;
    if (!p->job.id || !p->job.payload || (job->queue && !p->job.queue) ||
        (job->traceparent && !p->job.traceparent)) {
        pushed_free(p);
        return;
    }
    p->gen = w->live_gen;
    if (w->in_tail)
        w->in_tail->next = p;
    else
        w->in_head = p;
    w->in_tail = p;
}

/* The server's events, read by the I/O thread inside any call on c. */
static void
on_event(const struct chanq_event *ev, void *arg)
{
    struct chanq_worker *w = arg;
    if (!ev->type)
        return;
    pthread_mutex_lock(&w->lock);
    if (strcmp(ev->type, "jobs") == 0) {
        for (size_t i = 0; i < ev->njobs; i++)
            inbox_add(w, &ev->jobs[i]);
        pthread_cond_broadcast(&w->cond);
    } else if (strcmp(ev->type, "consume_end") == 0 && ev->reason &&
               strcmp(ev->reason, "closed") == 0) {
        w->input_done = true; /* every queue closed and drained */
        pthread_cond_broadcast(&w->cond);
    } else if (ev->id && strcmp(ev->type, "cancel") == 0) {
        taken_back(w, ev->id, CANCEL_CANCEL, "");
    } else if (ev->id && strcmp(ev->type, "revoked") == 0) {
        taken_back(w, ev->id, CANCEL_REVOKED, ev->reason ? ev->reason : "");
    }
    pthread_mutex_unlock(&w->lock);
}

/* Connects and consumes; NULL (logged) when that failed. */
static struct chanq_conn *
io_connect(struct chanq_worker *w, unsigned *gen)
{
    struct chanq_error err;
    struct chanq_conn *c = chanq_connect(w->server, &w->copts, &err);
    if (!c) {
        wlog(w, "worker: connect %s: %s: %s (retrying)", w->server, err.code, err.message);
        return NULL;
    }
    pthread_mutex_lock(&w->lock);
    w->live_gen = ++*gen;
    pthread_mutex_unlock(&w->lock);
    chanq_set_event_fn(c, on_event, w);
    struct chanq_consume_opts co = {.queues = w->o.queues,
                                    .nqueues = w->o.nqueues,
                                    .prefetch = w->nslots,
                                    .strict = w->o.strict};
    if (chanq_consume(c, &co) < 0) {
        wlog(w, "worker: consume: %s: %s (connecting again)", chanq_last_error(c)->code,
             chanq_last_error(c)->message);
        pthread_mutex_lock(&w->lock);
        w->live_gen = 0;
        pthread_mutex_unlock(&w->lock);
        chanq_conn_free(c);
        return NULL;
    }
    return c;
}

/* The connection broke: the server gives its jobs back. Running jobs hear
 * "lost", calls are answered lost, and jobs still in the inbox are
 * skipped (their connection is gone). */
static void
io_lost(struct chanq_worker *w, struct chanq_conn **c, const char *what)
{
    wlog(w, "worker: %s: %s: %s (connecting again)", what, chanq_last_error(*c)->code,
         chanq_last_error(*c)->message);
    chanq_conn_free(*c);
    *c = NULL;
    pthread_mutex_lock(&w->lock);
    for (int i = 0; i < w->nslots; i++) {
        struct slot *s = &w->slots[i];
        if (s->run_id && s->run_gen == w->live_gen)
            slot_cancel(s, CANCEL_LOST);
    }
    for (struct call *k = w->calls_head; k; k = k->next)
        k->done = k->lost = true;
    w->calls_head = w->calls_tail = NULL;
    w->live_gen = 0;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* The most requests one exchange sends before it reads their answers. */
#define MAX_SENT 4096

/* One request sent and waiting for its answer, and what it answers for. */
struct sent {
    enum { SENT_CALL, SENT_ACKS, SENT_TOUCH } kind;
    struct call *call; /* SENT_CALL; SENT_ACKS: the first of `n` */
    size_t n;
    struct slot *slot; /* SENT_TOUCH */
};

/* Appends a nack or release to c's buffer. 0 or -1. */
static int
send_call(struct chanq_conn *c, const struct call *k)
{
    if (k->kind == CALL_ACK)
        return chanq_send_ack(c, k->id, k->result);
    json_t *req = k->kind == CALL_RELEASE ? json_pack("{s:s, s:s}", "op", "release", "id", k->id)
                                          : json_pack("{s:s, s:s, s:s, s:b}", "op", "nack", "id",
                                                      k->id, "error", k->error, "dead", k->bury);
    if (req && k->kind == CALL_NACK && k->retry_ms >= 0)
        json_object_set_new(req, "delay_ms", json_integer(k->retry_ms));
    int rc = req ? chanqi_conn_send_json(c, req) : chanqi_conn_fail_io(c, ENOMEM);
    json_decref(req);
    return rc;
}

/* Lock held: the touches due now, buffered; their slots noted in sent. */
static size_t
send_touches(struct chanq_worker *w, struct chanq_conn *c, struct sent *sent, size_t cap)
{
    size_t n = 0;
    int64_t now = chanqi_conn_now_ms();
    for (int i = 0; i < w->nslots && n < cap; i++) {
        struct slot *s = &w->slots[i];
        if (!s->run_id || s->run_gen != w->live_gen || s->touching || now < s->next_touch)
            continue;
        json_t *req = json_pack("{s:s, s:s}", "op", "touch", "id", s->run_id);
        int rc = req ? chanqi_conn_send_json(c, req) : -1;
        json_decref(req);
        if (rc < 0)
            break;
        s->touching = true;
        sent[n++] = (struct sent){.kind = SENT_TOUCH, .slot = s};
    }
    return n;
}

/* Reads the answer to one sent request and settles what it answers for.
 * -1: the connection broke. */
static int
read_answer(struct chanq_worker *w, struct chanq_conn *c, const struct sent *t)
{
    int64_t done = 0;
    json_t *failed = NULL;
    int rc = t->kind == SENT_ACKS ? chanq_recv_many(c, &done, &failed) : chanq_recv_ok(c);
    const struct chanq_error *e = chanq_last_error(c);
    if (rc < 0 && strcmp(e->code, "io") == 0) {
        json_decref(failed);
        return -1;
    }
    pthread_mutex_lock(&w->lock);
    if (t->kind == SENT_TOUCH) {
        struct slot *s = t->slot;
        s->touching = false;
        s->next_touch = chanqi_conn_now_ms() + s->run_interval;
        if (rc < 0 && s->run_id) {
            snprintf(s->revoked_why, sizeof s->revoked_why, "touch refused: %s: %s", e->code,
                     e->message);
            slot_cancel(s, CANCEL_REVOKED);
        }
    } else {
        struct call *k = t->call;
        for (size_t i = 0; i < t->n; i++, k = k->next) {
            k->done = true;
            if (rc < 0) {
                k->refused = true;
                snprintf(k->why, sizeof k->why, "%s: %s", e->code, e->message);
            }
            for (size_t f = 0; rc == 0 && f < json_array_size(failed); f++) {
                json_t *x = json_array_get(failed, f);
                const char *id = json_string_value(json_object_get(x, "id"));
                const char *code = json_string_value(json_object_get(x, "code"));
                const char *msg = json_string_value(json_object_get(x, "message"));
                if (!id || strcmp(id, k->id) != 0)
                    continue;
                k->refused = true;
                snprintf(k->why, sizeof k->why, "%s: %s", code ? code : "internal", msg ? msg : "");
            }
        }
    }
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    json_decref(failed);
    return 0;
}

/* Takes the calls not sent yet, in order; the acks without a result first
 * (they go out together). Lock held. */
static struct call *
take_calls(struct chanq_worker *w)
{
    struct call *plain = NULL, **pt = &plain, *rest = NULL, **rt = &rest;
    for (struct call *k = w->calls_head, *next; k; k = next) {
        next = k->next;
        k->next = NULL;
        if (k->kind == CALL_ACK && !k->result) {
            *pt = k;
            pt = &k->next;
        } else {
            *rt = k;
            rt = &k->next;
        }
    }
    w->calls_head = w->calls_tail = NULL;
    *pt = rest;
    return plain;
}

/* The requests sent[from..n) will get no answer (the connection broke):
 * their calls are answered lost, their touches forgotten. */
static void
sent_lost(struct chanq_worker *w, const struct sent *sent, size_t from, size_t n)
{
    pthread_mutex_lock(&w->lock);
    for (size_t i = from; i < n; i++) {
        if (sent[i].kind == SENT_TOUCH) {
            sent[i].slot->touching = false;
            continue;
        }
        struct call *k = sent[i].call;
        for (size_t j = 0; j < sent[i].n; j++, k = k->next)
            k->done = k->lost = true;
    }
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* Puts calls not sent back at the head of the calls, in order. */
static void
calls_put_back(struct chanq_worker *w, struct call *k)
{
    if (!k)
        return;
    pthread_mutex_lock(&w->lock);
    struct call *tail = k;
    while (tail->next)
        tail = tail->next;
    tail->next = w->calls_head;
    w->calls_head = k;
    if (!w->calls_tail)
        w->calls_tail = tail;
    pthread_mutex_unlock(&w->lock);
}

/* Sends the calls and the touches due, in one write, and reads their
 * answers (the events that come meanwhile are handled on the way). 1 when
 * something was sent, 0 when nothing was due, -1 when the connection
 * broke (every call sent is then answered lost). */
static int
io_exchange(struct chanq_worker *w, struct chanq_conn *c)
{
    struct sent *sent = w->sent;
    size_t n = 0;
    pthread_mutex_lock(&w->lock);
    struct call *k = take_calls(w);
    pthread_mutex_unlock(&w->lock);
    while (k && n + (size_t)w->nslots + 1 < MAX_SENT) {
        struct sent t = {.kind = SENT_CALL, .call = k, .n = 1};
        int rc;
        if (k->kind == CALL_ACK && !k->result) {
            const char *ids[ACK_BATCH];
            size_t m = 0;
            for (; k && k->kind == CALL_ACK && !k->result && m < ACK_BATCH; k = k->next)
                ids[m++] = k->id;
            t.n = m;
            t.kind = m == 1 ? SENT_CALL : SENT_ACKS;
            rc = m == 1 ? chanq_send_ack(c, ids[0], NULL) : chanq_send_ack_many(c, ids, m);
        } else {
            rc = send_call(c, k);
            k = k->next;
        }
        if (rc < 0) {
            /* Not sent: the connection broke, or (never expected) the
             * request could not be built. */
            bool broken = strcmp(chanq_last_error(c)->code, "io") == 0;
            sent[n++] = t;
            if (broken) {
                sent_lost(w, sent, 0, n);
                calls_put_back(w, k);
                return -1;
            }
            n--;
            pthread_mutex_lock(&w->lock);
            struct call *x = t.call;
            for (size_t j = 0; j < t.n; j++, x = x->next) {
                x->done = x->refused = true;
                snprintf(x->why, sizeof x->why, "%s", chanq_last_error(c)->message);
            }
            pthread_cond_broadcast(&w->cond);
            pthread_mutex_unlock(&w->lock);
            continue;
        }
        sent[n++] = t;
    }
    calls_put_back(w, k); /* what did not fit goes with the next exchange */
    pthread_mutex_lock(&w->lock);
    n += send_touches(w, c, sent + n, MAX_SENT - n);
    pthread_mutex_unlock(&w->lock);
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (read_answer(w, c, &sent[i]) < 0) {
            sent_lost(w, sent, i, n);
            return -1;
        }
    }
    return 1;
}

/* How long the I/O thread may wait before a touch is due (ms; -1: none).
 * Lock held. */
static int
touch_wait(const struct chanq_worker *w)
{
    int64_t now = chanqi_conn_now_ms(), soonest = -1;
    for (int i = 0; i < w->nslots; i++) {
        const struct slot *s = &w->slots[i];
        if (s->run_id && s->run_gen == w->live_gen && !s->touching &&
            (soonest < 0 || s->next_touch < soonest))
            soonest = s->next_touch;
    }
    if (soonest < 0)
        return -1;
    return soonest <= now ? 0 : soonest - now > 60000 ? 60000 : (int)(soonest - now);
}

/* Waits for a stop, a call, a slot's end, the server's bytes (fd; -1: no
 * connection) or a touch due. */
static void
io_wait(struct chanq_worker *w, int fd, int timeout, bool *readable)
{
    struct pollfd p[3] = {{.fd = w->stop_fd, .events = POLLIN},
                          {.fd = w->wake_fd, .events = POLLIN},
                          {.fd = fd, .events = POLLIN}};
    *readable = false;
    if (poll(p, 3, timeout) <= 0)
        return;
    if (p[1].revents)
        fd_drain(w->wake_fd);
    *readable = p[2].revents != 0;
}

/* True while no job runs or waits: the ready hook is then asked every
 * IDLE_READY_MS, so that a pool whose jobs could no longer run stops
 * before taking one. Lock held. */
static bool
io_idle(const struct chanq_worker *w)
{
    if (w->in_head)
        return false;
    for (int i = 0; i < w->nslots; i++)
        if (w->slots[i].run_id)
            return false;
    return true;
}

/* True once nothing is left to do: input ended, every slot finished and
 * every call answered. Lock held. */
static bool
io_finished(const struct chanq_worker *w)
{
    return w->input_done && w->slots_running == 0 && !w->calls_head;
}

static void *
io_main(void *arg)
{
    struct chanq_worker *w = arg;
    struct chanq_conn *c = NULL;
    unsigned gen = 0;
    bool cancelled = false; /* cancel_consume answered */
    int64_t retry_at = 0, ready_at = chanqi_conn_now_ms() + IDLE_READY_MS;
    for (;;) {
        pthread_mutex_lock(&w->lock);
        bool finished = io_finished(w), calls = w->calls_head != NULL, idle = io_idle(w);
        bool input_done = w->input_done;
        int twait = touch_wait(w);
        pthread_mutex_unlock(&w->lock);
        if (finished)
            break;
        bool stopping = atomic_load(&w->stopping);
        if (!c && (stopping || input_done)) {
            /* Nothing more will be pushed; answer calls as lost (their
             * connection is gone) and wait for the slots to end. */
            end_input(w);
            if (calls) {
                pthread_mutex_lock(&w->lock);
                for (struct call *k = w->calls_head; k; k = k->next)
                    k->done = k->lost = true;
                w->calls_head = w->calls_tail = NULL;
                pthread_cond_broadcast(&w->cond);
                pthread_mutex_unlock(&w->lock);
            }
            bool r;
            io_wait(w, -1, -1, &r);
            continue;
        }
        if (!c) {
            int64_t left = retry_at - chanqi_conn_now_ms();
            bool r;
            if (left > 0) {
                io_wait(w, -1, (int)left, &r);
                continue;
            }
            if (w->o.ready && !w->o.ready(0, w->o.arg)) {
                chanq_worker_stop(w, false);
                continue;
            }
            if (!(c = io_connect(w, &gen)))
                retry_at = chanqi_conn_now_ms() + RETRY_MS;
            cancelled = false;
            continue;
        }
        if (stopping && !cancelled) {
            /* No job is pushed after its answer; the ones before it are
             * given back by the slots. */
            if (chanq_cancel_consume(c) < 0 && strcmp(chanq_last_error(c)->code, "io") == 0) {
                io_lost(w, &c, "cancel_consume");
                continue;
            }
            cancelled = true;
            end_input(w);
        }
        int rc = io_exchange(w, c);
        if (rc < 0) {
            io_lost(w, &c, "sending answers");
            retry_at = chanqi_conn_now_ms() + RETRY_MS;
            continue;
        }
        if (rc > 0)
            continue;
        /* Events read along with the last answers wait in c's buffer,
         * where a poll of its fd does not see them. */
        int events = chanq_poll_events(c, 0);
        if (events > 0)
            continue;
        if (idle && w->o.ready && !stopping) {
            int64_t now = chanqi_conn_now_ms();
            if (now >= ready_at) {
                ready_at = now + IDLE_READY_MS;
                if (!w->o.ready(0, w->o.arg)) {
                    chanq_worker_stop(w, false);
                    continue;
                }
            }
            int left = (int)(ready_at - now);
            twait = twait < 0 || left < twait ? left : twait;
        }
        bool readable = false;
        if (events == 0)
            io_wait(w, chanq_fd(c), twait, &readable);
        if (events < 0 || (readable && chanq_poll_events(c, 0) < 0)) {
            io_lost(w, &c, "reading events");
            retry_at = chanqi_conn_now_ms() + RETRY_MS;
        }
    }
    chanq_conn_free(c);
    return NULL;
}

/* ---- the slots' side ---- */

static void
work_reset(struct chanq_work *wk)
{
    free(wk->result);
    free(wk->error);
    wk->result = wk->error = NULL;
    wk->retry_ms = -1;
}

static const char *const outcome_names[] = {"acked",     "nacked",  "buried", "released",
                                            "cancelled", "revoked", "lost",   "refused"};

static void
report(struct slot *s, const struct chanq_job *job, enum chanq_outcome what, const char *detail,
       int64_t ran)
{
    struct chanq_worker *w = s->w;
    struct chanq_work_outcome o = {.what = what,
                                   .name = outcome_names[what],
                                   .detail = detail ? detail : "",
                                   .slot = s->n,
                                   .run_ms = ran};
    if (w->o.outcome)
        w->o.outcome(job, &o, w->o.arg);
}

/* Hands k to the I/O thread and waits for its answer. */
static void
call(struct slot *s, struct call *k)
{
    struct chanq_worker *w = s->w;
    pthread_mutex_lock(&w->lock);
    if (k->gen != w->live_gen) {
        k->done = k->lost = true; /* its connection is gone */
    } else {
        if (w->calls_tail)
            w->calls_tail->next = k;
        else
            w->calls_head = k;
        w->calls_tail = k;
        fd_signal(w->wake_fd);
    }
    while (!k->done)
        pthread_cond_wait(&w->cond, &w->lock);
    pthread_mutex_unlock(&w->lock);
}

/* The request of a verdict, and the outcome it stands for when answered. */
static struct call
verdict_call(struct slot *s, const struct pushed *p, enum chanq_verdict v, enum chanq_outcome *what)
{
    const struct chanq_work *wk = &s->work;
    struct call k = {.id = p->job.id, .gen = p->gen, .retry_ms = -1};
    k.error = wk->error ? wk->error : "job function failed";
    switch (v) {
    case CHANQ_WORK_ACK:
        k.kind = CALL_ACK;
        k.result = wk->result;
        *what = CHANQ_ACKED;
        break;
    case CHANQ_WORK_BURY:
        k.kind = CALL_NACK;
        k.bury = true;
        *what = CHANQ_BURIED;
        break;
    case CHANQ_WORK_RELEASE:
        k.kind = CALL_RELEASE;
        *what = CHANQ_RELEASED;
        break;
    case CHANQ_WORK_FAIL:
    default:
        k.kind = CALL_NACK;
        k.retry_ms = wk->retry_ms;
        *what = CHANQ_NACKED;
        break;
    }
    return k;
}

/* Lends the job to the I/O thread for touches and events, or takes it back. */
static void
slot_set_running(struct slot *s, const struct pushed *p)
{
    struct chanq_worker *w = s->w;
    pthread_mutex_lock(&w->lock);
    s->run_id = p ? p->job.id : NULL;
    s->touching = false;
    if (p) {
        s->run_gen = p->gen;
        int64_t ttr = p->job.ttr_ms;
        s->run_interval = w->o.touch_ms > 0 ? w->o.touch_ms : ttr > 1 ? ttr / 2 : DEFAULT_TOUCH_MS;
        s->next_touch = chanqi_conn_now_ms() + s->run_interval;
    }
    pthread_mutex_unlock(&w->lock);
    if (p)
        fd_signal(w->wake_fd); /* the I/O thread's touch schedule changed */
}

/* Runs the job function and settles the job. */
static void
run_job(struct slot *s, const struct pushed *p)
{
    struct chanq_worker *w = s->w;
    struct chanq_work *wk = &s->work;
    work_reset(wk);
    atomic_store(&s->cancel, CANCEL_NONE);
    fd_drain(s->cancel_fd);
    s->revoked_why[0] = '\0';
    if (atomic_load(&w->cancel_running))
        slot_cancel(s, CANCEL_STOP);
    slot_set_running(s, p);
    int64_t t0 = chanqi_conn_now_ms();
    enum chanq_verdict v = w->o.fn(wk, &p->job, w->o.arg);
    int64_t ran = chanqi_conn_now_ms() - t0;
    slot_set_running(s, NULL);
    int cancel = atomic_load(&s->cancel);
    if (cancel == CANCEL_CANCEL) {
        report(s, &p->job, CHANQ_CANCELLED, "", ran);
    } else if (cancel == CANCEL_REVOKED) {
        report(s, &p->job, CHANQ_REVOKED, s->revoked_why, ran);
    } else if (cancel == CANCEL_LOST) {
        report(s, &p->job, CHANQ_LOST, "", ran);
    } else {
        enum chanq_outcome what;
        struct call k = verdict_call(s, p, v, &what);
        call(s, &k);
        const char *detail = what == CHANQ_NACKED || what == CHANQ_BURIED ? k.error : "";
        if (k.lost)
            report(s, &p->job, CHANQ_LOST, "the connection broke", ran);
        else if (k.refused)
            report(s, &p->job, CHANQ_REFUSED, k.why, ran);
        else
            report(s, &p->job, what, detail, ran);
    }
    work_reset(wk);
}

/* A job not to run (the worker stops): back to its queue, uncounted. */
static void
give_back(struct slot *s, const struct pushed *p)
{
    struct call k = {.kind = CALL_RELEASE, .id = p->job.id, .gen = p->gen};
    call(s, &k);
    if (k.refused)
        wlog(s->w, "worker slot %d: release %s: %s", s->n, p->job.id, k.why);
}

/* The next job of the inbox, waiting for one; NULL once the input ended
 * and the inbox is empty. */
static struct pushed *
next_job(struct chanq_worker *w)
{
    pthread_mutex_lock(&w->lock);
    while (!w->in_head && !w->input_done)
        pthread_cond_wait(&w->cond, &w->lock);
    struct pushed *p = w->in_head;
    if (p) {
        w->in_head = p->next;
        if (!w->in_head)
            w->in_tail = NULL;
        p->next = NULL;
    }
    pthread_mutex_unlock(&w->lock);
    return p;
}

static void *
slot_main(void *arg)
{
    struct slot *s = arg;
    struct chanq_worker *w = s->w;
    struct pushed *p;
    while ((p = next_job(w)) != NULL) {
        pthread_mutex_lock(&w->lock);
        bool held = p->gen == w->live_gen;
        pthread_mutex_unlock(&w->lock);
        if (!held) {
            /* its connection is gone, and with it the reservation */
        } else if (p->gone[0]) {
            report(s, &p->job, p->gone_why == CANCEL_CANCEL ? CHANQ_CANCELLED : CHANQ_REVOKED,
                   p->gone_why == CANCEL_CANCEL ? "" : p->gone, 0);
        } else if (atomic_load(&w->stopping)) {
            give_back(s, p);
        } else if (w->o.ready && !w->o.ready(s->n, w->o.arg)) {
            chanq_worker_stop(w, false);
            give_back(s, p);
        } else {
            run_job(s, p);
        }
        pushed_free(p);
    }
    pthread_mutex_lock(&w->lock);
    w->slots_running--;
    pthread_mutex_unlock(&w->lock);
    fd_signal(w->wake_fd);
    return NULL;
}

/* ---- the worker ---- */

static char *
dup_opt(const char *s, bool *failed)
{
    char *d = s ? strdup(s) : NULL;
    if (s && !d)
        *failed = true;
    return d;
}

static void
free_copts(struct chanq_connect_opts *co)
{
    free((char *)co->token);
    free((char *)co->client);
    free((char *)co->tls_ca);
    free((char *)co->tls_cert);
    free((char *)co->tls_key);
    free((char *)co->tls_server_name);
}

/* Copies what the worker keeps of the caller's options. 0 or -1 (ENOMEM). */
static int
copy_opts(struct chanq_worker *w, const char *server, const struct chanq_connect_opts *co,
          const struct chanq_worker_opts *o)
{
    bool failed = false;
    if (co)
        w->copts = *co;
    w->copts.token = dup_opt(w->copts.token, &failed);
    w->copts.client = dup_opt(w->copts.client, &failed);
    w->copts.tls_ca = dup_opt(w->copts.tls_ca, &failed);
    w->copts.tls_cert = dup_opt(w->copts.tls_cert, &failed);
    w->copts.tls_key = dup_opt(w->copts.tls_key, &failed);
    w->copts.tls_server_name = dup_opt(w->copts.tls_server_name, &failed);
    w->server = dup_opt(server, &failed);
    w->o = *o;
    char **queues = calloc(o->nqueues, sizeof *queues);
    w->o.queues = (const char *const *)queues;
    if (!queues)
        return -1;
    for (size_t i = 0; i < o->nqueues; i++)
        queues[i] = dup_opt(o->queues[i], &failed);
    return failed ? -1 : 0;
}

static void
set_error(struct chanq_error *err, const char *code, int e, const char *msg)
{
    if (!err)
        return;
    snprintf(err->code, sizeof err->code, "%s", code);
    snprintf(err->message, sizeof err->message, "%s", msg ? msg : strerror(e));
    err->sys_errno = e;
}

/* The locks and eventfds; 0, or -1 with errno (chanq_worker_free() undoes
 * what was done either way). */
static int
worker_init_sync(struct chanq_worker *w)
{
    w->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->stop_fd < 0 || w->wake_fd < 0)
        return -1;
    for (int i = 0; i < w->nslots; i++) {
        struct slot *s = &w->slots[i];
        s->w = w;
        s->n = i;
        s->work.slot = s;
        s->work.retry_ms = -1;
        if ((s->cancel_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
            return -1;
    }
    int rc = pthread_mutex_init(&w->lock, NULL);
    if (rc == 0 && (rc = pthread_cond_init(&w->cond, NULL)) != 0)
        pthread_mutex_destroy(&w->lock);
    w->lock_ready = rc == 0;
    errno = rc;
    return rc == 0 ? 0 : -1;
}

struct chanq_worker *
chanq_worker_new(const char *server, const struct chanq_connect_opts *opts,
                 const struct chanq_worker_opts *o, struct chanq_error *err)
{
    bool queues_ok = o && o->queues && o->nqueues > 0;
    for (size_t i = 0; queues_ok && i < o->nqueues; i++)
        queues_ok = o->queues[i] != NULL;
    if (!server || !queues_ok || !o->fn) {
        set_error(err, "bad_request", 0, "a worker needs a server, queues and a job function");
        return NULL;
    }
    struct chanq_worker *w = calloc(1, sizeof *w);
    if (!w) {
        set_error(err, "io", ENOMEM, NULL);
        return NULL;
    }
    w->stop_fd = w->wake_fd = -1;
    w->nslots = o->concurrency > 0 ? o->concurrency : 1;
    if (w->nslots > 1000)
        w->nslots = 1000; /* the protocol's highest prefetch */
    if (copy_opts(w, server, opts, o) < 0 ||
        !(w->slots = calloc((size_t)w->nslots, sizeof *w->slots)) ||
        !(w->sent = calloc(MAX_SENT, sizeof *w->sent))) {
        set_error(err, "io", ENOMEM, NULL);
        goto out_free;
    }
    w->o.concurrency = w->nslots;
    for (int i = 0; i < w->nslots; i++)
        w->slots[i].cancel_fd = -1;
    if (worker_init_sync(w) < 0) {
        set_error(err, "io", errno, NULL);
        goto out_free;
    }
    return w;
out_free:
    chanq_worker_free(w);
    return NULL;
}

int
chanq_worker_run(struct chanq_worker *w, struct chanq_error *err)
{
    if (atomic_exchange(&w->ran, true)) {
        set_error(err, "bad_request", 0, "chanq_worker_run() was called before");
        return -1;
    }
    w->slots_running = 0;
    int rc = 0;
    for (int i = 0; i < w->nslots && rc == 0; i++) {
        struct slot *s = &w->slots[i];
        pthread_mutex_lock(&w->lock);
        w->slots_running++;
        pthread_mutex_unlock(&w->lock);
        rc = pthread_create(&s->thread, NULL, slot_main, s);
        s->thread_started = rc == 0;
        if (rc != 0) {
            pthread_mutex_lock(&w->lock);
            w->slots_running--;
            pthread_mutex_unlock(&w->lock);
        }
    }
    if (rc == 0) {
        rc = pthread_create(&w->io, NULL, io_main, w);
        w->io_started = rc == 0;
    }
    if (rc != 0) {
        set_error(err, "io", rc, NULL);
        chanq_worker_stop(w, true);
        end_input(w); /* without the I/O thread nothing else ends the slots */
    }
    for (int i = 0; i < w->nslots; i++)
        if (w->slots[i].thread_started)
            pthread_join(w->slots[i].thread, NULL);
    if (w->io_started)
        pthread_join(w->io, NULL);
    return rc == 0 ? 0 : -1;
}

void
chanq_worker_stop(struct chanq_worker *w, bool cancel_running)
{
    atomic_store(&w->stopping, true);
    fd_signal(w->stop_fd);
    if (!cancel_running)
        return;
    atomic_store(&w->cancel_running, true);
    for (int i = 0; i < w->nslots; i++)
        slot_cancel(&w->slots[i], CANCEL_STOP);
}

void
chanq_worker_free(struct chanq_worker *w)
{
    if (!w)
        return;
    for (int i = 0; w->slots && i < w->nslots; i++) {
        struct slot *s = &w->slots[i];
        if (s->cancel_fd >= 0)
            close(s->cancel_fd);
        work_reset(&s->work);
    }
    free(w->slots);
    free(w->sent);
    while (w->in_head) {
        struct pushed *p = w->in_head;
        w->in_head = p->next;
        pushed_free(p);
    }
    if (w->lock_ready) {
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->lock);
    }
    if (w->stop_fd >= 0)
        close(w->stop_fd);
    if (w->wake_fd >= 0)
        close(w->wake_fd);
    for (size_t i = 0; w->o.queues && i < w->o.nqueues; i++)
        free((char *)w->o.queues[i]);
    free((char *)w->o.queues);
    free_copts(&w->copts);
    free(w->server);
    free(w);
}

int
chanq_work_set_result(struct chanq_work *w, const char *json)
{
    char *text = NULL;
    if (json) {
        json_t *v = json_loads(json, JSON_DECODE_ANY, NULL);
        text = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        json_decref(v);
        if (!text)
            return -1;
    }
    free(w->result);
    w->result = text;
    return 0;
}

void
chanq_work_set_error(struct chanq_work *w, const char *fmt, ...)
{
    char *text;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&text, fmt, ap);
    va_end(ap);
    if (n < 0)
        return; /* out of memory: the previous text (or the default) stays */
    free(w->error);
    w->error = text;
}

void
chanq_work_set_retry(struct chanq_work *w, int64_t delay_ms)
{
    w->retry_ms = delay_ms < 0 ? -1 : delay_ms;
}

const char *
chanq_work_cancelled(const struct chanq_work *w)
{
    return cancel_names[atomic_load(&w->slot->cancel)];
}

int
chanq_work_cancel_fd(const struct chanq_work *w)
{
    return w->slot->cancel_fd;
}

int
chanq_work_slot(const struct chanq_work *w)
{
    return w->slot->n;
}
