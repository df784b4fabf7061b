/* cron_suite: the cron parser and next-time computation against a table
 * of expected times, DST changes in Europe/Berlin and America/New_York
 * included (the system's tzdata), and the parser's errors. */
#include "chanq_config.h"

#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "daemon/cron.h"

Suite *cron_suite(void);

/* "2026-03-29T01:00:00Z" -> ms since the epoch. */
static int64_t
utc_ms(const char *iso)
{
    struct tm tm = {0};
    ck_assert_msg(sscanf(iso, "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                         &tm.tm_hour, &tm.tm_min, &tm.tm_sec) == 6,
                  "bad time in the table: %s", iso);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000;
}

static void
iso_of(int64_t ms, char *buf, size_t len)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

struct next_case {
    const char *expr, *tz, *after, *want;
};

static const struct next_case next_cases[] = {
    /* Berlin, spring forward on 2026-03-29 at 01:00Z (02:00 -> 03:00). */
    {"30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", "2026-03-29T01:00:00Z"},
    {"30 2 * * *", "Europe/Berlin", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"},
    {"*/15 * * * *", "Europe/Berlin", "2026-03-29T00:50:00Z", "2026-03-29T01:00:00Z"},
    {"*/15 * * * *", "Europe/Berlin", "2026-03-29T01:00:00Z", "2026-03-29T01:15:00Z"},
    /* Berlin, fall back on 2026-10-25 at 01:00Z (03:00 -> 02:00). */
    {"30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", "2026-10-25T00:30:00Z"},
    {"30 2 * * *", "Europe/Berlin", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"},
    {"0 * * * *", "Europe/Berlin", "2026-10-25T00:00:00Z", "2026-10-25T02:00:00Z"},
    {"0 9 * * 1-5", "Europe/Berlin", "2026-03-27T08:00:00Z", "2026-03-30T07:00:00Z"},
    /* New York, spring forward on 2026-03-08 at 07:00Z (02:00 -> 03:00). */
    {"0 2 * * *", "America/New_York", "2026-03-07T12:00:00Z", "2026-03-08T07:00:00Z"},
    {"0 0 * * *", "America/New_York", "2026-03-08T04:00:00Z", "2026-03-08T05:00:00Z"},
    /* New York, fall back on 2026-11-01 at 06:00Z (02:00 -> 01:00). */
    {"30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z", "2026-11-01T05:30:00Z"},
    {"30 1 * * *", "America/New_York", "2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"},
    {"*/30 * * * *", "America/New_York", "2026-11-01T05:10:00Z", "2026-11-01T05:30:00Z"},
    {"*/30 * * * *", "America/New_York", "2026-11-01T05:30:00Z", "2026-11-01T07:00:00Z"},
    {"*/30 * * * *", "America/New_York", "2026-11-01T06:10:00Z", "2026-11-01T07:00:00Z"},
    /* UTC: fields, names, steps, lists, the day rule, macros. */
    {"0 0 13 * fri", "", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"},
    {"0 0 13 * *", "UTC", "2026-01-01T00:00:00Z", "2026-01-13T00:00:00Z"},
    {"0 0 29 2 *", "", "2026-01-01T00:00:00Z", "2028-02-29T00:00:00Z"},
    {"*/20 9-17 * * mon-fri", "", "2026-01-02T17:50:00Z", "2026-01-05T09:00:00Z"},
    {"0 12 * * 7", "", "2026-01-01T00:00:00Z", "2026-01-04T12:00:00Z"},
    {"0 0 1 jan,JUL *", "", "2026-01-01T00:00:00Z", "2026-07-01T00:00:00Z"},
    {"5/20 * * * *", "", "2026-01-01T00:06:00Z", "2026-01-01T00:25:00Z"},
    {"0 0 */2 * *", "", "2026-01-01T00:00:00Z", "2026-01-03T00:00:00Z"},
    {"0 0 */10 * mon", "", "2026-01-01T00:00:00Z", "2026-05-11T00:00:00Z"},
    {"59 23 31 12 *", "", "2026-01-01T00:00:00Z", "2026-12-31T23:59:00Z"},
    {"@hourly", "", "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"},
    {"@daily", "", "2026-01-01T00:00:01Z", "2026-01-02T00:00:00Z"},
    {"@weekly", "", "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z"},
    {"@monthly", "", "2026-01-31T12:00:00Z", "2026-02-01T00:00:00Z"},
    {"@yearly", "Europe/Berlin", "2026-06-01T00:00:00Z", "2026-12-31T23:00:00Z"},
    {"  1,2,3  4 * * *  ", "", "2026-01-01T04:02:30Z", "2026-01-01T04:03:00Z"},
};

START_TEST(next_times_match_the_table)
{
    for (size_t i = 0; i < sizeof next_cases / sizeof next_cases[0]; i++) {
        const struct next_case *c = &next_cases[i];
        struct cron cr;
        char why[256] = "";
        ck_assert_msg(cron_parse(c->expr, &cr, why, sizeof why) == 0, "'%s': %s", c->expr, why);
        ck_assert_msg(cron_tz_check(c->tz, why, sizeof why) == 0, "%s: %s", c->tz, why);
        int64_t next = 0;
        ck_assert_msg(cron_next(&cr, c->tz, 0, utc_ms(c->after), &next) == 0,
                      "'%s' in %s after %s: no next time", c->expr, c->tz, c->after);
        char got[32];
        iso_of(next, got, sizeof got);
        ck_assert_msg(next == utc_ms(c->want), "'%s' in '%s' after %s: want %s, got %s", c->expr,
                      c->tz, c->after, c->want, got);
    }
}
END_TEST

START_TEST(every_plans_from_its_anchor)
{
    struct cron cr;
    char why[256] = "";
    ck_assert_msg(cron_parse("@every 1h30m", &cr, why, sizeof why) == 0, "%s", why);
    ck_assert_int_eq(cr.every_ms, 5400000);
    int64_t a = utc_ms("2026-01-01T00:00:00Z"), next;
    ck_assert_int_eq(cron_next(&cr, "", a, a - 5000, &next), 0);
    ck_assert_msg(next == a + 5400000, "before the anchor: the first interval");
    ck_assert_int_eq(cron_next(&cr, "", a, a + 5400000, &next), 0);
    ck_assert_msg(next == a + 2 * 5400000, "strictly after");
    ck_assert_int_eq(cron_parse("@every 90s", &cr, why, sizeof why), 0);
    ck_assert_int_eq(cr.every_ms, 90000);
    ck_assert_int_eq(cron_parse("@every 2d", &cr, why, sizeof why), 0);
    ck_assert_int_eq(cr.every_ms, 2 * 86400000LL);
}
END_TEST

START_TEST(latest_finds_the_last_planned_time_of_a_downtime)
{
    struct cron cr;
    char why[256] = "";
    int64_t t;
    ck_assert_int_eq(cron_parse("0 * * * *", &cr, why, sizeof why), 0);
    ck_assert_int_eq(
        cron_latest(&cr, "", 0, utc_ms("2026-01-01T00:00:00Z"), utc_ms("2026-01-03T10:30:00Z"), &t),
        0);
    ck_assert_msg(t == utc_ms("2026-01-03T10:00:00Z"), "hourly: the last full hour");
    ck_assert_int_eq(cron_parse("0 0 1 1 *", &cr, why, sizeof why), 0);
    ck_assert_int_eq(cron_latest(&cr, "Europe/Berlin", 0, utc_ms("2020-01-01T00:00:00Z"),
                                 utc_ms("2026-06-01T00:00:00Z"), &t),
                     0);
    ck_assert_msg(t == utc_ms("2025-12-31T23:00:00Z"), "yearly, six years down");
    ck_assert_int_eq(
        cron_latest(&cr, "", 0, utc_ms("2026-01-01T00:00:00Z"), utc_ms("2026-06-01T00:00:00Z"), &t),
        -ENOENT);
    ck_assert_int_eq(cron_parse("* * * * *", &cr, why, sizeof why), 0);
    ck_assert_int_eq(
        cron_latest(&cr, "", 0, utc_ms("2025-01-01T00:00:00Z"), utc_ms("2026-01-01T00:00:30Z"), &t),
        0);
    ck_assert_msg(t == utc_ms("2026-01-01T00:00:00Z"), "every minute over a year");
    ck_assert_int_eq(cron_parse("@every 1h", &cr, why, sizeof why), 0);
    int64_t a = utc_ms("2026-01-01T00:00:00Z");
    ck_assert_int_eq(cron_latest(&cr, "", a, a, a + 3 * 3600000 + 1800000, &t), 0);
    ck_assert_msg(t == a + 3 * 3600000, "@every: the last whole interval");
    ck_assert_int_eq(cron_latest(&cr, "", a, a + 3 * 3600000, a + 3 * 3600000 + 5, &t), -ENOENT);
}
END_TEST

struct bad_case {
    const char *expr, *why;
};

static const struct bad_case bad_cases[] = {
    {"60 * * * *", "field 1 (minute): 60 is out of range 0-59"},
    {"0 24 * * *", "field 2 (hour): 24 is out of range 0-23"},
    {"0 0 0 * *", "field 3 (day-of-month): 0 is out of range 1-31"},
    {"0 0 * 13 *", "field 4 (month): 13 is out of range 1-12"},
    {"0 0 * * 8", "field 5 (day-of-week): 8 is out of range 0-7"},
    {"* * *", "5 fields needed (minute hour day-of-month month day-of-week), got 3"},
    {"", "5 fields needed (minute hour day-of-month month day-of-week), got 0"},
    {"* * * * * *", "5 fields needed, got more ('*')"},
    {"0 0 30 2 *", "no month has the days this expression names: it would never run"},
    {"*/0 * * * *", "field 1 (minute): step 0 is out of range 1-59"},
    {"5-1 * * * *", "field 1 (minute): range 5-1 runs backwards"},
    {"jan * * * *", "field 1 (minute): 'jan' is not a number"},
    {"* * * foo *", "field 4 (month): 'foo' is not a number or name"},
    {"1,,2 * * * *", "field 1 (minute): empty list item"},
    {"1x * * * *", "field 1 (minute): unexpected 'x'"},
    {"@reboot", "unknown macro '@reboot'"},
    {"@daily 5", "unexpected text after @daily"},
    {"@every", "@every needs a duration"},
    {"@every 0s", "@every: interval must be 1s to 366d"},
    {"@every 5x", "duration: unit must be ms, s, m, h or d"},
    {"@every 400d", "@every: interval must be 1s to 366d"},
};

START_TEST(bad_expressions_say_what_is_wrong)
{
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        struct cron cr;
        char why[256] = "";
        ck_assert_msg(cron_parse(bad_cases[i].expr, &cr, why, sizeof why) == -EINVAL,
                      "'%s' was accepted", bad_cases[i].expr);
        ck_assert_msg(strncmp(why, bad_cases[i].why, strlen(bad_cases[i].why)) == 0,
                      "'%s': want '%s...', got '%s'", bad_cases[i].expr, bad_cases[i].why, why);
    }
}
END_TEST

START_TEST(zones_come_from_tzdata)
{
    char why[256];
    ck_assert_int_eq(cron_tz_check("Europe/Berlin", why, sizeof why), 0);
    ck_assert_int_eq(cron_tz_check("America/New_York", why, sizeof why), 0);
    ck_assert_int_eq(cron_tz_check("", why, sizeof why), 0);
    ck_assert_int_eq(cron_tz_check("Mars/Olympus_Mons", why, sizeof why), -EINVAL);
    ck_assert_str_eq(why, "unknown time zone 'Mars/Olympus_Mons' (not in the system's tzdata)");
    ck_assert_int_eq(cron_tz_check("Europe", why, sizeof why), -EINVAL); /* a directory */
    ck_assert_int_eq(cron_tz_check("../../etc/passwd", why, sizeof why), -EINVAL);
    ck_assert_str_eq(why, "'../../etc/passwd' is not a time zone name (like Europe/Berlin)");
    ck_assert_int_eq(cron_tz_check("/etc/localtime", why, sizeof why), -EINVAL);
}
END_TEST

Suite *
cron_suite(void)
{
    Suite *s = suite_create("cron");
    TCase *tc = tcase_create("cron");
    tcase_add_test(tc, next_times_match_the_table);
    tcase_add_test(tc, every_plans_from_its_anchor);
    tcase_add_test(tc, latest_finds_the_last_planned_time_of_a_downtime);
    tcase_add_test(tc, bad_expressions_say_what_is_wrong);
    tcase_add_test(tc, zones_come_from_tzdata);
    suite_add_tcase(s, tc);
    return s;
}
