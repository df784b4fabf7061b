/* The suites tests/core/check_core runs. */
#include "chanq_config.h"

#include "tests/check_main.h"
#include "tests/core/suites.h"

suite_fn *const test_suites[] = {
    sched_suite,
    chan_suite,
    select_suite,
    ctx_suite,
    timer_suite,
    wg_suite,
    mutex_suite,
    patterns_suite,
    evbridge_suite,
    stress_suite,
    NULL,
};
