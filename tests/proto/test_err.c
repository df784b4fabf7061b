/* proto/err: the wire error table. */
#include "chanq_config.h"

#include "proto/err.h"
#include "tests/proto/suites.h"

#include <string.h>

START_TEST(every_code_has_its_wire_spelling)
{
    static const char *const want[PROTO_ERR_COUNT] = {
        "ok",           "bad_request", "frame_too_large", "unknown_op", "unauthorized", "not_found",
        "not_reserved", "queue_full",  "timeout",         "closed",     "cancelled",    "conflict",
        "too_large",    "limit",       "shutting_down",   "not_leader",   "internal",
    };
    for (int i = 0; i < PROTO_ERR_COUNT; i++)
        ck_assert_msg(strcmp(proto_err_code((enum proto_err)i), want[i]) == 0,
                      "code %d is '%s', want '%s'", i, proto_err_code((enum proto_err)i), want[i]);
}
END_TEST

START_TEST(out_of_range_code_reads_as_internal)
{
    ck_assert_msg(strcmp(proto_err_code(PROTO_ERR_COUNT), "internal") == 0,
                  "PROTO_ERR_COUNT should map to internal");
    ck_assert_msg(strcmp(proto_err_code((enum proto_err) - 1), "internal") == 0,
                  "-1 should map to internal");
}
END_TEST

START_TEST(wire_codes_parse_back_to_the_enum)
{
    for (int i = 0; i < PROTO_ERR_COUNT; i++) {
        const char *s = proto_err_code((enum proto_err)i);
        enum proto_err e = PROTO_INTERNAL;
        ck_assert_msg(proto_err_parse(s, strlen(s), &e), "'%s' should parse", s);
        ck_assert_msg(e == (enum proto_err)i, "'%s' parsed to %d, want %d", s, e, i);
    }
    enum proto_err e;
    ck_assert_msg(!proto_err_parse("queue_ful", 9, &e), "a prefix must not parse");
    ck_assert_msg(!proto_err_parse("queue_fullx", 11, &e), "a longer word must not parse");
}
END_TEST

START_TEST(error_message_is_formatted_and_made_printable)
{
    struct proto_error err;
    proto_error_set(&err, PROTO_NOT_FOUND, "queue '%s' has %d jobs", "m\x01\xc3\xa9", 3);
    ck_assert_msg(err.code == PROTO_NOT_FOUND, "code kept");
    ck_assert_msg(strcmp(err.message, "queue 'm?"
                                      "?"
                                      "?' has 3 jobs") == 0,
                  "non-printable bytes become '?': got '%s'", err.message);
    proto_error_set(NULL, PROTO_INTERNAL, "ignored"); /* must not crash */
}
END_TEST

START_TEST(long_error_message_is_truncated_to_fit)
{
    struct proto_error err;
    char big[1000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    proto_error_set(&err, PROTO_LIMIT, "%s", big);
    ck_assert_msg(strlen(err.message) == sizeof err.message - 1, "truncated to %zu, got %zu",
                  sizeof err.message - 1, strlen(err.message));
}
END_TEST

Suite *
err_suite(void)
{
    Suite *s = suite_create("err");
    TCase *tc = tcase_create("codes");
    tcase_add_test(tc, every_code_has_its_wire_spelling);
    tcase_add_test(tc, out_of_range_code_reads_as_internal);
    tcase_add_test(tc, wire_codes_parse_back_to_the_enum);
    tcase_add_test(tc, error_message_is_formatted_and_made_printable);
    tcase_add_test(tc, long_error_message_is_truncated_to_fit);
    suite_add_tcase(s, tc);
    return s;
}
