/* chanqd answers ping, reports bad input, and stops cleanly on SIGTERM. */
#include "chanq_config.h"

#include <check.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include "tests/daemon/suites.h"
#include "tests/harness.h"

START_TEST(ping_is_answered_ok)
{
    struct harness *h = harness_start(NULL);
    ck_assert_msg(h, "chanqd did not start");
    int fd = harness_dial(h);
    ck_assert_msg(fd >= 0, "cannot connect");
    send_line(fd, "{\"op\":\"ping\"}");
    char *line = recv_line(fd);
    ck_assert_msg(line && strcmp(line, "{\"ok\":true}") == 0, "ping answer was '%s'",
                  line ? line : "(none)");
    free(line);
    harness_close(fd);
    ck_assert_msg(harness_stop(h) == 0, "chanqd did not exit 0 on SIGTERM");
}
END_TEST

START_TEST(garbage_gets_an_error_and_the_connection_survives)
{
    struct harness *h = harness_start(NULL);
    ck_assert_msg(h, "chanqd did not start");
    int fd = harness_dial(h);
    json_t *r = request(fd, "this is not json");
    ck_assert_msg(r && json_is_false(json_object_get(r, "ok")), "garbage was not refused");
    ck_assert_str_eq(error_code(r), "bad_request");
    json_decref(r);
    r = request(fd, "{\"op\":\"ping\",\"rid\":7}");
    ck_assert_msg(r && json_is_true(json_object_get(r, "ok")), "ping after garbage failed");
    ck_assert_msg(json_integer_value(json_object_get(r, "rid")) == 7, "rid not echoed");
    json_decref(r);
    harness_close(fd);
    ck_assert_int_eq(harness_stop(h), 0);
}
END_TEST

START_TEST(sigint_stops_with_status_zero)
{
    struct harness *h = harness_start(NULL);
    ck_assert_msg(h, "chanqd did not start");
    kill(harness_pid(h), SIGINT);
    int status = 0;
    waitpid(harness_pid(h), &status, 0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "SIGINT exit status %d", status);
    harness_kill9(h); /* already reaped: only clears the pid */
    harness_stop(h);
}
END_TEST

START_TEST(sigterm_answers_waiting_requests_and_stops_accepting)
{
    const char *args[] = {"--memory", NULL};
    struct harness *h = harness_start(args);
    ck_assert_msg(h, "chanqd did not start");
    int waiter = harness_dial(h);
    ck_assert_msg(waiter >= 0, "cannot connect");
    /* A fetch that would wait forever, and a request queued behind it. */
    send_line(waiter, "{\"op\":\"fetch\",\"queues\":[\"never\"],\"rid\":1}");
    send_line(waiter, "{\"op\":\"ping\",\"rid\":2}");
    ck_assert_msg(no_data_within(waiter, 200), "the fetch did not wait");
    kill(harness_pid(h), SIGTERM);
    json_t *r = recv_json(waiter);
    ck_assert_msg(r && json_integer_value(json_object_get(r, "rid")) == 1,
                  "the waiting fetch got no answer on SIGTERM");
    ck_assert_str_eq(error_code(r), "shutting_down");
    json_decref(r);
    r = recv_json(waiter);
    ck_assert_msg(r && json_integer_value(json_object_get(r, "rid")) == 2,
                  "the request behind it got no answer");
    json_decref(r);
    /* The connection closes once answered, and the daemon exits 0. */
    ck_assert_msg(recv_line(waiter) == NULL, "the connection stayed open after the stop");
    int status = 0;
    waitpid(harness_pid(h), &status, 0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status %d", status);
    ck_assert_msg(harness_dial(h) < 0, "a new connection was accepted after the stop");
    harness_close(waiter);
    harness_kill9(h); /* already reaped: only clears the pid */
    harness_stop(h);
}
END_TEST

Suite *
ping_suite(void)
{
    Suite *s = suite_create("daemon_ping");
    TCase *tc = tcase_create("ping");
    tcase_add_test(tc, ping_is_answered_ok);
    tcase_add_test(tc, garbage_gets_an_error_and_the_connection_survives);
    tcase_add_test(tc, sigint_stops_with_status_zero);
    tcase_add_test(tc, sigterm_answers_waiting_requests_and_stops_accepting);
    suite_add_tcase(s, tc);
    return s;
}
