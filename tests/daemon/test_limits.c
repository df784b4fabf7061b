/* What a crowd of clients must not do to chanqd: make it spin, flood its
 * log, or hold it with connections past its limits. */
#include "chanq_config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/daemon/suites.h"
#include "tests/daemon/util.h"

/* Lines of the daemon's log that contain needle. */
static int
log_lines_with(const struct harness *h, const char *needle)
{
    char *log = harness_log(h);
    int n = 0;
    for (const char *p = log; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    free(log);
    return n;
}

START_TEST(refused_connections_are_logged_once_a_second)
{
    struct harness *h = start_daemon((const char *const[]){"--max-connections", "1", NULL});
    int held = dial(h);
    json_decref(req_ok(held, "{\"op\":\"ping\"}"));
    int64_t start = harness_now_ms();
    for (int i = 0; i < 500; i++) {
        int fd = dial(h);
        char *line = recv_line(fd); /* the limit error: the refusal is done */
        ck_assert_msg(line && strstr(line, "\"limit\""), "connection %d was not refused", i);
        free(line);
        harness_close(fd);
    }
    int64_t secs = (harness_now_ms() - start) / 1000;
    int lines = log_lines_with(h, "refused a connection");
    ck_assert_msg(lines >= 1, "the refusals were not logged at all");
    ck_assert_msg(lines <= secs + 2, "500 refusals in %llds gave %d log lines", (long long)secs,
                  lines);
    harness_close(held);
    ck_assert_int_eq(harness_stop(h), 0);
}
END_TEST

Suite *
limits_suite(void)
{
    Suite *s = suite_create("limits");
    TCase *tc = tcase_create("limits");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, refused_connections_are_logged_once_a_second);
    suite_add_tcase(s, tc);
    return s;
}
