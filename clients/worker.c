/* libchanq's worker (chanq.h): slots of two threads each. The slot thread
 * owns a connection, fetches one job at a time and calls the job function;
 * while the function runs it lends the connection to its keeper thread,
 * which touches the job before its ttr runs out and reads the server's
 * events, so that a cancel reaches the function while it still runs.
 *
 * Who may use a slot's connection: the slot thread, except while `running`
 * is set; then the keeper, and only while it holds the slot's lock. The
 * slot thread takes the lock to clear `running`, so once it has, no keeper
 * call is in progress and none will start. */
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

#define FETCH_WAIT_MS 500   /* a fetch's wait: how soon an idle slot sees a stop */
#define RETRY_MS 1000       /* pause before connecting again after a failure */
#define DEFAULT_TOUCH_MS 15000 /* touch interval of a job without a ttr */

/* Why a running job should end; the first four mean the server has it back. */
enum cancel_reason { CANCEL_NONE, CANCEL_CANCEL, CANCEL_REVOKED, CANCEL_LOST, CANCEL_STOP };
static const char *const cancel_names[] = {NULL, "cancel", "revoked", "lost", "stop"};

/* The job function's view of its job: what it sets, and why it should end. */
struct chanq_work {
    struct slot *slot;
    char *result;     /* compact JSON text for the ack, or NULL */
    char *error;      /* the nack's text, or NULL */
    int64_t retry_ms; /* nack delay; < 0: the server's backoff */
};

struct slot {
    struct chanq_worker *w;
    int n;                       /* 0-based slot number */
    struct chanq_conn *c;        /* see the top of the file for who uses it */
    pthread_t thread, keeper;
    bool thread_started, keeper_started;
    pthread_mutex_t lock;        /* guards running, job, gen, quit; held by the
                                  * keeper while it uses c */
    bool lock_ready;             /* lock was initialised */
    bool running;                /* the job function runs: the keeper has c */
    const struct chanq_job *job; /* the running job, or NULL */
    unsigned gen;                /* jobs started, so the keeper sees a new one */
    bool quit;                   /* the keeper should end */
    atomic_int cancel;           /* enum cancel_reason of the running job */
    char revoked_why[320];       /* the revoked event's reason or the refused touch */
    int wake_fd;                 /* eventfd: the keeper should look at the state */
    int cancel_fd;               /* eventfd: readable once cancel is set */
    struct chanq_work work;
};

struct chanq_worker {
    char *server;
    struct chanq_connect_opts copts; /* strings are copies, owned */
    struct chanq_worker_opts o;      /* queues is a copy, owned */
    atomic_bool stopping;            /* no more fetching */
    atomic_bool cancel_running;      /* chanq_worker_stop(w, true) */
    atomic_bool ran;                 /* chanq_worker_run() was called */
    int stop_fd;                     /* eventfd: wakes slots pausing before a retry */
    struct slot *slots;
    int nslots;
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

/* The server's events on a slot's connection. Only events about the running
 * job matter; they are read by the keeper (job set) or by the slot thread
 * between jobs (job NULL: too late, the ack will tell). */
static void
on_event(const struct chanq_event *ev, void *arg)
{
    struct slot *s = arg;
    if (!s->job || !ev->id || !ev->type || strcmp(ev->id, s->job->id) != 0)
        return;
    if (strcmp(ev->type, "cancel") == 0) {
        slot_cancel(s, CANCEL_CANCEL);
    } else if (strcmp(ev->type, "revoked") == 0) {
        snprintf(s->revoked_why, sizeof s->revoked_why, "%s", ev->reason ? ev->reason : "");
        slot_cancel(s, CANCEL_REVOKED);
    }
}

/* Keeper, holding s->lock: a touch or an event read failed. */
static void
keeper_failed(struct slot *s, const char *what)
{
    const struct chanq_error *e = chanq_last_error(s->c);
    if (strcmp(e->code, "io") == 0) {
        slot_cancel(s, CANCEL_LOST);
        return;
    }
    snprintf(s->revoked_why, sizeof s->revoked_why, "%s refused: %s: %s", what, e->code,
             e->message);
    slot_cancel(s, CANCEL_REVOKED);
}

static int64_t
touch_interval(const struct slot *s)
{
    if (s->w->o.touch_ms > 0)
        return s->w->o.touch_ms;
    return s->job->ttr_ms > 1 ? s->job->ttr_ms / 2 : DEFAULT_TOUCH_MS;
}

/* False once the server took the running job back (or the connection
 * broke): there is nothing more to keep or to hear about it. */
static bool
job_still_ours(struct slot *s)
{
    int cancel = atomic_load(&s->cancel);
    return cancel == CANCEL_NONE || cancel == CANCEL_STOP;
}

/* The keeper: waits for a job to start, then until it ends keeps its
 * reservation (touches) and reads the events on the connection. */
static void *
keeper_main(void *arg)
{
    struct slot *s = arg;
    unsigned gen = 0;
    int64_t next_touch = 0;
    for (;;) {
        int64_t now = chanqi_conn_now_ms();
        pthread_mutex_lock(&s->lock);
        if (s->quit) {
            pthread_mutex_unlock(&s->lock);
            return NULL;
        }
        bool watch = s->running && job_still_ours(s);
        if (watch && s->gen != gen) {
            /* A new job. The fetch may have read its events already. */
            gen = s->gen;
            next_touch = now + touch_interval(s);
            if (chanq_poll_events(s->c, 0) < 0)
                keeper_failed(s, "reading events");
        } else if (watch && now >= next_touch) {
            if (chanq_touch(s->c, s->job->id, 0) < 0)
                keeper_failed(s, "touch");
            next_touch = now + touch_interval(s);
        }
        watch = watch && job_still_ours(s);
        /* Taken under the lock: once it is released, the slot may close c. */
        int fd = watch ? chanq_fd(s->c) : -1;
        pthread_mutex_unlock(&s->lock);

        struct pollfd p[2] = {{.fd = s->wake_fd, .events = POLLIN}, {.fd = fd, .events = POLLIN}};
        int64_t left = next_touch - chanqi_conn_now_ms();
        int timeout = !watch ? -1 : left <= 0 ? 0 : left > 60000 ? 60000 : (int)left;
        if (poll(p, 2, timeout) <= 0)
            continue;
        if (p[0].revents)
            fd_drain(s->wake_fd);
        if (p[1].revents) {
            /* Only if the same job still runs: the slot may have its
             * connection back and be reading the answer that woke us. */
            pthread_mutex_lock(&s->lock);
            if (s->running && s->gen == gen && job_still_ours(s) &&
                chanq_poll_events(s->c, 0) < 0)
                keeper_failed(s, "reading events");
            pthread_mutex_unlock(&s->lock);
        }
    }
}

/* Waits up to ms unless the worker stops meanwhile. */
static void
pause_unless_stopped(struct chanq_worker *w, int64_t ms)
{
    struct pollfd p = {.fd = w->stop_fd, .events = POLLIN};
    if (!atomic_load(&w->stopping))
        poll(&p, 1, (int)ms);
}

static void
slot_disconnect(struct slot *s)
{
    chanq_conn_free(s->c);
    s->c = NULL;
}

static int
slot_connect(struct slot *s)
{
    struct chanq_error err;
    s->c = chanq_connect(s->w->server, &s->w->copts, &err);
    if (!s->c) {
        wlog(s->w, "worker slot %d: connect %s: %s: %s (retrying)", s->n, s->w->server, err.code,
             err.message);
        return -1;
    }
    chanq_set_event_fn(s->c, on_event, s);
    return 0;
}

/* Lends the connection to the keeper for the job, or takes it back. */
static void
slot_set_running(struct slot *s, const struct chanq_job *job)
{
    pthread_mutex_lock(&s->lock);
    s->running = job != NULL;
    s->job = job;
    if (job)
        s->gen++;
    pthread_mutex_unlock(&s->lock);
    if (job)
        fd_signal(s->wake_fd);
}

static void
work_reset(struct chanq_work *wk)
{
    free(wk->result);
    free(wk->error);
    wk->result = wk->error = NULL;
    wk->retry_ms = -1;
}

/* Sends the verdict's request. 0, or -1 (error in the connection). */
static int
send_verdict(struct slot *s, const struct chanq_job *job, enum chanq_verdict v,
             struct chanq_work_outcome *o)
{
    struct chanq_work *wk = &s->work;
    const char *error = wk->error ? wk->error : "job function failed";
    switch (v) {
    case CHANQ_WORK_ACK:
        o->what = CHANQ_ACKED;
        return chanq_ack(s->c, job->id, wk->result);
    case CHANQ_WORK_BURY:
        o->what = CHANQ_BURIED;
        o->detail = error;
        return chanq_nack(s->c, job->id, error, -1, true, NULL);
    case CHANQ_WORK_RELEASE:
        o->what = CHANQ_RELEASED;
        return chanq_release(s->c, job->id);
    case CHANQ_WORK_FAIL:
    default:
        o->what = CHANQ_NACKED;
        o->detail = error;
        return chanq_nack(s->c, job->id, error, wk->retry_ms, false, NULL);
    }
}

static const char *const outcome_names[] = {"acked",     "nacked",  "buried", "released",
                                            "cancelled", "revoked", "lost",   "refused"};

/* Runs the job function and settles the job. */
static void
run_job(struct slot *s, const struct chanq_job *job)
{
    struct chanq_worker *w = s->w;
    struct chanq_work *wk = &s->work;
    work_reset(wk);
    atomic_store(&s->cancel, CANCEL_NONE);
    fd_drain(s->cancel_fd);
    s->revoked_why[0] = '\0';
    if (atomic_load(&w->cancel_running))
        slot_cancel(s, CANCEL_STOP);
    slot_set_running(s, job);
    int64_t t0 = chanqi_conn_now_ms();
    enum chanq_verdict v = w->o.fn(wk, job, w->o.arg);
    int64_t ran = chanqi_conn_now_ms() - t0;
    slot_set_running(s, NULL);

    struct chanq_work_outcome o = {.detail = "", .slot = s->n, .run_ms = ran};
    char refusal[320];
    int cancel = atomic_load(&s->cancel);
    if (cancel == CANCEL_CANCEL) {
        o.what = CHANQ_CANCELLED;
    } else if (cancel == CANCEL_REVOKED) {
        o.what = CHANQ_REVOKED;
        o.detail = s->revoked_why;
    } else if (cancel == CANCEL_LOST) {
        o.what = CHANQ_LOST;
    } else if (send_verdict(s, job, v, &o) < 0) {
        const struct chanq_error *e = chanq_last_error(s->c);
        snprintf(refusal, sizeof refusal, "%s: %s", e->code, e->message);
        o.detail = refusal;
        o.what = strcmp(e->code, "io") == 0 ? CHANQ_LOST : CHANQ_REFUSED;
        /* A job we could not release must not wait out its ttr: closing
         * the connection gives it back at once (its delivery counted). */
        if (v == CHANQ_WORK_RELEASE || o.what == CHANQ_LOST)
            slot_disconnect(s);
    }
    if (cancel == CANCEL_LOST)
        slot_disconnect(s);
    o.name = outcome_names[o.what];
    if (w->o.outcome)
        w->o.outcome(job, &o, w->o.arg);
    work_reset(wk);
}

/* A job fetched after the worker was told to stop is not started. */
static void
give_back(struct slot *s, const struct chanq_job *job)
{
    if (chanq_release(s->c, job->id) == 0)
        return;
    wlog(s->w, "worker slot %d: release %s: %s: %s (closing the connection)", s->n, job->id,
         chanq_last_error(s->c)->code, chanq_last_error(s->c)->message);
    slot_disconnect(s);
}

static void *
slot_main(void *arg)
{
    struct slot *s = arg;
    struct chanq_worker *w = s->w;
    struct chanq_fetch_opts fo = {.queues = w->o.queues,
                                  .nqueues = w->o.nqueues,
                                  .timeout_ms = FETCH_WAIT_MS,
                                  .count = 1,
                                  .strict = w->o.strict};
    while (!atomic_load(&w->stopping)) {
        if (w->o.ready && !w->o.ready(s->n, w->o.arg)) {
            chanq_worker_stop(w, false);
            break;
        }
        if (!s->c && slot_connect(s) < 0) {
            pause_unless_stopped(w, RETRY_MS);
            continue;
        }
        struct chanq_job *jobs;
        size_t n;
        if (chanq_fetch(s->c, &fo, &jobs, &n) < 0) {
            const struct chanq_error *e = chanq_last_error(s->c);
            if (strcmp(e->code, "closed") == 0)
                break; /* every queue closed and drained: this slot is done */
            wlog(w, "worker slot %d: fetch: %s: %s (connecting again)", s->n, e->code,
                 e->message);
            slot_disconnect(s);
            pause_unless_stopped(w, RETRY_MS);
            continue;
        }
        for (size_t i = 0; i < n && s->c; i++) {
            if (atomic_load(&w->stopping))
                give_back(s, &jobs[i]);
            else
                run_job(s, &jobs[i]);
        }
        chanq_jobs_free(jobs, n);
    }
    slot_disconnect(s);
    return NULL;
}

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

/* 0, or -1 with errno; chanq_worker_free() undoes what was done either way. */
static int
slot_init(struct chanq_worker *w, struct slot *s, int n)
{
    s->w = w;
    s->n = n;
    s->work.slot = s;
    s->work.retry_ms = -1;
    s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    s->cancel_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->wake_fd < 0 || s->cancel_fd < 0)
        return -1;
    int rc = pthread_mutex_init(&s->lock, NULL);
    s->lock_ready = rc == 0;
    errno = rc;
    return rc == 0 ? 0 : -1;
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
    w->stop_fd = -1;
    w->nslots = o->concurrency > 0 ? o->concurrency : 1;
    if (copy_opts(w, server, opts, o) < 0 ||
        !(w->slots = calloc((size_t)w->nslots, sizeof *w->slots))) {
        set_error(err, "io", ENOMEM, NULL);
        goto out_free;
    }
    w->o.concurrency = w->nslots;
    for (int i = 0; i < w->nslots; i++)
        w->slots[i].wake_fd = w->slots[i].cancel_fd = -1;
    bool ok = (w->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) >= 0;
    for (int i = 0; ok && i < w->nslots; i++)
        ok = slot_init(w, &w->slots[i], i) == 0;
    if (!ok) {
        set_error(err, "io", errno, NULL);
        goto out_free;
    }
    return w;
out_free:
    chanq_worker_free(w);
    return NULL;
}

/* Ends a slot's threads; the slot thread must have returned or never started. */
static void
slot_join(struct slot *s)
{
    if (s->thread_started)
        pthread_join(s->thread, NULL);
    if (s->keeper_started) {
        pthread_mutex_lock(&s->lock);
        s->quit = true;
        pthread_mutex_unlock(&s->lock);
        fd_signal(s->wake_fd);
        pthread_join(s->keeper, NULL);
    }
    s->thread_started = s->keeper_started = false;
}

int
chanq_worker_run(struct chanq_worker *w, struct chanq_error *err)
{
    if (atomic_exchange(&w->ran, true)) {
        set_error(err, "bad_request", 0, "chanq_worker_run() was called before");
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < w->nslots && rc == 0; i++) {
        struct slot *s = &w->slots[i];
        rc = pthread_create(&s->keeper, NULL, keeper_main, s);
        s->keeper_started = rc == 0;
        if (rc == 0)
            rc = pthread_create(&s->thread, NULL, slot_main, s);
        s->thread_started = rc == 0;
    }
    if (rc != 0) {
        set_error(err, "io", rc, NULL);
        chanq_worker_stop(w, true);
    }
    for (int i = 0; i < w->nslots; i++)
        slot_join(&w->slots[i]);
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
        if (s->wake_fd >= 0)
            close(s->wake_fd);
        if (s->cancel_fd >= 0)
            close(s->cancel_fd);
        if (s->lock_ready)
            pthread_mutex_destroy(&s->lock);
        work_reset(&s->work);
    }
    free(w->slots);
    if (w->stop_fd >= 0)
        close(w->stop_fd);
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
