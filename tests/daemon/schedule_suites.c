/* The suites tests/daemon/check_schedule runs. */
#include "chanq_config.h"

#include "tests/check_main.h"

Suite *cron_suite(void);
Suite *schedule_suite(void);

suite_fn *const test_suites[] = {
    cron_suite,
    schedule_suite,
    NULL,
};
