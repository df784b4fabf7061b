/* Every op of the protocol over real TCP: success and error paths. */
#include "chanq_config.h"

#include <check.h>
#include <string.h>
#include <unistd.h>

#include "tests/daemon/suites.h"
#include "tests/daemon/util.h"

START_TEST(submit_fetch_ack_cycle_delivers_the_payload)
{
    char *id = submit(fx.fd, "mail", "{\"to\":\"a@b\",\"n\":[1,2]}");
    json_t *r = req_ok(fx.fd, "{\"op\":\"fetch\",\"queues\":[\"mail\"],\"timeout_ms\":1000}");
    json_t *job = json_array_get(json_object_get(r, "jobs"), 0);
    ck_assert_msg(job, "no job fetched");
    ck_assert_str_eq(json_string_value(json_object_get(job, "id")), id);
    ck_assert_str_eq(json_string_value(json_object_get(job, "queue")), "mail");
    ck_assert_int_eq(json_integer_value(json_object_get(job, "attempt")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(job, "ttr_ms")), 30000);
    json_t *want = json_loads("{\"to\":\"a@b\",\"n\":[1,2]}", 0, NULL);
    ck_assert_msg(json_equal(json_object_get(job, "payload"), want), "payload changed on the way");
    json_decref(want);
    json_decref(r);
    json_decref(req_ok(fx.fd, "{\"op\":\"ack\",\"id\":\"%s\",\"result\":{\"sent\":true}}", id));
    r = req_ok(fx.fd, "{\"op\":\"job\",\"id\":\"%s\"}", id);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r, "job"), "state")),
                     "done");
    json_decref(r);
    r = req_ok(fx.fd, "{\"op\":\"wait\",\"id\":\"%s\",\"timeout_ms\":100}", id);
    ck_assert_str_eq(json_string_value(json_object_get(r, "state")), "done");
    ck_assert_msg(json_is_true(json_object_get(json_object_get(r, "result"), "sent")),
                  "wait did not return the ack's result");
    json_decref(r);
    free(id);
}
END_TEST

START_TEST(second_ack_is_not_reserved_and_unknown_ids_are_not_found)
{
    char *id = submit(fx.fd, "q", "1");
    free(fetch_one(fx.fd, "q", 1000));
    json_decref(req_ok(fx.fd, "{\"op\":\"ack\",\"id\":\"%s\"}", id));
    req_err(fx.fd, "not_reserved", "{\"op\":\"ack\",\"id\":\"%s\"}", id);
    req_err(fx.fd, "not_found", "{\"op\":\"ack\",\"id\":\"999\"}");
    req_err(fx.fd, "not_found", "{\"op\":\"nack\",\"id\":\"nope\"}");
    req_err(fx.fd, "not_found", "{\"op\":\"touch\",\"id\":\"1\"}");
    req_err(fx.fd, "not_found", "{\"op\":\"cancel\",\"id\":\"1\"}");
    req_err(fx.fd, "not_found", "{\"op\":\"wait\",\"id\":\"1\"}");
    req_err(fx.fd, "not_found", "{\"op\":\"job\",\"id\":\"1\"}");
    free(id);
}
END_TEST

START_TEST(ack_from_another_connection_is_not_reserved)
{
    char *id = submit(fx.fd, "q", "1");
    free(fetch_one(fx.fd, "q", 1000));
    int other = dial(fx.h);
    req_err(other, "not_reserved", "{\"op\":\"ack\",\"id\":\"%s\"}", id);
    harness_close(other);
    json_decref(req_ok(fx.fd, "{\"op\":\"ack\",\"id\":\"%s\"}", id));
    free(id);
}
END_TEST

START_TEST(nack_retries_then_buries_after_max_attempts)
{
    json_t *r = req_ok(fx.fd, "{\"op\":\"submit\",\"queue\":\"r\",\"payload\":1,\"max_attempts\":2}");
    char *id = strdup(json_string_value(json_object_get(r, "id")));
    json_decref(r);
    free(fetch_one(fx.fd, "r", 1000));
    r = req_ok(fx.fd, "{\"op\":\"nack\",\"id\":\"%s\",\"error\":\"boom\",\"delay_ms\":0}", id);
    ck_assert_str_eq(json_string_value(json_object_get(r, "state")), "queued");
    json_decref(r);
    r = req_ok(fx.fd, "{\"op\":\"fetch\",\"queues\":[\"r\"],\"timeout_ms\":1000}");
    json_t *job = json_array_get(json_object_get(r, "jobs"), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(job, "attempt")), 2);
    json_decref(r);
    r = req_ok(fx.fd, "{\"op\":\"nack\",\"id\":\"%s\",\"error\":\"boom again\",\"delay_ms\":0}", id);
    ck_assert_str_eq(json_string_value(json_object_get(r, "state")), "dead");
    json_decref(r);
    ck_assert_int_eq(queue_stat(fx.fd, "r", "dead"), 1);
    r = req_ok(fx.fd, "{\"op\":\"wait\",\"id\":\"%s\",\"timeout_ms\":100}", id);
    ck_assert_str_eq(json_string_value(json_object_get(r, "state")), "dead");
    ck_assert_str_eq(json_string_value(json_object_get(r, "error")), "boom again");
    json_decref(r);
    r = req_ok(fx.fd, "{\"op\":\"kick\",\"queue\":\"r\",\"count\":10}");
    ck_assert_int_eq(json_integer_value(json_object_get(r, "kicked")), 1);
    json_decref(r);
    char *again = fetch_one(fx.fd, "r", 1000);
    ck_assert_msg(again && strcmp(again, id) == 0, "kicked job was not delivered again");
    free(again);
    free(id);
}
END_TEST

START_TEST(nack_with_delay_and_dead_flag)
{
    char *id = submit(fx.fd, "d", "1");
    free(fetch_one(fx.fd, "d", 1000));
    json_t *r = req_ok(fx.fd, "{\"op\":\"nack\",\"id\":\"%s\",\"delay_ms\":300}", id);
    ck_assert_str_eq(json_string_value(json_object_get(r, "state")), "delayed");
    json_decref(r);
    ck_assert_int_eq(queue_stat(fx.fd, "d", "delayed"), 1);
    char *none = fetch_one(fx.fd, "d", 0);
    ck_assert_msg(none == NULL, "delayed job was delivered before its delay");
    char *later = fetch_one(fx.fd, "d", 3000);
    ck_assert_msg(later && strcmp(later, id) == 0, "delayed job did not come back");
    r = req_ok(fx.fd, "{\"op\":\"nack\",\"id\":\"%s\",\"dead\":true}", id);
    ck_assert_str_eq(json_string_value(json_object_get(r, "state")), "dead");
    json_decref(r);
    free(later);
    free(id);
}
END_TEST

START_TEST(submit_with_delay_is_held_back)
{
    json_decref(req_ok(fx.fd, "{\"op\":\"submit\",\"queue\":\"dl\",\"payload\":1,\"delay_ms\":300}"));
    ck_assert_int_eq(queue_stat(fx.fd, "dl", "delayed"), 1);
    ck_assert_int_eq(queue_stat(fx.fd, "dl", "depth"), 0);
    char *none = fetch_one(fx.fd, "dl", 0);
    ck_assert_msg(none == NULL, "a delayed job was fetched at once");
    char *id = fetch_one(fx.fd, "dl", 3000);
    ck_assert_msg(id != NULL, "the delayed job never became ready");
    free(id);
}
END_TEST

START_TEST(touch_extends_the_reservation)
{
    json_t *r = req_ok(fx.fd, "{\"op\":\"submit\",\"queue\":\"t\",\"payload\":1,\"ttr_ms\":400}");
    char *id = strdup(json_string_value(json_object_get(r, "id")));
    json_decref(r);
    free(fetch_one(fx.fd, "t", 1000));
    for (int i = 0; i < 4; i++) {
        usleep(200 * 1000);
        json_decref(req_ok(fx.fd, "{\"op\":\"touch\",\"id\":\"%s\",\"ttr_ms\":400}", id));
    }
    /* 800 ms after the fetch, past the original ttr: still ours. */
    json_decref(req_ok(fx.fd, "{\"op\":\"ack\",\"id\":\"%s\"}", id));
    free(id);
}
END_TEST

START_TEST(declare_is_idempotent_and_conflicts_on_change)
{
    json_t *r =
        req_ok(fx.fd, "{\"op\":\"declare\",\"queue\":\"mail\",\"capacity\":5,\"ttr_ms\":60000,"
                   "\"max_attempts\":5}");
    json_t *q = json_object_get(r, "queue");
    ck_assert_int_eq(json_integer_value(json_object_get(q, "capacity")), 5);
    ck_assert_int_eq(json_integer_value(json_object_get(q, "ttr_ms")), 60000);
    json_decref(r);
    json_decref(req_ok(fx.fd, "{\"op\":\"declare\",\"queue\":\"mail\",\"capacity\":5}"));
    req_err(fx.fd, "conflict", "{\"op\":\"declare\",\"queue\":\"mail\",\"capacity\":6}");
    /* New jobs take the queue's defaults. */
    char *id = submit(fx.fd, "mail", "1");
    r = req_ok(fx.fd, "{\"op\":\"fetch\",\"queues\":[\"mail\"],\"timeout_ms\":1000}");
    json_t *job = json_array_get(json_object_get(r, "jobs"), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(job, "ttr_ms")), 60000);
    json_decref(r);
    free(id);
}
END_TEST

START_TEST(admin_ops_on_unknown_queues_are_not_found)
{
    req_err(fx.fd, "not_found", "{\"op\":\"stats\",\"queue\":\"ghost\"}");
    req_err(fx.fd, "not_found", "{\"op\":\"close\",\"queue\":\"ghost\"}");
    req_err(fx.fd, "not_found", "{\"op\":\"pause\",\"queue\":\"ghost\"}");
    req_err(fx.fd, "not_found", "{\"op\":\"resume\",\"queue\":\"ghost\"}");
    req_err(fx.fd, "not_found", "{\"op\":\"kick\",\"queue\":\"ghost\"}");
}
END_TEST

START_TEST(pause_holds_deliveries_and_resume_wakes_a_waiting_fetch)
{
    char *id = submit(fx.fd, "p", "1");
    json_decref(req_ok(fx.fd, "{\"op\":\"pause\",\"queue\":\"p\"}"));
    ck_assert_int_eq(queue_stat(fx.fd, "p", "paused"), 1);
    char *none = fetch_one(fx.fd, "p", 200);
    ck_assert_msg(none == NULL, "a paused queue delivered a job");
    /* A fetch parked on the paused queue wakes when it resumes. */
    int other = dial(fx.h);
    send_line(other, "{\"op\":\"fetch\",\"queues\":[\"p\"],\"timeout_ms\":5000}");
    usleep(100 * 1000);
    json_decref(req_ok(fx.fd, "{\"op\":\"resume\",\"queue\":\"p\"}"));
    json_t *r = recv_json(other);
    json_t *job = json_array_get(json_object_get(r, "jobs"), 0);
    ck_assert_msg(job && strcmp(json_string_value(json_object_get(job, "id")), id) == 0,
                  "resume did not wake the parked fetch");
    json_decref(r);
    harness_close(other);
    free(id);
}
END_TEST

START_TEST(queues_and_stats_report_every_field)
{
    free(submit(fx.fd, "a", "1"));
    json_t *r = req_ok(fx.fd, "{\"op\":\"queues\"}");
    json_t *a = json_object_get(json_object_get(r, "queues"), "a");
    ck_assert_msg(a, "queue a not listed");
    static const char *const fields[] = {
        "capacity", "depth", "reserved", "delayed", "dead", "waiting_submitters",
        "waiting_fetchers", "paused", "closed", "submitted", "delivered", "acked", "nacked",
        "expired", "cancelled", "rejected_full", "blocked_ms", "oldest_age_ms"};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        ck_assert_msg(json_object_get(a, fields[i]), "queue stats miss %s", fields[i]);
    ck_assert_int_eq(json_integer_value(json_object_get(a, "depth")), 1);
    /* The job was submitted just now: its age is not the machine's uptime
     * (the monotonic clock's origin, which a submitted job's unset start
     * once gave). */
    json_int_t age = json_integer_value(json_object_get(a, "oldest_age_ms"));
    ck_assert_msg(age >= 0 && age < 60000, "oldest_age_ms %lld for a job submitted just now",
                  (long long)age);
    json_decref(r);
    r = req_ok(fx.fd, "{\"op\":\"stats\"}");
    json_t *s = json_object_get(r, "server");
    static const char *const sfields[] = {"uptime_s", "connections", "goroutines", "threads",
                                          "jobs", "journal", "rss_bytes"};
    for (size_t i = 0; i < sizeof sfields / sizeof sfields[0]; i++)
        ck_assert_msg(json_object_get(s, sfields[i]), "server stats miss %s", sfields[i]);
    ck_assert_int_eq(json_integer_value(json_object_get(s, "connections")), 1);
    ck_assert_msg(json_integer_value(json_object_get(s, "goroutines")) >= 1, "no goroutines");
    json_decref(r);
}
END_TEST

/* Every field docs/protocol.md lists for the job answer is there, null
 * when the job has no value for it; and wait's answer for done and dead
 * always carries result and error (null without one). */
static void
assert_fields(const json_t *o, const char *const *names, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(json_object_get(o, names[i]), "%s lacks \"%s\"", what, names[i]);
}

static void
assert_null(const json_t *o, const char *name)
{
    ck_assert_msg(json_is_null(json_object_get(o, name)), "\"%s\" is not null", name);
}

START_TEST(job_and_wait_answers_give_every_listed_field)
{
    static const char *const listed[] = {"id",       "queue",  "state",  "attempt",
                                         "max_attempts", "ttr_ms", "created", "deadline",
                                         "parent",   "error",  "result", "payload"};
    char *id = submit(fx.fd, "f", "{\"a\":1}");
    json_t *r = req_ok(fx.fd, "{\"op\":\"job\",\"id\":\"%s\"}", id);
    json_t *job = json_object_get(r, "job");
    assert_fields(job, listed, sizeof listed / sizeof listed[0], "a queued job");
    assert_null(job, "error");
    assert_null(job, "result");
    assert_null(job, "deadline");
    assert_null(job, "parent");
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(job, "payload"), "a")), 1);
    json_decref(r);
    free(fetch_one(fx.fd, "f", 1000));
    json_decref(req_ok(fx.fd, "{\"op\":\"ack\",\"id\":\"%s\"}", id));
    r = req_ok(fx.fd, "{\"op\":\"job\",\"id\":\"%s\"}", id);
    job = json_object_get(r, "job");
    assert_fields(job, listed, sizeof listed / sizeof listed[0], "a done job");
    assert_null(job, "payload"); /* a final job's payload is let go */
    json_decref(r);
    r = req_ok(fx.fd, "{\"op\":\"wait\",\"id\":\"%s\",\"timeout_ms\":0}", id);
    assert_null(r, "result");
    json_decref(r);
    free(id);

    /* Buried without an error text. */
    id = submit(fx.fd, "f", "2");
    free(fetch_one(fx.fd, "f", 1000));
    json_decref(req_ok(fx.fd, "{\"op\":\"nack\",\"id\":\"%s\",\"dead\":true}", id));
    r = req_ok(fx.fd, "{\"op\":\"wait\",\"id\":\"%s\",\"timeout_ms\":0}", id);
    ck_assert_str_eq(json_string_value(json_object_get(r, "state")), "dead");
    assert_null(r, "error");
    json_decref(r);
    r = req_ok(fx.fd, "{\"op\":\"job\",\"id\":\"%s\"}", id);
    assert_null(json_object_get(r, "job"), "error");
    json_decref(r);
    free(id);
}
END_TEST

START_TEST(hello_answers_server_and_protocol)
{
    json_t *r = req_ok(fx.fd, "{\"op\":\"hello\",\"client\":\"test\"}");
    ck_assert_str_eq(json_string_value(json_object_get(r, "server")), "chanqd");
    ck_assert_int_eq(json_integer_value(json_object_get(r, "protocol")), 1);
    json_decref(r);
}
END_TEST

START_TEST(token_is_required_when_configured)
{
    char path[400];
    snprintf(path, sizeof path, "%s/token", harness_dir(fx.h));
    FILE *f = fopen(path, "w");
    fputs("s3cret\n", f);
    fclose(f);
    const char *args[] = {"--token-file", path, NULL};
    struct harness *t = start_daemon(args);
    int c = dial(t);
    req_err(c, "unauthorized", "{\"op\":\"ping\"}");
    req_err(c, "unauthorized", "{\"op\":\"hello\",\"token\":\"wrong\"}");
    req_err(c, "unauthorized", "{\"op\":\"submit\",\"queue\":\"q\",\"payload\":1}");
    json_decref(req_ok(c, "{\"op\":\"hello\",\"token\":\"s3cret\"}"));
    json_decref(req_ok(c, "{\"op\":\"ping\"}"));
    harness_close(c);
    ck_assert_int_eq(harness_stop(t), 0);
}
END_TEST

/* Every non-empty line of the file is a token (rotation: old and new side
 * by side); blanks around a token and a CRLF ending are not part of it. */
static void
hello_with(struct harness *t, const char *token, bool want_ok)
{
    int c = dial(t);
    if (want_ok)
        json_decref(req_ok(c, "{\"op\":\"hello\",\"token\":\"%s\"}", token));
    else
        req_err(c, "unauthorized", "{\"op\":\"hello\",\"token\":\"%s\"}", token);
    harness_close(c);
}

START_TEST(every_line_of_the_token_file_is_a_token)
{
    char path[400];
    snprintf(path, sizeof path, "%s/tokens", harness_dir(fx.h));
    FILE *f = fopen(path, "w");
    fputs("old-token\r\n\n   \n  new-token  \r\n\tthird\n", f);
    fclose(f);
    const char *args[] = {"--token-file", path, NULL};
    struct harness *t = start_daemon(args);
    hello_with(t, "old-token", true);
    hello_with(t, "new-token", true);
    hello_with(t, "third", true);
    hello_with(t, "", false);
    hello_with(t, "new-token  ", false);
    hello_with(t, "old-token\\r", false);
    hello_with(t, "new", false);
    ck_assert_int_eq(harness_stop(t), 0);
}
END_TEST

START_TEST(payload_over_max_job_is_too_large)
{
    const char *args[] = {"--max-job", "1000", NULL};
    struct harness *t = start_daemon(args);
    int c = dial(t);
    char line[4000];
    int n = snprintf(line, sizeof line, "{\"op\":\"submit\",\"queue\":\"q\",\"payload\":\"");
    memset(line + n, 'x', 1500);
    strcpy(line + n + 1500, "\"}");
    json_t *r = request(c, line);
    ck_assert_str_eq(error_code(r), "too_large");
    json_decref(r);
    req_err(c, "not_found", "{\"op\":\"stats\",\"queue\":\"q\"}");
    harness_close(c);
    ck_assert_int_eq(harness_stop(t), 0);
}
END_TEST

START_TEST(queue_and_memory_limits_answer_limit_and_change_nothing)
{
    const char *args[] = {"--max-queues", "2", "--max-memory", "1M", NULL};
    struct harness *t = start_daemon(args);
    int c = dial(t);
    free(submit(c, "one", "1"));
    json_decref(req_ok(c, "{\"op\":\"declare\",\"queue\":\"two\"}"));
    req_err(c, "limit", "{\"op\":\"submit\",\"queue\":\"three\",\"payload\":1}");
    req_err(c, "limit", "{\"op\":\"fetch\",\"queues\":[\"three\"],\"timeout_ms\":0}");
    req_err(c, "not_found", "{\"op\":\"stats\",\"queue\":\"three\"}");
    /* 100 KiB payloads: the 11th passes the 1 MiB payload budget. */
    char *line = malloc(120 * 1024);
    int n = sprintf(line, "{\"op\":\"submit\",\"queue\":\"two\",\"payload\":\"");
    memset(line + n, 'x', 100 * 1024);
    strcpy(line + n + 100 * 1024, "\"}");
    int accepted = 0;
    json_t *r = NULL;
    for (int i = 0; i < 20; i++) {
        json_decref(r);
        r = request(c, line);
        if (!is_ok(r))
            break;
        accepted++;
    }
    ck_assert_msg(accepted == 10, "%d payloads of 100 KiB fit a 1 MiB budget", accepted);
    ck_assert_str_eq(error_code(r), "limit");
    json_decref(r);
    ck_assert_int_eq(queue_stat(c, "two", "depth"), 10);
    /* Freed budget is usable again. */
    char *id = fetch_one(c, "two", 0);
    json_decref(req_ok(c, "{\"op\":\"ack\",\"id\":\"%s\"}", id));
    r = request(c, line);
    ck_assert_msg(is_ok(r), "the budget freed by an ack was not reused");
    json_decref(r);
    free(id);
    free(line);
    harness_close(c);
    ck_assert_int_eq(harness_stop(t), 0);
}
END_TEST

/* Cancelling a tree while the kept results are full: each cancelled job
 * pushes an older one out, the parent among them, which unlinks its
 * children. The whole tree is cancelled all the same (the walk used to
 * stop at the first child, reading the evicted parent's freed list). */
START_TEST(cancel_reaches_the_whole_tree_when_cancelling_evicts_its_root)
{
    const char *args[] = {"--keep-results", "1", NULL};
    struct harness *h = start_daemon(args);
    int fd = dial(h);
    char *parent = submit(fd, "t", "1");
    for (int i = 0; i < 3; i++)
        json_decref(req_ok(fd, "{\"op\":\"submit\",\"queue\":\"t\",\"payload\":%d,"
                               "\"parent\":\"%s\"}", i, parent));
    json_t *r = req_ok(fd, "{\"op\":\"cancel\",\"id\":\"%s\"}", parent);
    ck_assert_int_eq(json_integer_value(json_object_get(r, "cancelled")), 4);
    json_decref(r);
    ck_assert_int_eq(queue_stat(fd, "t", "depth"), 0);
    ck_assert_int_eq(queue_stat(fd, "t", "cancelled"), 4);
    free(parent);
    harness_close(fd);
    ck_assert_int_eq(harness_stop(h), 0);
}
END_TEST

/* A cancelled queued job gives its place back at once: a full queue takes
 * a submit again, and a closed queue whose jobs are all cancelled is
 * drained (its pointers used to stay in the channel until a fetch skipped
 * them: submits were refused below capacity, and a paused closed queue
 * never drained). */
START_TEST(a_cancelled_queued_job_frees_its_place_and_lets_a_closed_queue_drain)
{
    struct harness *h = start_daemon(NULL);
    int fd = dial(h);
    json_decref(req_ok(fd, "{\"op\":\"declare\",\"queue\":\"c\",\"capacity\":2}"));
    char *a = submit(fd, "c", "1");
    char *b = submit(fd, "c", "2");
    req_err(fd, "queue_full", "{\"op\":\"submit\",\"queue\":\"c\",\"payload\":3,\"wait_ms\":0}");
    json_decref(req_ok(fd, "{\"op\":\"cancel\",\"id\":\"%s\"}", a));
    char *c = submit(fd, "c", "3");
    ck_assert_int_eq(queue_stat(fd, "c", "depth"), 2);
    json_decref(req_ok(fd, "{\"op\":\"pause\",\"queue\":\"c\"}"));
    json_decref(req_ok(fd, "{\"op\":\"close\",\"queue\":\"c\"}"));
    json_decref(req_ok(fd, "{\"op\":\"cancel\",\"id\":\"%s\"}", b));
    json_decref(req_ok(fd, "{\"op\":\"cancel\",\"id\":\"%s\"}", c));
    json_decref(req_ok(fd, "{\"op\":\"resume\",\"queue\":\"c\"}"));
    req_err(fd, "closed", "{\"op\":\"fetch\",\"queue\":\"c\",\"timeout_ms\":0}");
    /* The same with priorities (the channel holds tickets then). */
    json_decref(req_ok(fd, "{\"op\":\"declare\",\"queue\":\"p\",\"capacity\":2}"));
    json_t *r = req_ok(fd, "{\"op\":\"submit\",\"queue\":\"p\",\"payload\":1,\"priority\":1}");
    char *low = strdup(json_string_value(json_object_get(r, "id")));
    json_decref(r);
    json_decref(req_ok(fd, "{\"op\":\"submit\",\"queue\":\"p\",\"payload\":2,\"priority\":5}"));
    json_decref(req_ok(fd, "{\"op\":\"cancel\",\"id\":\"%s\"}", low));
    json_decref(req_ok(fd, "{\"op\":\"submit\",\"queue\":\"p\",\"payload\":3,\"wait_ms\":0}"));
    ck_assert_int_eq(queue_stat(fd, "p", "depth"), 2);
    r = req_ok(fd, "{\"op\":\"fetch\",\"queue\":\"p\",\"count\":5,\"timeout_ms\":0}");
    ck_assert_int_eq(json_array_size(json_object_get(r, "jobs")), 2);
    json_decref(r);
    free(low);
    free(a);
    free(b);
    free(c);
    harness_close(fd);
    ck_assert_int_eq(harness_stop(h), 0);
}
END_TEST

Suite *
ops_suite(void)
{
    Suite *s = suite_create("daemon_ops");
    TCase *tc = tcase_create("ops");
    tcase_add_checked_fixture(tc, fixture_setup, fixture_teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, submit_fetch_ack_cycle_delivers_the_payload);
    tcase_add_test(tc, second_ack_is_not_reserved_and_unknown_ids_are_not_found);
    tcase_add_test(tc, ack_from_another_connection_is_not_reserved);
    tcase_add_test(tc, nack_retries_then_buries_after_max_attempts);
    tcase_add_test(tc, nack_with_delay_and_dead_flag);
    tcase_add_test(tc, submit_with_delay_is_held_back);
    tcase_add_test(tc, touch_extends_the_reservation);
    tcase_add_test(tc, declare_is_idempotent_and_conflicts_on_change);
    tcase_add_test(tc, admin_ops_on_unknown_queues_are_not_found);
    tcase_add_test(tc, pause_holds_deliveries_and_resume_wakes_a_waiting_fetch);
    tcase_add_test(tc, queues_and_stats_report_every_field);
    tcase_add_test(tc, job_and_wait_answers_give_every_listed_field);
    tcase_add_test(tc, hello_answers_server_and_protocol);
    tcase_add_test(tc, token_is_required_when_configured);
    tcase_add_test(tc, every_line_of_the_token_file_is_a_token);
    tcase_add_test(tc, payload_over_max_job_is_too_large);
    tcase_add_test(tc, queue_and_memory_limits_answer_limit_and_change_nothing);
    tcase_add_test(tc, cancel_reaches_the_whole_tree_when_cancelling_evicts_its_root);
    tcase_add_test(tc, a_cancelled_queued_job_frees_its_place_and_lets_a_closed_queue_drain);
    suite_add_tcase(s, tc);
    return s;
}
