/* One Check runner per test binary: runs every suite the binary lists in
 * test_suites[] (see suites.c next to the tests) and fails on any failure. */
#include "chanq_config.h"

#include <check.h>
#include <stdlib.h>

#include "tests/check_main.h"

int
main(void)
{
    SRunner *sr = NULL;
    for (size_t i = 0; test_suites[i]; i++) {
        Suite *s = test_suites[i]();
        if (!sr)
            sr = srunner_create(s);
        else
            srunner_add_suite(sr, s);
    }
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
