/* The suites tests/clients/check_clients runs, and their shared helpers. */
#include "chanq_config.h"

#include <stdio.h>

#include "tests/check_main.h"
#include "tests/clients/suites.h"

suite_fn *const test_suites[] = {
    client_conn_suite,
    client_jobs_suite,
    client_queues_suite,
    client_worker_suite,
    client_consume_suite,
    NULL,
};

struct harness *
tc_start(const char *const *extra)
{
    struct harness *h = harness_start(extra);
    ck_assert_msg(h != NULL, "chanqd did not start");
    return h;
}

struct chanq_conn *
tc_dial(const struct harness *h, const char *token)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", harness_port(h));
    struct chanq_connect_opts o = {.token = token, .read_timeout_ms = 10000};
    struct chanq_error err;
    struct chanq_conn *c = chanq_connect(addr, &o, &err);
    ck_assert_msg(c != NULL, "connect %s: %s: %s", addr, err.code, err.message);
    return c;
}

const char *
tc_err(const struct chanq_conn *c)
{
    static char buf[320];
    const struct chanq_error *e = chanq_last_error(c);
    snprintf(buf, sizeof buf, "%s: %s", e->code, e->message);
    return buf;
}
