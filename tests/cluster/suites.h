/* The suites of tests/cluster/check_cluster. */
#ifndef CHANQ_TESTS_CLUSTER_SUITES_H
#define CHANQ_TESTS_CLUSTER_SUITES_H

#include <check.h>

Suite *contact_suite(void);
Suite *entry_suite(void);
Suite *fsm_suite(void);
Suite *leader_suite(void);
Suite *replica_suite(void);

#endif
