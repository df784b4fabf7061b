/* Suites of the proto test binary (tests/proto/check_proto). */
#ifndef CHANQ_TESTS_PROTO_SUITES_H
#define CHANQ_TESTS_PROTO_SUITES_H

#include <check.h>

Suite *err_suite(void);
Suite *buf_suite(void);
Suite *frame_suite(void);
Suite *scan_suite(void);
Suite *msg_suite(void);
Suite *encode_suite(void);
Suite *pipeline_suite(void);

#endif
