/* Suites of the operations unit-test binary (tests/daemon/check_daemon_unit). */
#ifndef CHANQ_TESTS_OPS_UNIT_SUITES_H
#define CHANQ_TESTS_OPS_UNIT_SUITES_H

#include <check.h>

Suite *config_suite(void);
Suite *metrics_suite(void);
Suite *http_suite(void);
Suite *sd_suite(void);
Suite *log_suite(void);
Suite *history_suite(void);

#endif
