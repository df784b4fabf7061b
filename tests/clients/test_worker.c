/* libchanq's worker (chanq_worker_*) against a real chanqd: a pool acks
 * results, nacks and buries with the error text, releases, keeps long jobs
 * past their ttr, tells a running job about its cancel, revocation or lost
 * connection, stops on a signal letting the running job finish, and ends
 * when its queues are closed. */
#include "chanq_config.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/clients/suites.h"

#define NJOBS 200

/* What the hooks saw; shared by the slots' threads and the test. */
struct seen {
    pthread_mutex_t lock;
    int runs[NJOBS];           /* job function calls per payload n */
    int outcomes[8];           /* per enum chanq_outcome */
    char last_detail[320];     /* detail of the latest outcome */
    char cancel_reason[16];    /* what chanq_work_cancelled() said last */
    int max_slot;              /* highest slot number seen */
    int target;                /* stop the worker after this many acks */
    int logs;                  /* log hook calls */
    atomic_int started;        /* job functions entered */
    atomic_int mode;           /* what the job function does (enum mode) */
    int64_t sleep_ms;          /* MODE_SLEEP: how long */
    bool ready;                /* what the ready hook answers */
    struct chanq_worker *w;
};

enum mode { MODE_DOUBLE, MODE_VERDICTS, MODE_SLEEP, MODE_WAIT_CANCEL, MODE_RELEASE_ONCE };

/* s->outcomes[what], read under the lock while the slots may write it. */
static int
seen_count(struct seen *s, enum chanq_outcome what)
{
    pthread_mutex_lock(&s->lock);
    int n = s->outcomes[what];
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* Waits up to 10 s for an outcome of this kind. */
static void
wait_outcome(struct seen *s, enum chanq_outcome what)
{
    int64_t end = harness_now_ms() + 10000;
    while (seen_count(s, what) == 0 && harness_now_ms() < end)
        usleep(10000);
}

static void
seen_init(struct seen *s, enum mode m)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->lock, NULL);
    atomic_store(&s->mode, m);
    s->ready = true;
    s->target = -1;
}

/* Waits for the cancel fd (up to 10 s) and notes the reason. */
static void
wait_cancel(struct chanq_work *w, struct seen *s)
{
    struct pollfd p = {.fd = chanq_work_cancel_fd(w), .events = POLLIN};
    poll(&p, 1, 10000);
    const char *why = chanq_work_cancelled(w);
    pthread_mutex_lock(&s->lock);
    snprintf(s->cancel_reason, sizeof s->cancel_reason, "%s", why ? why : "(none)");
    pthread_mutex_unlock(&s->lock);
}

/* MODE_VERDICTS: the payload names the verdict. */
static enum chanq_verdict
verdict_of(struct chanq_work *w, const char *payload)
{
    if (strstr(payload, "bury")) {
        chanq_work_set_error(w, "bad input %d", 7);
        return CHANQ_WORK_BURY;
    }
    if (strstr(payload, "later")) {
        chanq_work_set_error(w, "try later");
        chanq_work_set_retry(w, 60000);
        return CHANQ_WORK_FAIL;
    }
    if (strstr(payload, "bad-result")) {
        ck_assert_msg(chanq_work_set_result(w, "{not json") < 0, "bad JSON taken as a result");
        return CHANQ_WORK_ACK;
    }
    chanq_work_set_error(w, "boom: %s", "disk on fire");
    return CHANQ_WORK_FAIL;
}

static enum chanq_verdict
job_fn(struct chanq_work *w, const struct chanq_job *job, void *arg)
{
    struct seen *s = arg;
    atomic_fetch_add(&s->started, 1);
    json_t *p = json_loads(job->payload, JSON_DECODE_ANY, NULL);
    int n = (int)json_integer_value(json_object_get(p, "n"));
    json_decref(p);
    pthread_mutex_lock(&s->lock);
    if (n >= 0 && n < NJOBS)
        s->runs[n]++;
    if (chanq_work_slot(w) > s->max_slot)
        s->max_slot = chanq_work_slot(w);
    pthread_mutex_unlock(&s->lock);
    switch (atomic_load(&s->mode)) {
    case MODE_DOUBLE: {
        char result[64];
        snprintf(result, sizeof result, "{\"twice\":%d}", 2 * n);
        ck_assert_int_eq(chanq_work_set_result(w, result), 0);
        return CHANQ_WORK_ACK;
    }
    case MODE_VERDICTS:
        return verdict_of(w, job->payload);
    case MODE_SLEEP:
        for (int64_t t = 0; t < s->sleep_ms; t += 50) {
            ck_assert_msg(chanq_work_cancelled(w) == NULL, "a kept job was cancelled: %s",
                          chanq_work_cancelled(w));
            usleep(50000);
        }
        return CHANQ_WORK_ACK;
    case MODE_WAIT_CANCEL:
        wait_cancel(w, s);
        chanq_work_set_error(w, "stopped early");
        return CHANQ_WORK_FAIL;
    case MODE_RELEASE_ONCE: {
        pthread_mutex_lock(&s->lock);
        bool first = s->runs[0] == 1;
        pthread_mutex_unlock(&s->lock);
        return first ? CHANQ_WORK_RELEASE : CHANQ_WORK_ACK;
    }
    }
    return CHANQ_WORK_FAIL;
}

static void
outcome_fn(const struct chanq_job *job, const struct chanq_work_outcome *o, void *arg)
{
    struct seen *s = arg;
    pthread_mutex_lock(&s->lock);
    s->outcomes[o->what]++;
    snprintf(s->last_detail, sizeof s->last_detail, "%s", o->detail);
    bool enough = o->what == CHANQ_ACKED && s->outcomes[CHANQ_ACKED] == s->target;
    pthread_mutex_unlock(&s->lock);
    if (enough)
        chanq_worker_stop(s->w, false);
}

static bool
ready_fn(int slot, void *arg)
{
    struct seen *s = arg;
    return s->ready;
}

static void
log_fn(const char *msg, void *arg)
{
    struct seen *s = arg;
    pthread_mutex_lock(&s->lock);
    s->logs++;
    pthread_mutex_unlock(&s->lock);
}

/* A worker on `queue` of h with the hooks above. */
static struct chanq_worker *
new_worker(const struct harness *h, const char *queue, int concurrency, struct seen *s)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", harness_port(h));
    const char *queues[] = {queue};
    struct chanq_worker_opts o = {.queues = queues,
                                  .nqueues = 1,
                                  .concurrency = concurrency,
                                  .fn = job_fn,
                                  .outcome = outcome_fn,
                                  .ready = ready_fn,
                                  .log = log_fn,
                                  .arg = s};
    struct chanq_connect_opts co = {.client = "test-worker", .read_timeout_ms = 10000};
    struct chanq_error err;
    struct chanq_worker *w = chanq_worker_new(addr, &co, &o, &err);
    ck_assert_msg(w != NULL, "chanq_worker_new: %s: %s", err.code, err.message);
    s->w = w;
    return w;
}

/* Runs a worker on its own thread, so that the test can act meanwhile. */
struct runner {
    pthread_t thread;
    struct chanq_worker *w;
    int rc;
    atomic_bool done;
};

static void *
runner_main(void *arg)
{
    struct runner *r = arg;
    struct chanq_error err;
    r->rc = chanq_worker_run(r->w, &err);
    atomic_store(&r->done, true);
    return NULL;
}

static void
runner_start(struct runner *r, struct chanq_worker *w)
{
    r->w = w;
    r->rc = -2;
    atomic_store(&r->done, false);
    ck_assert_int_eq(pthread_create(&r->thread, NULL, runner_main, r), 0);
}

/* Joins the runner, failing the test if it is not done within ms. */
static int
runner_join(struct runner *r, int64_t ms)
{
    int64_t end = harness_now_ms() + ms;
    while (!atomic_load(&r->done) && harness_now_ms() < end)
        usleep(10000);
    ck_assert_msg(atomic_load(&r->done), "chanq_worker_run did not return within %lld ms",
                  (long long)ms);
    pthread_join(r->thread, NULL);
    return r->rc;
}

static void
wait_started(struct seen *s, int n)
{
    int64_t end = harness_now_ms() + 10000;
    while (atomic_load(&s->started) < n && harness_now_ms() < end)
        usleep(5000);
    ck_assert_msg(atomic_load(&s->started) >= n, "%d job functions started, want %d",
                  atomic_load(&s->started), n);
}

static char *
submit_n(struct chanq_conn *c, const char *queue, int n, int64_t max_attempts)
{
    char payload[64];
    snprintf(payload, sizeof payload, "{\"n\":%d}", n);
    struct chanq_submit_opts o = {.queue = queue, .max_attempts = max_attempts};
    char *id = NULL;
    ck_assert_msg(chanq_submit(c, &o, payload, &id, NULL) == 0, "submit: %s", tc_err(c));
    return id;
}

static json_t *
job_info(struct chanq_conn *c, const char *id)
{
    json_t *info = NULL;
    ck_assert_msg(chanq_job_info(c, id, &info) == 0, "job %s: %s", id, tc_err(c));
    return info;
}

static void
assert_job(struct chanq_conn *c, const char *id, const char *state, int attempt)
{
    json_t *info = job_info(c, id);
    char *text = json_dumps(info, JSON_COMPACT);
    ck_assert_msg(strcmp(json_string_value(json_object_get(info, "state")), state) == 0,
                  "job %s: want state %s: %s", id, state, text);
    ck_assert_msg(json_integer_value(json_object_get(info, "attempt")) == attempt,
                  "job %s: want attempt %d: %s", id, attempt, text);
    free(text);
    json_decref(info);
}

START_TEST(a_pool_acks_every_job_once_with_its_result)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *c = tc_dial(h, NULL);
    char *ids[NJOBS];
    for (int i = 0; i < NJOBS; i++)
        ids[i] = submit_n(c, "pool", i, 0);
    struct seen s;
    seen_init(&s, MODE_DOUBLE);
    s.target = NJOBS;
    struct chanq_worker *w = new_worker(h, "pool", 4, &s);
    struct runner r;
    runner_start(&r, w);
    ck_assert_int_eq(runner_join(&r, 60000), 0);
    ck_assert_int_eq(s.outcomes[CHANQ_ACKED], NJOBS);
    for (int i = 0; i < NJOBS; i++) {
        ck_assert_msg(s.runs[i] == 1, "job %d ran %d times", i, s.runs[i]);
        json_t *res = NULL;
        ck_assert_msg(chanq_wait(c, ids[i], 5000, &res) == 0, "wait: %s", tc_err(c));
        ck_assert_str_eq(json_string_value(json_object_get(res, "state")), "done");
        ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(res, "result"), "twice")),
                         2 * i);
        json_decref(res);
        free(ids[i]);
    }
    ck_assert_msg(s.max_slot >= 1 && s.max_slot <= 3, "slots 0..%d ran jobs", s.max_slot);
    chanq_worker_free(w);
    chanq_conn_free(c);
    harness_stop(h);
}
END_TEST

START_TEST(failures_are_nacked_with_their_text_buried_or_retried_later)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *c = tc_dial(h, NULL);
    struct chanq_submit_opts o = {.queue = "v", .max_attempts = 1};
    char *fail = NULL, *bury = NULL, *later = NULL, *bad = NULL;
    ck_assert(chanq_submit(c, &o, "{\"n\":0,\"v\":\"fail\"}", &fail, NULL) == 0);
    o.max_attempts = 5;
    ck_assert(chanq_submit(c, &o, "{\"n\":1,\"v\":\"bury\"}", &bury, NULL) == 0);
    ck_assert(chanq_submit(c, &o, "{\"n\":2,\"v\":\"later\"}", &later, NULL) == 0);
    ck_assert(chanq_submit(c, &o, "{\"n\":3,\"v\":\"bad-result\"}", &bad, NULL) == 0);
    struct seen s;
    seen_init(&s, MODE_VERDICTS);
    struct chanq_worker *w = new_worker(h, "v", 1, &s);
    struct runner r;
    runner_start(&r, w);
    wait_started(&s, 4);
    chanq_worker_stop(w, false);
    ck_assert_int_eq(runner_join(&r, 10000), 0);
    ck_assert_int_eq(s.outcomes[CHANQ_NACKED], 2);
    ck_assert_int_eq(s.outcomes[CHANQ_BURIED], 1);
    ck_assert_int_eq(s.outcomes[CHANQ_ACKED], 1);

    json_t *info = job_info(c, fail);
    ck_assert_str_eq(json_string_value(json_object_get(info, "state")), "dead");
    ck_assert_str_eq(json_string_value(json_object_get(info, "error")), "boom: disk on fire");
    json_decref(info);
    info = job_info(c, bury);
    ck_assert_str_eq(json_string_value(json_object_get(info, "state")), "dead");
    ck_assert_str_eq(json_string_value(json_object_get(info, "error")), "bad input 7");
    json_decref(info);
    info = job_info(c, later);
    ck_assert_str_eq(json_string_value(json_object_get(info, "state")), "delayed");
    ck_assert_str_eq(json_string_value(json_object_get(info, "error")), "try later");
    json_decref(info);
    /* A result that is not JSON is refused when set: the job is acked
     * without one. */
    info = job_info(c, bad);
    ck_assert_str_eq(json_string_value(json_object_get(info, "state")), "done");
    ck_assert_msg(json_is_null(json_object_get(info, "result")), "a result was stored");
    json_decref(info);
    free(fail);
    free(bury);
    free(later);
    free(bad);
    chanq_worker_free(w);
    chanq_conn_free(c);
    harness_stop(h);
}
END_TEST

START_TEST(a_long_job_is_touched_past_its_ttr)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *c = tc_dial(h, NULL);
    ck_assert_msg(chanq_declare(c, "slow", 10, 400, 3, NULL) == 0, "declare: %s", tc_err(c));
    char *id = submit_n(c, "slow", 0, 0);
    struct seen s;
    seen_init(&s, MODE_SLEEP);
    s.sleep_ms = 1500; /* almost 4 ttrs */
    s.target = 1;
    struct chanq_worker *w = new_worker(h, "slow", 1, &s);
    struct runner r;
    runner_start(&r, w);
    ck_assert_int_eq(runner_join(&r, 20000), 0);
    ck_assert_msg(s.outcomes[CHANQ_ACKED] == 1, "not acked (revoked %d, refused %d: %s)",
                  s.outcomes[CHANQ_REVOKED], s.outcomes[CHANQ_REFUSED], s.last_detail);
    assert_job(c, id, "done", 1);
    free(id);
    chanq_worker_free(w);
    chanq_conn_free(c);
    harness_stop(h);
}
END_TEST

START_TEST(a_job_without_touches_is_revoked_and_left_alone)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *c = tc_dial(h, NULL);
    ck_assert(chanq_declare(c, "short", 10, 300, 3, NULL) == 0);
    char *id = submit_n(c, "short", 0, 1); /* revoked once: dead, not delivered again */
    struct seen s;
    seen_init(&s, MODE_WAIT_CANCEL);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", harness_port(h));
    const char *queues[] = {"short"};
    struct chanq_worker_opts o = {.queues = queues,
                                  .nqueues = 1,
                                  .touch_ms = 60000, /* too late: the ttr runs out */
                                  .fn = job_fn,
                                  .outcome = outcome_fn,
                                  .arg = &s};
    struct chanq_worker *w = chanq_worker_new(addr, NULL, &o, NULL);
    ck_assert(w != NULL);
    s.w = w;
    struct runner r;
    runner_start(&r, w);
    wait_started(&s, 1);
    /* Revoked after 300 ms; the function hears of it, returns FAIL, and the
     * worker sends no nack for a job the server took back. */
    wait_outcome(&s, CHANQ_REVOKED);
    chanq_worker_stop(w, false);
    ck_assert_int_eq(runner_join(&r, 10000), 0);
    ck_assert_str_eq(s.cancel_reason, "revoked");
    ck_assert_int_eq(s.outcomes[CHANQ_REVOKED], 1);
    ck_assert_str_eq(s.last_detail, "ttr");
    ck_assert_int_eq(s.outcomes[CHANQ_NACKED], 0);
    json_t *info = job_info(c, id);
    ck_assert_str_eq(json_string_value(json_object_get(info, "state")), "dead");
    ck_assert_str_eq(json_string_value(json_object_get(info, "error")), "ttr expired");
    json_decref(info);
    free(id);
    chanq_worker_free(w);
    chanq_conn_free(c);
    harness_stop(h);
}
END_TEST

START_TEST(a_cancel_reaches_the_running_job)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *c = tc_dial(h, NULL);
    char *id = submit_n(c, "c", 0, 0);
    struct seen s;
    seen_init(&s, MODE_WAIT_CANCEL);
    s.target = 0;
    struct chanq_worker *w = new_worker(h, "c", 1, &s);
    struct runner r;
    runner_start(&r, w);
    wait_started(&s, 1);
    int64_t n = 0;
    ck_assert_msg(chanq_cancel(c, id, &n) == 0, "cancel: %s", tc_err(c));
    wait_outcome(&s, CHANQ_CANCELLED);
    chanq_worker_stop(w, false);
    ck_assert_int_eq(runner_join(&r, 10000), 0);
    ck_assert_str_eq(s.cancel_reason, "cancel");
    ck_assert_int_eq(s.outcomes[CHANQ_CANCELLED], 1);
    ck_assert_int_eq(s.outcomes[CHANQ_NACKED], 0);
    json_t *info = job_info(c, id);
    ck_assert_str_eq(json_string_value(json_object_get(info, "state")), "cancelled");
    json_decref(info);
    free(id);
    chanq_worker_free(w);
    chanq_conn_free(c);
    harness_stop(h);
}
END_TEST

/* SIGUSR1's handler stops the worker, as a program's SIGTERM handler would. */
static struct chanq_worker *signalled_worker;

static void
on_sigusr1(int sig)
{
    chanq_worker_stop(signalled_worker, false);
}

START_TEST(a_signal_stops_fetching_and_the_running_job_finishes)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *c = tc_dial(h, NULL);
    char *first = submit_n(c, "sig", 0, 0);
    struct seen s;
    seen_init(&s, MODE_SLEEP);
    s.sleep_ms = 700;
    struct chanq_worker *w = new_worker(h, "sig", 2, &s);
    signalled_worker = w;
    struct sigaction sa = {.sa_handler = on_sigusr1}, old;
    sigaction(SIGUSR1, &sa, &old);
    struct runner r;
    runner_start(&r, w);
    wait_started(&s, 1);
    ck_assert_int_eq(kill(getpid(), SIGUSR1), 0);
    char *second = submit_n(c, "sig", 1, 0);
    ck_assert_int_eq(runner_join(&r, 10000), 0);
    sigaction(SIGUSR1, &old, NULL);
    ck_assert_int_eq(s.outcomes[CHANQ_ACKED], 1);
    assert_job(c, first, "done", 1);
    /* Fetched by nobody, or fetched and released unstarted: queued, and
     * no attempt counted either way. */
    assert_job(c, second, "queued", 0);
    ck_assert_int_eq(s.runs[1], 0);
    free(first);
    free(second);
    chanq_worker_free(w);
    chanq_conn_free(c);
    harness_stop(h);
}
END_TEST

START_TEST(a_stop_that_cancels_running_jobs_still_nacks_them)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *c = tc_dial(h, NULL);
    char *id = submit_n(c, "hard", 0, 0);
    struct seen s;
    seen_init(&s, MODE_WAIT_CANCEL);
    struct chanq_worker *w = new_worker(h, "hard", 1, &s);
    struct runner r;
    runner_start(&r, w);
    wait_started(&s, 1);
    chanq_worker_stop(w, true);
    ck_assert_int_eq(runner_join(&r, 10000), 0);
    ck_assert_str_eq(s.cancel_reason, "stop");
    ck_assert_int_eq(s.outcomes[CHANQ_NACKED], 1);
    json_t *info = job_info(c, id);
    ck_assert_str_eq(json_string_value(json_object_get(info, "error")), "stopped early");
    json_decref(info);
    free(id);
    chanq_worker_free(w);
    chanq_conn_free(c);
    harness_stop(h);
}
END_TEST

START_TEST(a_released_job_comes_back_with_its_attempt_uncounted)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *c = tc_dial(h, NULL);
    char *id = submit_n(c, "rel", 0, 1);
    struct seen s;
    seen_init(&s, MODE_RELEASE_ONCE);
    s.target = 1;
    struct chanq_worker *w = new_worker(h, "rel", 1, &s);
    struct runner r;
    runner_start(&r, w);
    ck_assert_int_eq(runner_join(&r, 10000), 0);
    ck_assert_int_eq(s.outcomes[CHANQ_RELEASED], 1);
    ck_assert_int_eq(s.runs[0], 2);
    /* max_attempts 1, delivered twice: the release did not count. */
    assert_job(c, id, "done", 1);
    free(id);
    chanq_worker_free(w);
    chanq_conn_free(c);
    harness_stop(h);
}
END_TEST

START_TEST(closing_the_queue_ends_the_run_once_drained)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *c = tc_dial(h, NULL);
    for (int i = 0; i < 3; i++)
        free(submit_n(c, "cl", i, 0));
    ck_assert(chanq_close_queue(c, "cl") == 0);
    struct seen s;
    seen_init(&s, MODE_DOUBLE);
    struct chanq_worker *w = new_worker(h, "cl", 2, &s);
    struct runner r;
    runner_start(&r, w);
    ck_assert_int_eq(runner_join(&r, 10000), 0);
    ck_assert_int_eq(s.outcomes[CHANQ_ACKED], 3);
    chanq_worker_free(w);
    chanq_conn_free(c);
    harness_stop(h);
}
END_TEST

START_TEST(a_ready_hook_saying_no_stops_before_any_fetch)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *c = tc_dial(h, NULL);
    char *id = submit_n(c, "nr", 0, 0);
    struct seen s;
    seen_init(&s, MODE_DOUBLE);
    s.ready = false;
    struct chanq_worker *w = new_worker(h, "nr", 3, &s);
    struct runner r;
    runner_start(&r, w);
    ck_assert_int_eq(runner_join(&r, 10000), 0);
    ck_assert_int_eq(atomic_load(&s.started), 0);
    assert_job(c, id, "queued", 0);
    free(id);
    chanq_worker_free(w);
    chanq_conn_free(c);
    harness_stop(h);
}
END_TEST

START_TEST(a_lost_connection_reaches_the_running_job_and_the_worker_reconnects)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *c = tc_dial(h, NULL);
    char *id = submit_n(c, "lost", 0, 0);
    chanq_conn_free(c);
    struct seen s;
    seen_init(&s, MODE_WAIT_CANCEL);
    s.target = 1;
    struct chanq_worker *w = new_worker(h, "lost", 1, &s);
    struct runner r;
    runner_start(&r, w);
    wait_started(&s, 1);
    harness_kill9(h);
    wait_outcome(&s, CHANQ_LOST);
    ck_assert_int_eq(seen_count(&s, CHANQ_LOST), 1);
    ck_assert_str_eq(s.cancel_reason, "lost");
    int64_t end = harness_now_ms() + 10000;
    for (bool logged = false; !logged; usleep(10000)) {
        pthread_mutex_lock(&s.lock);
        logged = s.logs > 0;
        pthread_mutex_unlock(&s.lock);
        ck_assert_msg(logged || harness_now_ms() < end, "the failed reconnect was not logged");
    }
    /* Same port, same journal: the job is queued again, and the worker,
     * connecting again every second, takes it and acks it (then stops). */
    atomic_store(&s.mode, MODE_DOUBLE);
    ck_assert_int_eq(harness_restart(h), 0);
    ck_assert_int_eq(runner_join(&r, 15000), 0);
    ck_assert_int_eq(s.outcomes[CHANQ_ACKED], 1);
    c = tc_dial(h, NULL);
    /* Done; attempt 2 when the first delivery's record reached the disk
     * before the kill, else 1 (a delivery counts once it is on disk:
     * docs/durability.md), which a loaded machine makes possible. */
    json_t *info = job_info(c, id);
    long long attempt = json_integer_value(json_object_get(info, "attempt"));
    ck_assert_str_eq(json_string_value(json_object_get(info, "state")), "done");
    ck_assert_msg(attempt == 1 || attempt == 2, "acked as attempt %lld", attempt);
    json_decref(info);
    free(id);
    chanq_conn_free(c);
    chanq_worker_free(w);
    harness_stop(h);
}
END_TEST

START_TEST(bad_options_and_a_second_run_are_refused)
{
    struct chanq_error err;
    struct chanq_worker_opts o = {.fn = job_fn};
    ck_assert(chanq_worker_new("127.0.0.1:1", NULL, &o, &err) == NULL);
    ck_assert_str_eq(err.code, "bad_request");
    const char *queues[] = {"q"};
    o.queues = queues;
    o.nqueues = 1;
    o.fn = NULL;
    ck_assert(chanq_worker_new("127.0.0.1:1", NULL, &o, &err) == NULL);
    o.fn = job_fn;
    struct chanq_worker *w = chanq_worker_new("127.0.0.1:1", NULL, &o, &err);
    ck_assert_msg(w != NULL, "new: %s", err.message);
    /* Stopped before it runs: run returns at once, and only once. */
    chanq_worker_stop(w, false);
    ck_assert_int_eq(chanq_worker_run(w, &err), 0);
    ck_assert_int_eq(chanq_worker_run(w, &err), -1);
    ck_assert_str_eq(err.code, "bad_request");
    chanq_worker_free(w);
    chanq_worker_free(NULL);
}
END_TEST

Suite *
client_worker_suite(void)
{
    Suite *s = suite_create("client_worker");
    TCase *tc = tcase_create("worker");
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, a_pool_acks_every_job_once_with_its_result);
    tcase_add_test(tc, failures_are_nacked_with_their_text_buried_or_retried_later);
    tcase_add_test(tc, a_long_job_is_touched_past_its_ttr);
    tcase_add_test(tc, a_job_without_touches_is_revoked_and_left_alone);
    tcase_add_test(tc, a_cancel_reaches_the_running_job);
    tcase_add_test(tc, a_signal_stops_fetching_and_the_running_job_finishes);
    tcase_add_test(tc, a_stop_that_cancels_running_jobs_still_nacks_them);
    tcase_add_test(tc, a_released_job_comes_back_with_its_attempt_uncounted);
    tcase_add_test(tc, closing_the_queue_ends_the_run_once_drained);
    tcase_add_test(tc, a_ready_hook_saying_no_stops_before_any_fetch);
    tcase_add_test(tc, a_lost_connection_reaches_the_running_job_and_the_worker_reconnects);
    tcase_add_test(tc, bad_options_and_a_second_run_are_refused);
    suite_add_tcase(s, tc);
    return s;
}
