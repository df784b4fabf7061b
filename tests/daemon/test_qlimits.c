/* Per-queue delivery limits (declare's "concurrency" and "rate"): never
 * more reserved than the limit whatever the number of workers, deliveries
 * within the token bucket's bounds, starved fetchers served from another
 * of their queues, and the limits kept across kill -9 and compaction. */
#include "chanq_config.h"

#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/daemon/suites.h"
#include "tests/daemon/util.h"

/* ---- concurrency: 20 workers, limit 3 ---- */

enum { WORKERS = 20, CJOBS = 150 };

struct crowd {
    struct harness *h;
    const char *queue;
    atomic_int held;     /* jobs the workers hold, counted by the workers */
    atomic_int max_held; /* the most they held at once */
    atomic_int done;     /* jobs acked */
    atomic_int errors;   /* answers that were not ok */
    atomic_bool stop;
};

static void
note_max(atomic_int *max, int v)
{
    int m = atomic_load(max);
    while (v > m && !atomic_compare_exchange_weak(max, &m, v))
        ;
}

/* A worker: fetch one, hold it a moment, ack, until told to stop. The
 * count of held jobs goes up once the fetch answered and down before the
 * ack is sent, so it never exceeds what the server has reserved. */
static void *
crowd_worker(void *arg)
{
    struct crowd *c = arg;
    int fd = harness_dial(c->h);
    if (fd < 0) {
        atomic_fetch_add(&c->errors, 1);
        return NULL;
    }
    char line[256];
    while (!atomic_load(&c->stop)) {
        snprintf(line, sizeof line, "{\"op\":\"fetch\",\"queue\":\"%s\",\"timeout_ms\":200}",
                 c->queue);
        json_t *r = request(fd, line);
        json_t *jobs = json_object_get(r, "jobs");
        if (!is_ok(r) || !json_is_array(jobs)) {
            atomic_fetch_add(&c->errors, 1);
            json_decref(r);
            break;
        }
        if (json_array_size(jobs) == 1) {
            note_max(&c->max_held, atomic_fetch_add(&c->held, 1) + 1);
            usleep(2000);
            snprintf(line, sizeof line, "{\"op\":\"ack\",\"id\":\"%s\"}",
                     json_string_value(json_object_get(json_array_get(jobs, 0), "id")));
            atomic_fetch_sub(&c->held, 1);
            json_t *a = request(fd, line);
            if (!is_ok(a))
                atomic_fetch_add(&c->errors, 1);
            else
                atomic_fetch_add(&c->done, 1);
            json_decref(a);
        }
        json_decref(r);
    }
    harness_close(fd);
    return NULL;
}

START_TEST(concurrency_caps_reserved_jobs)
{
    struct harness *h = start_daemon(NULL);
    int fd = dial(h), sampler = dial(h);
    json_decref(req_ok(fd, "{\"op\":\"declare\",\"queue\":\"c3\",\"concurrency\":3}"));
    ck_assert_int_eq(queue_stat(fd, "c3", "concurrency"), 3);
    for (int i = 0; i < CJOBS; i++)
        free(submit(fd, "c3", "{}"));
    struct crowd c = {.h = h, .queue = "c3"};
    pthread_t t[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, crowd_worker, &c), 0);
    /* Sample the server's own count while they work, as often as it answers. */
    long long most = 0, samples = 0;
    int64_t until = harness_now_ms() + 60000;
    while (atomic_load(&c.done) < CJOBS && harness_now_ms() < until) {
        long long r = queue_stat(sampler, "c3", "reserved");
        ck_assert_msg(r <= 3, "%lld jobs reserved with a concurrency limit of 3", r);
        most = r > most ? r : most;
        samples++;
    }
    atomic_store(&c.stop, true);
    for (int i = 0; i < WORKERS; i++)
        pthread_join(t[i], NULL);
    ck_assert_int_eq(atomic_load(&c.errors), 0);
    ck_assert_int_eq(atomic_load(&c.done), CJOBS);
    ck_assert_msg(atomic_load(&c.max_held) <= 3, "workers held %d jobs at once",
                  atomic_load(&c.max_held));
    ck_assert_msg(most == 3, "the limit was never reached (at most %lld reserved, %lld samples)",
                  most, samples);
    harness_close(fd);
    harness_close(sampler);
    ck_assert_int_eq(harness_stop(h), 0);
}
END_TEST

/* A fetch over a limited queue and another takes from the other when the
 * limited one has no room; a parked fetch wakes when a slot comes free. */
START_TEST(starved_fetch_takes_other_queue_and_wakes_on_ack)
{
    struct harness *h = start_daemon(NULL);
    int a = dial(h), b = dial(h);
    json_decref(req_ok(a, "{\"op\":\"declare\",\"queue\":\"lim\",\"concurrency\":1}"));
    char *j1 = submit(a, "lim", "1");
    char *j2 = submit(a, "lim", "2");
    char *o = submit(a, "other", "3");
    char *got = fetch_one(a, "lim", 0);
    ck_assert_str_eq(got, j1);
    free(got);
    /* lim has a job but no room: a fetch over both gets other's. */
    json_t *r = req_ok(b, "{\"op\":\"fetch\",\"queues\":[\"lim\",\"other\"],\"strict\":true,"
                          "\"timeout_ms\":0}");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(r, "jobs"),
                                                                      0),
                                                       "id")),
                     o);
    json_decref(r);
    /* Now nothing deliverable: a parked fetch wakes once j1 is acked. */
    char line[128];
    snprintf(line, sizeof line, "{\"op\":\"fetch\",\"queue\":\"lim\",\"timeout_ms\":10000}");
    ck_assert_int_eq(send_line(b, line), 0);
    ck_assert_msg(no_data_within(b, 300), "a fetch past the concurrency limit answered");
    json_decref(req_ok(a, "{\"op\":\"ack\",\"id\":\"%s\"}", j1));
    r = recv_json(b);
    ck_assert_msg(is_ok(r), "the parked fetch answered");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(r, "jobs"),
                                                                      0),
                                                       "id")),
                     j2);
    json_decref(r);
    free(j1);
    free(j2);
    free(o);
    harness_close(a);
    harness_close(b);
    ck_assert_int_eq(harness_stop(h), 0);
}
END_TEST

START_TEST(declare_checks_limits)
{
    struct harness *h = start_daemon(NULL);
    int fd = dial(h);
    req_err(fd, "bad_request", "{\"op\":\"declare\",\"queue\":\"x\",\"burst\":3}");
    req_err(fd, "bad_request", "{\"op\":\"declare\",\"queue\":\"x\",\"rate\":0,\"burst\":3}");
    req_err(fd, "bad_request", "{\"op\":\"declare\",\"queue\":\"x\",\"concurrency\":-1}");
    req_err(fd, "bad_request", "{\"op\":\"declare\",\"queue\":\"x\",\"rate\":1000001}");
    json_t *r = req_ok(fd, "{\"op\":\"declare\",\"queue\":\"x\",\"rate\":10}");
    json_t *q = json_object_get(r, "queue");
    ck_assert_int_eq(json_integer_value(json_object_get(q, "rate")), 10);
    ck_assert_int_eq(json_integer_value(json_object_get(q, "rate_per_ms")), 1000);
    ck_assert_int_eq(json_integer_value(json_object_get(q, "burst")), 10);
    ck_assert_int_eq(json_integer_value(json_object_get(q, "rate_tokens")), 10);
    ck_assert_ptr_null(json_object_get(q, "concurrency"));
    json_decref(r);
    /* The same again is fine; different limits conflict. */
    json_decref(req_ok(fd, "{\"op\":\"declare\",\"queue\":\"x\",\"rate\":10,\"rate_per_ms\":1000}"));
    req_err(fd, "conflict", "{\"op\":\"declare\",\"queue\":\"x\",\"rate\":11}");
    req_err(fd, "conflict", "{\"op\":\"declare\",\"queue\":\"x\",\"concurrency\":2}");
    harness_close(fd);
    ck_assert_int_eq(harness_stop(h), 0);
}
END_TEST

/* ---- rate: deliveries within the bucket's bounds ---- */

enum { MAX_SECS = 120 };

struct rate_run {
    struct harness *h;
    int64_t start, until;
    atomic_int got;
    atomic_int errors;
    atomic_int per_sec[MAX_SECS]; /* deliveries answered in each second of the run */
};

static void *
rate_fetcher(void *arg)
{
    struct rate_run *r = arg;
    int fd = harness_dial(r->h);
    if (fd < 0) {
        atomic_fetch_add(&r->errors, 1);
        return NULL;
    }
    while (harness_now_ms() < r->until) {
        json_t *a = request(fd, "{\"op\":\"fetch\",\"queue\":\"rl\",\"count\":10,"
                                "\"timeout_ms\":50}");
        if (!is_ok(a)) {
            atomic_fetch_add(&r->errors, 1);
            json_decref(a);
            break;
        }
        int n = (int)json_array_size(json_object_get(a, "jobs"));
        int64_t s = (harness_now_ms() - r->start) / 1000;
        atomic_fetch_add(&r->got, n);
        atomic_fetch_add(&r->per_sec[s < MAX_SECS ? s : MAX_SECS - 1], n);
        json_decref(a);
    }
    harness_close(fd);
    return NULL;
}

/* Runs 4 fetchers for secs seconds on a queue of rate/s with a burst of
 * burst; returns how many jobs they got and how long it took, and the
 * deliveries of each second in per_sec[0..secs). */
static int
rate_measure(int rate, int burst, int secs, int64_t *took, int *per_sec)
{
    struct harness *h = start_daemon(NULL);
    int fd = dial(h);
    int n = rate * secs + burst + 100;
    json_decref(req_ok(fd,
                       "{\"op\":\"declare\",\"queue\":\"rl\",\"rate\":%d,\"burst\":%d,"
                       "\"capacity\":%d}",
                       rate, burst, n));
    for (int i = 0; i < n; i++)
        free(submit(fd, "rl", "{}"));
    struct rate_run r = {.h = h};
    int64_t start = r.start = harness_now_ms();
    r.until = start + secs * 1000;
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, rate_fetcher, &r), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    *took = harness_now_ms() - start;
    ck_assert_int_eq(atomic_load(&r.errors), 0);
    ck_assert_int_eq(queue_stat(fd, "rl", "delivered"), atomic_load(&r.got));
    harness_close(fd);
    ck_assert_int_eq(harness_stop(h), 0);
    for (int s = 0; s < secs && s < MAX_SECS; s++)
        per_sec[s] = atomic_load(&r.per_sec[s]);
    return atomic_load(&r.got);
}

/* 100/s with a burst of 10, for 2 s (CHANQ_RATE_SECONDS=N runs N s and
 * prints every second's figure). */
START_TEST(rate_limits_deliveries)
{
    const char *env = getenv("CHANQ_RATE_SECONDS");
    int secs = env ? atoi(env) : 2;
    if (secs < 2 || secs > MAX_SECS)
        secs = 2;
    int64_t took;
    int per_sec[MAX_SECS];
    int got = rate_measure(100, 10, secs, &took, per_sec);
    /* At most the burst plus what the elapsed time refilled (the time
     * measured includes the last answers); at least half the rate, however
     * loaded the machine. */
    long long most = 10 + 100 * took / 1000 + 1;
    ck_assert_msg(got <= most, "%d deliveries in %lld ms at 100/s, burst 10 (at most %lld)", got,
                  (long long)took, most);
    ck_assert_msg(got >= 50 * secs, "only %d deliveries in %lld ms at 100/s", got,
                  (long long)took);
    /* Each second, as the clients saw the answers: within the bucket's
     * bound (burst + rate) plus the answers a late one can push into the
     * next second (a fetch carries at most 10). */
    for (int s = 0; s < secs; s++) {
        if (env)
            printf("rate 100/s burst 10: second %d: %d deliveries\n", s, per_sec[s]);
        ck_assert_msg(per_sec[s] <= 10 + 100 + 10, "second %d: %d deliveries at 100/s", s,
                      per_sec[s]);
    }
    if (env)
        printf("rate 100/s burst 10: %d deliveries in %lld ms (bound %lld)\n", got,
               (long long)took, most);
}
END_TEST

/* ---- durability ---- */

START_TEST(limits_survive_kill_and_compaction)
{
    const char *args[] = {"--journal-segment", "64K", "--journal-compact", "64K", NULL};
    struct harness *h = harness_start(args);
    ck_assert_ptr_nonnull(h);
    int fd = dial(h);
    json_decref(req_ok(fd, "{\"op\":\"declare\",\"queue\":\"d\",\"concurrency\":2,\"rate\":5,"
                           "\"rate_per_ms\":2000,\"burst\":3}"));
    json_t *before = req_ok(fd, "{\"op\":\"stats\",\"digest\":true}");
    char *digest = strdup(json_string_value(json_object_get(json_object_get(before, "server"), "state_digest")));
    json_decref(before);
    harness_close(fd);
    harness_kill9(h);
    ck_assert_int_eq(harness_restart(h), 0);
    fd = dial(h);
    json_t *after = req_ok(fd, "{\"op\":\"stats\",\"digest\":true}");
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(after, "server"), "state_digest")), digest);
    json_decref(after);
    ck_assert_int_eq(queue_stat(fd, "d", "concurrency"), 2);
    /* Enough records to compact the segment with the queue record in it. */
    char pad[2048];
    memset(pad, 'x', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    for (int i = 0; i < 200; i++) {
        char *id = submit(fd, "filler", "0");
        json_decref(req_ok(fd, "{\"op\":\"cancel\",\"id\":\"%s\"}", id));
        free(id);
        json_decref(req_ok(fd, "{\"op\":\"submit\",\"queue\":\"filler\",\"payload\":\"%s\"}", pad));
    }
    int64_t until = harness_now_ms() + 20000;
    while (journal_stat(fd, NULL, "compactions") < 1 && harness_now_ms() < until)
        usleep(50000);
    ck_assert_msg(journal_stat(fd, NULL, "compactions") >= 1, "no compaction ran");
    harness_close(fd);
    harness_kill9(h);
    ck_assert_int_eq(harness_restart(h), 0);
    fd = dial(h);
    json_t *r = req_ok(fd, "{\"op\":\"stats\",\"queue\":\"d\"}");
    json_t *q = json_object_get(r, "queue");
    ck_assert_int_eq(json_integer_value(json_object_get(q, "concurrency")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(q, "rate")), 5);
    ck_assert_int_eq(json_integer_value(json_object_get(q, "rate_per_ms")), 2000);
    ck_assert_int_eq(json_integer_value(json_object_get(q, "burst")), 3);
    json_decref(r);
    free(digest);
    harness_close(fd);
    ck_assert_int_eq(harness_stop(h), 0);
}
END_TEST

Suite *
qlimits_suite(void)
{
    Suite *s = suite_create("qlimits");
    TCase *tc = tcase_create("qlimits");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, declare_checks_limits);
    tcase_add_test(tc, starved_fetch_takes_other_queue_and_wakes_on_ack);
    tcase_add_test(tc, concurrency_caps_reserved_jobs);
    tcase_add_test(tc, rate_limits_deliveries);
    tcase_add_test(tc, limits_survive_kill_and_compaction);
    suite_add_tcase(s, tc);
    return s;
}
