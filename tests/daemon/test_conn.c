/* A connection's life around its waiting requests: every parked op ends
 * with `shutting_down` on SIGTERM. */
#include "chanq_config.h"

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/daemon/suites.h"
#include "tests/daemon/util.h"

/* A queue's stats field, or -1 while the queue does not exist. */
static long long
queue_stat_or(int fd, const char *queue, const char *field)
{
    json_t *r = reqf(fd, "{\"op\":\"stats\",\"queue\":\"%s\"}", queue);
    json_t *v = json_object_get(json_object_get(r, "queue"), field);
    long long n = v ? json_integer_value(v) : -1;
    json_decref(r);
    return n;
}

/* Polls until queue's field reaches want (within 5 s); returns the last value. */
static long long
await_queue_stat(int fd, const char *queue, const char *field, long long want)
{
    long long v = queue_stat_or(fd, queue, field);
    for (int i = 0; i < 500 && v != want; i++) {
        usleep(10 * 1000);
        v = queue_stat_or(fd, queue, field);
    }
    return v;
}

/* ---- SIGTERM ---- */

/* One request that parks, on a connection of its own. */
struct parked {
    const char *what; /* for the failure message */
    const char *line; /* the request, sent with its index as rid */
    int fd;
};

START_TEST(sigterm_answers_every_parked_request_with_shutting_down)
{
    struct harness *h = start_daemon(NULL);
    int ctl = dial(h);
    /* Two full queues, an unbuffered one, and a job nobody works on. */
    json_decref(req_ok(ctl, "{\"op\":\"declare\",\"queue\":\"full\",\"capacity\":1}"));
    json_decref(req_ok(ctl, "{\"op\":\"declare\",\"queue\":\"full2\",\"capacity\":1}"));
    json_decref(req_ok(ctl, "{\"op\":\"declare\",\"queue\":\"rv\",\"capacity\":0}"));
    free(submit(ctl, "full", "1"));
    free(submit(ctl, "full2", "1"));
    char *id = submit(ctl, "idle", "1");
    char wait_forever[128], wait_long[128];
    snprintf(wait_forever, sizeof wait_forever, "{\"op\":\"wait\",\"id\":\"%s\"}", id);
    snprintf(wait_long, sizeof wait_long,
             "{\"op\":\"wait\",\"id\":\"%s\",\"timeout_ms\":60000}", id);
    struct parked p[] = {
        {"fetch without timeout", "{\"op\":\"fetch\",\"queue\":\"empty\"}", -1},
        {"fetch of several queues with a timeout",
         "{\"op\":\"fetch\",\"queues\":[\"e1\",\"e2\"],\"count\":5,\"timeout_ms\":60000}",
         -1},
        {"submit waiting for room",
         "{\"op\":\"submit\",\"queue\":\"full\",\"payload\":2,\"wait_ms\":60000}", -1},
        {"send-side select waiting for room",
         "{\"op\":\"submit\",\"queues\":[\"full\",\"full2\"],\"payload\":2,\"wait_ms\":60000}",
         -1},
        {"submit to an unbuffered queue",
         "{\"op\":\"submit\",\"queue\":\"rv\",\"payload\":2,\"wait_ms\":60000}", -1},
        {"wait without timeout", wait_forever, -1},
        {"wait with a timeout", wait_long, -1},
    };
    size_t n = sizeof p / sizeof p[0];
    for (size_t i = 0; i < n; i++) {
        char line[256];
        snprintf(line, sizeof line, "%.*s,\"rid\":%d}", (int)strlen(p[i].line) - 1, p[i].line,
                 (int)i);
        p[i].fd = dial(h);
        send_line(p[i].fd, line);
    }
    /* Every one of them is parked. */
    ck_assert_int_eq(await_queue_stat(ctl, "empty", "waiting_fetchers", 1), 1);
    ck_assert_int_eq(await_queue_stat(ctl, "e2", "waiting_fetchers", 1), 1);
    ck_assert_int_eq(await_queue_stat(ctl, "full", "waiting_submitters", 2), 2);
    ck_assert_int_eq(await_queue_stat(ctl, "full2", "waiting_submitters", 1), 1);
    ck_assert_int_eq(await_queue_stat(ctl, "rv", "waiting_submitters", 1), 1);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(no_data_within(p[i].fd, i == 0 ? 200 : 0), "the %s did not park",
                      p[i].what);

    kill(harness_pid(h), SIGTERM);
    char failures[2048] = "";
    for (size_t i = 0; i < n; i++) {
        json_t *r = recv_json(p[i].fd);
        char *text = r ? json_dumps(r, JSON_COMPACT) : NULL;
        if (!r || json_integer_value(json_object_get(r, "rid")) != (json_int_t)i ||
            strcmp(error_code(r), "shutting_down") != 0)
            snprintf(failures + strlen(failures), sizeof failures - strlen(failures),
                     "\n  %s: %s", p[i].what, text ? text : "(no answer)");
        free(text);
        json_decref(r);
        harness_close(p[i].fd);
    }
    ck_assert_msg(failures[0] == '\0', "on SIGTERM, want shutting_down for every parked request:%s",
                  failures);
    int status = 0;
    waitpid(harness_pid(h), &status, 0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status %d", status);
    free(id);
    harness_close(ctl);
    harness_kill9(h); /* already reaped: only clears the pid */
    harness_stop(h);
}
END_TEST

Suite *
conn_suite(void)
{
    Suite *s = suite_create("daemon_conn");
    TCase *tc = tcase_create("shutdown");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, sigterm_answers_every_parked_request_with_shutting_down);
    suite_add_tcase(s, tc);
    return s;
}
