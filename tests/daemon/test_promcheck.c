/* The /metrics rendering through the strict format checker
 * tests/ops/promcheck.py. A test binary of its own with its own main: the
 * checker needs python3, and without it this binary exits 77, which the
 * automake harness reports as SKIP (Check itself has no skip; passing
 * silently would hide that nothing was checked). */
#include "chanq_config.h"

#include <check.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/metrics.h"
#include "tests/daemon/metrics_fake.h"

#define EXIT_SKIP 77 /* automake's "skipped" */

static bool
have_python3(void)
{
    return system("python3 -c '' 2>/dev/null") == 0;
}

/* Runs tests/ops/promcheck.py on text; returns its exit status (0: valid),
 * or -1 when it did not exit normally. */
static int
promcheck(const char *text)
{
    const char *srcdir = getenv("top_srcdir");
    char path[] = "/tmp/chanq-metrics-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_msg(fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text),
                  "cannot write the temp file");
    close(fd);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "python3 %s/tests/ops/promcheck.py %s", srcdir ? srcdir : ".", path);
    int rc = system(cmd);
    unlink(path);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

START_TEST(the_full_rendering_passes_the_strict_checker)
{
    char *t = metrics_render_fake();
    ck_assert_msg(promcheck(t) == 0, "promcheck.py rejected the rendering:\n%s", t);
    free(t);
}
END_TEST

START_TEST(a_minimal_rendering_passes_the_strict_checker)
{
    json_t *doc = json_pack("{s:{s:i}, s:{}}", "server", "uptime_s", 0, "queues");
    size_t len;
    char *t = metrics_render(doc, &len);
    json_decref(doc);
    ck_assert_msg(t && strstr(t, "chanq_uptime_seconds 0\n"), "minimal document: %s", t);
    ck_assert_msg(promcheck(t) == 0, "promcheck.py rejected the minimal rendering:\n%s", t);
    free(t);
}
END_TEST

/* The checker is not a no-op here: it rejects a counter without _total. */
START_TEST(the_checker_rejects_a_bad_exposition)
{
    ck_assert_msg(promcheck("# HELP a x\n# TYPE a counter\na 1\n") == 1,
                  "promcheck.py accepted a counter not ending in _total");
}
END_TEST

int
main(void)
{
    if (!have_python3()) {
        printf("SKIP: python3 not found (Debian package python3; scripts/deps.sh test "
               "installs it): /metrics was not put through tests/ops/promcheck.py\n");
        return EXIT_SKIP;
    }
    Suite *s = suite_create("promcheck");
    TCase *tc = tcase_create("render");
    tcase_add_test(tc, the_full_rendering_passes_the_strict_checker);
    tcase_add_test(tc, a_minimal_rendering_passes_the_strict_checker);
    tcase_add_test(tc, the_checker_rejects_a_bad_exposition);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
