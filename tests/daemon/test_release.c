/* The release op: a reserved job goes back to the tail of its queue with
 * the delivery uncounted, only for its holder, and durably (a restart does
 * not count it either). */
#include "chanq_config.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "tests/daemon/suites.h"
#include "tests/daemon/util.h"

/* The "job" object of the job op's answer, as a new reference. */
static json_t *
job_of(int fd, const char *id)
{
    json_t *r = req_ok(fd, "{\"op\":\"job\",\"id\":\"%s\"}", id);
    json_t *job = json_incref(json_object_get(r, "job"));
    json_decref(r);
    ck_assert_msg(job != NULL, "no job object for %s", id);
    return job;
}

/* Checks the job's state, attempt and error (NULL: the error is null). */
static void
expect_job(int fd, const char *id, const char *state, long long attempt, const char *error)
{
    json_t *job = job_of(fd, id);
    ck_assert_str_eq(json_string_value(json_object_get(job, "state")), state);
    ck_assert_msg(json_integer_value(json_object_get(job, "attempt")) == attempt,
                  "job %s: attempt %lld, want %lld", id,
                  (long long)json_integer_value(json_object_get(job, "attempt")), attempt);
    json_t *e = json_object_get(job, "error");
    if (error)
        ck_assert_msg(json_is_string(e) && strcmp(json_string_value(e), error) == 0,
                      "job %s: error is not '%s'", id, error);
    else
        ck_assert_msg(json_is_null(e), "job %s: an error was recorded", id);
    json_decref(job);
}

/* Fetches one job from queue and checks its id and attempt. */
static void
expect_fetch(int fd, const char *queue, const char *id, long long attempt)
{
    json_t *r = req_ok(fd, "{\"op\":\"fetch\",\"queue\":\"%s\",\"timeout_ms\":1000}", queue);
    json_t *job = json_array_get(json_object_get(r, "jobs"), 0);
    ck_assert_msg(job != NULL, "nothing fetched from %s, want %s", queue, id);
    ck_assert_str_eq(json_string_value(json_object_get(job, "id")), id);
    ck_assert_msg(json_integer_value(json_object_get(job, "attempt")) == attempt,
                  "job %s fetched as attempt %lld, want %lld", id,
                  (long long)json_integer_value(json_object_get(job, "attempt")), attempt);
    json_decref(r);
}

static char *
submit_with(int fd, const char *fields)
{
    json_t *r = req_ok(fd, "{\"op\":\"submit\",\"payload\":{\"n\":1},%s}", fields);
    char *id = strdup(json_string_value(json_object_get(r, "id")));
    json_decref(r);
    return id;
}

START_TEST(release_requeues_the_job_with_its_attempt_uncounted)
{
    /* One attempt only: were the delivery counted, the job would be dead. */
    char *id = submit_with(fx.fd, "\"queue\":\"r\",\"max_attempts\":1,\"ttr_ms\":300");
    for (int round = 0; round < 3; round++) {
        expect_fetch(fx.fd, "r", id, 1);
        json_t *r = req_ok(fx.fd, "{\"op\":\"release\",\"id\":\"%s\",\"rid\":\"x\"}", id);
        ck_assert_str_eq(json_string_value(json_object_get(r, "rid")), "x");
        json_decref(r);
        expect_job(fx.fd, id, "queued", 0, NULL);
    }
    /* The ttr timer stopped with the reservation: no revoked event. */
    ck_assert_msg(no_data_within(fx.fd, 500), "something arrived after the release");
    expect_job(fx.fd, id, "queued", 0, NULL);
    ck_assert_int_eq(queue_stat(fx.fd, "r", "nacked"), 0);
    ck_assert_int_eq(queue_stat(fx.fd, "r", "dead"), 0);
    ck_assert_int_eq(queue_stat(fx.fd, "r", "depth"), 1);
    expect_fetch(fx.fd, "r", id, 1);
    json_decref(req_ok(fx.fd, "{\"op\":\"ack\",\"id\":\"%s\"}", id));
    expect_job(fx.fd, id, "done", 1, NULL);
    free(id);
}
END_TEST

START_TEST(release_puts_the_job_at_the_back_of_its_queue)
{
    char *a = submit(fx.fd, "o", "1");
    char *b = submit(fx.fd, "o", "2");
    expect_fetch(fx.fd, "o", a, 1);
    json_decref(req_ok(fx.fd, "{\"op\":\"release\",\"id\":\"%s\"}", a));
    expect_fetch(fx.fd, "o", b, 1);
    expect_fetch(fx.fd, "o", a, 1);
    free(a);
    free(b);
}
END_TEST

START_TEST(release_after_a_nack_keeps_the_nack_s_attempt_and_error)
{
    char *id = submit_with(fx.fd, "\"queue\":\"n\",\"max_attempts\":3");
    expect_fetch(fx.fd, "n", id, 1);
    json_decref(
        req_ok(fx.fd, "{\"op\":\"nack\",\"id\":\"%s\",\"error\":\"boom\",\"delay_ms\":0}", id));
    expect_fetch(fx.fd, "n", id, 2);
    json_decref(req_ok(fx.fd, "{\"op\":\"release\",\"id\":\"%s\"}", id));
    expect_job(fx.fd, id, "queued", 1, "boom");
    expect_fetch(fx.fd, "n", id, 2);
    free(id);
}
END_TEST

START_TEST(release_of_a_job_not_held_fails_like_ack_and_nack)
{
    req_err(fx.fd, "bad_request", "{\"op\":\"release\"}");
    req_err(fx.fd, "not_found", "{\"op\":\"release\",\"id\":\"999\"}");
    req_err(fx.fd, "not_found", "{\"op\":\"release\",\"id\":\"nope\"}");
    char *id = submit(fx.fd, "e", "1");
    /* Queued, never fetched. */
    req_err(fx.fd, "not_reserved", "{\"op\":\"release\",\"id\":\"%s\"}", id);
    expect_job(fx.fd, id, "queued", 0, NULL);
    /* Held by another connection: that one keeps it. */
    expect_fetch(fx.fd, "e", id, 1);
    int other = dial(fx.h);
    req_err(other, "not_reserved", "{\"op\":\"release\",\"id\":\"%s\"}", id);
    expect_job(other, id, "reserved", 1, NULL);
    harness_close(other);
    /* Released already. */
    json_decref(req_ok(fx.fd, "{\"op\":\"release\",\"id\":\"%s\"}", id));
    req_err(fx.fd, "not_reserved", "{\"op\":\"release\",\"id\":\"%s\"}", id);
    /* Acked. */
    expect_fetch(fx.fd, "e", id, 1);
    json_decref(req_ok(fx.fd, "{\"op\":\"ack\",\"id\":\"%s\"}", id));
    req_err(fx.fd, "not_reserved", "{\"op\":\"release\",\"id\":\"%s\"}", id);
    expect_job(fx.fd, id, "done", 1, NULL);
    /* Cancelled while held. */
    char *c = submit(fx.fd, "e", "2");
    expect_fetch(fx.fd, "e", c, 1);
    json_decref(req_ok(fx.fd, "{\"op\":\"cancel\",\"id\":\"%s\"}", c));
    req_err(fx.fd, "cancelled", "{\"op\":\"release\",\"id\":\"%s\"}", c);
    free(c);
    free(id);
}
END_TEST

/* Stops (kill -9 when hard) and starts the daemon on its data dir; returns
 * a new connection. */
static int
restart(struct harness *h, int fd, bool hard)
{
    harness_close(fd);
    if (hard)
        harness_kill9(h);
    ck_assert_msg(harness_restart(h) == 0, "chanqd did not restart");
    return dial(h);
}

START_TEST(a_release_is_journaled_so_a_restart_does_not_count_the_delivery)
{
    struct harness *h = harness_start(NULL); /* with a data dir */
    ck_assert_msg(h, "chanqd did not start");
    int fd = dial(h);
    char *id = submit_with(fd, "\"queue\":\"d\",\"max_attempts\":2");
    char *other = submit_with(fd, "\"queue\":\"d\",\"max_attempts\":2");
    expect_fetch(fd, "d", id, 1);
    json_decref(req_ok(fd, "{\"op\":\"release\",\"id\":\"%s\"}", id));
    /* kill -9 right after the answer: the release is on disk. */
    fd = restart(h, fd, true);
    expect_job(fd, id, "queued", 0, NULL);
    expect_fetch(fd, "d", other, 1); /* the released job is still behind it */
    expect_fetch(fd, "d", id, 1);
    json_decref(req_ok(fd, "{\"op\":\"release\",\"id\":\"%s\"}", id));
    /* A clean stop too. */
    fd = restart(h, fd, false);
    expect_job(fd, id, "queued", 0, NULL);
    expect_fetch(fd, "d", id, 1);
    json_decref(req_ok(fd, "{\"op\":\"ack\",\"id\":\"%s\"}", id));
    harness_close(fd);
    ck_assert_int_eq(harness_stop(h), 0);
    free(other);
    free(id);
}
END_TEST

Suite *
release_suite(void)
{
    Suite *s = suite_create("daemon_release");
    TCase *tc = tcase_create("release");
    tcase_add_checked_fixture(tc, fixture_setup, fixture_teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, release_requeues_the_job_with_its_attempt_uncounted);
    tcase_add_test(tc, release_puts_the_job_at_the_back_of_its_queue);
    tcase_add_test(tc, release_after_a_nack_keeps_the_nack_s_attempt_and_error);
    tcase_add_test(tc, release_of_a_job_not_held_fails_like_ack_and_nack);
    suite_add_tcase(s, tc);

    tc = tcase_create("durable");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, a_release_is_journaled_so_a_restart_does_not_count_the_delivery);
    suite_add_tcase(s, tc);
    return s;
}
