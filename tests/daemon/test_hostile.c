/* Requests that used to let one client stall everyone: a `queues` answer
 * over thousands of queues, built under the broker lock. */
#include "chanq_config.h"

#include <check.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/daemon/suites.h"
#include "tests/daemon/util.h"

static void
declare_queues(int fd, int n)
{
    for (int i = 0; i < n; i++)
        json_decref(req_ok(fd, "{\"op\":\"declare\",\"queue\":\"q%04d\"}", i));
}

/* `queues` answers a page in name order; "next" names the last queue of a
 * page with more after it, and "after" continues there. */
START_TEST(queues_are_listed_a_page_at_a_time)
{
    declare_queues(fx.fd, 25);
    json_t *r = req_ok(fx.fd, "{\"op\":\"queues\",\"count\":10}");
    ck_assert_int_eq(json_object_size(json_object_get(r, "queues")), 10);
    ck_assert_msg(json_object_get(json_object_get(r, "queues"), "q0000") &&
                      json_object_get(json_object_get(r, "queues"), "q0009"),
                  "the first page is not the first ten names");
    ck_assert_str_eq(json_string_value(json_object_get(r, "next")), "q0009");
    json_decref(r);
    r = req_ok(fx.fd, "{\"op\":\"queues\",\"count\":10,\"after\":\"q0009\"}");
    ck_assert_msg(json_object_get(json_object_get(r, "queues"), "q0010") &&
                      !json_object_get(json_object_get(r, "queues"), "q0009"),
                  "the second page does not start after the cursor");
    json_decref(r);
    r = req_ok(fx.fd, "{\"op\":\"queues\",\"count\":10,\"after\":\"q0019\"}");
    ck_assert_int_eq(json_object_size(json_object_get(r, "queues")), 5);
    ck_assert_msg(!json_object_get(r, "next"), "the last page has a next");
    json_decref(r);
    /* A cursor that names no queue starts where it would sort. */
    r = req_ok(fx.fd, "{\"op\":\"queues\",\"after\":\"q0012x\"}");
    ck_assert_int_eq(json_object_size(json_object_get(r, "queues")), 12);
    json_decref(r);
    req_err(fx.fd, "bad_request", "{\"op\":\"queues\",\"count\":10001}");
    req_err(fx.fd, "bad_request", "{\"op\":\"queues\",\"after\":\"no spaces\"}");
}
END_TEST

/* Without "count" one page holds 1000 queues: an answer's size no longer
 * grows with the number of queues. */
START_TEST(an_unbounded_queues_request_gets_one_page)
{
    declare_queues(fx.fd, 1005);
    json_t *r = req_ok(fx.fd, "{\"op\":\"queues\"}");
    ck_assert_int_eq(json_object_size(json_object_get(r, "queues")), 1000);
    ck_assert_str_eq(json_string_value(json_object_get(r, "next")), "q0999");
    json_decref(r);
}
END_TEST

/* A fetch that runs after its connection said goodbye (pipelined behind a
 * request the close cancelled) is answered to nobody: the job it takes must
 * go back without losing an attempt. Closing 10,000 waiting fetchers at
 * once made a job dead after three such "deliveries". */
START_TEST(a_job_taken_for_a_closing_connection_keeps_its_attempts)
{
    json_decref(req_ok(fx.fd, "{\"op\":\"declare\",\"queue\":\"cq\",\"max_attempts\":1}"));
    char *id = submit(fx.fd, "cq", "1");
    int c = dial(fx.h);
    send_line(c, "{\"op\":\"fetch\",\"queue\":\"empty\",\"timeout_ms\":5000}\n"
                 "{\"op\":\"fetch\",\"queue\":\"cq\"}");
    shutdown(c, SHUT_WR);
    /* Both answers come (the second one empty), then the daemon closes. */
    int64_t until = harness_now_ms() + 5000;
    char *line;
    while ((line = recv_line_timeout(c, 5000)) && harness_now_ms() < until)
        free(line);
    harness_close(c);
    json_t *r = req_ok(fx.fd, "{\"op\":\"job\",\"id\":\"%s\"}", id);
    json_t *job = json_object_get(r, "job");
    ck_assert_str_eq(json_string_value(json_object_get(job, "state")), "queued");
    ck_assert_int_eq(json_integer_value(json_object_get(job, "attempt")), 0);
    json_decref(r);
    free(id);
}
END_TEST

Suite *
hostile_suite(void)
{
    Suite *s = suite_create("hostile");
    TCase *tc = tcase_create("queues");
    tcase_add_checked_fixture(tc, fixture_setup, fixture_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, queues_are_listed_a_page_at_a_time);
    tcase_add_test(tc, an_unbounded_queues_request_gets_one_page);
    suite_add_tcase(s, tc);
    tc = tcase_create("closing");
    tcase_add_checked_fixture(tc, fixture_setup, fixture_teardown);
    tcase_add_test(tc, a_job_taken_for_a_closing_connection_keeps_its_attempts);
    suite_add_tcase(s, tc);
    return s;
}

