/* libchanq's consume against a real chanqd: jobs pushed as events within
 * the prefetch, acks of several ids pipelined, cancel_consume, the end of a
 * consume on closed queues. */
#include "chanq_config.h"

#include <stdlib.h>
#include <string.h>

#include "tests/clients/suites.h"

/* What the event function saw. */
struct seen {
    char *ids[64];
    size_t njobs;
    int ends;
    char end_reason[32];
};

static void
collect(const struct chanq_event *ev, void *arg)
{
    struct seen *s = arg;
    if (strcmp(ev->type, "jobs") == 0) {
        for (size_t i = 0; i < ev->njobs && s->njobs < 64; i++) {
            ck_assert_msg(ev->jobs[i].payload && ev->jobs[i].attempt >= 1, "a malformed job");
            s->ids[s->njobs++] = strdup(ev->jobs[i].id);
        }
    } else if (strcmp(ev->type, "consume_end") == 0) {
        s->ends++;
        snprintf(s->end_reason, sizeof s->end_reason, "%s", ev->reason ? ev->reason : "");
    }
}

static void
seen_free(struct seen *s)
{
    for (size_t i = 0; i < s->njobs; i++)
        free(s->ids[i]);
}

/* Reads events until want jobs were pushed, or nothing comes for quiet_ms. */
static size_t
pump(struct chanq_conn *c, struct seen *s, size_t want, int64_t quiet_ms)
{
    while (s->njobs < want) {
        int n = chanq_poll_events(c, quiet_ms);
        ck_assert_msg(n >= 0, "poll: %s", tc_err(c));
        if (n == 0)
            break;
    }
    return s->njobs;
}

static void
submit_n(struct chanq_conn *c, const char *queue, int n)
{
    struct chanq_submit_opts o = {.queue = queue};
    for (int i = 0; i < n; i++) {
        char *id = NULL;
        ck_assert_msg(chanq_submit(c, &o, "{\"n\":1}", &id, NULL) == 0, "submit: %s", tc_err(c));
        free(id);
    }
}

START_TEST(consumed_jobs_come_as_events_within_the_prefetch_and_are_acked_together)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *p = tc_dial(h, NULL), *c = tc_dial(h, NULL);
    submit_n(p, "cq", 5);
    struct seen s = {0};
    chanq_set_event_fn(c, collect, &s);
    const char *qs[] = {"cq"};
    struct chanq_consume_opts co = {.queues = qs, .nqueues = 1, .prefetch = 3};
    ck_assert_msg(chanq_consume(c, &co) == 0, "consume: %s", tc_err(c));
    ck_assert_uint_eq(pump(c, &s, 3, 10000), 3);
    ck_assert_uint_eq(pump(c, &s, 4, 300), 3); /* no more than the prefetch */
    /* Two acks of several ids pipelined, then their answers. */
    const char *first[] = {s.ids[0], s.ids[1]};
    const char *second[] = {s.ids[2], "12345"};
    ck_assert_msg(chanq_send_ack_many(c, first, 2) == 0, "send: %s", tc_err(c));
    ck_assert_msg(chanq_send_ack_many(c, second, 2) == 0, "send: %s", tc_err(c));
    ck_assert_msg(chanq_flush(c) == 0, "flush: %s", tc_err(c));
    int64_t done;
    json_t *failed;
    ck_assert_msg(chanq_recv_many(c, &done, &failed) == 0, "recv: %s", tc_err(c));
    ck_assert_int_eq(done, 2);
    ck_assert_ptr_null(failed);
    ck_assert_msg(chanq_recv_many(c, &done, &failed) == 0, "recv: %s", tc_err(c));
    ck_assert_int_eq(done, 1);
    ck_assert_uint_eq(json_array_size(failed), 1);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(failed, 0), "code")),
                     "not_found");
    json_decref(failed);
    /* The acks made room: the last two come. */
    ck_assert_uint_eq(pump(c, &s, 5, 10000), 5);
    ck_assert_msg(chanq_cancel_consume(c) == 0, "cancel_consume: %s", tc_err(c));
    submit_n(p, "cq", 1);
    ck_assert_uint_eq(pump(c, &s, 6, 300), 5); /* nothing after cancel_consume */
    const char *last[] = {s.ids[3], s.ids[4]};
    ck_assert_msg(chanq_ack_many(c, last, 2, &done, NULL) == 0 && done == 2, "ack: %s", tc_err(c));
    json_t *st = NULL;
    ck_assert_msg(chanq_stats(p, "cq", &st) == 0, "stats: %s", tc_err(p));
    ck_assert_int_eq(json_integer_value(json_object_get(st, "acked")), 5);
    ck_assert_int_eq(json_integer_value(json_object_get(st, "depth")), 1);
    json_decref(st);
    const char *none[] = {NULL};
    ck_assert_msg(chanq_send_ack_many(c, none, 0) < 0, "an ack of no ids was sent");
    ck_assert_str_eq(chanq_last_error(c)->code, "bad_request");
    seen_free(&s);
    chanq_conn_free(c);
    chanq_conn_free(p);
    ck_assert_int_eq(harness_stop(h), 0);
}
END_TEST

START_TEST(queued_events_carry_their_jobs_and_a_drained_queue_ends_the_consume)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *p = tc_dial(h, NULL), *c = tc_dial(h, NULL);
    submit_n(p, "ce", 2);
    const char *qs[] = {"ce"};
    struct chanq_consume_opts co = {.queues = qs, .nqueues = 1, .prefetch = 10};
    ck_assert_msg(chanq_consume(c, &co) == 0, "consume: %s", tc_err(c));
    /* Without an event function the events queue up, jobs included. */
    size_t got = 0;
    const char *ids[2];
    struct chanq_event *evs[4] = {0};
    int nev = 0;
    while (got < 2 && nev < 4) {
        struct chanq_event *ev = chanq_next_event(c);
        if (!ev) {
            ck_assert_msg(chanq_poll_events(c, 10000) > 0, "no event: %s", tc_err(c));
            continue;
        }
        ck_assert_str_eq(ev->type, "jobs");
        for (size_t i = 0; i < ev->njobs && got < 2; i++)
            ids[got++] = ev->jobs[i].id;
        evs[nev++] = ev;
    }
    ck_assert_uint_eq(got, 2);
    ck_assert_msg(chanq_ack_many(c, ids, 2, NULL, NULL) == 0, "ack: %s", tc_err(c));
    for (int i = 0; i < nev; i++)
        chanq_event_free(evs[i]);
    ck_assert_msg(chanq_close_queue(p, "ce") == 0, "close: %s", tc_err(p));
    struct chanq_event *end = NULL;
    for (int i = 0; i < 100 && !end; i++) {
        end = chanq_next_event(c);
        if (!end)
            chanq_poll_events(c, 100);
    }
    ck_assert_msg(end != NULL, "no consume_end");
    ck_assert_str_eq(end->type, "consume_end");
    ck_assert_str_eq(end->reason, "closed");
    ck_assert_ptr_null(end->jobs);
    chanq_event_free(end);
    chanq_conn_free(c);
    chanq_conn_free(p);
    ck_assert_int_eq(harness_stop(h), 0);
}
END_TEST

Suite *
client_consume_suite(void)
{
    Suite *s = suite_create("client_consume");
    TCase *tc = tcase_create("consume");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, consumed_jobs_come_as_events_within_the_prefetch_and_are_acked_together);
    tcase_add_test(tc, queued_events_carry_their_jobs_and_a_drained_queue_ends_the_consume);
    suite_add_tcase(s, tc);
    return s;
}
