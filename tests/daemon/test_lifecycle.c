/* lifecycle_suite: the transition table is the documented one; a record
 * asking for a transition it does not allow is skipped by a replay (the
 * state stays as it was) and is a bug on a serving broker: abort() in
 * debug builds. */
#include "chanq_config.h"

#include <check.h>
#include <signal.h>
#include <string.h>

#include "core/ctx.h"
#include "daemon/broker.h"
#include "daemon/job.h"
#include "daemon/jrec.h"

Suite *lifecycle_suite(void);

/* docs/architecture.md, "The job lifecycle", as pairs. */
static const struct {
    enum job_state from, to;
} documented[] = {
    {JOB_DELAYED, JOB_QUEUED},    {JOB_DELAYED, JOB_CANCELLED},  {JOB_DELAYED, JOB_EXPIRED},
    {JOB_QUEUED, JOB_RESERVED},   {JOB_QUEUED, JOB_CANCELLED},   {JOB_QUEUED, JOB_EXPIRED},
    {JOB_RESERVED, JOB_QUEUED},   {JOB_RESERVED, JOB_DELAYED},   {JOB_RESERVED, JOB_DEAD},
    {JOB_RESERVED, JOB_DONE},     {JOB_RESERVED, JOB_CANCELLED}, {JOB_RESERVED, JOB_EXPIRED},
    {JOB_DEAD, JOB_QUEUED},
};

START_TEST(the_transition_table_is_the_documented_one)
{
    for (int from = 0; from < JOB_NSTATES; from++)
        for (int to = 0; to < JOB_NSTATES; to++) {
            bool want = false;
            for (size_t i = 0; i < sizeof documented / sizeof documented[0]; i++)
                want |= documented[i].from == (enum job_state)from &&
                        documented[i].to == (enum job_state)to;
            ck_assert_msg(job_may(from, to) == want, "%s -> %s: table says %d, docs %d",
                          job_state_name(from), job_state_name(to), job_may(from, to), want);
        }
    ck_assert(!job_may(JOB_NSTATES, JOB_QUEUED));
}
END_TEST

static const struct broker_config cfg = {
    .defaults = {.capacity = 10, .ttr_ms = 1000, .max_attempts = 3},
    .max_queues = 4,
    .max_payload_bytes = 1 << 20,
    .max_finished = 10,
};

static int
apply(struct broker *b, const struct jrec *r)
{
    uint8_t buf[256];
    int n = jrec_encode(r, buf, sizeof buf);
    ck_assert_int_gt(n, 0);
    return broker_replay_apply(b, buf, (size_t)n);
}

/* A queued job (id 7) in queue q, then a DEAD record for it: queued ->
 * dead skips the reservation, which the table forbids. */
static void
submit_then_bury(struct broker *b)
{
    struct jrec s = {.type = JREC_SUBMIT};
    s.u.submit = (struct jrec_submit){.id = 7, .queue = "q", .queue_len = 1, .payload = "1",
                                      .payload_len = 1, .ttr_ms = 1000, .max_attempts = 3,
                                      .created_ms = 1};
    ck_assert_int_eq(apply(b, &s), 0);
    struct jrec d = {.type = JREC_STATE};
    d.u.state = (struct jrec_state){.id = 7, .state = JREC_DEAD, .attempt = 1};
    apply(b, &d);
}

START_TEST(a_replay_skips_a_transition_the_table_forbids)
{
    struct broker *b = broker_new_standby(&cfg);
    char before[BROKER_DIGEST_HEX], after[BROKER_DIGEST_HEX];
    struct jrec s = {.type = JREC_SUBMIT};
    s.u.submit = (struct jrec_submit){.id = 7, .queue = "q", .queue_len = 1, .payload = "1",
                                      .payload_len = 1, .ttr_ms = 1000, .max_attempts = 3,
                                      .created_ms = 1};
    ck_assert_int_eq(apply(b, &s), 0);
    ck_assert_int_eq(broker_state_digest(b, before), 0);
    struct jrec d = {.type = JREC_STATE};
    d.u.state = (struct jrec_state){.id = 7, .state = JREC_DEAD, .attempt = 1};
    ck_assert_int_eq(apply(b, &d), 0); /* skipped, not an error: the replay goes on */
    struct jrec f = {.type = JREC_FINAL};
    f.u.final = (struct jrec_final){.id = 99, .state = JREC_DONE}; /* no such job */
    ck_assert_int_eq(apply(b, &f), 0);
    ck_assert_int_eq(broker_state_digest(b, after), 0);
    ck_assert_str_eq(before, after);
    broker_free(b);
}
END_TEST

#ifndef NDEBUG
START_TEST(a_forbidden_transition_on_a_serving_broker_aborts_in_a_debug_build)
{
    struct ctx *root = ctx_with_cancel(NULL);
    struct broker *b = broker_new(&cfg, root);
    broker_start(b);
    submit_then_bury(b); /* raises SIGABRT */
    broker_free(b);
    ctx_release(root);
}
END_TEST
#endif

Suite *
lifecycle_suite(void)
{
    Suite *s = suite_create("lifecycle");
    TCase *tc = tcase_create("table");
    tcase_add_test(tc, the_transition_table_is_the_documented_one);
    tcase_add_test(tc, a_replay_skips_a_transition_the_table_forbids);
#ifndef NDEBUG
    tcase_add_test_raise_signal(tc, a_forbidden_transition_on_a_serving_broker_aborts_in_a_debug_build,
                                SIGABRT);
#endif
    suite_add_tcase(s, tc);
    return s;
}
