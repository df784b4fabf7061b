/* lifecycle_suite: the transition table is the documented one; a record
 * asking for a transition it does not allow is skipped by a replay (the
 * state stays as it was) and is a bug on a serving broker: abort() in
 * debug builds. And a deleted queue's lifetime: it is freed with its last
 * holder (daemon/queue.h), not kept until the broker goes. */
#include "chanq_config.h"

#include <check.h>
#include <signal.h>
#include <string.h>

#include "core/ctx.h"
#include "daemon/broker-internal.h"
#include "daemon/broker.h"
#include "daemon/job.h"
#include "daemon/jrec.h"
#include "daemon/queue.h"

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

/* A job (id) of queue name in any state the test gives: queued, or
 * reserved by nobody (a replay's orphan). */
static void
job_in(struct broker *b, const char *name, uint64_t id, bool reserved)
{
    struct jrec s = {.type = JREC_SUBMIT};
    s.u.submit = (struct jrec_submit){.id = id, .queue = name, .queue_len = strlen(name),
                                      .payload = "1", .payload_len = 1, .ttr_ms = 1000,
                                      .max_attempts = 3, .created_ms = 1};
    ck_assert_int_eq(apply(b, &s), 0);
    if (reserved) {
        struct jrec r = {.type = JREC_RESERVE};
        r.u.reserve = (struct jrec_reserve){.id = id, .attempt = 1};
        ck_assert_int_eq(apply(b, &r), 0);
    }
}

static void
delete_queue(struct broker *b, const char *name)
{
    struct jrec r = {.type = JREC_REMOVE};
    r.u.remove = (struct jrec_remove){.kind = JREC_REMOVE_QUEUE, .queue = name,
                                      .queue_len = strlen(name)};
    ck_assert_int_eq(apply(b, &r), 0);
}

/* queue_delete frees the queue once nothing holds it: declare+delete in a
 * loop leaves as many queues allocated as are listed. */
START_TEST(deleted_queues_do_not_pile_up)
{
    struct broker *b = broker_new_standby(&cfg);
    job_in(b, "keep", 1, false);
    for (uint64_t i = 0; i < 1000; i++) {
        job_in(b, "q", 100 + 2 * i, false);
        job_in(b, "q", 101 + 2 * i, true);
        ck_assert_uint_eq(broker_queues_allocated(b), 2);
        delete_queue(b, "q");
        ck_assert_uint_eq(broker_queues_allocated(b), 1);
    }
    broker_free(b);
}
END_TEST

/* A deleted queue that something still holds (a job a request or a timer
 * holds, a parked request's reference) stays until the last one lets go,
 * and no longer. */
START_TEST(a_deleted_queue_lives_as_long_as_its_last_holder)
{
    struct broker *b = broker_new_standby(&cfg);
    job_in(b, "q", 7, true);
    pthread_mutex_lock(&b->lock);
    struct queue *q = broker_find_queue(b, "q", 1);
    struct job *j = jobtable_get(b->jobs, 7);
    ck_assert_ptr_nonnull(q);
    ck_assert_ptr_nonnull(j);
    job_ref(j);   /* as an op in flight holds its job */
    queue_ref(q); /* as a parked fetch holds its queue */
    pthread_mutex_unlock(&b->lock);
    delete_queue(b, "q");
    ck_assert_ptr_null(broker_find_queue(b, "q", 1));
    ck_assert_uint_eq(broker_queues_allocated(b), 1);
    ck_assert(j->deleted);
    ck_assert_ptr_eq(j->queue, q); /* still readable: job_broker(j) works */
    ck_assert_ptr_eq(job_broker(j), b);
    /* The name is free: a new queue, while the old one is still held. */
    job_in(b, "q", 8, false);
    ck_assert_uint_eq(broker_queues_allocated(b), 2);
    ck_assert_ptr_ne(broker_find_queue(b, "q", 1), q);
    queue_unref(q);
    ck_assert_uint_eq(broker_queues_allocated(b), 2); /* the job still holds it */
    job_unref(j);
    ck_assert_uint_eq(broker_queues_allocated(b), 1);
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
    tcase_add_test(tc, deleted_queues_do_not_pile_up);
    tcase_add_test(tc, a_deleted_queue_lives_as_long_as_its_last_holder);
#ifndef NDEBUG
    tcase_add_test_raise_signal(tc, a_forbidden_transition_on_a_serving_broker_aborts_in_a_debug_build,
                                SIGABRT);
#endif
    suite_add_tcase(s, tc);
    return s;
}
