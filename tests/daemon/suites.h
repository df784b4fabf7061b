/* Suites of the black-box daemon test binary (tests/daemon/check_daemon). */
#ifndef CHANQ_TESTS_DAEMON_SUITES_H
#define CHANQ_TESTS_DAEMON_SUITES_H

#include <check.h>

Suite *ping_suite(void);
Suite *ops_suite(void);
Suite *release_suite(void);
Suite *flow_suite(void);
Suite *input_suite(void);
Suite *scale_suite(void);
Suite *crash_suite(void);
Suite *compact_suite(void);
Suite *reload_suite(void);
Suite *hostile_suite(void);
Suite *conn_suite(void);
Suite *limits_suite(void);
Suite *guard_suite(void);
Suite *memory_suite(void);
Suite *consume_suite(void);
Suite *qlimits_suite(void);
Suite *keys_suite(void);
Suite *priority_suite(void);
Suite *operator_suite(void);

#endif
