/* The suites tests/daemon/check_daemon runs. */
#include "chanq_config.h"

#include "tests/check_main.h"
#include "tests/daemon/suites.h"

suite_fn *const test_suites[] = {
    ping_suite,
    ops_suite,
    release_suite,
    flow_suite,
    input_suite,
    scale_suite,
    crash_suite,
    compact_suite,
    reload_suite,
    hostile_suite,
    conn_suite,
    limits_suite,
    guard_suite,
    memory_suite,
    consume_suite,
    qlimits_suite,
    keys_suite,
    priority_suite,
    operator_suite,
    NULL,
};
