/* The Check suites of tests/clients/check_clients. */
#ifndef CHANQ_TESTS_CLIENTS_SUITES_H
#define CHANQ_TESTS_CLIENTS_SUITES_H

#include <check.h>

#include "clients/chanq.h"
#include "tests/harness.h"

Suite *client_conn_suite(void);
Suite *client_jobs_suite(void);
Suite *client_queues_suite(void);
Suite *client_worker_suite(void);
Suite *client_consume_suite(void);

/* Starts chanqd (extra args may be NULL) and fails the test if it cannot. */
struct harness *tc_start(const char *const *extra);
/* Connects libchanq to h (token may be NULL) and fails the test if it cannot. */
struct chanq_conn *tc_dial(const struct harness *h, const char *token);
/* "code: message" of c's last error, for assert messages. Static buffer. */
const char *tc_err(const struct chanq_conn *c);

#endif
