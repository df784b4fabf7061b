/* schedule_suite: black-box tests of run_at and the schedule op against a
 * real chanqd with a journal, on the test clock (CHANQ_TEST_CLOCK_FILE):
 * a planned time fires exactly once across kill -9 and clean restarts
 * (with compactions at random moments), the missed-run policies after a
 * downtime, pause/resume/replace/delete, and hostile input that gets clear
 * errors and changes nothing. No test waits for a real minute. */
#include "chanq_config.h"

#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/harness.h"

Suite *schedule_suite(void);

/* 2026-01-01T00:00:00Z */
#define T0 INT64_C(1767225600000)
#define MIN INT64_C(60000)

static char clock_path[256];

static void
set_clock(int64_t ms)
{
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", clock_path);
    FILE *f = fopen(tmp, "w");
    ck_assert_msg(f != NULL, "open %s", tmp);
    fprintf(f, "%lld\n", (long long)ms);
    ck_assert_msg(fclose(f) == 0 && rename(tmp, clock_path) == 0, "write the test clock");
}

static struct harness *
start(int64_t clock_ms)
{
    snprintf(clock_path, sizeof clock_path, "/tmp/chanq-clock-%d", (int)getpid());
    set_clock(clock_ms);
    setenv("CHANQ_TEST_CLOCK_FILE", clock_path, 1);
    setenv("CHANQ_TEST_COMPACT_MS", "40", 1); /* snapshots at random moments */
    static const char *const args[] = {
        "--journal-segment", "64K", "--journal-compact", "64K", "--max-schedules", "3", NULL};
    struct harness *h = harness_start(args);
    ck_assert_msg(h != NULL, "chanqd starts");
    return h;
}

static void
stop(struct harness *h)
{
    ck_assert_msg(harness_stop(h) == 0, "chanqd stops cleanly");
    unsetenv("CHANQ_TEST_CLOCK_FILE");
    unsetenv("CHANQ_TEST_COMPACT_MS");
    unlink(clock_path);
}

static json_t *reqf(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static json_t *
reqf(int fd, const char *fmt, ...)
{
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    json_t *r = request(fd, line);
    ck_assert_msg(r != NULL, "an answer to %s", line);
    return r;
}

static void
ok(int fd, const char *line)
{
    json_t *r = reqf(fd, "%s", line);
    ck_assert_msg(json_is_true(json_object_get(r, "ok")), "%s: %s", line,
                  json_string_value(json_object_get(json_object_get(r, "error"), "message")));
    json_decref(r);
}

/* The request fails with code and a message that starts with want. */
static void
fails(int fd, const char *code, const char *want, const char *line)
{
    json_t *r = reqf(fd, "%s", line);
    const char *msg = json_string_value(json_object_get(json_object_get(r, "error"), "message"));
    ck_assert_msg(strcmp(error_code(r), code) == 0, "%s: want %s, got %s (%s)", line, code,
                  error_code(r), msg ? msg : "ok");
    ck_assert_msg(msg && strncmp(msg, want, strlen(want)) == 0, "%s: want '%s...', got '%s'", line,
                  want, msg ? msg : "");
    json_decref(r);
}

/* Fetches a job of queue within timeout_ms and acks it: its planned time
 * (from the envelope), or -1 when none came. */
static int64_t
take_planned(int fd, const char *queue, int timeout_ms)
{
    json_t *r =
        reqf(fd, "{\"op\":\"fetch\",\"queue\":\"%s\",\"timeout_ms\":%d}", queue, timeout_ms);
    json_t *job = json_array_get(json_object_get(r, "jobs"), 0);
    int64_t planned = -1;
    if (job) {
        json_t *p = json_object_get(job, "payload");
        ck_assert_msg(json_is_string(json_object_get(p, "schedule")), "the envelope names it");
        ck_assert_msg(json_object_get(p, "payload") != NULL, "the template is inside");
        planned = json_integer_value(json_object_get(p, "planned"));
        char ack[256];
        snprintf(ack, sizeof ack, "{\"op\":\"ack\",\"id\":\"%s\"}",
                 json_string_value(json_object_get(job, "id")));
        ok(fd, ack);
    }
    json_decref(r);
    return planned;
}

/* The schedule's field from `schedule list`. */
static json_int_t
listed(int fd, const char *name, const char *field)
{
    json_t *r = reqf(fd, "{\"op\":\"schedule\",\"action\":\"list\"}");
    json_t *list = json_object_get(r, "schedules"), *s;
    size_t i;
    json_int_t v = -1;
    json_array_foreach(list, i, s)
    {
        if (strcmp(json_string_value(json_object_get(s, "name")), name) == 0)
            v = json_integer_value(json_object_get(s, field));
    }
    json_decref(r);
    return v;
}

static int
redial(struct harness *h)
{
    int fd = harness_dial(h);
    ck_assert_msg(fd >= 0, "dial");
    return fd;
}

START_TEST(a_planned_time_fires_once_across_kill9_and_clean_restarts)
{
    struct harness *h = start(T0 + 30000);
    int fd = redial(h);
    ok(fd,
       "{\"op\":\"schedule\",\"action\":\"create\",\"name\":\"tick\",\"cron\":\"* * * * *\","
       "\"tz\":\"Europe/Berlin\",\"queue\":\"ticks\",\"payload\":{\"n\":1},\"missed\":\"once\"}");
    set_clock(T0 + MIN + 5000);
    ck_assert_int_eq(take_planned(fd, "ticks", 5000), T0 + MIN);
    ck_assert_int_eq(take_planned(fd, "ticks", 300), -1);

    harness_close(fd);
    harness_kill9(h);
    ck_assert_msg(harness_restart(h) == 0, "restart after kill -9");
    fd = redial(h);
    ck_assert_msg(take_planned(fd, "ticks", 500) == -1, "00:01 fired before the kill: not again");
    ck_assert_int_eq(listed(fd, "tick", "last"), T0 + MIN);
    set_clock(T0 + 2 * MIN + 5000);
    ck_assert_int_eq(take_planned(fd, "ticks", 5000), T0 + 2 * MIN);

    harness_close(fd);
    ck_assert_msg(harness_restart(h) == 0, "clean restart");
    fd = redial(h);
    ck_assert_msg(take_planned(fd, "ticks", 500) == -1, "00:02 fired before the stop: not again");
    set_clock(T0 + 3 * MIN + 1000);
    ck_assert_int_eq(take_planned(fd, "ticks", 5000), T0 + 3 * MIN);
    ck_assert_int_eq(take_planned(fd, "ticks", 300), -1);
    ck_assert_int_eq(listed(fd, "tick", "last"), T0 + 3 * MIN);
    harness_close(fd);
    stop(h);
}
END_TEST

START_TEST(missed_runs_after_a_downtime_are_skipped_or_run_once)
{
    struct harness *h = start(T0 + 30000);
    int fd = redial(h);
    ok(fd,
       "{\"op\":\"schedule\",\"action\":\"create\",\"name\":\"skipper\",\"cron\":\"*/10 * * * *\","
       "\"queue\":\"qs\",\"payload\":{}}");
    ok(fd,
       "{\"op\":\"schedule\",\"action\":\"create\",\"name\":\"oncer\",\"cron\":\"*/10 * * * *\","
       "\"queue\":\"qo\",\"payload\":{},\"missed\":\"once\"}");
    harness_close(fd);
    harness_kill9(h);
    set_clock(T0 + 215 * MIN + 10000); /* 03:35:10: 21 planned times passed while down */
    ck_assert_msg(harness_restart(h) == 0, "restart");
    fd = redial(h);
    ck_assert_int_eq(take_planned(fd, "qo", 5000), T0 + 210 * MIN);
    ck_assert_msg(take_planned(fd, "qo", 300) == -1, "once: one job for the whole downtime");
    ck_assert_msg(take_planned(fd, "qs", 300) == -1, "skip: nothing for the downtime");
    set_clock(T0 + 220 * MIN + 2000);
    ck_assert_int_eq(take_planned(fd, "qs", 5000), T0 + 220 * MIN);
    ck_assert_int_eq(take_planned(fd, "qo", 5000), T0 + 220 * MIN);
    harness_close(fd);
    stop(h);
}
END_TEST

START_TEST(pause_resume_replace_and_delete)
{
    struct harness *h = start(T0 + 30000);
    int fd = redial(h);
    ok(fd, "{\"op\":\"schedule\",\"action\":\"create\",\"name\":\"p\",\"cron\":\"@every 1m\","
           "\"queue\":\"pq\",\"payload\":[1],\"ttr_ms\":5000,\"max_attempts\":2}");
    ok(fd, "{\"op\":\"schedule\",\"action\":\"pause\",\"name\":\"p\"}");
    set_clock(T0 + 30000 + MIN + 1000);
    ck_assert_msg(take_planned(fd, "pq", 300) == -1, "paused: nothing");
    ok(fd, "{\"op\":\"schedule\",\"action\":\"resume\",\"name\":\"p\"}");
    ck_assert_msg(take_planned(fd, "pq", 300) == -1, "the time passed while paused: not run");
    set_clock(T0 + 30000 + 2 * MIN + 2000);
    ck_assert_int_eq(take_planned(fd, "pq", 5000), T0 + 30000 + MIN + 1000 + MIN);
    /* the same definition again is a no-op; another one needs replace */
    ok(fd, "{\"op\":\"schedule\",\"action\":\"create\",\"name\":\"p\",\"cron\":\"@every 1m\","
           "\"queue\":\"pq\",\"payload\":[1],\"ttr_ms\":5000,\"max_attempts\":2}");
    fails(fd, "conflict", "schedule 'p' exists with another definition",
          "{\"op\":\"schedule\",\"action\":\"create\",\"name\":\"p\",\"cron\":\"@hourly\","
          "\"queue\":\"pq\",\"payload\":[1]}");
    ok(fd, "{\"op\":\"schedule\",\"action\":\"replace\",\"name\":\"p\",\"cron\":\"0 * * * *\","
           "\"queue\":\"pq\",\"payload\":[2]}");
    set_clock(T0 + 60 * MIN + 1000);
    ck_assert_int_eq(take_planned(fd, "pq", 5000), T0 + 60 * MIN);
    json_t *st = reqf(fd, "{\"op\":\"stats\"}");
    json_t *sc = json_object_get(json_object_get(st, "server"), "schedules");
    ck_assert_int_eq(json_integer_value(json_object_get(sc, "count")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(sc, "fired")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(sc, "last_fire_ms")), T0 + 60 * MIN);
    json_decref(st);
    ok(fd, "{\"op\":\"schedule\",\"action\":\"delete\",\"name\":\"p\"}");
    fails(fd, "not_found", "no schedule named 'p'",
          "{\"op\":\"schedule\",\"action\":\"pause\",\"name\":\"p\"}");
    set_clock(T0 + 120 * MIN + 1000);
    ck_assert_msg(take_planned(fd, "pq", 300) == -1, "deleted: nothing");
    harness_close(fd);
    ck_assert_msg(harness_restart(h) == 0, "restart");
    fd = redial(h);
    ck_assert_int_eq(listed(fd, "p", "last"), -1);
    harness_close(fd);
    stop(h);
}
END_TEST

static char *
digest(int fd)
{
    json_t *r = reqf(fd, "{\"op\":\"stats\",\"digest\":true}");
    char *d =
        strdup(json_string_value(json_object_get(json_object_get(r, "server"), "state_digest")));
    json_decref(r);
    return d;
}

START_TEST(hostile_schedules_get_clear_errors_and_change_nothing)
{
    struct harness *h = start(T0 + 30000);
    int fd = redial(h);
    ok(fd, "{\"op\":\"schedule\",\"action\":\"create\",\"name\":\"a\",\"cron\":\"@daily\","
           "\"queue\":\"q\",\"payload\":1}");
    char *before = digest(fd);
    fails(fd, "bad_request", "field 'cron': field 1 (minute): 61 is out of range 0-59",
          "{\"op\":\"schedule\",\"action\":\"create\",\"name\":\"b\",\"cron\":\"61 * * * *\","
          "\"queue\":\"q\",\"payload\":1}");
    fails(fd, "bad_request", "field 'cron': 5 fields needed",
          "{\"op\":\"schedule\",\"action\":\"create\",\"name\":\"b\",\"cron\":\"* *\","
          "\"queue\":\"q\",\"payload\":1}");
    fails(fd, "bad_request", "field 'cron': no month has the days",
          "{\"op\":\"schedule\",\"action\":\"replace\",\"name\":\"a\",\"cron\":\"0 0 31 2 *\","
          "\"queue\":\"q\",\"payload\":1}");
    fails(fd, "bad_request", "field 'tz': unknown time zone 'Europe/Atlantis'",
          "{\"op\":\"schedule\",\"action\":\"create\",\"name\":\"b\",\"cron\":\"@daily\","
          "\"tz\":\"Europe/Atlantis\",\"queue\":\"q\",\"payload\":1}");
    fails(fd, "bad_request", "field 'tz': '../../etc/passwd' is not a time zone name",
          "{\"op\":\"schedule\",\"action\":\"create\",\"name\":\"b\",\"cron\":\"@daily\","
          "\"tz\":\"../../etc/passwd\",\"queue\":\"q\",\"payload\":1}");
    fails(fd, "bad_request", "field 'missed': 'sometimes' is not skip or once",
          "{\"op\":\"schedule\",\"action\":\"create\",\"name\":\"b\",\"cron\":\"@daily\","
          "\"queue\":\"q\",\"payload\":1,\"missed\":\"sometimes\"}");
    fails(fd, "bad_request", "field 'action': 'frob' is not one of",
          "{\"op\":\"schedule\",\"action\":\"frob\",\"name\":\"b\"}");
    fails(fd, "bad_request", "field 'name': 'a b' is not a schedule name",
          "{\"op\":\"schedule\",\"action\":\"delete\",\"name\":\"a b\"}");
    fails(fd, "bad_request", "field 'queue': missing",
          "{\"op\":\"schedule\",\"action\":\"create\",\"name\":\"b\",\"cron\":\"@daily\","
          "\"payload\":1}");
    fails(fd, "bad_request", "field 'cron': longer than 256 bytes",
          "{\"op\":\"schedule\",\"action\":\"create\",\"name\":\"b\",\"cron\":\"* * * * *"
          "                                                                            "
          "                                                                            "
          "                                                                            "
          "                                                                            "
          "\",\"queue\":\"q\",\"payload\":1}");
    /* a payload over --max-job */
    size_t big = 600 * 1024;
    char *line = malloc(big + 256);
    int n = snprintf(line, 256,
                     "{\"op\":\"schedule\",\"action\":\"create\",\"name\":\"b\","
                     "\"cron\":\"@daily\",\"queue\":\"q\",\"payload\":\"");
    memset(line + n, 'x', big);
    strcpy(line + n + big, "\"}");
    json_t *r = request(fd, line);
    ck_assert_msg(r && strcmp(error_code(r), "too_large") == 0, "a huge template: too_large");
    json_decref(r);
    free(line);
    fails(fd, "not_found", "no schedule named 'zz'",
          "{\"op\":\"schedule\",\"action\":\"resume\",\"name\":\"zz\"}");
    ok(fd, "{\"op\":\"schedule\",\"action\":\"create\",\"name\":\"b\",\"cron\":\"@daily\","
           "\"queue\":\"q\",\"payload\":1}");
    ok(fd, "{\"op\":\"schedule\",\"action\":\"create\",\"name\":\"c\",\"cron\":\"@daily\","
           "\"queue\":\"q\",\"payload\":1}");
    fails(fd, "limit", "server holds its maximum of 3 schedules",
          "{\"op\":\"schedule\",\"action\":\"create\",\"name\":\"d\",\"cron\":\"@daily\","
          "\"queue\":\"q\",\"payload\":1}");
    ok(fd, "{\"op\":\"schedule\",\"action\":\"delete\",\"name\":\"b\"}");
    ok(fd, "{\"op\":\"schedule\",\"action\":\"delete\",\"name\":\"c\"}");
    char *after = digest(fd);
    ck_assert_msg(strcmp(before, after) == 0, "the refused requests changed nothing");
    ck_assert_int_eq(listed(fd, "a", "last"), 0); /* null: never fired */
    free(before);
    free(after);
    harness_close(fd);
    stop(h);
}
END_TEST

START_TEST(run_at_is_an_absolute_delay)
{
    struct harness *h = start(T0);
    int fd = redial(h);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long now = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    json_t *r =
        reqf(fd, "{\"op\":\"submit\",\"queue\":\"r\",\"payload\":1,\"run_at\":%lld}", now - 5000);
    ck_assert_msg(json_is_true(json_object_get(r, "ok")), "a past run_at");
    json_decref(r);
    r = reqf(fd, "{\"op\":\"fetch\",\"queue\":\"r\",\"timeout_ms\":0}");
    json_t *job = json_array_get(json_object_get(r, "jobs"), 0);
    ck_assert_msg(job != NULL, "a past run_at is ready now");
    char nack[256];
    snprintf(nack, sizeof nack, "{\"op\":\"nack\",\"id\":\"%s\",\"run_at\":%lld}",
             json_string_value(json_object_get(job, "id")), now + 3600000);
    json_t *n2 = reqf(fd, "%s", nack);
    ck_assert_str_eq(json_string_value(json_object_get(n2, "state")), "delayed");
    json_decref(n2);
    json_decref(r);
    r = reqf(fd, "{\"op\":\"submit\",\"queue\":\"r\",\"payload\":2,\"run_at\":%lld}", now + 600000);
    char id[64];
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(r, "id")));
    json_decref(r);
    r = reqf(fd, "{\"op\":\"job\",\"id\":\"%s\"}", id);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r, "job"), "state")),
                     "delayed");
    json_decref(r);
    r = reqf(fd, "{\"op\":\"fetch\",\"queue\":\"r\",\"timeout_ms\":0}");
    ck_assert_msg(json_array_size(json_object_get(r, "jobs")) == 0, "both are delayed");
    json_decref(r);
    char bad[256];
    snprintf(bad, sizeof bad, "{\"op\":\"submit\",\"queue\":\"r\",\"payload\":1,\"run_at\":%lld}",
             now + 400LL * 86400000);
    fails(fd, "bad_request", "field 'run_at': ", bad);
    fails(fd, "bad_request", "fields 'run_at' and 'delay_ms': give one, not both",
          "{\"op\":\"submit\",\"queue\":\"r\",\"payload\":1,\"run_at\":5,\"delay_ms\":5}");
    fails(fd, "bad_request", "field 'run_at': -1 is out of range",
          "{\"op\":\"submit\",\"queue\":\"r\",\"payload\":1,\"run_at\":-1}");
    r = reqf(fd, "{\"op\":\"stats\",\"queue\":\"r\"}");
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(r, "queue"), "delayed")),
                     2);
    json_decref(r);
    harness_close(fd);
    stop(h);
}
END_TEST

Suite *
schedule_suite(void)
{
    Suite *s = suite_create("schedule");
    TCase *tc = tcase_create("schedule");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, a_planned_time_fires_once_across_kill9_and_clean_restarts);
    tcase_add_test(tc, missed_runs_after_a_downtime_are_skipped_or_run_once);
    tcase_add_test(tc, pause_resume_replace_and_delete);
    tcase_add_test(tc, hostile_schedules_get_clear_errors_and_change_nothing);
    tcase_add_test(tc, run_at_is_an_absolute_delay);
    suite_add_tcase(s, tc);
    return s;
}
