/* Shared by every Check test binary: the NULL-terminated list of suite
 * constructors the binary runs (defined in that binary's suites.c). */
#ifndef CHANQ_TESTS_CHECK_MAIN_H
#define CHANQ_TESTS_CHECK_MAIN_H

#include <check.h>

typedef Suite *suite_fn(void);
extern suite_fn *const test_suites[];

#endif
