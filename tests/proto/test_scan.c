/* proto/scan: the strict JSON scanner behind msg_decode(). */
#include "chanq_config.h"

#include "proto/scan.h"
#include "tests/proto/suites.h"

#include <stdint.h>
#include <string.h>

/* Scans text as one complete value; 0 when valid. */
static int
scan_all(const char *text, size_t len, int depth, struct scan_value *v)
{
    struct scan s;
    scan_init(&s, text, len, depth);
    if (scan_value(&s, 1, v))
        return -1;
    return scan_at_end(&s) ? 0 : -1;
}

static void
expect_valid(const char *text)
{
    struct scan_value v;
    ck_assert_msg(scan_all(text, strlen(text), 64, &v) == 0, "'%s' should be valid JSON", text);
}

static void
expect_invalid(const char *text, size_t len)
{
    struct scan_value v;
    ck_assert_msg(scan_all(text, len, 64, &v) != 0, "'%.*s' should be rejected", (int)len, text);
}

#define INVALID(lit) expect_invalid(lit, sizeof lit - 1)

START_TEST(valid_values_of_every_type_are_accepted)
{
    static const char *const ok[] = {
        "null",
        "true",
        "false",
        "0",
        "-0",
        "12",
        "-12.5",
        "1e10",
        "1E+2",
        "2.5e-3",
        "\"\"",
        "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"",
        "\"\\u00e9\\uD83D\\uDE00\"",
        "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"",
        "[]",
        "{}",
        "[1,[2,[3]],{\"a\":{}}]",
        " { \"a\" : [ 1 , 2 ] , \"b\" : null } ",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        expect_valid(ok[i]);
}
END_TEST

START_TEST(malformed_numbers_are_rejected)
{
    INVALID("01");
    INVALID("1.");
    INVALID(".5");
    INVALID("-");
    INVALID("1e");
    INVALID("1e+");
    INVALID("+1");
    INVALID("0x10");
    INVALID("NaN");
    INVALID("Infinity");
    INVALID("--1");
}
END_TEST

START_TEST(malformed_strings_are_rejected)
{
    INVALID("\"abc");
    INVALID("\"a\x01\"");
    INVALID("\"tab\there\"");
    INVALID("\"\\x\"");
    INVALID("\"\\u12\"");
    INVALID("\"\\u12G4\"");
    INVALID("\"\\uD800\"");        /* lone high surrogate */
    INVALID("\"\\uDC00\"");        /* lone low surrogate */
    INVALID("\"\\uD800\\u0041\""); /* high surrogate, then no low one */
    INVALID("\"a\0b\"");
    INVALID("'single'");
}
END_TEST

START_TEST(invalid_utf8_is_rejected)
{
    INVALID("\"\xc0\x80\"");         /* overlong NUL */
    INVALID("\"\xc1\xbf\"");         /* overlong */
    INVALID("\"\xe0\x80\xaf\"");     /* overlong 3-byte */
    INVALID("\"\xed\xa0\x80\"");     /* UTF-16 surrogate encoded */
    INVALID("\"\xf4\x90\x80\x80\""); /* above U+10FFFF */
    INVALID("\"\xf5\x80\x80\x80\"");
    INVALID("\"\x80\""); /* stray continuation */
    INVALID("\"\xc3\""); /* truncated */
    INVALID("\"\xe2\x82\"");
    INVALID("\"\xff\"");
}
END_TEST

START_TEST(malformed_structure_is_rejected)
{
    INVALID("");
    INVALID("   ");
    INVALID("[1,]");
    INVALID("[,1]");
    INVALID("[1 2]");
    INVALID("{\"a\":1,}");
    INVALID("{\"a\" 1}");
    INVALID("{a:1}");
    INVALID("{\"a\":}");
    INVALID("{1:2}");
    INVALID("[");
    INVALID("{");
    INVALID("]");
    INVALID("tru");
    INVALID("nul");
    INVALID("truex");
    INVALID("1 2");
}
END_TEST

START_TEST(nesting_deeper_than_the_limit_is_rejected)
{
    char deep[200];
    struct scan_value v;
    memset(deep, '[', 10);
    memset(deep + 10, ']', 10);
    ck_assert_msg(scan_all(deep, 20, 10, &v) == 0, "10 levels fit a limit of 10");
    ck_assert_msg(scan_all(deep, 20, 9, &v) != 0, "10 levels do not fit a limit of 9");
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    ck_assert_msg(scan_all(deep, 200, 64, &v) != 0, "100 levels over the limit of 64");
}
END_TEST

START_TEST(compaction_removes_whitespace_outside_strings_only)
{
    const char *text = " { \"a b\" : [ 1 ,\t2 ] ,\r\n \"c\\\" d\" : \" x \" } ";
    struct scan_value v;
    char out[128];
    ck_assert_msg(scan_all(text, strlen(text), 64, &v) == 0, "valid");
    ck_assert_msg(v.has_ws, "whitespace noticed");
    size_t n = scan_compact(&v, out);
    const char *want = "{\"a b\":[1,2],\"c\\\" d\":\" x \"}";
    ck_assert_msg(n == strlen(want) && memcmp(out, want, n) == 0, "got '%.*s'", (int)n, out);
    ck_assert_msg(scan_all("[1,2]", 5, 64, &v) == 0 && !v.has_ws, "compact text needs nothing");
}
END_TEST

START_TEST(unescaping_decodes_every_escape_to_utf8)
{
    const char *text = "\"a\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\u20ac\\ud83d\\ude00z\"";
    struct scan_value v;
    char out[64];
    ck_assert_msg(scan_all(text, strlen(text), 64, &v) == 0, "valid");
    ck_assert_msg(v.has_escape, "escape noticed");
    size_t n = scan_unescape(&v, out);
    const char *want = "a\"\\/\b\f\n\r\t\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z";
    ck_assert_msg(n == strlen(want) && memcmp(out, want, n) == 0, "got %zu bytes", n);
}
END_TEST

START_TEST(integers_convert_within_int64_and_overflow_is_reported)
{
    struct scan_value v;
    int64_t n;
    ck_assert_msg(scan_all("9223372036854775807", 19, 64, &v) == 0 && v.is_int, "valid int");
    ck_assert_msg(scan_int64(&v, &n) && n == INT64_MAX, "INT64_MAX converts");
    ck_assert_msg(scan_all("-9223372036854775808", 20, 64, &v) == 0, "valid int");
    ck_assert_msg(scan_int64(&v, &n) && n == INT64_MIN, "INT64_MIN converts");
    ck_assert_msg(scan_all("9223372036854775808", 19, 64, &v) == 0, "valid JSON number");
    ck_assert_msg(!scan_int64(&v, &n), "INT64_MAX + 1 does not fit");
    ck_assert_msg(scan_all("1.0", 3, 64, &v) == 0 && !v.is_int, "1.0 is not an integer");
    ck_assert_msg(scan_all("1e3", 3, 64, &v) == 0 && !v.is_int, "1e3 is not an integer");
}
END_TEST

START_TEST(array_elements_are_walked_in_order)
{
    const char *text = "[ \"a\" , 2,[3], {\"x\":1} ]";
    struct scan_value v, e;
    ck_assert_msg(scan_all(text, strlen(text), 64, &v) == 0 && v.nelems == 4, "4 elements");
    size_t pos = 0;
    static const enum scan_type want[] = {SCAN_STRING, SCAN_NUMBER, SCAN_ARRAY, SCAN_OBJECT};
    for (int i = 0; i < 4; i++) {
        ck_assert_msg(scan_array_next(&v, &pos, &e) == 1, "element %d", i);
        ck_assert_msg(e.type == want[i], "element %d has type %s", i, scan_type_name(e.type));
    }
    ck_assert_msg(scan_array_next(&v, &pos, &e) == 0, "then the end");
    ck_assert_msg(scan_all("[]", 2, 64, &v) == 0, "empty array");
    pos = 0;
    ck_assert_msg(scan_array_next(&v, &pos, &e) == 0, "empty array has no element");
}
END_TEST

Suite *
scan_suite(void)
{
    Suite *s = suite_create("scan");
    TCase *tc = tcase_create("syntax");
    tcase_add_test(tc, valid_values_of_every_type_are_accepted);
    tcase_add_test(tc, malformed_numbers_are_rejected);
    tcase_add_test(tc, malformed_strings_are_rejected);
    tcase_add_test(tc, invalid_utf8_is_rejected);
    tcase_add_test(tc, malformed_structure_is_rejected);
    tcase_add_test(tc, nesting_deeper_than_the_limit_is_rejected);
    suite_add_tcase(s, tc);
    tc = tcase_create("values");
    tcase_add_test(tc, compaction_removes_whitespace_outside_strings_only);
    tcase_add_test(tc, unescaping_decodes_every_escape_to_utf8);
    tcase_add_test(tc, integers_convert_within_int64_and_overflow_is_reported);
    tcase_add_test(tc, array_elements_are_walked_in_order);
    suite_add_tcase(s, tc);
    return s;
}
