/* Suites of the core runtime test binary (tests/core/check_core). */
#ifndef CHANQ_TESTS_CORE_SUITES_H
#define CHANQ_TESTS_CORE_SUITES_H

#include <check.h>

Suite *sched_suite(void);
Suite *chan_suite(void);
Suite *select_suite(void);
Suite *ctx_suite(void);
Suite *timer_suite(void);
Suite *wg_suite(void);
Suite *mutex_suite(void);
Suite *patterns_suite(void);
Suite *evbridge_suite(void);
Suite *stress_suite(void);

#endif
