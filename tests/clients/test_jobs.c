/* libchanq job operations against a real chanqd: submit with every option,
 * pipelined batches, fetch, ack, nack, release, touch, cancel, wait, job,
 * events. */
#include "chanq_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/clients/suites.h"

static char *
submit_ok(struct chanq_conn *c, const struct chanq_submit_opts *o, const char *payload)
{
    char *id = NULL;
    ck_assert_msg(chanq_submit(c, o, payload, &id, NULL) == 0, "submit %s: %s", payload, tc_err(c));
    ck_assert_msg(id && *id, "no id");
    return id;
}

static struct chanq_job *
fetch_one(struct chanq_conn *c, const char *queue, int64_t timeout_ms, size_t *n)
{
    const char *qs[] = {queue};
    struct chanq_fetch_opts fo = {.queues = qs, .nqueues = 1, .timeout_ms = timeout_ms};
    struct chanq_job *jobs = NULL;
    ck_assert_msg(chanq_fetch(c, &fo, &jobs, n) == 0, "fetch %s: %s", queue, tc_err(c));
    return jobs;
}

START_TEST(a_submitted_job_is_fetched_acked_and_its_result_waited_for)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *c = tc_dial(h, NULL);
    struct chanq_submit_opts o = {.queue = "mail"};
    char *id = submit_ok(c, &o, "{\"to\":\"ann\",\"n\":[1,2]}");
    size_t n;
    struct chanq_job *jobs = fetch_one(c, "mail", 5000, &n);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(jobs[0].id, id);
    ck_assert_str_eq(jobs[0].queue, "mail");
    json_t *p = json_loads(jobs[0].payload, 0, NULL);
    json_t *want = json_pack("{s:s,s:[i,i]}", "to", "ann", "n", 1, 2);
    ck_assert_msg(p && json_equal(p, want), "payload came back as %s", jobs[0].payload);
    json_decref(p);
    json_decref(want);
    ck_assert_int_eq(jobs[0].attempt, 1);
    ck_assert_msg(jobs[0].ttr_ms > 0, "ttr_ms %lld", (long long)jobs[0].ttr_ms);
    ck_assert_msg(chanq_ack(c, id, "{\"sent\":true}") == 0, "ack: %s", tc_err(c));
    ck_assert_msg(chanq_ack(c, id, NULL) < 0, "second ack succeeded");
    ck_assert_str_eq(chanq_last_error(c)->code, "not_reserved");
    json_t *w = NULL;
    ck_assert_msg(chanq_wait(c, id, 5000, &w) == 0, "wait: %s", tc_err(c));
    ck_assert_str_eq(json_string_value(json_object_get(w, "state")), "done");
    ck_assert_msg(json_is_true(json_object_get(json_object_get(w, "result"), "sent")),
                  "result not kept");
    json_decref(w);
    json_t *info = NULL;
    ck_assert_msg(chanq_job_info(c, id, &info) == 0, "job: %s", tc_err(c));
    ck_assert_str_eq(json_string_value(json_object_get(info, "state")), "done");
    ck_assert_str_eq(json_string_value(json_object_get(info, "queue")), "mail");
    json_decref(info);
    chanq_jobs_free(jobs, n);
    free(id);
    chanq_conn_free(c);
    harness_stop(h);
}
END_TEST

START_TEST(payloads_are_any_json_and_multi_line_text_is_reencoded)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *c = tc_dial(h, NULL);
    struct chanq_submit_opts o = {.queue = "p"};
    const char *payloads[] = {"42", "\"text\"", "null", "[1,\n 2]", "{\n \"a\": \"b\"\n}"};
    const char *expect[] = {"42", "\"text\"", "null", "[1,2]", "{\"a\":\"b\"}"};
    for (size_t i = 0; i < 5; i++)
        free(submit_ok(c, &o, payloads[i]));
    char *id = NULL;
    ck_assert_msg(chanq_submit(c, &o, "{not json\n", &id, NULL) < 0, "bad JSON was submitted");
    ck_assert_str_eq(chanq_last_error(c)->code, "bad_request");
    ck_assert_msg(chanq_ping(c) == 0, "connection unusable after a local refusal");
    for (size_t i = 0; i < 5; i++) {
        size_t n;
        struct chanq_job *j = fetch_one(c, "p", 5000, &n);
        ck_assert_int_eq(n, 1);
        json_t *got = json_loads(j->payload, JSON_DECODE_ANY, NULL);
        json_t *want = json_loads(expect[i], JSON_DECODE_ANY, NULL);
        ck_assert_msg(json_equal(got, want), "payload %zu: got %s want %s", i, j->payload, expect[i]);
        json_decref(got);
        json_decref(want);
        chanq_jobs_free(j, n);
    }
    chanq_conn_free(c);
    harness_stop(h);
}
END_TEST

START_TEST(a_pipelined_batch_of_2000_submits_comes_back_in_order)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *c = tc_dial(h, NULL);
    enum { N = 2000 };
    char **texts = calloc(N, sizeof *texts);
    for (int i = 0; i < N; i++) {
        texts[i] = malloc(32);
        snprintf(texts[i], 32, "{\"i\":%d}", i);
    }
    struct chanq_submit_result *res = calloc(N, sizeof *res);
    ck_assert_msg(chanq_declare(c, "bulk", 5000, 0, 0, NULL) == 0, "declare: %s", tc_err(c));
    struct chanq_submit_opts o = {.queue = "bulk"};
    long ok = chanq_submit_batch(c, &o, (const char *const *)texts, N, 128, res);
    ck_assert_msg(ok == N, "batch submitted %ld of %d: %s", ok, N, tc_err(c));
    for (int i = 1; i < N; i++)
        ck_assert_msg(strcmp(res[i].id, res[i - 1].id) != 0, "duplicate id %s", res[i].id);
    /* FIFO: fetch them back in submit order, many per fetch. */
    const char *qs[] = {"bulk"};
    struct chanq_fetch_opts fo = {.queues = qs, .nqueues = 1, .timeout_ms = 2000, .count = 100};
    int next = 0;
    while (next < N) {
        struct chanq_job *jobs;
        size_t n;
        ck_assert_msg(chanq_fetch(c, &fo, &jobs, &n) == 0, "fetch: %s", tc_err(c));
        ck_assert_msg(n > 0 && n <= 100, "fetch returned %zu jobs", n);
        for (size_t k = 0; k < n; k++, next++) {
            ck_assert_str_eq(jobs[k].id, res[next].id);
            ck_assert_str_eq(jobs[k].payload, texts[next]);
            ck_assert_msg(chanq_send_ack(c, jobs[k].id, NULL) == 0, "send ack");
        }
        for (size_t k = 0; k < n; k++)
            ck_assert_msg(chanq_recv_ok(c) == 0, "pipelined ack: %s", tc_err(c));
        chanq_jobs_free(jobs, n);
    }
    ck_assert_int_eq(chanq_pending(c), 0);
    chanq_submit_results_free(res, N);
    for (int i = 0; i < N; i++)
        free(texts[i]);
    free(texts);
    free(res);
    chanq_conn_free(c);
    harness_stop(h);
}
END_TEST

START_TEST(send_side_select_names_the_queue_that_took_the_job)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *c = tc_dial(h, NULL);
    ck_assert_msg(chanq_declare(c, "full-a", 1, 0, 0, NULL) == 0, "declare: %s", tc_err(c));
    struct chanq_submit_opts one = {.queue = "full-a", .wait_ms = CHANQ_NO_WAIT};
    free(submit_ok(c, &one, "0"));
    const char *qs[] = {"full-a", "room-b"};
    struct chanq_submit_opts sel = {.queues = qs, .nqueues = 2};
    char *id = NULL, *queue = NULL;
    ck_assert_msg(chanq_submit(c, &sel, "1", &id, &queue) == 0, "select submit: %s", tc_err(c));
    ck_assert_msg(queue && strcmp(queue, "room-b") == 0, "went to %s", queue ? queue : "(none)");
    free(id);
    free(queue);
    chanq_conn_free(c);
    harness_stop(h);
}
END_TEST

START_TEST(a_full_queue_refuses_at_once_with_no_wait_and_after_wait_ms)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *c = tc_dial(h, NULL);
    ck_assert_msg(chanq_declare(c, "tiny", 2, 0, 0, NULL) == 0, "declare: %s", tc_err(c));
    struct chanq_submit_opts o = {.queue = "tiny", .wait_ms = CHANQ_NO_WAIT};
    free(submit_ok(c, &o, "1"));
    free(submit_ok(c, &o, "2"));
    char *id = NULL;
    ck_assert_msg(chanq_submit(c, &o, "3", &id, NULL) < 0, "submit to a full queue succeeded");
    ck_assert_str_eq(chanq_last_error(c)->code, "queue_full");
    o.wait_ms = 200;
    int64_t t0 = (int64_t)time(NULL);
    ck_assert_msg(chanq_submit(c, &o, "3", &id, NULL) < 0, "waiting submit succeeded");
    ck_assert_str_eq(chanq_last_error(c)->code, "queue_full");
    ck_assert_msg((int64_t)time(NULL) - t0 < 5, "wait_ms 200 took seconds");
    chanq_conn_free(c);
    harness_stop(h);
}
END_TEST

START_TEST(delay_ttr_and_max_attempts_options_reach_the_server)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *c = tc_dial(h, NULL);
    struct chanq_submit_opts o = {.queue = "opts", .delay_ms = 400, .ttr_ms = 7000,
                                  .max_attempts = 1, .deadline_ms = 60000};
    char *id = submit_ok(c, &o, "{}");
    size_t n;
    struct chanq_job *j = fetch_one(c, "opts", 0, &n);
    ck_assert_msg(n == 0, "a delayed job was delivered at once");
    j = fetch_one(c, "opts", 5000, &n);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(j->ttr_ms, 7000);
    ck_assert_msg(j->deadline > 0, "deadline not reported");
    char *state = NULL;
    ck_assert_msg(chanq_nack(c, id, "boom", -1, false, &state) == 0, "nack: %s", tc_err(c));
    ck_assert_msg(state && strcmp(state, "dead") == 0, "max_attempts 1: state %s", state);
    json_t *info = NULL;
    ck_assert_msg(chanq_job_info(c, id, &info) == 0, "job: %s", tc_err(c));
    ck_assert_str_eq(json_string_value(json_object_get(info, "error")), "boom");
    ck_assert_int_eq(json_integer_value(json_object_get(info, "max_attempts")), 1);
    json_decref(info);
    free(state);
    chanq_jobs_free(j, n);
    free(id);
    chanq_conn_free(c);
    harness_stop(h);
}
END_TEST

START_TEST(nack_with_a_delay_retries_and_dead_buries)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *c = tc_dial(h, NULL);
    struct chanq_submit_opts o = {.queue = "retry"};
    char *id = submit_ok(c, &o, "1");
    size_t n;
    struct chanq_job *j = fetch_one(c, "retry", 5000, &n);
    char *state = NULL;
    ck_assert_msg(chanq_nack(c, id, "later", 0, false, &state) == 0, "nack: %s", tc_err(c));
    ck_assert_msg(strcmp(state, "queued") == 0 || strcmp(state, "delayed") == 0, "state %s", state);
    free(state);
    chanq_jobs_free(j, n);
    j = fetch_one(c, "retry", 5000, &n);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(j->attempt, 2);
    ck_assert_msg(chanq_nack(c, id, "give up", -1, true, &state) == 0, "nack dead: %s", tc_err(c));
    ck_assert_str_eq(state, "dead");
    free(state);
    chanq_jobs_free(j, n);
    int64_t kicked = -1;
    ck_assert_msg(chanq_kick(c, "retry", 0, &kicked) == 0, "kick: %s", tc_err(c));
    ck_assert_int_eq(kicked, 1);
    j = fetch_one(c, "retry", 5000, &n);
    ck_assert_msg(n == 1 && strcmp(j->id, id) == 0, "kicked job not delivered");
    chanq_jobs_free(j, n);
    free(id);
    chanq_conn_free(c);
    harness_stop(h);
}
END_TEST

struct seen {
    int n;
    char type[32], id[128], reason[32];
};

static void
record_event(const struct chanq_event *ev, void *arg)
{
    struct seen *s = arg;
    s->n++;
    snprintf(s->type, sizeof s->type, "%s", ev->type ? ev->type : "");
    snprintf(s->id, sizeof s->id, "%s", ev->id ? ev->id : "");
    snprintf(s->reason, sizeof s->reason, "%s", ev->reason ? ev->reason : "");
}

START_TEST(release_gives_the_job_back_with_the_attempt_uncounted)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *c = tc_dial(h, NULL);
    /* One attempt: a counted delivery would bury the job. */
    struct chanq_submit_opts o = {.queue = "rel", .max_attempts = 1};
    char *id = submit_ok(c, &o, "1");
    for (int round = 0; round < 2; round++) {
        size_t n;
        struct chanq_job *j = fetch_one(c, "rel", 5000, &n);
        ck_assert_msg(n == 1 && strcmp(j->id, id) == 0, "round %d: job not delivered", round);
        ck_assert_int_eq(j->attempt, 1);
        ck_assert_msg(chanq_release(c, id) == 0, "release: %s", tc_err(c));
        chanq_jobs_free(j, n);
    }
    json_t *info = NULL;
    ck_assert_msg(chanq_job_info(c, id, &info) == 0, "job: %s", tc_err(c));
    ck_assert_str_eq(json_string_value(json_object_get(info, "state")), "queued");
    ck_assert_int_eq(json_integer_value(json_object_get(info, "attempt")), 0);
    ck_assert_msg(json_is_null(json_object_get(info, "error")), "an error was recorded");
    json_decref(info);
    ck_assert_msg(chanq_release(c, id) < 0, "released a job it does not hold");
    ck_assert_str_eq(chanq_last_error(c)->code, "not_reserved");
    ck_assert_msg(chanq_release(c, "999") < 0, "released an unknown job");
    ck_assert_str_eq(chanq_last_error(c)->code, "not_found");
    free(id);
    chanq_conn_free(c);
    harness_stop(h);
}
END_TEST

START_TEST(a_ttr_expiry_reaches_the_event_function_as_revoked)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *c = tc_dial(h, NULL);
    struct seen seen = {0};
    chanq_set_event_fn(c, record_event, &seen);
    struct chanq_submit_opts o = {.queue = "slow", .ttr_ms = 300};
    char *id = submit_ok(c, &o, "1");
    size_t n;
    struct chanq_job *j = fetch_one(c, "slow", 5000, &n);
    ck_assert_int_eq(n, 1);
    for (int i = 0; i < 50 && seen.n == 0; i++)
        ck_assert_msg(chanq_poll_events(c, 100) >= 0, "poll: %s", tc_err(c));
    ck_assert_msg(seen.n == 1, "%d events", seen.n);
    ck_assert_str_eq(seen.type, "revoked");
    ck_assert_str_eq(seen.id, id);
    ck_assert_str_eq(seen.reason, "ttr");
    ck_assert_msg(chanq_ack(c, id, NULL) < 0, "ack after revoke succeeded");
    chanq_jobs_free(j, n);
    j = fetch_one(c, "slow", 5000, &n);
    ck_assert_msg(n == 1 && j->attempt == 2, "revoked job not redelivered as attempt 2");
    chanq_jobs_free(j, n);
    free(id);
    chanq_conn_free(c);
    harness_stop(h);
}
END_TEST

START_TEST(touch_keeps_a_reservation_past_its_ttr)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *c = tc_dial(h, NULL);
    /* Touches 500 ms apart hold it 2.5 s, past its 2 s ttr; each gap
     * leaves 1.5 s to spare, so a loaded machine does not fail it. */
    struct chanq_submit_opts o = {.queue = "touchy", .ttr_ms = 2000};
    char *id = submit_ok(c, &o, "1");
    size_t n;
    struct chanq_job *j = fetch_one(c, "touchy", 5000, &n);
    for (int i = 0; i < 5; i++) {
        usleep(500000);
        ck_assert_msg(chanq_touch(c, id, 0) == 0, "touch: %s", tc_err(c));
    }
    ck_assert_msg(chanq_next_event(c) == NULL, "an event came although the job was touched");
    ck_assert_msg(chanq_ack(c, id, NULL) == 0, "ack after 2.5 s of touches: %s", tc_err(c));
    chanq_jobs_free(j, n);
    free(id);
    chanq_conn_free(c);
    harness_stop(h);
}
END_TEST

START_TEST(cancel_sends_an_event_between_answers_and_cascades_to_children)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *worker = tc_dial(h, NULL), *boss = tc_dial(h, NULL);
    struct chanq_submit_opts o = {.queue = "tree"};
    char *parent = submit_ok(boss, &o, "\"parent\"");
    struct chanq_submit_opts child = {.queue = "tree-kids", .parent = parent};
    char *kid = submit_ok(boss, &child, "\"child\"");
    size_t n;
    struct chanq_job *j = fetch_one(worker, "tree", 5000, &n);
    ck_assert_int_eq(n, 1);
    int64_t cancelled = 0;
    ck_assert_msg(chanq_cancel(boss, parent, &cancelled) == 0, "cancel: %s", tc_err(boss));
    ck_assert_int_eq(cancelled, 2);
    usleep(200000);
    /* The event arrives before ping's answer: it must be queued, not taken
     * for the answer. */
    ck_assert_msg(chanq_ping(worker) == 0, "ping: %s", tc_err(worker));
    struct chanq_event *ev = chanq_next_event(worker);
    ck_assert_msg(ev != NULL, "no cancel event queued");
    ck_assert_str_eq(ev->type, "cancel");
    ck_assert_str_eq(ev->id, parent);
    chanq_event_free(ev);
    ck_assert_msg(chanq_next_event(worker) == NULL, "more than one event");
    ck_assert_msg(chanq_ack(worker, parent, NULL) < 0, "ack of a cancelled job succeeded");
    ck_assert_str_eq(chanq_last_error(worker)->code, "cancelled");
    json_t *w = NULL;
    ck_assert_msg(chanq_wait(boss, kid, 2000, &w) == 0, "wait child: %s", tc_err(boss));
    ck_assert_str_eq(json_string_value(json_object_get(w, "state")), "cancelled");
    json_decref(w);
    chanq_jobs_free(j, n);
    free(parent);
    free(kid);
    chanq_conn_free(worker);
    chanq_conn_free(boss);
    harness_stop(h);
}
END_TEST

START_TEST(wait_times_out_on_a_job_that_is_not_final)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *c = tc_dial(h, NULL);
    struct chanq_submit_opts o = {.queue = "w"};
    char *id = submit_ok(c, &o, "1");
    json_t *w = NULL;
    ck_assert_msg(chanq_wait(c, id, 200, &w) < 0, "wait on a queued job succeeded");
    ck_assert_str_eq(chanq_last_error(c)->code, "timeout");
    ck_assert_msg(chanq_job_info(c, "no-such-job", &w) < 0, "job on a bad id succeeded");
    ck_assert_str_eq(chanq_last_error(c)->code, "not_found");
    free(id);
    chanq_conn_free(c);
    harness_stop(h);
}
END_TEST

START_TEST(closing_the_connection_gives_reserved_jobs_back)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *a = tc_dial(h, NULL), *b = tc_dial(h, NULL);
    struct chanq_submit_opts o = {.queue = "back"};
    char *id = submit_ok(a, &o, "1");
    size_t n;
    struct chanq_job *j = fetch_one(a, "back", 5000, &n);
    ck_assert_int_eq(n, 1);
    chanq_jobs_free(j, n);
    chanq_conn_free(a);
    j = fetch_one(b, "back", 5000, &n);
    ck_assert_msg(n == 1 && strcmp(j->id, id) == 0, "job not given back on disconnect");
    chanq_jobs_free(j, n);
    free(id);
    chanq_conn_free(b);
    harness_stop(h);
}
END_TEST

/* Submits with o and expects the server to refuse it with bad_request. */
static void
submit_refused(struct chanq_conn *c, const struct chanq_submit_opts *o, const char *what)
{
    char *id = NULL;
    ck_assert_msg(chanq_submit(c, o, "{}", &id, NULL) < 0, "%s was accepted (id %s)", what, id);
    ck_assert_msg(strcmp(chanq_last_error(c)->code, "bad_request") == 0, "%s: %s", what,
                  tc_err(c));
}

START_TEST(a_key_submitted_twice_names_one_job)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *c = tc_dial(h, NULL);
    struct chanq_submit_opts o = {.queue = "keyed", .key = "order-17"};
    char *first = submit_ok(c, &o, "{\"n\":1}");
    ck_assert_msg(!chanq_submit_duplicate(c), "a new job was called a duplicate");
    char *again = submit_ok(c, &o, "{\"n\":2}");
    ck_assert_msg(chanq_submit_duplicate(c), "the second submit was not a duplicate");
    ck_assert_str_eq(again, first);
    /* In a batch too, and another key makes its own job. */
    const char *payloads[] = {"{\"n\":3}"};
    struct chanq_submit_result r[1];
    ck_assert_int_eq(chanq_submit_batch(c, &o, payloads, 1, 0, r), 1);
    ck_assert_msg(r[0].duplicate && strcmp(r[0].id, first) == 0, "batch: %s dup %d", r[0].id,
                  r[0].duplicate);
    chanq_submit_results_free(r, 1);
    struct chanq_submit_opts other = {.queue = "keyed", .key = "order-18"};
    char *third = submit_ok(c, &other, "{\"n\":4}");
    ck_assert_msg(!chanq_submit_duplicate(c) && strcmp(third, first) != 0, "order-18: %s", third);
    size_t n;
    const char *qs[] = {"keyed"};
    struct chanq_fetch_opts fo = {.queues = qs, .nqueues = 1, .timeout_ms = 0, .count = 10};
    struct chanq_job *jobs = NULL;
    ck_assert_msg(chanq_fetch(c, &fo, &jobs, &n) == 0, "fetch: %s", tc_err(c));
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(jobs[0].id, first);
    ck_assert_str_eq(jobs[0].payload, "{\"n\":1}");
    chanq_jobs_free(jobs, n);
    char long_key[130];
    memset(long_key, 'k', 129);
    long_key[129] = '\0';
    struct chanq_submit_opts bad = {.queue = "keyed", .key = long_key};
    submit_refused(c, &bad, "a 129-byte key");
    free(first);
    free(again);
    free(third);
    chanq_conn_free(c);
    harness_stop(h);
}
END_TEST

START_TEST(higher_priorities_are_delivered_first)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *c = tc_dial(h, NULL);
    const int levels[] = {0, 5, 0, 9, 5};
    char *ids[5];
    for (int i = 0; i < 5; i++) {
        struct chanq_submit_opts o = {.queue = "prio", .priority = levels[i]};
        ids[i] = submit_ok(c, &o, "{}");
    }
    const char *qs[] = {"prio"};
    struct chanq_fetch_opts fo = {.queues = qs, .nqueues = 1, .timeout_ms = 5000, .count = 5};
    struct chanq_job *jobs = NULL;
    size_t n;
    ck_assert_msg(chanq_fetch(c, &fo, &jobs, &n) == 0, "fetch: %s", tc_err(c));
    ck_assert_int_eq(n, 5);
    const int want[] = {3, 1, 4, 0, 2}; /* 9, then 5 and 0 each in submit order */
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(strcmp(jobs[i].id, ids[want[i]]) == 0, "delivery %zu is %s, not %s", i,
                      jobs[i].id, ids[want[i]]);
    chanq_jobs_free(jobs, n);
    for (int i = 0; i < 5; i++)
        free(ids[i]);
    struct chanq_submit_opts high = {.queue = "prio", .priority = 10};
    submit_refused(c, &high, "priority 10");
    struct chanq_submit_opts low = {.queue = "prio", .priority = -1};
    submit_refused(c, &low, "priority -1");
    chanq_conn_free(c);
    harness_stop(h);
}
END_TEST

static int64_t
wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

START_TEST(a_job_with_run_at_is_not_fetched_before_its_time)
{
    struct harness *h = tc_start(NULL);
    struct chanq_conn *c = tc_dial(h, NULL);
    int64_t at = wall_ms() + 1000;
    struct chanq_submit_opts o = {.queue = "later", .run_at = at};
    char *id = submit_ok(c, &o, "{}");
    /* One clock on one machine: whenever a fetch gives the job, its time
     * has come (on a slow host the first fetch may already get it). */
    size_t n;
    struct chanq_job *j = fetch_one(c, "later", 0, &n);
    if (n == 0)
        j = fetch_one(c, "later", 10000, &n);
    int64_t got = wall_ms();
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(j->id, id);
    ck_assert_msg(got >= at, "fetched at %lld, due at %lld", (long long)got, (long long)at);
    chanq_jobs_free(j, n);
    free(id);
    struct chanq_submit_opts past = {.queue = "later", .run_at = 1000};
    id = submit_ok(c, &past, "{}");
    j = fetch_one(c, "later", 5000, &n);
    ck_assert_msg(n == 1 && strcmp(j->id, id) == 0, "a run_at in the past was not ready");
    chanq_jobs_free(j, n);
    free(id);
    struct chanq_submit_opts both = {.queue = "later", .run_at = at, .delay_ms = 10};
    submit_refused(c, &both, "run_at with delay_ms");
    struct chanq_submit_opts far = {.queue = "later", .run_at = wall_ms() + 400LL * 86400000};
    submit_refused(c, &far, "run_at 400 days ahead");
    chanq_conn_free(c);
    harness_stop(h);
}
END_TEST

Suite *
client_jobs_suite(void)
{
    Suite *s = suite_create("client_jobs");
    TCase *tc = tcase_create("jobs");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, a_submitted_job_is_fetched_acked_and_its_result_waited_for);
    tcase_add_test(tc, payloads_are_any_json_and_multi_line_text_is_reencoded);
    tcase_add_test(tc, a_pipelined_batch_of_2000_submits_comes_back_in_order);
    tcase_add_test(tc, send_side_select_names_the_queue_that_took_the_job);
    tcase_add_test(tc, a_full_queue_refuses_at_once_with_no_wait_and_after_wait_ms);
    tcase_add_test(tc, delay_ttr_and_max_attempts_options_reach_the_server);
    tcase_add_test(tc, nack_with_a_delay_retries_and_dead_buries);
    tcase_add_test(tc, release_gives_the_job_back_with_the_attempt_uncounted);
    tcase_add_test(tc, a_ttr_expiry_reaches_the_event_function_as_revoked);
    tcase_add_test(tc, touch_keeps_a_reservation_past_its_ttr);
    tcase_add_test(tc, cancel_sends_an_event_between_answers_and_cascades_to_children);
    tcase_add_test(tc, wait_times_out_on_a_job_that_is_not_final);
    tcase_add_test(tc, closing_the_connection_gives_reserved_jobs_back);
    tcase_add_test(tc, a_key_submitted_twice_names_one_job);
    tcase_add_test(tc, higher_priorities_are_delivered_first);
    tcase_add_test(tc, a_job_with_run_at_is_not_fetched_before_its_time);
    suite_add_tcase(s, tc);
    return s;
}
