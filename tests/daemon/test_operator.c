/* The operator ops (list, retry, delete, purge, queue_delete, configure,
 * clients) over real TCP: answers, paging under concurrent submits, the
 * events and wake-ups they cause, hostile input, and kill -9 + restart
 * restoring exactly what was answered. */
#include "chanq_config.h"

#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/daemon/suites.h"
#include "tests/daemon/util.h"

/* ---- helpers ---- */

static const char *
str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    ck_assert_msg(s != NULL, "field %s is not a string", key);
    return s;
}

static long long
num(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    ck_assert_msg(json_is_integer(v), "field %s is not an integer", key);
    return json_integer_value(v);
}

/* Every job of queue in state, page by page (limit per page), as one
 * array of job objects (new reference). between(arg) runs between pages. */
static json_t *
list_all(int fd, const char *queue, const char *state, const char *order, int limit,
         void (*between)(void *), void *arg)
{
    json_t *all = json_array();
    char cursor[64] = "";
    for (int pages = 0; pages < 100000; pages++) {
        char cur[96] = "";
        if (*cursor)
            snprintf(cur, sizeof cur, ",\"cursor\":\"%s\"", cursor);
        json_t *r = req_ok(fd, "{\"op\":\"list\",\"queue\":\"%s\",\"state\":\"%s\",\"order\":\"%s\","
                               "\"limit\":%d%s}",
                           queue, state, order, limit, cur);
        json_t *jobs = json_object_get(r, "jobs");
        ck_assert_msg(json_array_size(jobs) <= (size_t)limit, "page over its limit");
        json_array_extend(all, jobs);
        json_t *next = json_object_get(r, "next");
        if (next)
            snprintf(cursor, sizeof cursor, "%s", json_string_value(next));
        json_decref(r);
        if (!next)
            return all;
        if (between)
            between(arg);
    }
    ck_abort_msg("listing never ended");
    return all;
}

static unsigned long long
id_of(const json_t *job)
{
    return strtoull(json_string_value(json_object_get(job, "id")), NULL, 10);
}

static json_t *
list_page1(int fd, const char *queue, const char *state, const char *extra)
{
    return req_ok(fd, "{\"op\":\"list\",\"queue\":\"%s\",\"state\":\"%s\"%s}", queue, state,
                  extra ? extra : "");
}

/* The one job a listing of queue/state holds (new reference to the answer
 * in *answer; the job borrowed from it). */
static json_t *
only_job(int fd, const char *queue, const char *state, const char *extra, json_t **answer)
{
    *answer = list_page1(fd, queue, state, extra);
    json_t *jobs = json_object_get(*answer, "jobs");
    ck_assert_int_eq(json_array_size(jobs), 1);
    return json_array_get(jobs, 0);
}

static char *
digest(int fd)
{
    json_t *r = req_ok(fd, "{\"op\":\"stats\",\"digest\":true}");
    char *d = strdup(str(json_object_get(r, "server"), "state_digest"));
    json_decref(r);
    return d;
}

/* ---- list ---- */

START_TEST(list_pages_in_id_order_both_ways)
{
    char *ids[25];
    for (int i = 0; i < 25; i++)
        ids[i] = submit(fx.fd, "l", "{\"n\":1}");
    json_t *all = list_all(fx.fd, "l", "queued", "oldest", 10, NULL, NULL);
    ck_assert_int_eq(json_array_size(all), 25);
    for (int i = 0; i < 25; i++)
        ck_assert_str_eq(str(json_array_get(all, (size_t)i), "id"), ids[i]);
    json_decref(all);
    all = list_all(fx.fd, "l", "queued", "newest", 7, NULL, NULL);
    ck_assert_int_eq(json_array_size(all), 25);
    for (int i = 0; i < 25; i++)
        ck_assert_str_eq(str(json_array_get(all, (size_t)i), "id"), ids[24 - i]);
    json_decref(all);
    /* A page that ends the listing has no next; an empty state lists nothing. */
    json_t *r = list_page1(fx.fd, "l", "queued", ",\"limit\":1000");
    ck_assert_int_eq(json_array_size(json_object_get(r, "jobs")), 25);
    ck_assert_ptr_null(json_object_get(r, "next"));
    json_decref(r);
    r = list_page1(fx.fd, "l", "dead", NULL);
    ck_assert_int_eq(json_array_size(json_object_get(r, "jobs")), 0);
    json_decref(r);
    /* The default limit is 100. */
    for (int i = 0; i < 100; i++)
        free(submit(fx.fd, "l", "1"));
    r = list_page1(fx.fd, "l", "queued", NULL);
    ck_assert_int_eq(json_array_size(json_object_get(r, "jobs")), 100);
    ck_assert_ptr_nonnull(json_object_get(r, "next"));
    json_decref(r);
    for (int i = 0; i < 25; i++)
        free(ids[i]);
}
END_TEST

struct submitter {
    int fd;
    int n;
};

static void
submit_some(void *arg)
{
    struct submitter *s = arg;
    for (int i = 0; i < 5; i++, s->n++)
        free(submit(s->fd, "p", "{\"late\":true}"));
}

START_TEST(paging_is_stable_under_concurrent_submits)
{
    enum { N = 60 };
    unsigned long long first_max = 0;
    for (int i = 0; i < N; i++) {
        char *id = submit(fx.fd, "p", "{\"early\":true}");
        first_max = strtoull(id, NULL, 10);
        free(id);
    }
    struct submitter s = {dial(fx.h), 0};
    /* Oldest first: every job there was is listed once, in id order; the
     * ones submitted meanwhile come after them. */
    json_t *all = list_all(fx.fd, "p", "queued", "oldest", 7, submit_some, &s);
    ck_assert_int_ge(s.n, 5 * (N / 7));
    ck_assert_int_ge(json_array_size(all), N);
    for (size_t i = 1; i < json_array_size(all); i++)
        ck_assert_msg(id_of(json_array_get(all, i)) > id_of(json_array_get(all, i - 1)),
                      "ids not strictly ascending at %zu", i);
    ck_assert_msg(id_of(json_array_get(all, N - 1)) == first_max, "an early job was skipped");
    json_decref(all);
    /* Newest first: the new jobs are before the cursor and never shift the
     * pages: exactly the jobs there were when it started, descending. */
    int before = s.n;
    json_t *first = list_page1(fx.fd, "p", "queued", ",\"order\":\"newest\",\"limit\":1");
    unsigned long long top = id_of(json_array_get(json_object_get(first, "jobs"), 0));
    json_decref(first);
    all = list_all(fx.fd, "p", "queued", "newest", 9, submit_some, &s);
    ck_assert_int_gt(s.n, before);
    size_t n = json_array_size(all);
    ck_assert_int_eq(n, N + before);
    for (size_t i = 1; i < n; i++)
        ck_assert_msg(id_of(json_array_get(all, i)) < id_of(json_array_get(all, i - 1)),
                      "ids not strictly descending at %zu", i);
    ck_assert_msg(id_of(json_array_get(all, 0)) >= top, "the first page lost its top");
    json_decref(all);
    harness_close(s.fd);
}
END_TEST

START_TEST(list_shows_each_state_with_its_fields)
{
    json_decref(req_ok(fx.fd, "{\"op\":\"hello\",\"client\":\"billing-worker\"}"));
    json_decref(req_ok(fx.fd, "{\"op\":\"declare\",\"queue\":\"s\",\"max_attempts\":2}"));
    char *delayed = NULL;
    json_t *r = req_ok(fx.fd, "{\"op\":\"submit\",\"queue\":\"s\",\"payload\":{\"d\":1},"
                              "\"delay_ms\":3600000,\"priority\":7,\"key\":\"nightly-1\"}");
    delayed = strdup(str(r, "id"));
    json_decref(r);
    char *dead = submit(fx.fd, "s", "{\"x\":\"dead\"}");
    char *got = fetch_one(fx.fd, "s", 1000);
    ck_assert_str_eq(got, dead);
    free(got);
    json_decref(req_ok(fx.fd, "{\"op\":\"nack\",\"id\":\"%s\",\"error\":\"smtp timeout\","
                              "\"delay_ms\":0}", dead));
    got = fetch_one(fx.fd, "s", 1000);
    free(got);
    json_decref(req_ok(fx.fd, "{\"op\":\"nack\",\"id\":\"%s\"}", dead)); /* no text: keeps the last */
    char *held = submit(fx.fd, "s", "{\"x\":\"held\"}");
    free(fetch_one(fx.fd, "s", 1000));
    char *done = submit(fx.fd, "s", "{\"x\":\"done\"}");
    free(fetch_one(fx.fd, "s", 1000));
    json_decref(req_ok(fx.fd, "{\"op\":\"ack\",\"id\":\"%s\",\"result\":{\"sent\":true}}", done));
    long long now = harness_now_ms();
    (void)now;

    json_t *ans, *j = only_job(fx.fd, "s", "delayed", NULL, &ans);
    ck_assert_str_eq(str(j, "id"), delayed);
    ck_assert_str_eq(str(j, "state"), "delayed");
    long long due = num(j, "due"), created = num(j, "created");
    ck_assert_msg(due >= created + 3600000 - 1000 && due <= created + 3600000 + 60000,
                  "due %lld is not an hour after created %lld", due, created);
    ck_assert_ptr_null(json_object_get(j, "payload"));
    ck_assert_int_eq(json_array_size(json_object_get(j, "errors")), 0);
    ck_assert_int_eq(num(j, "priority"), 7);
    ck_assert_str_eq(str(j, "key"), "nightly-1");
    ck_assert(json_is_null(json_object_get(j, "traceparent")));
    json_decref(ans);

    j = only_job(fx.fd, "s", "dead", ",\"payload\":true", &ans);
    ck_assert_str_eq(str(j, "id"), dead);
    ck_assert_int_eq(num(j, "attempt"), 2);
    json_t *errs = json_object_get(j, "errors");
    ck_assert_int_eq(json_array_size(errs), 2);
    ck_assert_int_eq(num(json_array_get(errs, 0), "attempt"), 1);
    ck_assert_str_eq(str(json_array_get(errs, 0), "error"), "smtp timeout");
    ck_assert_int_eq(num(json_array_get(errs, 1), "attempt"), 2);
    ck_assert_str_eq(str(json_array_get(errs, 1), "error"), "smtp timeout");
    ck_assert_str_eq(str(json_object_get(j, "payload"), "x"), "dead");
    json_decref(ans);

    j = only_job(fx.fd, "s", "reserved", NULL, &ans);
    ck_assert_str_eq(str(j, "id"), held);
    json_t *holder = json_object_get(j, "holder");
    ck_assert_str_eq(str(holder, "client"), "billing-worker");
    ck_assert_msg(strncmp(str(holder, "addr"), "127.0.0.1:", 10) == 0, "holder addr %s",
                  str(holder, "addr"));
    long long conn = num(holder, "conn");
    long long exp = num(j, "ttr_expires");
    ck_assert_msg(exp > num(j, "created") && exp <= num(j, "created") + 30000 + 60000,
                  "ttr_expires %lld not within the ttr", exp);
    json_decref(ans);
    /* The same connection, as clients lists it. */
    r = req_ok(fx.fd, "{\"op\":\"clients\"}");
    json_t *c = json_array_get(json_object_get(r, "clients"), 0);
    ck_assert_int_eq(num(c, "conn"), conn);
    ck_assert_int_eq(num(c, "held"), 1);
    json_decref(r);

    j = only_job(fx.fd, "s", "finished", ",\"payload\":true", &ans);
    ck_assert_str_eq(str(j, "id"), done);
    ck_assert_str_eq(str(j, "state"), "done");
    ck_assert_msg(json_is_true(json_object_get(json_object_get(j, "result"), "sent")), "result");
    ck_assert_msg(json_is_null(json_object_get(j, "payload")), "a finished job has no payload");
    json_decref(ans);
    free(delayed);
    free(dead);
    free(held);
    free(done);
}
END_TEST

START_TEST(error_history_keeps_the_last_16_attempts)
{
    json_decref(req_ok(fx.fd, "{\"op\":\"declare\",\"queue\":\"h\",\"max_attempts\":40}"));
    char *id = submit(fx.fd, "h", "1");
    for (int i = 1; i <= 20; i++) {
        free(fetch_one(fx.fd, "h", 1000));
        json_decref(req_ok(fx.fd, "{\"op\":\"nack\",\"id\":\"%s\",\"error\":\"e%d\",\"delay_ms\":0}",
                           id, i));
    }
    free(fetch_one(fx.fd, "h", 1000));
    json_decref(req_ok(fx.fd, "{\"op\":\"release\",\"id\":\"%s\"}", id)); /* adds nothing */
    json_t *ans, *j = only_job(fx.fd, "h", "queued", NULL, &ans);
    json_t *errs = json_object_get(j, "errors");
    ck_assert_int_eq(json_array_size(errs), 16);
    for (int i = 0; i < 16; i++) {
        char want[8];
        snprintf(want, sizeof want, "e%d", i + 5);
        ck_assert_int_eq(num(json_array_get(errs, (size_t)i), "attempt"), i + 5);
        ck_assert_str_eq(str(json_array_get(errs, (size_t)i), "error"), want);
    }
    json_decref(ans);
    free(id);
}
END_TEST

/* ---- retry, delete, purge ---- */

START_TEST(retry_runs_dead_and_delayed_jobs_now)
{
    json_decref(req_ok(fx.fd, "{\"op\":\"declare\",\"queue\":\"r\",\"max_attempts\":1}"));
    char *dead = submit(fx.fd, "r", "1");
    free(fetch_one(fx.fd, "r", 1000));
    json_decref(req_ok(fx.fd, "{\"op\":\"nack\",\"id\":\"%s\"}", dead));
    ck_assert_int_eq(queue_stat(fx.fd, "r", "dead"), 1);
    json_t *r = req_ok(fx.fd, "{\"op\":\"retry\",\"id\":\"%s\"}", dead);
    ck_assert_str_eq(str(r, "state"), "queued");
    json_decref(r);
    ck_assert_int_eq(queue_stat(fx.fd, "r", "dead"), 0);
    r = req_ok(fx.fd, "{\"op\":\"job\",\"id\":\"%s\"}", dead);
    ck_assert_int_eq(num(json_object_get(r, "job"), "attempt"), 0); /* fresh attempts */
    json_decref(r);
    char *got = fetch_one(fx.fd, "r", 1000);
    ck_assert_str_eq(got, dead);
    free(got);
    /* Reserved now: not retried, nothing changed. */
    req_err(fx.fd, "conflict", "{\"op\":\"retry\",\"id\":\"%s\"}", dead);
    ck_assert_int_eq(queue_stat(fx.fd, "r", "reserved"), 1);

    r = req_ok(fx.fd, "{\"op\":\"submit\",\"queue\":\"r\",\"payload\":2,\"delay_ms\":3600000}");
    char *delayed = strdup(str(r, "id"));
    json_decref(r);
    ck_assert_ptr_null(fetch_one(fx.fd, "r", 0));
    json_decref(req_ok(fx.fd, "{\"op\":\"retry\",\"id\":\"%s\"}", delayed));
    got = fetch_one(fx.fd, "r", 1000);
    ck_assert_str_eq(got, delayed);
    free(got);
    req_err(fx.fd, "not_found", "{\"op\":\"retry\",\"id\":\"12345\"}");
    req_err(fx.fd, "bad_request", "{\"op\":\"retry\"}");
    free(dead);
    free(delayed);
}
END_TEST

START_TEST(delete_takes_jobs_of_any_state_and_reserved_only_by_force)
{
    int worker = dial(fx.h);
    char *queued = submit(fx.fd, "d", "1");
    char *held = submit(fx.fd, "d", "2");
    char *got = fetch_one(worker, "d", 1000);
    ck_assert_str_eq(got, queued);
    free(got);
    json_t *r = req_ok(fx.fd, "{\"op\":\"delete\",\"id\":\"%s\"}", held);
    ck_assert_str_eq(str(r, "state"), "queued");
    json_decref(r);
    req_err(fx.fd, "not_found", "{\"op\":\"job\",\"id\":\"%s\"}", held);
    req_err(fx.fd, "not_found", "{\"op\":\"delete\",\"id\":\"%s\"}", held);
    ck_assert_int_eq(queue_stat(fx.fd, "d", "depth"), 0);

    /* Reserved: conflict without force (nothing changes), gone with it;
     * the holder hears cancel and its ack finds nothing. */
    req_err(fx.fd, "conflict", "{\"op\":\"delete\",\"id\":\"%s\"}", queued);
    ck_assert_int_eq(queue_stat(fx.fd, "d", "reserved"), 1);
    r = req_ok(fx.fd, "{\"op\":\"delete\",\"id\":\"%s\",\"force\":true}", queued);
    ck_assert_str_eq(str(r, "state"), "reserved");
    json_decref(r);
    json_t *ev = next_event(worker, 5000);
    ck_assert_msg(ev != NULL, "the holder got no cancel event");
    ck_assert_str_eq(str(ev, "event"), "cancel");
    ck_assert_str_eq(str(ev, "id"), queued);
    json_decref(ev);
    req_err(worker, "not_found", "{\"op\":\"ack\",\"id\":\"%s\"}", queued);
    ck_assert_int_eq(queue_stat(fx.fd, "d", "reserved"), 0);

    /* A wait parked on a job that is deleted answers not_found. */
    char *waited = submit(fx.fd, "d", "3");
    char line[128];
    snprintf(line, sizeof line, "{\"op\":\"wait\",\"id\":\"%s\",\"timeout_ms\":20000}", waited);
    ck_assert_int_eq(send_line(worker, line), 0);
    usleep(200 * 1000);
    json_decref(req_ok(fx.fd, "{\"op\":\"delete\",\"id\":\"%s\"}", waited));
    json_t *w = recv_json(worker);
    ck_assert_msg(w && strcmp(error_code(w), "not_found") == 0, "the wait was not ended");
    json_decref(w);

    /* Finished and dead jobs too. */
    char *fin = submit(fx.fd, "d", "4");
    free(fetch_one(fx.fd, "d", 1000));
    json_decref(req_ok(fx.fd, "{\"op\":\"ack\",\"id\":\"%s\"}", fin));
    r = req_ok(fx.fd, "{\"op\":\"delete\",\"id\":\"%s\"}", fin);
    ck_assert_str_eq(str(r, "state"), "done");
    json_decref(r);
    req_err(fx.fd, "not_found", "{\"op\":\"wait\",\"id\":\"%s\",\"timeout_ms\":0}", fin);
    harness_close(worker);
    free(queued);
    free(held);
    free(waited);
    free(fin);
}
END_TEST

START_TEST(purge_deletes_a_state_and_answers_the_count)
{
    json_decref(req_ok(fx.fd, "{\"op\":\"declare\",\"queue\":\"g\",\"max_attempts\":1}"));
    for (int i = 0; i < 30; i++)
        free(submit(fx.fd, "g", "1"));
    for (int i = 0; i < 12; i++) {
        char *id = fetch_one(fx.fd, "g", 1000);
        json_decref(req_ok(fx.fd, "{\"op\":\"nack\",\"id\":\"%s\",\"error\":\"x\"}", id));
        free(id);
    }
    ck_assert_int_eq(queue_stat(fx.fd, "g", "dead"), 12);
    json_t *r = req_ok(fx.fd, "{\"op\":\"purge\",\"queue\":\"g\",\"state\":\"dead\"}");
    ck_assert_int_eq(num(r, "purged"), 12);
    json_decref(r);
    ck_assert_int_eq(queue_stat(fx.fd, "g", "dead"), 0);
    ck_assert_int_eq(queue_stat(fx.fd, "g", "depth"), 18);
    r = req_ok(fx.fd, "{\"op\":\"purge\",\"queue\":\"g\",\"state\":\"dead\"}");
    ck_assert_int_eq(num(r, "purged"), 0);
    json_decref(r);
    r = req_ok(fx.fd, "{\"op\":\"purge\",\"queue\":\"g\",\"state\":\"queued\"}");
    ck_assert_int_eq(num(r, "purged"), 18);
    json_decref(r);
    ck_assert_int_eq(queue_stat(fx.fd, "g", "depth"), 0);
    ck_assert_ptr_null(fetch_one(fx.fd, "g", 0));
    /* The queue works on. */
    char *id = submit(fx.fd, "g", "2");
    char *got = fetch_one(fx.fd, "g", 1000);
    ck_assert_str_eq(got, id);
    free(got);
    free(id);
    req_err(fx.fd, "not_found", "{\"op\":\"purge\",\"queue\":\"nope\",\"state\":\"dead\"}");
}
END_TEST

/* ---- queue_delete, configure ---- */

START_TEST(queue_delete_tells_every_waiter_closed)
{
    json_decref(req_ok(fx.fd, "{\"op\":\"declare\",\"queue\":\"full\",\"capacity\":1}"));
    free(submit(fx.fd, "full", "1"));
    int sub = dial(fx.h), fet = dial(fx.h), con = dial(fx.h), hold = dial(fx.h);
    json_decref(req_ok(fx.fd, "{\"op\":\"declare\",\"queue\":\"empty\"}"));
    char *held = submit(fx.fd, "empty", "1");
    free(fetch_one(hold, "empty", 1000));
    ck_assert_int_eq(send_line(sub, "{\"op\":\"submit\",\"queue\":\"full\",\"payload\":2,"
                                    "\"wait_ms\":30000}"), 0);
    ck_assert_int_eq(send_line(fet, "{\"op\":\"fetch\",\"queue\":\"empty\",\"timeout_ms\":30000}"), 0);
    json_decref(req_ok(con, "{\"op\":\"consume\",\"queue\":\"empty\"}"));
    usleep(300 * 1000);
    ck_assert_int_eq(queue_stat(fx.fd, "full", "waiting_submitters"), 1);
    json_t *r = req_ok(fx.fd, "{\"op\":\"queue_delete\",\"queue\":\"full\"}");
    /* The queued job, and the one of the submit waiting for room. */
    ck_assert_int_eq(num(r, "deleted"), 2);
    json_decref(r);
    json_t *a = recv_json(sub);
    ck_assert_msg(a && strcmp(error_code(a), "closed") == 0, "parked submit not told closed");
    json_decref(a);
    r = req_ok(fx.fd, "{\"op\":\"queue_delete\",\"queue\":\"empty\"}");
    ck_assert_int_eq(num(r, "deleted"), 1);
    json_decref(r);
    a = recv_json(fet);
    ck_assert_msg(a && strcmp(error_code(a), "closed") == 0, "parked fetch not told closed");
    json_decref(a);
    json_t *ev = next_event(con, 5000);
    ck_assert_msg(ev && strcmp(str(ev, "event"), "consume_end") == 0, "consumer not ended");
    ck_assert_str_eq(str(ev, "reason"), "closed");
    json_decref(ev);
    ev = next_event(hold, 5000);
    ck_assert_msg(ev && strcmp(str(ev, "event"), "cancel") == 0, "holder not told cancel");
    json_decref(ev);
    req_err(hold, "not_found", "{\"op\":\"ack\",\"id\":\"%s\"}", held);
    /* Gone from the listing; the name is free for a new queue. */
    r = req_ok(fx.fd, "{\"op\":\"queues\"}");
    ck_assert_int_eq(json_object_size(json_object_get(r, "queues")), 0);
    json_decref(r);
    req_err(fx.fd, "not_found", "{\"op\":\"stats\",\"queue\":\"full\"}");
    req_err(fx.fd, "not_found", "{\"op\":\"queue_delete\",\"queue\":\"full\"}");
    free(submit(fx.fd, "full", "3"));
    ck_assert_int_eq(queue_stat(fx.fd, "full", "capacity"), 1000);
    ck_assert_int_eq(queue_stat(fx.fd, "full", "depth"), 1);
    ck_assert_int_eq(queue_stat(fx.fd, "full", "submitted"), 1);
    harness_close(sub);
    harness_close(fet);
    harness_close(con);
    harness_close(hold);
    free(held);
}
END_TEST

/* Polls a queue stat until it is want (10 s at most). */
static void
await_stat(int fd, const char *queue, const char *field, long long want)
{
    for (int i = 0; i < 100 && queue_stat(fd, queue, field) != want; i++)
        usleep(100 * 1000);
    ck_assert_int_eq(queue_stat(fd, queue, field), want);
}

/* The next answer on fd (events skipped) is the error code. */
static void
answers_error(int fd, const char *code, const char *what)
{
    json_t *a = recv_json(fd);
    while (a && json_object_get(a, "event")) {
        json_decref(a);
        a = recv_json(fd);
    }
    ck_assert_msg(a && strcmp(error_code(a), code) == 0, "%s: not told %s", what, code);
    json_decref(a);
}

/* One round of queue_delete_frees_under_parked_requests. */
static void
delete_under_parked_requests(void)
{
    json_decref(req_ok(fx.fd, "{\"op\":\"declare\",\"queue\":\"full\",\"capacity\":1}"));
    free(submit(fx.fd, "full", "1"));
    char *ids[2] = {submit(fx.fd, "d", "1"), submit(fx.fd, "d", "2")};
    /* A rate limited queue with a job but no token: its fetcher starves,
     * the rate timer armed for the next token (minutes away). */
    json_decref(req_ok(fx.fd, "{\"op\":\"declare\",\"queue\":\"r\",\"rate\":1,"
                              "\"rate_per_ms\":600000,\"burst\":1}"));
    char *first = submit(fx.fd, "r", "1");
    free(submit(fx.fd, "r", "2"));
    char *got = fetch_one(fx.fd, "r", 1000);
    ck_assert_str_eq(got, first);
    json_decref(req_ok(fx.fd, "{\"op\":\"ack\",\"id\":\"%s\"}", got));
    free(got);
    free(first);
    int w = dial(fx.h), sub = dial(fx.h), alone = dial(fx.h), two = dial(fx.h),
        con = dial(fx.h), starved = dial(fx.h);
    json_t *r = req_ok(w, "{\"op\":\"fetch\",\"queue\":\"d\",\"count\":2}");
    ck_assert_int_eq(json_array_size(json_object_get(r, "jobs")), 2);
    json_decref(r);
    ck_assert_int_eq(send_line(sub, "{\"op\":\"submit\",\"queue\":\"full\",\"payload\":2,"
                                    "\"wait_ms\":30000}"), 0);
    ck_assert_int_eq(send_line(alone, "{\"op\":\"fetch\",\"queue\":\"d\",\"timeout_ms\":30000}"),
                     0);
    ck_assert_int_eq(send_line(two, "{\"op\":\"fetch\",\"queues\":[\"d\",\"other\"],"
                                    "\"timeout_ms\":30000}"), 0);
    json_decref(req_ok(con, "{\"op\":\"consume\",\"queue\":\"d\"}"));
    ck_assert_int_eq(send_line(starved, "{\"op\":\"fetch\",\"queue\":\"r\",\"timeout_ms\":30000}"),
                     0);
    await_stat(fx.fd, "full", "waiting_submitters", 1);
    await_stat(fx.fd, "d", "waiting_fetchers", 3);
    await_stat(fx.fd, "r", "waiting_fetchers", 1);

    /* The reserved jobs go; their holder hears it, parked requests on d
     * alone end `closed`, the fetch that lists another queue goes on. */
    r = req_ok(fx.fd, "{\"op\":\"queue_delete\",\"queue\":\"d\"}");
    ck_assert_int_eq(num(r, "deleted"), 2);
    json_decref(r);
    for (int i = 0; i < 2; i++) {
        json_t *ev = next_event(w, 5000);
        ck_assert_msg(ev && strcmp(str(ev, "event"), "cancel") == 0, "holder not told cancel");
        json_decref(ev);
    }
    answers_error(alone, "closed", "fetch parked on the deleted queue alone");
    json_t *ev = next_event(con, 5000);
    ck_assert_msg(ev && strcmp(str(ev, "event"), "consume_end") == 0, "consumer not ended");
    ck_assert_str_eq(str(ev, "reason"), "closed");
    json_decref(ev);
    ck_assert_msg(no_data_within(two, 300), "a fetch with another queue stopped waiting");
    char *other = submit(fx.fd, "other", "3");
    r = recv_json(two);
    ck_assert_msg(is_ok(r), "the fetch on d and other did not get other's job");
    json_t *job = json_array_get(json_object_get(r, "jobs"), 0);
    ck_assert_str_eq(str(job, "id"), other);
    ck_assert_str_eq(str(job, "queue"), "other");
    json_decref(r);
    json_decref(req_ok(two, "{\"op\":\"ack\",\"id\":\"%s\"}", other));
    free(other);
    /* The worker acks one deleted job and fails the other: both are gone. */
    req_err(w, "not_found", "{\"op\":\"ack\",\"id\":\"%s\"}", ids[0]);
    req_err(w, "not_found", "{\"op\":\"nack\",\"id\":\"%s\",\"error\":\"x\"}", ids[1]);
    req_err(w, "not_found", "{\"op\":\"job\",\"id\":\"%s\"}", ids[1]);

    r = req_ok(fx.fd, "{\"op\":\"queue_delete\",\"queue\":\"full\"}");
    ck_assert_int_eq(num(r, "deleted"), 2); /* its job and the waiting submit's */
    json_decref(r);
    answers_error(sub, "closed", "submit parked for room");
    r = req_ok(fx.fd, "{\"op\":\"queue_delete\",\"queue\":\"r\"}");
    ck_assert_int_eq(num(r, "deleted"), 2); /* the queued job and the acked one's result */
    json_decref(r);
    answers_error(starved, "closed", "fetch starved by the rate limit");

    /* Healthy: only `other` is listed, and the names work anew. */
    r = req_ok(fx.fd, "{\"op\":\"queues\"}");
    ck_assert_int_eq(json_object_size(json_object_get(r, "queues")), 1);
    ck_assert_ptr_nonnull(json_object_get(json_object_get(r, "queues"), "other"));
    json_decref(r);
    char *again = submit(sub, "d", "4");
    char *back = fetch_one(alone, "d", 1000);
    ck_assert_str_eq(back, again);
    json_decref(req_ok(alone, "{\"op\":\"ack\",\"id\":\"%s\"}", back));
    ck_assert_int_eq(queue_stat(fx.fd, "d", "acked"), 1);
    json_decref(req_ok(fx.fd, "{\"op\":\"queue_delete\",\"queue\":\"d\"}"));
    free(again);
    free(back);
    free(ids[0]);
    free(ids[1]);
    int fds[] = {w, sub, alone, two, con, starved};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        harness_close(fds[i]);
}

/* queue_delete while requests are parked on the queue: each gets the
 * answer the protocol documents, and the daemon goes on serving, round
 * after round (the deleted queues are freed as their holders let go: the
 * sanitizer builds see any use after that, and the teardown any leak). */
START_TEST(queue_delete_frees_under_parked_requests)
{
    for (int round = 0; round < 3; round++)
        delete_under_parked_requests();
    json_decref(req_ok(fx.fd, "{\"op\":\"ping\"}"));
}
END_TEST

/* configure changes what it names and keeps the rest, the delivery
 * limits too (its QUEUE record once left them out, which removed them). */
START_TEST(configure_keeps_the_delivery_limits)
{
    json_decref(req_ok(fx.fd, "{\"op\":\"declare\",\"queue\":\"lim\",\"concurrency\":3,"
                              "\"rate\":50}"));
    json_decref(req_ok(fx.fd, "{\"op\":\"configure\",\"queue\":\"lim\",\"capacity\":7}"));
    ck_assert_int_eq(queue_stat(fx.fd, "lim", "capacity"), 7);
    ck_assert_int_eq(queue_stat(fx.fd, "lim", "concurrency"), 3);
    ck_assert_int_eq(queue_stat(fx.fd, "lim", "rate"), 50);
}
END_TEST

START_TEST(configure_changes_capacity_live)
{
    json_decref(req_ok(fx.fd, "{\"op\":\"declare\",\"queue\":\"c\",\"capacity\":1}"));
    free(submit(fx.fd, "c", "1"));
    int subs[3];
    for (int i = 0; i < 3; i++) {
        subs[i] = dial(fx.h);
        ck_assert_int_eq(send_line(subs[i], "{\"op\":\"submit\",\"queue\":\"c\",\"payload\":2,"
                                            "\"wait_ms\":60000}"), 0);
    }
    for (int i = 0; i < 50 && queue_stat(fx.fd, "c", "waiting_submitters") < 3; i++)
        usleep(100 * 1000);
    ck_assert_int_eq(queue_stat(fx.fd, "c", "waiting_submitters"), 3);
    int64_t t0 = harness_now_ms();
    json_t *r = req_ok(fx.fd, "{\"op\":\"configure\",\"queue\":\"c\",\"capacity\":10}");
    ck_assert_int_eq(num(json_object_get(r, "queue"), "capacity"), 10);
    json_decref(r);
    for (int i = 0; i < 3; i++) {
        json_t *a = recv_json(subs[i]);
        ck_assert_msg(is_ok(a), "a waiting submitter was not let in");
        json_decref(a);
        harness_close(subs[i]);
    }
    ck_assert_msg(harness_now_ms() - t0 < 10000, "the submitters waited for their timeout");
    ck_assert_int_eq(queue_stat(fx.fd, "c", "depth"), 4);
    /* Shrinking below the depth keeps every job and blocks new submits. */
    json_decref(req_ok(fx.fd, "{\"op\":\"configure\",\"queue\":\"c\",\"capacity\":2,\"ttr_ms\":5000}"));
    ck_assert_int_eq(queue_stat(fx.fd, "c", "depth"), 4);
    req_err(fx.fd, "queue_full", "{\"op\":\"submit\",\"queue\":\"c\",\"payload\":3,\"wait_ms\":0}");
    for (int i = 0; i < 3; i++) {
        char *id = fetch_one(fx.fd, "c", 1000);
        ck_assert_ptr_nonnull(id);
        json_decref(req_ok(fx.fd, "{\"op\":\"ack\",\"id\":\"%s\"}", id));
        free(id);
    }
    char *id = submit(fx.fd, "c", "4"); /* depth 1 < 2 */
    req_err(fx.fd, "queue_full", "{\"op\":\"submit\",\"queue\":\"c\",\"payload\":5,\"wait_ms\":0}");
    r = req_ok(fx.fd, "{\"op\":\"job\",\"id\":\"%s\"}", id);
    ck_assert_int_eq(num(json_object_get(r, "job"), "ttr_ms"), 5000); /* the new default */
    json_decref(r);
    ck_assert_int_eq(queue_stat(fx.fd, "c", "ttr_ms"), 5000);
    ck_assert_int_eq(queue_stat(fx.fd, "c", "max_attempts"), 3); /* left as it was */
    free(id);
    req_err(fx.fd, "not_found", "{\"op\":\"configure\",\"queue\":\"nope\",\"capacity\":1}");
    req_err(fx.fd, "bad_request", "{\"op\":\"configure\",\"queue\":\"c\"}");
    req_err(fx.fd, "bad_request", "{\"op\":\"configure\",\"queue\":\"c\",\"capacity\":-1}");
}
END_TEST

START_TEST(clients_lists_every_connection)
{
    int other = dial(fx.h);
    json_decref(req_ok(other, "{\"op\":\"hello\",\"client\":\"w\\u00e9rker\"}"));
    free(submit(other, "k", "1"));
    free(fetch_one(other, "k", 1000));
    json_t *r = req_ok(fx.fd, "{\"op\":\"clients\"}");
    json_t *cs = json_object_get(r, "clients");
    ck_assert_int_eq(json_array_size(cs), 2);
    json_t *me = json_array_get(cs, 0), *o = json_array_get(cs, 1);
    ck_assert_msg(json_is_null(json_object_get(me, "client")), "no hello: client is null");
    ck_assert_str_eq(str(o, "client"), "w\xc3\xa9rker");
    ck_assert_int_lt(num(me, "conn"), num(o, "conn"));
    ck_assert_int_eq(num(o, "held"), 1);
    ck_assert_int_eq(num(o, "requests"), 3);
    ck_assert_int_eq(num(o, "waiting"), 0);
    ck_assert_int_eq(num(me, "waiting"), 1); /* this very request */
    ck_assert_msg(num(o, "since") > 1600000000000LL, "since is not a wall-clock time");
    json_decref(r);
    harness_close(other);
    for (int i = 0; i < 50; i++) {
        r = req_ok(fx.fd, "{\"op\":\"clients\"}");
        size_t n = json_array_size(json_object_get(r, "clients"));
        json_decref(r);
        if (n == 1)
            return;
        usleep(100 * 1000);
    }
    ck_abort_msg("a closed connection stayed listed");
}
END_TEST

/* ---- hostile input ---- */

START_TEST(hostile_input_gets_clear_errors_and_changes_nothing)
{
    json_decref(req_ok(fx.fd, "{\"op\":\"declare\",\"queue\":\"x\",\"max_attempts\":1}"));
    char *id = submit(fx.fd, "x", "1");
    free(submit(fx.fd, "x", "2"));
    char *before = digest(fx.fd);
    static const char *const bad[] = {
        "{\"op\":\"list\",\"queue\":\"x\"}",
        "{\"op\":\"list\",\"queue\":\"x\",\"state\":\"running\"}",
        "{\"op\":\"list\",\"queue\":\"x\",\"state\":\"QUEUED\"}",
        "{\"op\":\"list\",\"queue\":\"x\",\"state\":5}",
        "{\"op\":\"list\",\"queue\":\"x\",\"state\":\"queued\",\"limit\":1000000000000}",
        "{\"op\":\"list\",\"queue\":\"x\",\"state\":\"queued\",\"limit\":1001}",
        "{\"op\":\"list\",\"queue\":\"x\",\"state\":\"queued\",\"limit\":0}",
        "{\"op\":\"list\",\"queue\":\"x\",\"state\":\"queued\",\"limit\":-5}",
        "{\"op\":\"list\",\"queue\":\"x\",\"state\":\"queued\",\"limit\":\"10\"}",
        "{\"op\":\"list\",\"queue\":\"x\",\"state\":\"queued\",\"order\":\"random\"}",
        "{\"op\":\"list\",\"queue\":\"x\",\"state\":\"queued\",\"cursor\":\"-1\"}",
        "{\"op\":\"list\",\"queue\":\"x\",\"state\":\"queued\",\"cursor\":\"99999999999999999999999\"}",
        "{\"op\":\"list\",\"queue\":\"x\",\"state\":\"queued\",\"cursor\":7}",
        "{\"op\":\"list\",\"queue\":\"x\",\"state\":\"queued\",\"payload\":\"yes\"}",
        "{\"op\":\"list\",\"queue\":\"bad name\",\"state\":\"queued\"}",
        "{\"op\":\"purge\",\"queue\":\"x\",\"state\":\"reserved\"}",
        "{\"op\":\"purge\",\"queue\":\"x\",\"state\":\"everything\"}",
        "{\"op\":\"purge\",\"queue\":\"x\"}",
        "{\"op\":\"delete\",\"id\":\"1\",\"force\":\"yes\"}",
        "{\"op\":\"delete\"}",
        "{\"op\":\"queue_delete\"}",
        "{\"op\":\"configure\",\"queue\":\"x\",\"capacity\":1000000001}",
        "{\"op\":\"configure\",\"queue\":\"x\",\"max_attempts\":0}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *r = request(fx.fd, bad[i]);
        ck_assert_msg(r && strcmp(error_code(r), "bad_request") == 0, "%s: want bad_request", bad[i]);
        const char *msg = json_string_value(json_object_get(json_object_get(r, "error"), "message"));
        ck_assert_msg(msg && strstr(msg, "'") != NULL, "%s: the message names no field: %s", bad[i],
                      msg ? msg : "(none)");
        json_decref(r);
    }
    static const char *const unknown[] = {
        "{\"op\":\"retry\",\"id\":\"1\"}",
        "{\"op\":\"delete\",\"id\":\"1\",\"force\":true}",
        "{\"op\":\"delete\",\"id\":\"not-a-number\"}",
        "{\"op\":\"list\",\"queue\":\"nope\",\"state\":\"queued\"}",
        "{\"op\":\"purge\",\"queue\":\"nope\",\"state\":\"queued\"}",
        "{\"op\":\"queue_delete\",\"queue\":\"nope\"}",
        "{\"op\":\"configure\",\"queue\":\"nope\",\"ttr_ms\":5}",
    };
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        json_t *r = request(fx.fd, unknown[i]);
        ck_assert_msg(r && strcmp(error_code(r), "not_found") == 0, "%s: want not_found", unknown[i]);
        json_decref(r);
    }
    req_err(fx.fd, "conflict", "{\"op\":\"retry\",\"id\":\"%s\"}", id);
    char *after = digest(fx.fd);
    ck_assert_str_eq(before, after);
    /* A cursor past every id, or before the first, lists nothing. */
    json_t *r = list_page1(fx.fd, "x", "queued", ",\"cursor\":\"18446744073709551615\"");
    ck_assert_int_eq(json_array_size(json_object_get(r, "jobs")), 0);
    json_decref(r);
    r = list_page1(fx.fd, "x", "queued", ",\"cursor\":\"0\",\"order\":\"newest\"");
    ck_assert_int_eq(json_array_size(json_object_get(r, "jobs")), 0);
    json_decref(r);
    free(before);
    free(after);
    free(id);
}
END_TEST

/* ---- kill -9 and restart ---- */

/* Everything the operator sees of the queues, in one comparable text:
 * the digest plus each listed state's jobs (errors included). */
static char *
operator_view(int fd, const char *const *queues, size_t nq)
{
    static const char *const states[] = {"queued", "delayed", "dead", "finished"};
    json_t *v = json_object();
    char *d = digest(fd);
    json_object_set_new(v, "digest", json_string(d));
    free(d);
    for (size_t q = 0; q < nq; q++) {
        for (size_t s = 0; s < 4; s++) {
            json_t *all = list_all(fd, queues[q], states[s], "oldest", 50, NULL, NULL);
            char key[160];
            snprintf(key, sizeof key, "%s/%s", queues[q], states[s]);
            json_object_set_new(v, key, all);
        }
        json_t *r = req_ok(fd, "{\"op\":\"stats\",\"queue\":\"%s\"}", queues[q]);
        json_t *st = json_object_get(r, "queue");
        json_t *keep = json_pack("{s:O, s:O, s:O, s:O, s:O}", "capacity",
                                 json_object_get(st, "capacity"), "ttr_ms",
                                 json_object_get(st, "ttr_ms"), "max_attempts",
                                 json_object_get(st, "max_attempts"), "depth",
                                 json_object_get(st, "depth"), "dead", json_object_get(st, "dead"));
        char key[160];
        snprintf(key, sizeof key, "%s/settings", queues[q]);
        json_object_set_new(v, key, keep);
        json_decref(r);
    }
    char *text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(v);
    return text;
}

static void
crash_and_compare(const char *const *args, bool compact_first)
{
    struct harness *h = harness_start(args);
    ck_assert_msg(h != NULL, "chanqd did not start");
    int fd = dial(h);
    json_decref(req_ok(fd, "{\"op\":\"declare\",\"queue\":\"d\",\"max_attempts\":2}"));
    char big[2100];
    memset(big, 'p', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    char *ids[40];
    for (int i = 0; i < 40; i++) {
        char payload[2200];
        snprintf(payload, sizeof payload, "{\"i\":%d,\"pad\":\"%s\"}", i, big);
        ids[i] = submit(fd, "a", payload);
    }
    for (int i = 0; i < 13; i++) { /* dead jobs, with two errors each */
        free(submit(fd, "d", "{\"dead\":true}"));
        for (int k = 0; k < 2; k++) {
            char *id = fetch_one(fd, "d", 1000);
            json_decref(req_ok(fd, "{\"op\":\"nack\",\"id\":\"%s\",\"error\":\"fail %d.%d\","
                                   "\"delay_ms\":0}", id, i, k));
            free(id);
        }
        if (i == 9) { /* ten purged, three kept */
            json_t *r = req_ok(fd, "{\"op\":\"purge\",\"queue\":\"d\",\"state\":\"dead\"}");
            ck_assert_int_eq(num(r, "purged"), 10);
            json_decref(r);
        }
    }
    free(submit(fd, "b", "{\"doomed\":true}"));
    free(submit(fd, "c2", "{\"kept\":true}"));
    json_decref(req_ok(fd, "{\"op\":\"delete\",\"id\":\"%s\"}", ids[39]));
    json_decref(req_ok(fd, "{\"op\":\"queue_delete\",\"queue\":\"b\"}"));
    json_decref(req_ok(fd, "{\"op\":\"configure\",\"queue\":\"c2\",\"capacity\":7,\"max_attempts\":9}"));
    /* Some history that stays: one job failed once and is queued again. */
    char *id = fetch_one(fd, "a", 1000);
    json_decref(req_ok(fd, "{\"op\":\"nack\",\"id\":\"%s\",\"error\":\"kept error\",\"delay_ms\":0}", id));
    free(id);
    /* Nothing reserved at the kill: the state is what was answered. */
    ck_assert_int_eq(queue_stat(fd, "a", "reserved"), 0);
    ck_assert_int_eq(queue_stat(fd, "d", "dead"), 3);
    static const char *const queues[] = {"a", "c2", "d"};
    char *before = operator_view(fd, queues, 3);
    harness_close(fd);
    if (compact_first) {
        /* Rolls segments until a compaction writes a snapshot. */
        fd = dial(h);
        for (int i = 0; i < 200; i++) {
            char payload[2200];
            snprintf(payload, sizeof payload, "{\"filler\":\"%s\"}", big);
            char *fid = submit(fd, "filler", payload);
            free(fid);
        }
        json_decref(req_ok(fd, "{\"op\":\"queue_delete\",\"queue\":\"filler\"}"));
        for (int i = 0; i < 100 && journal_stat(fd, NULL, "compactions") < 1; i++)
            usleep(100 * 1000);
        ck_assert_int_ge(journal_stat(fd, NULL, "compactions"), 1);
        harness_close(fd);
    }
    harness_kill9(h);
    ck_assert_msg(harness_restart(h) == 0, "chanqd did not restart after kill -9");
    fd = dial(h);
    char *after = operator_view(fd, queues, 3);
    size_t at = 0;
    while (before[at] && before[at] == after[at])
        at++;
    size_t from = at > 100 ? at - 100 : 0;
    ck_assert_msg(strcmp(before, after) == 0,
                  "the restart changed the state at byte %zu:\nbefore ...%.300s\nafter  ...%.300s", at,
                  before + from, after + from);
    req_err(fd, "not_found", "{\"op\":\"stats\",\"queue\":\"b\"}");
    req_err(fd, "not_found", "{\"op\":\"job\",\"id\":\"%s\"}", ids[39]);
    harness_close(fd);
    ck_assert_int_eq(harness_stop(h), 0);
    free(before);
    free(after);
    for (int i = 0; i < 40; i++)
        free(ids[i]);
}

START_TEST(operator_changes_survive_kill_9)
{
    crash_and_compare(NULL, false);
}
END_TEST

START_TEST(operator_changes_survive_a_snapshot_and_kill_9)
{
    static const char *const args[] = {"--journal-segment", "64K", "--journal-compact", "64K", NULL};
    crash_and_compare(args, true);
}
END_TEST

Suite *
operator_suite(void)
{
    Suite *s = suite_create("operator");
    TCase *tc = tcase_create("ops");
    tcase_add_checked_fixture(tc, fixture_setup, fixture_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, list_pages_in_id_order_both_ways);
    tcase_add_test(tc, paging_is_stable_under_concurrent_submits);
    tcase_add_test(tc, list_shows_each_state_with_its_fields);
    tcase_add_test(tc, error_history_keeps_the_last_16_attempts);
    tcase_add_test(tc, retry_runs_dead_and_delayed_jobs_now);
    tcase_add_test(tc, delete_takes_jobs_of_any_state_and_reserved_only_by_force);
    tcase_add_test(tc, purge_deletes_a_state_and_answers_the_count);
    tcase_add_test(tc, queue_delete_tells_every_waiter_closed);
    tcase_add_test(tc, queue_delete_frees_under_parked_requests);
    tcase_add_test(tc, configure_changes_capacity_live);
    tcase_add_test(tc, configure_keeps_the_delivery_limits);
    tcase_add_test(tc, clients_lists_every_connection);
    tcase_add_test(tc, hostile_input_gets_clear_errors_and_changes_nothing);
    suite_add_tcase(s, tc);
    TCase *crash = tcase_create("crash");
    tcase_set_timeout(crash, 120);
    tcase_add_test(crash, operator_changes_survive_kill_9);
    tcase_add_test(crash, operator_changes_survive_a_snapshot_and_kill_9);
    suite_add_tcase(s, crash);
    return s;
}
