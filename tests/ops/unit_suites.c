/* The suites tests/daemon/check_daemon_unit runs: the operations modules
 * of chanqd tested in-process (config, metrics, http, sd, history). */
#include "chanq_config.h"

#include "tests/check_main.h"
#include "tests/ops/unit_suites.h"

suite_fn *const test_suites[] = {
    config_suite,
    metrics_suite,
    http_suite,
    sd_suite,
    log_suite,
    history_suite,
    NULL,
};
