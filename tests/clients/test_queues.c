/* libchanq queue operations against a real chanqd: declare, close, pause,
 * resume, strict fetch, stats and queues. */
#include "chanq_config.h"

#include <stdlib.h>
#include <string.h>

#include "tests/clients/suites.h"

START_TEST(declare_is_idempotent_and_reports_conflicts)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *c = tc_dial(h, NULL);
    json_t *q = NULL;
    ck_assert_msg(chanq_declare(c, "d", 5, 60000, 4, &q) == 0, "declare: %s", tc_err(c));
    ck_assert_int_eq(json_integer_value(json_object_get(q, "capacity")), 5);
    json_decref(q);
    ck_assert_msg(chanq_declare(c, "d", 5, 60000, 4, NULL) == 0, "same declare: %s", tc_err(c));
    ck_assert_msg(chanq_declare(c, "d", 6, 60000, 4, NULL) < 0, "conflicting declare succeeded");
    ck_assert_str_eq(chanq_last_error(c)->code, "conflict");
    chanq_conn_free(c);
    harness_stop(h);
}
END_TEST

START_TEST(a_closed_queue_refuses_submits_drains_and_then_answers_closed)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *c = tc_dial(h, NULL);
    struct chanq_submit_opts o = {.queue = "c"};
    char *id = NULL;
    ck_assert_msg(chanq_submit(c, &o, "1", &id, NULL) == 0, "submit: %s", tc_err(c));
    ck_assert_msg(chanq_close_queue(c, "c") == 0, "close: %s", tc_err(c));
    char *id2 = NULL;
    ck_assert_msg(chanq_submit(c, &o, "2", &id2, NULL) < 0, "submit to a closed queue");
    ck_assert_str_eq(chanq_last_error(c)->code, "closed");
    const char *qs[] = {"c"};
    struct chanq_fetch_opts fo = {.queues = qs, .nqueues = 1, .timeout_ms = 2000};
    struct chanq_job *jobs;
    size_t n;
    ck_assert_msg(chanq_fetch(c, &fo, &jobs, &n) == 0 && n == 1, "closed queue not drained: %s",
                  tc_err(c));
    ck_assert_msg(chanq_ack(c, jobs[0].id, NULL) == 0, "ack: %s", tc_err(c));
    chanq_jobs_free(jobs, n);
    ck_assert_msg(chanq_fetch(c, &fo, &jobs, &n) < 0, "fetch on a drained closed queue");
    ck_assert_str_eq(chanq_last_error(c)->code, "closed");
    ck_assert_msg(chanq_close_queue(c, "never-made") < 0, "close of an unknown queue");
    ck_assert_str_eq(chanq_last_error(c)->code, "not_found");
    free(id);
    chanq_conn_free(c);
    harness_stop(h);
}
END_TEST

START_TEST(a_paused_queue_delivers_nothing_until_resumed)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *c = tc_dial(h, NULL);
    struct chanq_submit_opts o = {.queue = "pz"};
    char *id = NULL;
    ck_assert_msg(chanq_submit(c, &o, "1", &id, NULL) == 0, "submit: %s", tc_err(c));
    ck_assert_msg(chanq_pause(c, "pz") == 0, "pause: %s", tc_err(c));
    const char *qs[] = {"pz"};
    struct chanq_fetch_opts fo = {.queues = qs, .nqueues = 1, .timeout_ms = 200};
    struct chanq_job *jobs;
    size_t n;
    ck_assert_msg(chanq_fetch(c, &fo, &jobs, &n) == 0 && n == 0, "paused queue delivered");
    json_t *st = NULL;
    ck_assert_msg(chanq_stats(c, "pz", &st) == 0, "stats: %s", tc_err(c));
    ck_assert_msg(json_is_true(json_object_get(st, "paused")), "stats does not say paused");
    json_decref(st);
    ck_assert_msg(chanq_resume(c, "pz") == 0, "resume: %s", tc_err(c));
    fo.timeout_ms = 2000;
    ck_assert_msg(chanq_fetch(c, &fo, &jobs, &n) == 0 && n == 1, "resumed queue did not deliver");
    chanq_jobs_free(jobs, n);
    free(id);
    chanq_conn_free(c);
    harness_stop(h);
}
END_TEST

START_TEST(a_strict_fetch_takes_the_first_listed_ready_queue)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *c = tc_dial(h, NULL);
    struct chanq_submit_opts lo = {.queue = "low"}, hi = {.queue = "high"};
    for (int i = 0; i < 5; i++) {
        char *a = NULL, *b = NULL;
        ck_assert_msg(chanq_submit(c, &lo, "\"low\"", &a, NULL) == 0, "submit: %s", tc_err(c));
        ck_assert_msg(chanq_submit(c, &hi, "\"high\"", &b, NULL) == 0, "submit: %s", tc_err(c));
        free(a);
        free(b);
    }
    const char *qs[] = {"high", "low"};
    struct chanq_fetch_opts fo = {.queues = qs, .nqueues = 2, .timeout_ms = 1000, .strict = true};
    for (int i = 0; i < 10; i++) {
        struct chanq_job *jobs;
        size_t n;
        ck_assert_msg(chanq_fetch(c, &fo, &jobs, &n) == 0 && n == 1, "fetch: %s", tc_err(c));
        ck_assert_str_eq(jobs[0].queue, i < 5 ? "high" : "low");
        chanq_ack(c, jobs[0].id, NULL);
        chanq_jobs_free(jobs, n);
    }
    chanq_conn_free(c);
    harness_stop(h);
}
END_TEST

START_TEST(stats_and_queues_report_the_documented_fields)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *c = tc_dial(h, NULL);
    ck_assert_msg(chanq_declare(c, "s", 10, 0, 0, NULL) == 0, "declare: %s", tc_err(c));
    struct chanq_submit_opts o = {.queue = "s"};
    for (int i = 0; i < 3; i++) {
        char *id = NULL;
        ck_assert_msg(chanq_submit(c, &o, "1", &id, NULL) == 0, "submit: %s", tc_err(c));
        free(id);
    }
    json_t *q = NULL;
    ck_assert_msg(chanq_stats(c, "s", &q) == 0, "stats s: %s", tc_err(c));
    static const char *const fields[] = {"capacity", "depth", "reserved", "delayed", "dead",
                                         "waiting_submitters", "waiting_fetchers", "submitted",
                                         "acked", "rejected_full", "blocked_ms"};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        ck_assert_msg(json_is_integer(json_object_get(q, fields[i])), "queue stats lack %s",
                      fields[i]);
    ck_assert_int_eq(json_integer_value(json_object_get(q, "depth")), 3);
    ck_assert_int_eq(json_integer_value(json_object_get(q, "capacity")), 10);
    json_decref(q);
    json_t *all = NULL;
    ck_assert_msg(chanq_queues(c, &all) == 0, "queues: %s", tc_err(c));
    ck_assert_msg(json_is_object(json_object_get(all, "s")), "queues lacks s");
    json_decref(all);
    json_t *srv = NULL;
    ck_assert_msg(chanq_stats(c, NULL, &srv) == 0, "server stats: %s", tc_err(c));
    ck_assert_msg(json_integer_value(json_object_get(srv, "rss_bytes")) > 0, "no rss_bytes");
    ck_assert_msg(json_is_integer(json_object_get(srv, "connections")), "no connections");
    json_decref(srv);
    ck_assert_msg(chanq_stats(c, "nope", &q) < 0, "stats of an unknown queue");
    ck_assert_str_eq(chanq_last_error(c)->code, "not_found");
    chanq_conn_free(c);
    harness_stop(h);
}
END_TEST

/* The server answers `queues` a page (1000) at a time: the library gathers
 * every page. */
START_TEST(queues_gathers_every_page)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *c = tc_dial(h, NULL);
    for (int i = 0; i < 2100; i++) {
        char name[16];
        snprintf(name, sizeof name, "p%04d", i);
        ck_assert_msg(chanq_declare(c, name, 10, 0, 0, NULL) == 0, "declare: %s", tc_err(c));
    }
    json_t *all = NULL;
    ck_assert_msg(chanq_queues(c, &all) == 0, "queues: %s", tc_err(c));
    ck_assert_int_eq(json_object_size(all), 2100);
    ck_assert_msg(json_object_get(all, "p0000") && json_object_get(all, "p2099"),
                  "the first or last queue is missing");
    json_decref(all);
    chanq_conn_free(c);
    harness_stop(h);
}
END_TEST

Suite *
client_queues_suite(void)
{
    Suite *s = suite_create("client_queues");
    TCase *tc = tcase_create("queues");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, declare_is_idempotent_and_reports_conflicts);
    tcase_add_test(tc, a_closed_queue_refuses_submits_drains_and_then_answers_closed);
    tcase_add_test(tc, a_paused_queue_delivers_nothing_until_resumed);
    tcase_add_test(tc, a_strict_fetch_takes_the_first_listed_ready_queue);
    tcase_add_test(tc, stats_and_queues_report_the_documented_fields);
    tcase_add_test(tc, queues_gathers_every_page);
    suite_add_tcase(s, tc);
    return s;
}
