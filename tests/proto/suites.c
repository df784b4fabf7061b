/* The suites tests/proto/check_proto runs. */
#include "chanq_config.h"

#include "tests/check_main.h"
#include "tests/proto/suites.h"

suite_fn *const test_suites[] = {
    err_suite, buf_suite, frame_suite, scan_suite, msg_suite, encode_suite, pipeline_suite, NULL,
};
