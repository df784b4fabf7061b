/* The logger (daemon/log.h): JSON lines that always parse, whatever the
 * message and fields hold, cut to the line limit as whole objects; text
 * lines with quoted values and escaped control bytes; one line per call. */
#include "chanq_config.h"

#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/log.h"
#include "tests/ops/unit_suites.h"

/* Runs the logging in fn with stderr sent to a temp file; returns what was
 * written (malloc'd). */
static char *
capture(void (*fn)(void))
{
    char path[] = "/tmp/chanq-log-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_msg(fd >= 0, "mkstemp");
    unlink(path);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    off_t len = lseek(fd, 0, SEEK_END);
    char *buf = calloc(1, (size_t)len + 1);
    ck_assert_msg(pread(fd, buf, (size_t)len, 0) == len, "read back");
    close(fd);
    log_set_format(LOG_FORMAT_TEXT);
    log_set_level(LOG_INFO);
    return buf;
}

/* The one line in out, parsed; fails unless out is exactly one line. */
static json_t *
one_json_line(const char *out)
{
    const char *nl = strchr(out, '\n');
    ck_assert_msg(nl && nl[1] == '\0', "one line, got: %s", out);
    json_error_t e;
    json_t *o = json_loadb(out, (size_t)(nl - out), 0, &e);
    ck_assert_msg(json_is_object(o), "not a JSON object (%s): %s", e.text, out);
    return o;
}

static void
log_hostile(void)
{
    log_set_format(LOG_FORMAT_JSON);
    log_warn_kv(LOG_FIELDS(LOG_STR("client", "a\"b\\c\n\x01\x7f"), LOG_UINT("job", 42),
                           LOG_INT("delta", -3), LOG_STR("skipped", NULL)),
                "bytes: %s", "\xff\xfe ok \xc3\xa9 \xed\xa0\x80 \xe2\x82");
}

START_TEST(json_line_escapes_what_a_client_sends)
{
    char *out = capture(log_hostile);
    json_t *o = one_json_line(out);
    ck_assert_str_eq(json_string_value(json_object_get(o, "level")), "warn");
    ck_assert_str_eq(
        json_string_value(json_object_get(o, "message")),
        "bytes: \xef\xbf\xbd\xef\xbf\xbd ok \xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd "
        "\xef\xbf\xbd\xef\xbf\xbd");
    ck_assert_str_eq(json_string_value(json_object_get(o, "client")), "a\"b\\c\n\x01\x7f");
    ck_assert_int_eq(json_integer_value(json_object_get(o, "job")), 42);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "delta")), -3);
    ck_assert_msg(!json_object_get(o, "skipped"), "a NULL string field is left out");
    ck_assert_msg(strncmp(out, "{\"time\":\"", 9) == 0 && out[32] == 'Z', "time first: %s", out);
    json_decref(o);
    free(out);
}
END_TEST

static char big[20000];

static void
log_big(void)
{
    log_set_format(LOG_FORMAT_JSON);
    memset(big, '\x01', sizeof big - 1); /* each byte escapes to six */
    log_error_kv(LOG_FIELDS(LOG_UINT("conn", 7), LOG_STR("path", big), LOG_UINT("job", 9)), "%s",
                 big);
}

START_TEST(json_line_too_long_is_cut_and_stays_an_object)
{
    char *out = capture(log_big);
    ck_assert_msg(strlen(out) <= 4096, "line of %zu bytes", strlen(out));
    json_t *o = one_json_line(out);
    ck_assert_msg(strlen(json_string_value(json_object_get(o, "message"))) > 100, "message kept");
    ck_assert_int_eq(json_integer_value(json_object_get(o, "conn")), 7);
    json_decref(o);
    free(out);
}
END_TEST

static void
log_text(void)
{
    log_set_format(LOG_FORMAT_TEXT);
    log_info_kv(
        LOG_FIELDS(LOG_STR("queue", "mail"), LOG_STR("client", "a b=\"c\""), LOG_STR("remote", "")),
        "two\nlines");
}

START_TEST(text_line_quotes_values_and_escapes_newlines)
{
    char *out = capture(log_text);
    const char *tail = strstr(out, "chanqd[");
    ck_assert_msg(tail != NULL, "%s", out);
    char want[200];
    snprintf(want, sizeof want,
             "chanqd[%d]: info: two\\nlines queue=mail client=\"a b=\\\"c\\\"\" remote=\"\"\n",
             (int)getpid());
    ck_assert_str_eq(tail, want);
    free(out);
}
END_TEST

static void
log_limited_twice(void)
{
    log_set_format(LOG_FORMAT_JSON);
    static struct log_limit lim;
    log_limited(&lim, LOG_WARN, "first");
    log_limited(&lim, LOG_WARN, "dropped");
    atomic_store(&lim.next_ms, 0); /* as if a second passed */
    log_limited_kv(&lim, LOG_WARN, LOG_FIELDS(LOG_STR("queue", "q")), "third");
}

START_TEST(limited_line_counts_what_it_left_out)
{
    char *out = capture(log_limited_twice);
    char *second = strchr(out, '\n') + 1;
    json_t *o = one_json_line(second);
    ck_assert_str_eq(json_string_value(json_object_get(o, "message")),
                     "third (1 more like this since the last such line)");
    ck_assert_int_eq(json_integer_value(json_object_get(o, "suppressed")), 1);
    ck_assert_str_eq(json_string_value(json_object_get(o, "queue")), "q");
    json_decref(o);
    free(out);
}
END_TEST

START_TEST(formats_parse_by_name)
{
    enum log_format f = LOG_FORMAT_TEXT;
    ck_assert_int_eq(log_format_parse("json", &f), 0);
    ck_assert_int_eq(f, LOG_FORMAT_JSON);
    ck_assert_int_eq(log_format_parse("JSON", &f), -1);
    ck_assert_int_eq(f, LOG_FORMAT_JSON);
    ck_assert_str_eq(log_format_name(LOG_FORMAT_TEXT), "text");
}
END_TEST

Suite *
log_suite(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("log");
    tcase_add_test(tc, json_line_escapes_what_a_client_sends);
    tcase_add_test(tc, json_line_too_long_is_cut_and_stays_an_object);
    tcase_add_test(tc, text_line_quotes_values_and_escapes_newlines);
    tcase_add_test(tc, limited_line_counts_what_it_left_out);
    tcase_add_test(tc, formats_parse_by_name);
    suite_add_tcase(s, tc);
    return s;
}
