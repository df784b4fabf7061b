/* Bad input of every kind gets the right error and changes nothing;
 * pipelined requests are answered in order with their rid. */
#include "chanq_config.h"

#include <check.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tests/daemon/suites.h"
#include "tests/daemon/util.h"

START_TEST(pipelined_requests_are_answered_in_order_with_their_rid)
{
    enum { N = 1000 };
    char *all = malloc(N * 128);
    size_t len = 0;
    for (int i = 0; i < N; i++) {
        if (i % 3 == 0)
            len += (size_t)sprintf(all + len, "{\"op\":\"submit\",\"queue\":\"pl\",\"payload\":%d,\"rid\":%d}\n", i, i);
        else if (i % 3 == 1)
            len += (size_t)sprintf(all + len, "{\"op\":\"ping\",\"rid\":\"r%d\"}\n", i);
        else
            len += (size_t)sprintf(all + len, "{\"op\":\"nope\",\"rid\":%d}\n", i);
    }
    ck_assert_msg(write(fx.fd, all, len) == (ssize_t)len, "could not send the batch");
    free(all);
    for (int i = 0; i < N; i++) {
        json_t *r = recv_json(fx.fd);
        ck_assert_msg(r, "answer %d missing", i);
        json_t *rid = json_object_get(r, "rid");
        if (i % 3 == 1) {
            char want[16];
            snprintf(want, sizeof want, "r%d", i);
            ck_assert_msg(json_is_string(rid) && strcmp(json_string_value(rid), want) == 0,
                          "answer %d out of order", i);
            ck_assert_msg(is_ok(r), "ping %d failed", i);
        } else {
            ck_assert_msg(json_integer_value(rid) == i, "answer %d out of order", i);
            ck_assert_msg(i % 3 == 0 ? is_ok(r) : strcmp(error_code(r), "unknown_op") == 0,
                          "answer %d has the wrong outcome", i);
        }
        json_decref(r);
    }
    ck_assert_int_eq(queue_stat(fx.fd, "pl", "depth"), (N + 2) / 3);
}
END_TEST

START_TEST(malformed_requests_get_clear_errors_and_change_nothing)
{
    static const struct {
        const char *line;
        const char *code;
    } cases[] = {
        {"not json", "bad_request"},
        {"[1,2,3]", "bad_request"},
        {"\"just a string\"", "bad_request"},
        {"{\"op\":1}", "bad_request"},
        {"{}", "bad_request"},
        {"{\"op\":\"fly\"}", "unknown_op"},
        {"{\"op\":\"submit\",\"payload\":1}", "bad_request"},
        {"{\"op\":\"submit\",\"queue\":\"q\"}", "bad_request"},
        {"{\"op\":\"submit\",\"queue\":\"bad name!\",\"payload\":1}", "bad_request"},
        {"{\"op\":\"submit\",\"queue\":7,\"payload\":1}", "bad_request"},
        {"{\"op\":\"submit\",\"queue\":\"q\",\"payload\":1,\"delay_ms\":-5}", "bad_request"},
        {"{\"op\":\"submit\",\"queue\":\"q\",\"payload\":1,\"ttr_ms\":\"soon\"}", "bad_request"},
        {"{\"op\":\"submit\",\"queue\":\"q\",\"payload\":{\"unterminated\":1}", "bad_request"},
        {"{\"op\":\"fetch\"}", "bad_request"},
        {"{\"op\":\"fetch\",\"queues\":[]}", "bad_request"},
        {"{\"op\":\"fetch\",\"queues\":[\"q\"],\"count\":0}", "bad_request"},
        {"{\"op\":\"ack\"}", "bad_request"},
        {"{\"op\":\"ack\",\"id\":42}", "bad_request"},
        {"{\"op\":\"declare\",\"queue\":\"q\",\"capacity\":-1}", "bad_request"},
        {"{\"op\":\"nack\",\"id\":\"1\",\"dead\":\"yes\"}", "bad_request"},
        {"{\"op\":\"submit\",\"queue\":\"q\",\"payload\":1}{", "bad_request"},
        {"{\"op\":\"ping\"\x01}", "bad_request"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *r = request(fx.fd, cases[i].line);
        ck_assert_msg(r && !is_ok(r), "'%s' was accepted", cases[i].line);
        ck_assert_msg(strcmp(error_code(r), cases[i].code) == 0, "'%s': want %s, got %s",
                      cases[i].line, cases[i].code, error_code(r));
        json_decref(r);
    }
    json_t *r = req_ok(fx.fd, "{\"op\":\"queues\"}");
    ck_assert_msg(json_object_size(json_object_get(r, "queues")) == 0,
                  "a bad request created a queue");
    json_decref(r);
    json_decref(req_ok(fx.fd, "{\"op\":\"ping\"}"));
}
END_TEST

START_TEST(an_oversized_frame_is_refused_and_the_connection_goes_on)
{
    const char *args[] = {"--max-frame", "4096", "--max-job", "2048", NULL};
    struct harness *t = start_daemon(args);
    int c = dial(t);
    size_t big = 1 << 20;
    char *line = malloc(big + 64);
    int n = sprintf(line, "{\"op\":\"submit\",\"queue\":\"q\",\"payload\":\"");
    memset(line + n, 'x', big);
    strcpy(line + n + big, "\"}");
    send_line(c, line);
    free(line);
    json_t *r = recv_json(c);
    ck_assert_msg(r && strcmp(error_code(r), "frame_too_large") == 0, "oversized frame: %s",
                  r ? error_code(r) : "no answer");
    json_decref(r);
    json_decref(req_ok(c, "{\"op\":\"ping\",\"rid\":1}"));
    req_err(c, "not_found", "{\"op\":\"stats\",\"queue\":\"q\"}");
    harness_close(c);
    ck_assert_int_eq(harness_stop(t), 0);
}
END_TEST

START_TEST(crlf_and_empty_lines_are_accepted)
{
    const char batch[] = "\r\n\n{\"op\":\"ping\",\"rid\":1}\r\n\n{\"op\":\"ping\",\"rid\":2}\n";
    ck_assert_int_eq(write(fx.fd, batch, sizeof batch - 1), (ssize_t)(sizeof batch - 1));
    for (int i = 1; i <= 2; i++) {
        json_t *r = recv_json(fx.fd);
        ck_assert_msg(is_ok(r) && json_integer_value(json_object_get(r, "rid")) == i,
                      "ping %d not answered", i);
        json_decref(r);
    }
    ck_assert_msg(no_data_within(fx.fd, 100), "empty lines were answered");
}
END_TEST

START_TEST(a_vanishing_client_mid_request_harms_no_one)
{
    int c = dial(fx.h);
    const char partial[] = "{\"op\":\"submit\",\"queue\":\"v\",\"pay";
    ck_assert_int_eq(write(c, partial, sizeof partial - 1), (ssize_t)(sizeof partial - 1));
    harness_close(c);
    json_decref(req_ok(fx.fd, "{\"op\":\"ping\"}"));
    req_err(fx.fd, "not_found", "{\"op\":\"stats\",\"queue\":\"v\"}");
}
END_TEST

Suite *
input_suite(void)
{
    Suite *s = suite_create("daemon_input");
    TCase *tc = tcase_create("input");
    tcase_add_checked_fixture(tc, fixture_setup, fixture_teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, pipelined_requests_are_answered_in_order_with_their_rid);
    tcase_add_test(tc, malformed_requests_get_clear_errors_and_change_nothing);
    tcase_add_test(tc, an_oversized_frame_is_refused_and_the_connection_goes_on);
    tcase_add_test(tc, crlf_and_empty_lines_are_accepted);
    tcase_add_test(tc, a_vanishing_client_mid_request_harms_no_one);
    suite_add_tcase(s, tc);
    return s;
}
