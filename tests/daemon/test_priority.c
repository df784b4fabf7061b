/* Priorities within a queue (submit's "priority" 0..9): with a mixed
 * backlog every higher level is delivered before any lower one, FIFO
 * within a level; capacity counts every level; the order survives kill -9
 * and compaction. */
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

enum { NJOBS = 300 };

/* Submits NJOBS jobs to queue: the first 20 at level 0 (the queue starts
 * without priorities), then levels from a fixed pseudo-random sequence;
 * the payload is the submit's index. levels[i] gets each one's level. */
static void
submit_mixed(int fd, const char *queue, int *levels)
{
    unsigned seed = 12345;
    for (int i = 0; i < NJOBS; i++) {
        levels[i] = i < 20 ? 0 : (int)(rand_r(&seed) % 10);
        json_decref(req_ok(fd, "{\"op\":\"submit\",\"queue\":\"%s\",\"payload\":%d,\"priority\":%d}",
                           queue, i, levels[i]));
    }
}

/* Fetches every job (a few at a time) and checks the order: levels never
 * go up, and within a level the submit order holds. */
static void
fetch_all_in_order(int fd, const char *queue, const int *levels)
{
    int got = 0, last_level = 10, last_index = -1;
    while (got < NJOBS) {
        json_t *r = req_ok(fd, "{\"op\":\"fetch\",\"queue\":\"%s\",\"count\":%d,\"timeout_ms\":2000}",
                           queue, 1 + got % 7);
        json_t *jobs = json_object_get(r, "jobs");
        ck_assert_msg(json_array_size(jobs) > 0, "only %d of %d jobs came", got, NJOBS);
        for (size_t k = 0; k < json_array_size(jobs); k++, got++) {
            json_t *job = json_array_get(jobs, k);
            int i = (int)json_integer_value(json_object_get(job, "payload"));
            ck_assert_msg(i >= 0 && i < NJOBS, "payload %d", i);
            int l = levels[i];
            ck_assert_msg(l <= last_level,
                          "job %d (level %d) delivered after a job of level %d", i, l, last_level);
            if (l == last_level)
                ck_assert_msg(i > last_index, "level %d: job %d after job %d", l, i, last_index);
            last_level = l;
            last_index = i;
            json_decref(req_ok(fd, "{\"op\":\"ack\",\"id\":\"%s\"}",
                               json_string_value(json_object_get(job, "id"))));
        }
        json_decref(r);
    }
}

START_TEST(higher_levels_first_fifo_within_a_level)
{
    struct harness *h = start_daemon(NULL);
    int fd = dial(h);
    int *levels = malloc(NJOBS * sizeof *levels);
    submit_mixed(fd, "p", levels);
    char *id = submit(fd, "p", "\"last\"");
    json_t *j = req_ok(fd, "{\"op\":\"job\",\"id\":\"%s\"}", id);
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(j, "job"), "priority")), 0);
    json_decref(j);
    json_decref(req_ok(fd, "{\"op\":\"cancel\",\"id\":\"%s\"}", id)); /* a tombstone among them */
    free(id);
    fetch_all_in_order(fd, "p", levels);
    free(levels);
    req_err(fd, "bad_request", "{\"op\":\"submit\",\"queue\":\"p\",\"payload\":1,\"priority\":10}");
    harness_close(fd);
    ck_assert_int_eq(harness_stop(h), 0);
}
END_TEST

START_TEST(capacity_counts_every_level)
{
    struct harness *h = start_daemon(NULL);
    int fd = dial(h);
    json_decref(req_ok(fd, "{\"op\":\"declare\",\"queue\":\"c\",\"capacity\":3}"));
    json_decref(req_ok(fd, "{\"op\":\"submit\",\"queue\":\"c\",\"payload\":0}"));
    json_decref(req_ok(fd, "{\"op\":\"submit\",\"queue\":\"c\",\"payload\":1,\"priority\":9}"));
    json_decref(req_ok(fd, "{\"op\":\"submit\",\"queue\":\"c\",\"payload\":2,\"priority\":4}"));
    req_err(fd, "queue_full",
            "{\"op\":\"submit\",\"queue\":\"c\",\"payload\":3,\"priority\":9,\"wait_ms\":0}");
    ck_assert_int_eq(queue_stat(fd, "c", "depth"), 3);
    /* A submit waiting for room is delivered by level once it is in. */
    const char *line = "{\"op\":\"submit\",\"queue\":\"c\",\"payload\":4,\"priority\":5,"
                       "\"wait_ms\":10000}";
    int waiter = dial(h);
    ck_assert_int_eq(send_line(waiter, line), 0);
    ck_assert(no_data_within(waiter, 200));
    static const int want[] = {1, 4, 2, 0};
    for (int k = 0; k < 4; k++) {
        json_t *r = req_ok(fd, "{\"op\":\"fetch\",\"queue\":\"c\",\"timeout_ms\":5000}");
        json_t *job = json_array_get(json_object_get(r, "jobs"), 0);
        ck_assert_int_eq(json_integer_value(json_object_get(job, "payload")), want[k]);
        json_decref(r);
        if (k == 0) {
            json_t *a = recv_json(waiter);
            ck_assert(is_ok(a));
            json_decref(a);
        }
    }
    harness_close(waiter);
    harness_close(fd);
    ck_assert_int_eq(harness_stop(h), 0);
}
END_TEST

START_TEST(priorities_survive_kill_and_compaction)
{
    const char *args[] = {"--journal-segment", "64K", "--journal-compact", "64K", NULL};
    struct harness *h = harness_start(args);
    ck_assert_ptr_nonnull(h);
    int fd = dial(h);
    int *levels = malloc(NJOBS * sizeof *levels);
    submit_mixed(fd, "p", levels);
    json_t *before = req_ok(fd, "{\"op\":\"stats\",\"digest\":true}");
    char *digest =
        strdup(json_string_value(json_object_get(json_object_get(before, "server"), "state_digest")));
    json_decref(before);
    harness_close(fd);
    harness_kill9(h);
    ck_assert_int_eq(harness_restart(h), 0);
    fd = dial(h);
    json_t *after = req_ok(fd, "{\"op\":\"stats\",\"digest\":true}");
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(after, "server"), "state_digest")),
                     digest);
    json_decref(after);
    free(digest);
    /* Compact the segments with the SUBMIT records away, restart again. */
    char pad[2048];
    memset(pad, 'x', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    for (int i = 0; i < 200; i++)
        json_decref(req_ok(fd, "{\"op\":\"submit\",\"queue\":\"filler\",\"payload\":\"%s\"}", pad));
    int64_t until = harness_now_ms() + 20000;
    while (journal_stat(fd, NULL, "compactions") < 1 && harness_now_ms() < until)
        usleep(50000);
    ck_assert_msg(journal_stat(fd, NULL, "compactions") >= 1, "no compaction ran");
    harness_close(fd);
    harness_kill9(h);
    ck_assert_int_eq(harness_restart(h), 0);
    fd = dial(h);
    fetch_all_in_order(fd, "p", levels);
    free(levels);
    harness_close(fd);
    ck_assert_int_eq(harness_stop(h), 0);
}
END_TEST

/* ---- a full queue with producers parked for room ---- */

enum { PRODUCERS = 4, PER_PRODUCER = 150, CONSUMERS = 4 };

struct churn {
    struct harness *h;
    atomic_int acked, errors, producing;
};

static void *
producer(void *arg)
{
    struct churn *c = arg;
    int fd = harness_dial(c->h);
    unsigned seed = (unsigned)fd;
    char line[160];
    for (int i = 0; fd >= 0 && i < PER_PRODUCER; i++) {
        snprintf(line, sizeof line,
                 "{\"op\":\"submit\",\"queue\":\"full\",\"payload\":%d,\"priority\":%u,"
                 "\"wait_ms\":30000}",
                 i, rand_r(&seed) % 10);
        json_t *a = request(fd, line);
        if (!is_ok(a))
            atomic_fetch_add(&c->errors, 1);
        json_decref(a);
    }
    if (fd >= 0)
        harness_close(fd);
    else
        atomic_fetch_add(&c->errors, 1);
    atomic_fetch_sub(&c->producing, 1);
    return NULL;
}

static void *
consumer(void *arg)
{
    struct churn *c = arg;
    int fd = harness_dial(c->h);
    char line[160];
    while (fd >= 0 && atomic_load(&c->acked) < PRODUCERS * PER_PRODUCER) {
        json_t *r = request(fd, "{\"op\":\"fetch\",\"queue\":\"full\",\"count\":3,"
                                "\"timeout_ms\":200}");
        json_t *jobs = json_object_get(r, "jobs");
        if (!is_ok(r)) {
            atomic_fetch_add(&c->errors, 1);
            json_decref(r);
            break;
        }
        for (size_t k = 0; k < json_array_size(jobs); k++) {
            snprintf(line, sizeof line, "{\"op\":\"ack\",\"id\":\"%s\"}",
                     json_string_value(json_object_get(json_array_get(jobs, k), "id")));
            json_t *a = request(fd, line);
            if (is_ok(a))
                atomic_fetch_add(&c->acked, 1);
            else
                atomic_fetch_add(&c->errors, 1);
            json_decref(a);
        }
        json_decref(r);
        if (json_array_size(jobs) == 0 && atomic_load(&c->producing) == 0)
            break;
    }
    if (fd >= 0)
        harness_close(fd);
    return NULL;
}

/* Submitters parked for room hand their jobs over while fetchers take by
 * level: every job is delivered once, and the queue's counts end at 0. */
START_TEST(full_queue_with_waiting_submitters_loses_nothing)
{
    struct harness *h = start_daemon(NULL);
    int fd = dial(h);
    json_decref(req_ok(fd, "{\"op\":\"declare\",\"queue\":\"full\",\"capacity\":4}"));
    struct churn c = {.h = h, .producing = PRODUCERS};
    pthread_t t[PRODUCERS + CONSUMERS];
    for (int i = 0; i < PRODUCERS + CONSUMERS; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, i < PRODUCERS ? producer : consumer, &c), 0);
    for (int i = 0; i < PRODUCERS + CONSUMERS; i++)
        pthread_join(t[i], NULL);
    ck_assert_int_eq(atomic_load(&c.errors), 0);
    ck_assert_int_eq(atomic_load(&c.acked), PRODUCERS * PER_PRODUCER);
    ck_assert_int_eq(queue_stat(fd, "full", "depth"), 0);
    ck_assert_int_eq(queue_stat(fd, "full", "reserved"), 0);
    ck_assert_int_eq(queue_stat(fd, "full", "acked"), PRODUCERS * PER_PRODUCER);
    /* Nothing left behind a ticket: one more job comes straight out. */
    char *id = submit(fd, "full", "1");
    char *got = fetch_one(fd, "full", 2000);
    ck_assert_ptr_nonnull(got);
    ck_assert_str_eq(got, id);
    free(id);
    free(got);
    harness_close(fd);
    ck_assert_int_eq(harness_stop(h), 0);
}
END_TEST

Suite *
priority_suite(void)
{
    Suite *s = suite_create("priority");
    TCase *tc = tcase_create("priority");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, higher_levels_first_fifo_within_a_level);
    tcase_add_test(tc, capacity_counts_every_level);
    tcase_add_test(tc, priorities_survive_kill_and_compaction);
    tcase_add_test(tc, full_queue_with_waiting_submitters_loses_nothing);
    suite_add_tcase(s, tc);
    return s;
}
