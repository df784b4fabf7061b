/* Streaming consumption with credit (consume, cancel_consume, the jobs
 * event) and the requests that name several jobs (ack and nack "ids",
 * fetch's "ack"): what a worker sees, credit, fairness, backpressure,
 * disconnects, and that a pushed delivery is recorded like a fetched one. */
#include "chanq_config.h"

#include <check.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "tests/daemon/suites.h"
#include "tests/daemon/util.h"

/* A consuming connection: the answers to its requests come in order, the
 * jobs pushed to it are collected as they pass by. */
struct stream {
    int fd;
    json_t *jobs;   /* every job pushed so far, in order */
    json_t *ends;   /* consume_end events */
    size_t events;  /* jobs events so far */
    size_t answers; /* answers st_pump passed over (requests sent by hand) */
};

static void
stream_init(struct stream *st, int fd)
{
    st->fd = fd;
    st->jobs = json_array();
    st->ends = json_array();
    st->events = 0;
    st->answers = 0;
}

static void
stream_free(struct stream *st)
{
    json_decref(st->jobs);
    json_decref(st->ends);
    harness_close(st->fd);
}

/* Takes in one line (within timeout_ms): a jobs or consume_end event is
 * collected and NULL returned with *got set; anything else is returned. */
static json_t *
stream_line(struct stream *st, int timeout_ms, bool *got)
{
    *got = false;
    char *line = recv_line_timeout(st->fd, timeout_ms);
    if (!line)
        return NULL;
    json_t *j = json_loads(line, 0, NULL);
    ck_assert_msg(j != NULL, "not JSON: %s", line);
    free(line);
    const char *ev = json_string_value(json_object_get(j, "event"));
    if (!ev)
        return j;
    *got = true;
    if (strcmp(ev, "jobs") == 0) {
        json_t *jobs = json_object_get(j, "jobs");
        ck_assert_msg(json_array_size(jobs) > 0, "a jobs event without jobs");
        json_array_extend(st->jobs, jobs);
        st->events++;
    } else if (strcmp(ev, "consume_end") == 0) {
        json_array_append(st->ends, j);
    }
    json_decref(j);
    return NULL;
}

/* Sends a request and returns its answer, collecting the events before it. */
static json_t *st_req(struct stream *st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static json_t *
st_req(struct stream *st, const char *fmt, ...)
{
    va_list ap;
    char *line;
    va_start(ap, fmt);
    ck_assert(vasprintf(&line, fmt, ap) >= 0);
    va_end(ap);
    ck_assert_msg(send_line(st->fd, line) == 0, "cannot send %s", line);
    for (;;) {
        bool got;
        json_t *r = stream_line(st, 10000, &got);
        if (r) {
            free(line);
            return r;
        }
        ck_assert_msg(got, "no answer to %s", line);
    }
}

static void st_ok(struct stream *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void
st_ok(struct stream *st, const char *fmt, ...)
{
    va_list ap;
    char *line;
    va_start(ap, fmt);
    ck_assert(vasprintf(&line, fmt, ap) >= 0);
    va_end(ap);
    json_t *r = st_req(st, "%s", line);
    char *text = json_dumps(r, JSON_COMPACT);
    ck_assert_msg(is_ok(r), "%s was answered %s", line, text);
    free(text);
    free(line);
    json_decref(r);
}

/* Collects events until `want` jobs were pushed in all, or nothing came
 * for quiet_ms. Returns the jobs pushed so far. */
static size_t
st_pump(struct stream *st, size_t want, int quiet_ms)
{
    while (json_array_size(st->jobs) < want) {
        bool got;
        json_t *r = stream_line(st, quiet_ms, &got);
        if (r) {
            ck_assert_msg(is_ok(r), "a request sent by hand failed");
            st->answers++;
            json_decref(r);
            continue;
        }
        if (!got)
            break;
    }
    return json_array_size(st->jobs);
}

/* How long a test waits for what must come, and for what must not. */
#define WAIT_MS 10000
#define QUIET_MS 300

/* Exactly n jobs pushed so far: waits for them, then checks that no more
 * come for QUIET_MS. */
static void
st_expect(struct stream *st, size_t n)
{
    size_t got = st_pump(st, n, WAIT_MS);
    ck_assert_msg(got == n, "%zu jobs pushed, want %zu", got, n);
    got = st_pump(st, n + 1, QUIET_MS);
    ck_assert_msg(got == n, "%zu jobs pushed, want no more than %zu", got, n);
}

/* Waits for a consume_end event. */
static void
st_wait_end(struct stream *st)
{
    for (int64_t until = harness_now_ms() + WAIT_MS;
         json_array_size(st->ends) == 0 && harness_now_ms() < until;)
        st_pump(st, json_array_size(st->jobs) + 1, 100);
}

static const char *
job_id(const struct stream *st, size_t i)
{
    return json_string_value(json_object_get(json_array_get(st->jobs, i), "id"));
}

static void
submit_n(int fd, const char *queue, int n)
{
    for (int i = 0; i < n; i++)
        free(submit(fd, queue, "{\"n\":1}"));
}

START_TEST(consume_pushes_the_ready_jobs_up_to_its_prefetch)
{
    submit_n(fx.fd, "c", 5);
    struct stream st;
    stream_init(&st, dial(fx.h));
    st_ok(&st, "{\"op\":\"consume\",\"queue\":\"c\",\"prefetch\":3,\"rid\":1}");
    st_expect(&st, 3);
    json_t *first = json_array_get(st.jobs, 0);
    ck_assert_int_eq(json_integer_value(json_object_get(first, "attempt")), 1);
    ck_assert_str_eq(json_string_value(json_object_get(first, "queue")), "c");
    ck_assert_msg(json_is_object(json_object_get(first, "payload")), "payload verbatim");
    ck_assert_int_eq(queue_stat(fx.fd, "c", "reserved"), 3);
    ck_assert_int_eq(queue_stat(fx.fd, "c", "delivered"), 3);
    /* An ack gives one credit back: exactly one more job comes. */
    st_ok(&st, "{\"op\":\"ack\",\"id\":\"%s\"}", job_id(&st, 0));
    st_expect(&st, 4);
    ck_assert_int_eq(queue_stat(fx.fd, "c", "reserved"), 3);
    ck_assert_int_eq(queue_stat(fx.fd, "c", "depth"), 1);
    stream_free(&st);
}
END_TEST

START_TEST(jobs_submitted_later_are_pushed_as_they_come)
{
    struct stream st;
    stream_init(&st, dial(fx.h));
    st_ok(&st, "{\"op\":\"consume\",\"queues\":[\"a\",\"b\"],\"prefetch\":10}");
    ck_assert_uint_eq(st_pump(&st, 1, 200), 0);
    free(submit(fx.fd, "b", "\"x\""));
    ck_assert_uint_eq(st_pump(&st, 1, WAIT_MS), 1);
    free(submit(fx.fd, "a", "\"y\""));
    ck_assert_uint_eq(st_pump(&st, 2, WAIT_MS), 2);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(st.jobs, 1), "queue")), "a");
    ck_assert_int_eq(queue_stat(fx.fd, "a", "waiting_fetchers"), 1);
    stream_free(&st);
}
END_TEST

START_TEST(several_ready_jobs_share_one_event)
{
    submit_n(fx.fd, "batch", 40);
    struct stream st;
    stream_init(&st, dial(fx.h));
    st_ok(&st, "{\"op\":\"consume\",\"queue\":\"batch\",\"prefetch\":40}");
    ck_assert_uint_eq(st_pump(&st, 40, WAIT_MS), 40);
    ck_assert_msg(st.events < 40, "40 ready jobs took %zu events", st.events);
    stream_free(&st);
}
END_TEST

START_TEST(a_worker_that_stops_reading_gets_no_more_than_its_credit)
{
    int lazy = dial(fx.h);
    ck_assert_int_eq(send_line(lazy, "{\"op\":\"consume\",\"queue\":\"lazy\",\"prefetch\":7}"), 0);
    submit_n(fx.fd, "lazy", 200);
    for (int i = 0; i < 100 && queue_stat(fx.fd, "lazy", "reserved") < 7; i++)
        no_data_within(fx.fd, 20);
    no_data_within(fx.fd, QUIET_MS); /* time for more, which must not come */
    ck_assert_int_eq(queue_stat(fx.fd, "lazy", "reserved"), 7);
    ck_assert_int_eq(queue_stat(fx.fd, "lazy", "depth"), 193);
    /* Its disconnect gives them back at once, each delivery counted. */
    harness_close(lazy);
    for (int i = 0; i < 100 && queue_stat(fx.fd, "lazy", "reserved") > 0; i++)
        no_data_within(fx.fd, 20);
    ck_assert_int_eq(queue_stat(fx.fd, "lazy", "reserved"), 0);
    ck_assert_int_eq(queue_stat(fx.fd, "lazy", "depth"), 200);
    json_t *r =
        req_ok(fx.fd, "{\"op\":\"fetch\",\"queue\":\"lazy\",\"count\":200,\"timeout_ms\":0}");
    json_t *jobs = json_object_get(r, "jobs");
    int again = 0;
    for (size_t i = 0; i < json_array_size(jobs); i++)
        again += json_integer_value(json_object_get(json_array_get(jobs, i), "attempt")) == 2;
    ck_assert_int_eq(again, 7);
    json_decref(r);
}
END_TEST

START_TEST(acks_in_one_request_and_the_ids_that_failed)
{
    submit_n(fx.fd, "m", 4);
    struct stream st;
    stream_init(&st, dial(fx.h));
    st_ok(&st, "{\"op\":\"consume\",\"queue\":\"m\",\"prefetch\":4}");
    ck_assert_uint_eq(st_pump(&st, 4, WAIT_MS), 4);
    json_t *r = st_req(&st, "{\"op\":\"ack\",\"ids\":[\"%s\",\"%s\",\"999\",\"%s\"],\"rid\":5}",
                       job_id(&st, 0), job_id(&st, 1), job_id(&st, 0));
    ck_assert_msg(is_ok(r), "a partly failed ack is ok");
    ck_assert_int_eq(json_integer_value(json_object_get(r, "rid")), 5);
    ck_assert_int_eq(json_integer_value(json_object_get(r, "acked")), 2);
    json_t *errs = json_object_get(r, "errors");
    ck_assert_uint_eq(json_array_size(errs), 2);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(errs, 0), "id")), "999");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(errs, 0), "code")),
                     "not_found");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(errs, 1), "code")),
                     "not_reserved");
    json_decref(r);
    r = st_req(&st, "{\"op\":\"nack\",\"ids\":[\"%s\",\"%s\"],\"error\":\"no\",\"delay_ms\":0}",
               job_id(&st, 2), job_id(&st, 3));
    ck_assert_int_eq(json_integer_value(json_object_get(r, "nacked")), 2);
    ck_assert_msg(json_object_get(r, "errors") == NULL, "no errors listed when all worked");
    json_decref(r);
    ck_assert_int_eq(queue_stat(fx.fd, "m", "acked"), 2);
    ck_assert_int_eq(queue_stat(fx.fd, "m", "nacked"), 2);
    /* The nacked ones come back (attempt 2): the credit they freed. */
    ck_assert_uint_eq(st_pump(&st, 6, WAIT_MS), 6);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(st.jobs, 5), "attempt")), 2);
    stream_free(&st);
}
END_TEST

START_TEST(bad_consume_ack_and_nack_requests_change_nothing)
{
    req_err(fx.fd, "bad_request", "{\"op\":\"consume\",\"prefetch\":2}");
    req_err(fx.fd, "bad_request", "{\"op\":\"consume\",\"queue\":\"q\",\"prefetch\":0}");
    req_err(fx.fd, "bad_request", "{\"op\":\"consume\",\"queue\":\"q\",\"prefetch\":1001}");
    req_err(fx.fd, "bad_request", "{\"op\":\"consume\",\"queue\":\"q\",\"queues\":[\"r\"]}");
    req_err(fx.fd, "bad_request", "{\"op\":\"ack\",\"id\":\"1\",\"ids\":[\"2\"]}");
    req_err(fx.fd, "bad_request", "{\"op\":\"ack\",\"ids\":[\"1\"],\"result\":1}");
    req_err(fx.fd, "bad_request", "{\"op\":\"ack\",\"ids\":[]}");
    req_err(fx.fd, "bad_request", "{\"op\":\"ack\",\"ids\":[1]}");
    req_err(fx.fd, "bad_request", "{\"op\":\"nack\"}");
    req_err(fx.fd, "bad_request", "{\"op\":\"fetch\",\"queue\":\"q\",\"ack\":\"1\"}");
    /* None of them started a consume: a submit stays queued. */
    free(submit(fx.fd, "q", "1"));
    ck_assert_msg(no_data_within(fx.fd, 200), "something was pushed");
    ck_assert_int_eq(queue_stat(fx.fd, "q", "depth"), 1);
}
END_TEST

START_TEST(cancel_consume_stops_the_pushes_and_keeps_the_jobs_held)
{
    submit_n(fx.fd, "k", 3);
    struct stream st;
    stream_init(&st, dial(fx.h));
    st_ok(&st, "{\"op\":\"consume\",\"queue\":\"k\",\"prefetch\":2}");
    ck_assert_uint_eq(st_pump(&st, 2, WAIT_MS), 2);
    st_ok(&st, "{\"op\":\"cancel_consume\"}");
    /* No job is pushed after its answer, although credit comes back. */
    st_ok(&st, "{\"op\":\"ack\",\"id\":\"%s\"}", job_id(&st, 0));
    free(submit(fx.fd, "k", "2"));
    ck_assert_msg(no_data_within(st.fd, 300), "a push after cancel_consume");
    ck_assert_int_eq(queue_stat(fx.fd, "k", "reserved"), 1);
    st_ok(&st, "{\"op\":\"ack\",\"id\":\"%s\"}", job_id(&st, 1));
    /* Cancelling again is harmless; consuming again starts over. */
    st_ok(&st, "{\"op\":\"cancel_consume\"}");
    st_ok(&st, "{\"op\":\"consume\",\"queue\":\"k\",\"prefetch\":5}");
    ck_assert_uint_eq(st_pump(&st, 4, WAIT_MS), 4);
    stream_free(&st);
}
END_TEST

START_TEST(consume_again_changes_the_prefetch_and_the_queues)
{
    submit_n(fx.fd, "p", 10);
    submit_n(fx.fd, "p2", 2);
    struct stream st;
    stream_init(&st, dial(fx.h));
    st_ok(&st, "{\"op\":\"consume\",\"queue\":\"p\",\"prefetch\":1}");
    st_expect(&st, 1);
    st_ok(&st, "{\"op\":\"consume\",\"prefetch\":4}"); /* same queues, more credit */
    st_expect(&st, 4);
    st_ok(&st, "{\"op\":\"consume\",\"prefetch\":2}"); /* less: nothing until two are acked */
    st_ok(&st, "{\"op\":\"ack\",\"id\":\"%s\"}", job_id(&st, 0));
    st_ok(&st, "{\"op\":\"ack\",\"id\":\"%s\"}", job_id(&st, 1));
    st_expect(&st, 4);
    st_ok(&st, "{\"op\":\"ack\",\"id\":\"%s\"}", job_id(&st, 2));
    st_expect(&st, 5);
    st_ok(&st, "{\"op\":\"consume\",\"queue\":\"p2\",\"prefetch\":10}");
    st_expect(&st, 7);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(st.jobs, 6), "queue")), "p2");
    stream_free(&st);
}
END_TEST

/* The pusher waits on its queues when it is told to take from others. */
START_TEST(a_waiting_consume_moves_to_other_queues)
{
    struct stream st;
    stream_init(&st, dial(fx.h));
    st_ok(&st, "{\"op\":\"consume\",\"queues\":[\"m1\",\"m2\"],\"prefetch\":5}");
    for (int i = 0; i < 100 && queue_stat(fx.fd, "m2", "waiting_fetchers") == 0; i++)
        no_data_within(fx.fd, 20);
    ck_assert_int_eq(queue_stat(fx.fd, "m1", "waiting_fetchers"), 1);
    st_ok(&st, "{\"op\":\"consume\",\"queue\":\"m3\"}");
    for (int i = 0; i < 100 && queue_stat(fx.fd, "m3", "waiting_fetchers") == 0; i++)
        no_data_within(fx.fd, 20);
    ck_assert_int_eq(queue_stat(fx.fd, "m1", "waiting_fetchers"), 0);
    ck_assert_int_eq(queue_stat(fx.fd, "m2", "waiting_fetchers"), 0);
    ck_assert_int_eq(queue_stat(fx.fd, "m3", "waiting_fetchers"), 1);
    free(submit(fx.fd, "m1", "1"));
    st_expect(&st, 0);
    free(submit(fx.fd, "m3", "3"));
    st_expect(&st, 1);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(st.jobs, 0), "queue")), "m3");
    stream_free(&st);
}
END_TEST

START_TEST(consumers_of_one_queue_share_its_jobs)
{
    struct stream a, b;
    stream_init(&a, dial(fx.h));
    stream_init(&b, dial(fx.h));
    st_ok(&a, "{\"op\":\"consume\",\"queue\":\"f\",\"prefetch\":1}");
    st_ok(&b, "{\"op\":\"consume\",\"queue\":\"f\",\"prefetch\":1}");
    /* One at a time, each consumer waiting for its next: each submit goes
     * to one of the two parked pushers, as with parked fetches. */
    size_t got_a = 0, got_b = 0;
    for (int i = 0; i < 40; i++) {
        free(submit(fx.fd, "f", "1"));
        size_t na = st_pump(&a, got_a + 1, 30), nb = st_pump(&b, got_b + 1, 30);
        if (na > got_a)
            st_ok(&a, "{\"op\":\"ack\",\"id\":\"%s\"}", job_id(&a, got_a));
        if (nb > got_b)
            st_ok(&b, "{\"op\":\"ack\",\"id\":\"%s\"}", job_id(&b, got_b));
        got_a = na;
        got_b = nb;
    }
    for (int64_t until = harness_now_ms() + WAIT_MS;
         got_a + got_b < 40 && harness_now_ms() < until;) {
        got_a = st_pump(&a, got_a + 1, 50);
        got_b = st_pump(&b, got_b + 1, 50);
    }
    ck_assert_uint_eq(got_a + got_b, 40);
    ck_assert_msg(got_a >= 8 && got_b >= 8, "unfair: %zu and %zu of 40", got_a, got_b);
    stream_free(&a);
    stream_free(&b);
}
END_TEST

START_TEST(a_revoked_job_gives_its_credit_back)
{
    json_t *r = req_ok(fx.fd, "{\"op\":\"submit\",\"queue\":\"t\",\"payload\":1,\"ttr_ms\":300}");
    json_decref(r);
    struct stream st;
    stream_init(&st, dial(fx.h));
    st_ok(&st, "{\"op\":\"consume\",\"queue\":\"t\",\"prefetch\":1}");
    ck_assert_uint_eq(st_pump(&st, 1, WAIT_MS), 1);
    /* Not acked: revoked after its ttr, and pushed again. */
    char *line = recv_line_timeout(st.fd, 5000);
    ck_assert_msg(line && strstr(line, "\"revoked\""), "want a revoked event, got %s",
                  line ? line : "nothing");
    free(line);
    ck_assert_uint_eq(st_pump(&st, 2, WAIT_MS), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(st.jobs, 1), "attempt")), 2);
    stream_free(&st);
}
END_TEST

START_TEST(a_paused_queue_pushes_nothing_until_resumed)
{
    submit_n(fx.fd, "ps", 2);
    json_decref(req_ok(fx.fd, "{\"op\":\"pause\",\"queue\":\"ps\"}"));
    struct stream st;
    stream_init(&st, dial(fx.h));
    st_ok(&st, "{\"op\":\"consume\",\"queue\":\"ps\",\"prefetch\":5}");
    ck_assert_uint_eq(st_pump(&st, 2, 300), 0);
    json_decref(req_ok(fx.fd, "{\"op\":\"resume\",\"queue\":\"ps\"}"));
    ck_assert_uint_eq(st_pump(&st, 2, WAIT_MS), 2);
    stream_free(&st);
}
END_TEST

START_TEST(a_closed_and_drained_queue_ends_the_consume)
{
    submit_n(fx.fd, "cl", 1);
    struct stream st;
    stream_init(&st, dial(fx.h));
    st_ok(&st, "{\"op\":\"consume\",\"queue\":\"cl\",\"prefetch\":5}");
    ck_assert_uint_eq(st_pump(&st, 1, WAIT_MS), 1);
    json_decref(req_ok(fx.fd, "{\"op\":\"close\",\"queue\":\"cl\"}"));
    st_wait_end(&st);
    ck_assert_uint_eq(json_array_size(st.ends), 1);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(st.ends, 0), "reason")),
                     "closed");
    /* The job pushed before stays held and is acked as usual. */
    st_ok(&st, "{\"op\":\"ack\",\"id\":\"%s\"}", job_id(&st, 0));
    stream_free(&st);
}
END_TEST

START_TEST(fetch_acks_the_jobs_it_carries_first)
{
    submit_n(fx.fd, "fa", 3);
    char *first = fetch_one(fx.fd, "fa", 1000);
    ck_assert_ptr_nonnull(first);
    json_t *r =
        req_ok(fx.fd,
               "{\"op\":\"fetch\",\"queue\":\"fa\",\"ack\":[\"%s\",\"12345\"],\"timeout_ms\":"
               "1000}",
               first);
    json_t *jobs = json_object_get(r, "jobs");
    ck_assert_uint_eq(json_array_size(jobs), 1);
    char *second = strdup(json_string_value(json_object_get(json_array_get(jobs, 0), "id")));
    json_t *errs = json_object_get(r, "ack_errors");
    ck_assert_uint_eq(json_array_size(errs), 1);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(errs, 0), "id")), "12345");
    json_decref(r);
    ck_assert_int_eq(queue_stat(fx.fd, "fa", "acked"), 1);
    /* A fetch whose queues are closed and drained still acks. */
    json_decref(req_ok(fx.fd, "{\"op\":\"close\",\"queue\":\"fa\"}"));
    char *third = fetch_one(fx.fd, "fa", 1000);
    req_err(fx.fd, "closed", "{\"op\":\"fetch\",\"queue\":\"fa\",\"ack\":[\"%s\",\"%s\"]}", second,
            third);
    ck_assert_int_eq(queue_stat(fx.fd, "fa", "acked"), 3);
    free(first);
    free(second);
    free(third);
}
END_TEST

START_TEST(an_idle_consumer_is_not_an_idle_connection)
{
    const char *args[] = {"--idle-timeout", "300", NULL};
    struct harness *h = start_daemon(args);
    struct stream st;
    stream_init(&st, dial(h));
    st_ok(&st, "{\"op\":\"consume\",\"queue\":\"idle\"}");
    ck_assert_msg(no_data_within(st.fd, 1500), "closed or pushed while waiting");
    int fd = dial(h);
    free(submit(fd, "idle", "1"));
    ck_assert_uint_eq(st_pump(&st, 1, WAIT_MS), 1);
    harness_close(fd);
    stream_free(&st);
    ck_assert_int_eq(harness_stop(h), 0);
}
END_TEST

START_TEST(a_stopping_server_ends_the_consume)
{
    struct harness *h = start_daemon(NULL);
    struct stream st;
    stream_init(&st, dial(h));
    st_ok(&st, "{\"op\":\"consume\",\"queue\":\"stop\"}");
    kill(harness_pid(h), SIGTERM);
    st_wait_end(&st);
    ck_assert_uint_eq(json_array_size(st.ends), 1);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(st.ends, 0), "reason")),
                     "shutting_down");
    stream_free(&st);
    ck_assert_int_eq(harness_stop(h), 0);
}
END_TEST

/* A consumer that does not read, with a prefetch far above what fits in
 * its share of the output: pushes stop at the share (plus the socket
 * buffers), and resume once it reads. */
START_TEST(pushes_wait_while_the_output_is_over_its_share)
{
    const char *args[] = {"--max-memory", "256M", NULL};
    struct harness *h = start_daemon(args);
    int fd = dial(h);
    enum { JOBS = 300, PAYLOAD = 100000 };
    char *payload = malloc(PAYLOAD + 3);
    payload[0] = '"';
    memset(payload + 1, 'x', PAYLOAD);
    strcpy(payload + 1 + PAYLOAD, "\"");
    for (int i = 0; i < JOBS; i++)
        free(submit(fd, "big", payload));
    free(payload);
    struct stream st;
    int small = 64 << 10;
    stream_init(&st, dial(h));
    setsockopt(st.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    ck_assert_int_eq(send_line(st.fd, "{\"op\":\"consume\",\"queue\":\"big\",\"prefetch\":1000}"),
                     0);
    no_data_within(fd, 1000);
    /* 1 MiB of share, the server's socket buffer (4 MiB at most here) and
     * the client's 64 KiB: about 50 jobs, far below 300. */
    long long held = queue_stat(fd, "big", "reserved");
    fprintf(stderr, "a consumer that reads nothing holds %lld jobs of 100 kB\n", held);
    ck_assert_msg(held > 0 && held <= 120,
                  "%lld jobs of 100 kB pushed to a client that reads "
                  "nothing",
                  held);
    /* Reading, it gets everything. */
    ck_assert_uint_eq(st_pump(&st, JOBS, WAIT_MS), JOBS);
    ck_assert_uint_eq(st.answers, 1);
    harness_close(fd);
    stream_free(&st);
    ck_assert_int_eq(harness_stop(h), 0);
}
END_TEST

/* A push is a RESERVE record: after a crash the delivery is counted. */
START_TEST(a_pushed_delivery_is_in_the_journal)
{
    struct harness *h = harness_start(NULL);
    ck_assert_ptr_nonnull(h);
    int fd = dial(h);
    char *id = submit(fd, "dur", "1");
    struct stream st;
    stream_init(&st, dial(h));
    st_ok(&st, "{\"op\":\"consume\",\"queue\":\"dur\"}");
    ck_assert_uint_eq(st_pump(&st, 1, WAIT_MS), 1);
    ck_assert_str_eq(job_id(&st, 0), id);
    free(submit(fd, "dur2", "1"));
    harness_kill9(h);
    harness_close(fd);
    stream_free(&st);
    ck_assert_int_eq(harness_restart(h), 0);
    fd = dial(h);
    json_t *r = req_ok(fd, "{\"op\":\"fetch\",\"queue\":\"dur\",\"timeout_ms\":1000}");
    json_t *job = json_array_get(json_object_get(r, "jobs"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(job, "id")), id);
    ck_assert_int_eq(json_integer_value(json_object_get(job, "attempt")), 2);
    json_decref(r);
    /* Acked with ids, the ack survives a crash too. */
    struct stream st2;
    stream_init(&st2, dial(h));
    st_ok(&st2, "{\"op\":\"consume\",\"queue\":\"dur2\"}");
    ck_assert_uint_eq(st_pump(&st2, 1, WAIT_MS), 1);
    json_t *a = st_req(&st2, "{\"op\":\"ack\",\"ids\":[\"%s\"]}", job_id(&st2, 0));
    ck_assert_int_eq(json_integer_value(json_object_get(a, "acked")), 1);
    json_decref(a);
    harness_kill9(h);
    harness_close(fd);
    stream_free(&st2);
    ck_assert_int_eq(harness_restart(h), 0);
    fd = dial(h);
    ck_assert_int_eq(queue_stat(fd, "dur2", "depth"), 0);
    ck_assert_int_eq(queue_stat(fd, "dur2", "reserved"), 0);
    harness_close(fd);
    free(id);
    ck_assert_int_eq(harness_stop(h), 0);
}
END_TEST

Suite *
consume_suite(void)
{
    Suite *s = suite_create("consume");
    TCase *tc = tcase_create("consume");
    tcase_add_checked_fixture(tc, fixture_setup, fixture_teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, consume_pushes_the_ready_jobs_up_to_its_prefetch);
    tcase_add_test(tc, jobs_submitted_later_are_pushed_as_they_come);
    tcase_add_test(tc, several_ready_jobs_share_one_event);
    tcase_add_test(tc, a_worker_that_stops_reading_gets_no_more_than_its_credit);
    tcase_add_test(tc, acks_in_one_request_and_the_ids_that_failed);
    tcase_add_test(tc, bad_consume_ack_and_nack_requests_change_nothing);
    tcase_add_test(tc, cancel_consume_stops_the_pushes_and_keeps_the_jobs_held);
    tcase_add_test(tc, consume_again_changes_the_prefetch_and_the_queues);
    tcase_add_test(tc, a_waiting_consume_moves_to_other_queues);
    tcase_add_test(tc, consumers_of_one_queue_share_its_jobs);
    tcase_add_test(tc, a_revoked_job_gives_its_credit_back);
    tcase_add_test(tc, a_paused_queue_pushes_nothing_until_resumed);
    tcase_add_test(tc, a_closed_and_drained_queue_ends_the_consume);
    tcase_add_test(tc, fetch_acks_the_jobs_it_carries_first);
    suite_add_tcase(s, tc);
    TCase *own = tcase_create("own daemon");
    tcase_set_timeout(own, 60);
    tcase_add_test(own, an_idle_consumer_is_not_an_idle_connection);
    tcase_add_test(own, a_stopping_server_ends_the_consume);
    tcase_add_test(own, pushes_wait_while_the_output_is_over_its_share);
    tcase_add_test(own, a_pushed_delivery_is_in_the_journal);
    suite_add_tcase(s, own);
    return s;
}
