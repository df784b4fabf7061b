/* Idempotency keys (submit's "key"): one job per key however many clients
 * race with it, the key free again after its window, and the keys kept
 * across kill -9 and compaction. */
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

enum { CLIENTS = 8, KEYS = 1000 };

struct race {
    struct harness *h;
    char ids[CLIENTS][KEYS][24]; /* the id each client was answered, per key */
    atomic_int fresh;            /* answers without "duplicate" */
    atomic_int errors;
};

struct racer {
    struct race *r;
    int n;
};

/* Submits every key once, starting at a different one per client, so the
 * clients meet on every key at different moments. */
static void *
racer_run(void *arg)
{
    struct racer *me = arg;
    struct race *r = me->r;
    int fd = harness_dial(r->h);
    if (fd < 0) {
        atomic_fetch_add(&r->errors, 1);
        return NULL;
    }
    char line[160];
    for (int i = 0; i < KEYS; i++) {
        int k = (i + me->n * (KEYS / CLIENTS)) % KEYS;
        snprintf(line, sizeof line,
                 "{\"op\":\"submit\",\"queue\":\"kq\",\"payload\":%d,\"key\":\"order-%d\"}", k, k);
        json_t *a = request(fd, line);
        const char *id = json_string_value(json_object_get(a, "id"));
        if (!is_ok(a) || !id || strlen(id) >= 24) {
            atomic_fetch_add(&r->errors, 1);
        } else {
            strcpy(r->ids[me->n][k], id);
            if (!json_is_true(json_object_get(a, "duplicate")))
                atomic_fetch_add(&r->fresh, 1);
        }
        json_decref(a);
    }
    harness_close(fd);
    return NULL;
}

START_TEST(racing_clients_make_one_job_per_key)
{
    struct harness *h = start_daemon(NULL);
    int fd = dial(h);
    struct race *r = calloc(1, sizeof *r);
    r->h = h;
    struct racer who[CLIENTS];
    pthread_t t[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        who[i] = (struct racer){r, i};
        ck_assert_int_eq(pthread_create(&t[i], NULL, racer_run, &who[i]), 0);
    }
    for (int i = 0; i < CLIENTS; i++)
        pthread_join(t[i], NULL);
    ck_assert_int_eq(atomic_load(&r->errors), 0);
    ck_assert_int_eq(atomic_load(&r->fresh), KEYS);
    for (int k = 0; k < KEYS; k++)
        for (int c = 1; c < CLIENTS; c++)
            ck_assert_msg(strcmp(r->ids[c][k], r->ids[0][k]) == 0,
                          "key order-%d: client %d got job %s, client 0 job %s", k, c,
                          r->ids[c][k], r->ids[0][k]);
    ck_assert_int_eq(queue_stat(fd, "kq", "depth"), KEYS);
    ck_assert_int_eq(queue_stat(fd, "kq", "submitted"), KEYS);
    json_t *j = req_ok(fd, "{\"op\":\"job\",\"id\":\"%s\"}", r->ids[0][7]);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "job"), "key")),
                     "order-7");
    json_decref(j);
    free(r);
    harness_close(fd);
    ck_assert_int_eq(harness_stop(h), 0);
}
END_TEST

/* Submits payload with key; returns the id and whether it was a duplicate. */
static char *
keyed(int fd, const char *key, bool *dup)
{
    json_t *a = req_ok(fd, "{\"op\":\"submit\",\"queue\":\"w\",\"payload\":1,\"key\":\"%s\"}", key);
    char *id = strdup(json_string_value(json_object_get(a, "id")));
    *dup = json_is_true(json_object_get(a, "duplicate"));
    json_decref(a);
    return id;
}

START_TEST(key_is_free_after_its_window)
{
    const char *args[] = {"--key-window", "300", NULL};
    struct harness *h = start_daemon(args);
    int fd = dial(h);
    bool dup;
    char *first = keyed(fd, "k", &dup);
    ck_assert(!dup);
    char *again = keyed(fd, "k", &dup);
    ck_assert(dup);
    ck_assert_str_eq(again, first);
    free(again);
    /* Live for as long as it takes: the window starts when it finishes. */
    usleep(400 * 1000);
    again = keyed(fd, "k", &dup);
    ck_assert_msg(dup, "a live job's key was freed by its window");
    free(again);
    char *got = fetch_one(fd, "w", 1000);
    ck_assert_str_eq(got, first);
    json_decref(req_ok(fd, "{\"op\":\"ack\",\"id\":\"%s\"}", got));
    free(got);
    again = keyed(fd, "k", &dup);
    ck_assert_msg(dup, "a key was freed as soon as its job finished");
    ck_assert_str_eq(again, first);
    free(again);
    usleep(400 * 1000);
    char *second = keyed(fd, "k", &dup);
    ck_assert_msg(!dup, "the key is still bound past its window");
    ck_assert_str_ne(second, first);
    /* A cancelled job is finished too: it holds its key for the window. */
    json_decref(req_ok(fd, "{\"op\":\"cancel\",\"id\":\"%s\"}", second));
    again = keyed(fd, "k", &dup);
    ck_assert(dup);
    free(again);
    free(second);
    free(first);
    /* Keys are job ids' kind of text: 1..128 bytes. */
    req_err(fd, "bad_request", "{\"op\":\"submit\",\"queue\":\"w\",\"payload\":1,\"key\":\"\"}");
    char line[400];
    int n = snprintf(line, sizeof line, "{\"op\":\"submit\",\"queue\":\"w\",\"payload\":1,\"key\":\"");
    memset(line + n, 'x', 129);
    snprintf(line + n + 129, sizeof line - (size_t)n - 129, "\"}");
    req_err(fd, "bad_request", "%s", line);
    harness_close(fd);
    ck_assert_int_eq(harness_stop(h), 0);
}
END_TEST

static void
expect_dup(int fd, const char *key, const char *id)
{
    bool dup;
    char *got = keyed(fd, key, &dup);
    ck_assert_msg(dup, "key %s is free after a restart", key);
    ck_assert_msg(strcmp(got, id) == 0, "key %s: job %s, was %s", key, got, id);
    free(got);
}

START_TEST(keys_survive_kill_and_compaction)
{
    /* keep-results 0: the finished job is gone at once, only its key stays. */
    const char *args[] = {"--journal-segment", "64K", "--journal-compact", "64K",
                          "--keep-results", "0", "--key-window", "600000", NULL};
    struct harness *h = harness_start(args);
    ck_assert_ptr_nonnull(h);
    int fd = dial(h);
    bool dup;
    char *live = keyed(fd, "live", &dup);
    char *done = keyed(fd, "done", &dup);
    char *got = fetch_one(fd, "w", 1000);
    ck_assert_str_eq(got, live);
    free(got);
    got = fetch_one(fd, "w", 1000);
    ck_assert_str_eq(got, done);
    json_decref(req_ok(fd, "{\"op\":\"ack\",\"id\":\"%s\"}", got));
    free(got);
    harness_close(fd);
    harness_kill9(h);
    ck_assert_int_eq(harness_restart(h), 0);
    fd = dial(h);
    expect_dup(fd, "live", live);
    expect_dup(fd, "done", done);
    /* Compact the segments holding the SUBMIT records away. */
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
    expect_dup(fd, "live", live);
    expect_dup(fd, "done", done);
    free(live);
    free(done);
    harness_close(fd);
    ck_assert_int_eq(harness_stop(h), 0);
}
END_TEST

Suite *
keys_suite(void)
{
    Suite *s = suite_create("keys");
    TCase *tc = tcase_create("keys");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, racing_clients_make_one_job_per_key);
    tcase_add_test(tc, key_is_free_after_its_window);
    tcase_add_test(tc, keys_survive_kill_and_compaction);
    suite_add_tcase(s, tc);
    return s;
}
