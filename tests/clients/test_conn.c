/* libchanq connections against a real chanqd: addresses, hello and tokens,
 * I/O errors with errno, read timeouts. */
#include "chanq_config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/clients/suites.h"

START_TEST(connects_over_tcp_and_pings)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *c = tc_dial(h, NULL);
    ck_assert_msg(chanq_ping(c) == 0, "ping failed: %s", tc_err(c));
    ck_assert_msg(chanq_fd(c) >= 0, "no socket");
    ck_assert_msg(chanq_server_info(c) == NULL, "hello answer without a hello");
    chanq_conn_free(c);
    harness_stop(h);
}
END_TEST

START_TEST(connects_over_a_unix_socket)
{
    char path[] = "/tmp/chanq-client-sock-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    unlink(path);
    const char *extra[] = {"--unix", path, NULL};
    struct harness *h = tc_start(extra);
    char addr[64];
    snprintf(addr, sizeof addr, "unix:%s", path);
    struct chanq_error err;
    struct chanq_conn *c = NULL;
    /* The Unix listener may come up just after the TCP one is logged. */
    for (int i = 0; i < 100 && !c; i++) {
        c = chanq_connect(addr, NULL, &err);
        if (!c)
            usleep(20000);
    }
    ck_assert_msg(c != NULL, "connect %s: %s: %s", addr, err.code, err.message);
    ck_assert_msg(chanq_ping(c) == 0, "ping over unix: %s", tc_err(c));
    chanq_conn_free(c);
    harness_stop(h);
    unlink(path);
}
END_TEST

START_TEST(a_closed_port_fails_with_io_and_econnrefused)
{
    struct harness *h = tc_start(NULL);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", harness_port(h));
    harness_stop(h);
    struct chanq_error err;
    struct chanq_conn *c = chanq_connect(addr, NULL, &err);
    ck_assert_msg(c == NULL, "connected to a stopped server");
    ck_assert_str_eq(err.code, "io");
    ck_assert_msg(err.sys_errno == ECONNREFUSED, "errno %d, want ECONNREFUSED", err.sys_errno);
}
END_TEST

START_TEST(a_malformed_address_fails_with_einval)
{
    struct chanq_error err;
    ck_assert_msg(chanq_connect("no-port-here", NULL, &err) == NULL, "connected to nonsense");
    ck_assert_str_eq(err.code, "io");
    ck_assert_int_eq(err.sys_errno, EINVAL);
}
END_TEST

static const char *
write_token_file(char *path, size_t n, const char *token)
{
    snprintf(path, n, "/tmp/chanq-client-token-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_msg(fd >= 0, "mkstemp");
    ck_assert_msg(write(fd, token, strlen(token)) == (ssize_t)strlen(token), "write token");
    close(fd);
    return path;
}

START_TEST(the_token_is_sent_in_hello_and_opens_the_server)
{
    char tokpath[64];
    const char *extra[] = {"--token-file", write_token_file(tokpath, sizeof tokpath, "s3cret\n"),
                           NULL};
    struct harness *h = tc_start(extra);

    struct chanq_conn *anon = tc_dial(h, NULL);
    ck_assert_msg(chanq_ping(anon) < 0, "ping without the token succeeded");
    ck_assert_str_eq(chanq_last_error(anon)->code, "unauthorized");
    json_t *st = NULL;
    ck_assert_msg(chanq_stats(anon, NULL, &st) < 0, "stats without the token succeeded");
    ck_assert_str_eq(chanq_last_error(anon)->code, "unauthorized");
    chanq_conn_free(anon);

    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", harness_port(h));
    struct chanq_connect_opts bad = {.token = "wrong"};
    struct chanq_error err;
    ck_assert_msg(chanq_connect(addr, &bad, &err) == NULL, "a wrong token was accepted");
    ck_assert_str_eq(err.code, "unauthorized");

    struct chanq_conn *c = tc_dial(h, "s3cret");
    const json_t *info = chanq_server_info(c);
    ck_assert_msg(info != NULL, "no hello answer kept");
    ck_assert_str_eq(json_string_value(json_object_get(info, "server")), "chanqd");
    ck_assert_int_eq(json_integer_value(json_object_get(info, "protocol")), 1);
    ck_assert_msg(chanq_stats(c, NULL, &st) == 0, "stats with the token: %s", tc_err(c));
    json_decref(st);
    chanq_conn_free(c);
    harness_stop(h);
    unlink(tokpath);
}
END_TEST

START_TEST(a_dead_server_is_an_io_error_and_the_connection_stays_broken)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *c = tc_dial(h, NULL);
    harness_kill9(h);
    ck_assert_msg(chanq_ping(c) < 0, "ping to a killed server succeeded");
    const struct chanq_error *e = chanq_last_error(c);
    ck_assert_str_eq(e->code, "io");
    ck_assert_msg(e->sys_errno == EPIPE || e->sys_errno == ECONNRESET, "errno %d (%s)",
                  e->sys_errno, e->message);
    ck_assert_msg(chanq_ping(c) < 0 && strcmp(chanq_last_error(c)->code, "io") == 0,
                  "a broken connection answered");
    chanq_conn_free(c);
    harness_stop(h);
}
END_TEST

START_TEST(a_server_that_does_not_answer_times_out_with_etimedout)
{
    struct harness *h = tc_start(NULL);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", harness_port(h));
    struct chanq_connect_opts o = {.read_timeout_ms = 300};
    struct chanq_error err;
    struct chanq_conn *c = chanq_connect(addr, &o, &err);
    ck_assert_msg(c != NULL, "connect: %s", err.message);
    kill(harness_pid(h), SIGSTOP);
    int rc = chanq_ping(c);
    kill(harness_pid(h), SIGCONT);
    ck_assert_msg(rc < 0, "ping to a stopped server succeeded");
    ck_assert_str_eq(chanq_last_error(c)->code, "io");
    ck_assert_int_eq(chanq_last_error(c)->sys_errno, ETIMEDOUT);
    chanq_conn_free(c);
    harness_stop(h);
}
END_TEST

START_TEST(a_protocol_error_leaves_the_connection_usable)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *c = tc_dial(h, NULL);
    json_t *req = json_pack("{s:s}", "op", "no-such-op"), *resp = NULL;
    ck_assert_msg(chanq_request(c, req, &resp) < 0, "unknown op succeeded");
    ck_assert_str_eq(chanq_last_error(c)->code, "unknown_op");
    ck_assert_msg(resp && json_is_false(json_object_get(resp, "ok")), "error answer not returned");
    ck_assert_int_eq(chanq_last_error(c)->sys_errno, 0);
    json_decref(resp);
    json_decref(req);
    ck_assert_msg(chanq_ping(c) == 0, "ping after an error: %s", tc_err(c));
    chanq_conn_free(c);
    harness_stop(h);
}
END_TEST

/* Several servers. Two independent single chanqd (no role in hello: each
 * serves) stand in for the nodes a leader moves between: what libchanq does
 * on a failover, without a cluster (tests/cluster/ has the real one). */

START_TEST(a_server_list_connects_to_the_first_that_serves)
{
    struct harness *h = tc_start(NULL);
    struct harness *dead = tc_start(NULL);
    char list[128];
    snprintf(list, sizeof list, "127.0.0.1:%d, 127.0.0.1:%d", harness_port(dead),
             harness_port(h));
    harness_stop(dead);
    struct chanq_error err;
    struct chanq_conn *c = chanq_connect(list, NULL, &err);
    ck_assert_msg(c != NULL, "connect %s: %s: %s", list, err.code, err.message);
    ck_assert_msg(chanq_server_info(c) != NULL, "no hello was sent to learn the role");
    ck_assert_msg(chanq_ping(c) == 0, "ping: %s", tc_err(c));
    ck_assert_int_eq(chanq_failovers(c), 0);
    ck_assert_msg(chanq_reconnect(c) == 0, "reconnect: %s", tc_err(c));
    ck_assert_msg(chanq_ping(c) == 0, "ping after reconnect: %s", tc_err(c));
    ck_assert_int_eq(chanq_failovers(c), 1);
    chanq_conn_free(c);
    harness_stop(h);
}
END_TEST

START_TEST(a_malformed_server_list_fails_with_einval)
{
    struct chanq_error err;
    ck_assert_msg(chanq_connect(" , ,", NULL, &err) == NULL, "empty list connected");
    ck_assert_str_eq(err.code, "io");
    ck_assert_int_eq(err.sys_errno, EINVAL);
    struct chanq_connect_opts o = {.connect_timeout_ms = 300};
    ck_assert_msg(chanq_connect("127.0.0.1:1,127.0.0.1:2", &o, &err) == NULL,
                  "a list of closed ports connected");
    ck_assert_str_eq(err.code, "io");
}
END_TEST

START_TEST(a_submit_lost_with_its_server_is_made_again_on_the_next)
{
    struct harness *a = tc_start(NULL);
    struct harness *b = tc_start(NULL);
    char list[128];
    snprintf(list, sizeof list, "127.0.0.1:%d,127.0.0.1:%d", harness_port(a), harness_port(b));
    struct chanq_error err;
    struct chanq_conn *c = chanq_connect(list, NULL, &err);
    ck_assert_msg(c != NULL, "connect: %s", err.message);
    struct chanq_submit_opts so = {.queue = "q"};
    char *id = NULL;
    ck_assert_msg(chanq_submit(c, &so, "1", &id, NULL) == 0, "submit: %s", tc_err(c));
    free(id);
    harness_kill9(a);
    /* Its answer dies with a: made again on b, in place. */
    ck_assert_msg(chanq_submit(c, &so, "{\"n\":2}", &id, NULL) == 0, "submit after the kill: %s",
                  tc_err(c));
    ck_assert_int_eq(chanq_failovers(c), 1);
    json_t *job = NULL;
    ck_assert_msg(chanq_job_info(c, id, &job) == 0, "the resubmitted job: %s", tc_err(c));
    ck_assert_str_eq(json_string_value(json_object_get(job, "state")), "queued");
    json_decref(job);
    free(id);
    /* A reservation dies with its connection: an ack is not made again. */
    struct chanq_fetch_opts fo = {.queues = (const char *[]){"q"}, .nqueues = 1, .timeout_ms = 0};
    struct chanq_job *jobs = NULL;
    size_t n = 0;
    ck_assert_msg(chanq_fetch(c, &fo, &jobs, &n) == 0 && n == 1, "fetch: %s", tc_err(c));
    harness_kill9(b);
    ck_assert_msg(chanq_ack(c, jobs[0].id, NULL) < 0, "an ack went through a dead server");
    ck_assert_str_eq(chanq_last_error(c)->code, "io");
    ck_assert_int_eq(chanq_failovers(c), 1);
    chanq_jobs_free(jobs, n);
    chanq_conn_free(c);
    harness_stop(b);
    harness_stop(a);
}
END_TEST

START_TEST(reconnect_needs_several_servers)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *c = tc_dial(h, NULL);
    ck_assert_msg(chanq_reconnect(c) < 0, "one server reconnected");
    ck_assert_str_eq(chanq_last_error(c)->code, "bad_request");
    ck_assert_msg(chanq_ping(c) == 0, "the connection stays usable: %s", tc_err(c));
    chanq_conn_free(c);
    harness_stop(h);
}
END_TEST

Suite *
client_conn_suite(void)
{
    Suite *s = suite_create("client_conn");
    TCase *tc = tcase_create("conn");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, connects_over_tcp_and_pings);
    tcase_add_test(tc, connects_over_a_unix_socket);
    tcase_add_test(tc, a_closed_port_fails_with_io_and_econnrefused);
    tcase_add_test(tc, a_malformed_address_fails_with_einval);
    tcase_add_test(tc, the_token_is_sent_in_hello_and_opens_the_server);
    tcase_add_test(tc, a_dead_server_is_an_io_error_and_the_connection_stays_broken);
    tcase_add_test(tc, a_server_that_does_not_answer_times_out_with_etimedout);
    tcase_add_test(tc, a_protocol_error_leaves_the_connection_usable);
    tcase_add_test(tc, a_server_list_connects_to_the_first_that_serves);
    tcase_add_test(tc, a_malformed_server_list_fails_with_einval);
    tcase_add_test(tc, a_submit_lost_with_its_server_is_made_again_on_the_next);
    tcase_add_test(tc, reconnect_needs_several_servers);
    suite_add_tcase(s, tc);
    return s;
}
