/* The suites tests/cluster/check_cluster runs. */
#include "chanq_config.h"

#include "tests/check_main.h"
#include "tests/cluster/suites.h"

suite_fn *const test_suites[] = {
    contact_suite,
    entry_suite,
    fsm_suite,
    leader_suite,
    replica_suite,
    NULL,
};
