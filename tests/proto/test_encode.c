/* proto/encode: the exact bytes of every response and event. */
#include "chanq_config.h"

#include "proto/encode.h"
#include "tests/proto/suites.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

/* Checks b holds exactly want, that it is one line and that the line is a
 * JSON object jansson accepts; then empties b. */
static void
expect_line(struct buf *b, const char *want)
{
    ck_assert_msg(b->len == strlen(want) && memcmp(b->data, want, b->len) == 0,
                  "got '%.*s', want '%s'", (int)b->len, b->data, want);
    ck_assert_msg(memchr(b->data, '\n', b->len) == b->data + b->len - 1,
                  "exactly one newline, at the end");
    json_error_t jerr;
    json_t *j = json_loadb(b->data, b->len - 1, JSON_REJECT_DUPLICATES, &jerr);
    ck_assert_msg(j && json_is_object(j), "'%s' is a JSON object: %s", want, jerr.text);
    json_decref(j);
    buf_reset(b);
}

static const struct span no_rid = {NULL, 0};

START_TEST(ok_is_exactly_ok_true)
{
    struct buf b;
    buf_init(&b);
    ck_assert_msg(encode_ok(&b, no_rid) == 0, "encode_ok");
    expect_line(&b, "{\"ok\":true}\n");
    buf_clear(&b);
}
END_TEST

START_TEST(rid_is_echoed_verbatim_right_after_ok)
{
    struct buf b;
    buf_init(&b);
    encode_ok(&b, span_str("7"));
    expect_line(&b, "{\"ok\":true,\"rid\":7}\n");
    encode_ok(&b, span_str("\"a\\u0062\""));
    expect_line(&b, "{\"ok\":true,\"rid\":\"a\\u0062\"}\n");
    encode_error(&b, span_str("null"), PROTO_TIMEOUT, "late");
    expect_line(
        &b, "{\"ok\":false,\"rid\":null,\"error\":{\"code\":\"timeout\",\"message\":\"late\"}}\n");
    buf_clear(&b);
}
END_TEST

START_TEST(ok_with_id_names_the_queue_only_for_a_select)
{
    struct buf b;
    buf_init(&b);
    encode_ok_id(&b, no_rid, span_str("01J9"), span_str(NULL));
    expect_line(&b, "{\"ok\":true,\"id\":\"01J9\"}\n");
    encode_ok_id(&b, span_str("3"), span_str("01J9"), span_str("mail-b"));
    expect_line(&b, "{\"ok\":true,\"rid\":3,\"id\":\"01J9\",\"queue\":\"mail-b\"}\n");
    buf_clear(&b);
}
END_TEST

START_TEST(ok_with_an_int_or_a_string_field)
{
    struct buf b;
    buf_init(&b);
    encode_ok_int(&b, no_rid, "cancelled", 3);
    expect_line(&b, "{\"ok\":true,\"cancelled\":3}\n");
    encode_ok_int(&b, no_rid, "kicked", 0);
    expect_line(&b, "{\"ok\":true,\"kicked\":0}\n");
    encode_ok_str(&b, span_str("1"), "state", span_str("delayed"));
    expect_line(&b, "{\"ok\":true,\"rid\":1,\"state\":\"delayed\"}\n");
    buf_clear(&b);
}
END_TEST

START_TEST(error_carries_the_wire_code_and_an_escaped_message)
{
    struct buf b;
    buf_init(&b);
    encode_error(&b, no_rid, PROTO_QUEUE_FULL, "queue 'mail' is at capacity 100");
    expect_line(&b,
                "{\"ok\":false,\"error\":{\"code\":\"queue_full\",\"message\":\"queue 'mail' is "
                "at capacity 100\"}}\n");
    encode_error(&b, no_rid, PROTO_BAD_REQUEST, "a\"b\\c\nd\te\x01\xc3\xa9");
    expect_line(&b, "{\"ok\":false,\"error\":{\"code\":\"bad_request\",\"message\":"
                    "\"a\\\"b\\\\c\\nd\\te\\u0001\xc3\xa9\"}}\n");
    struct proto_error err;
    proto_error_set(&err, PROTO_FRAME_TOO_LARGE, "line longer than %d bytes", 1048576);
    encode_proto_error(&b, no_rid, &err);
    expect_line(&b, "{\"ok\":false,\"error\":{\"code\":\"frame_too_large\",\"message\":\"line "
                    "longer than 1048576 bytes\"}}\n");
    buf_clear(&b);
}
END_TEST

START_TEST(every_error_code_encodes)
{
    struct buf b;
    buf_init(&b);
    for (int i = PROTO_BAD_REQUEST; i < PROTO_ERR_COUNT; i++) {
        char want[200];
        snprintf(want, sizeof want,
                 "{\"ok\":false,\"error\":{\"code\":\"%s\",\"message\":\"m\"}}\n",
                 proto_err_code((enum proto_err)i));
        encode_error(&b, no_rid, (enum proto_err)i, "m");
        expect_line(&b, want);
    }
    buf_clear(&b);
}
END_TEST

START_TEST(jobs_list_inserts_payloads_verbatim)
{
    struct buf b;
    buf_init(&b);
    encode_jobs(&b, no_rid, NULL, 0);
    expect_line(&b, "{\"ok\":true,\"jobs\":[]}\n");
    struct proto_job jobs[2] = {
        {span_str("j1"), span_str("mail"), span_str("{\"to\":\"a\"}"), 1, 30000, 0, {NULL, 0}},
        {span_str("j2"), span_str("sms"), span_str("[1,\"x\"]"), 2, 500, 1700000000123,
         span_str("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")},
    };
    encode_jobs(&b, span_str("\"f\""), jobs, 2);
    expect_line(&b,
                "{\"ok\":true,\"rid\":\"f\",\"jobs\":["
                "{\"id\":\"j1\",\"queue\":\"mail\",\"payload\":{\"to\":\"a\"},\"attempt\":1,"
                "\"ttr_ms\":30000},"
                "{\"id\":\"j2\",\"queue\":\"sms\",\"payload\":[1,\"x\"],\"attempt\":2,"
                "\"ttr_ms\":500,\"deadline\":1700000000123,"
                "\"traceparent\":\"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\"}]}\n");
    buf_clear(&b);
}
END_TEST

START_TEST(wait_answer_has_state_and_optional_or_null_result_or_error)
{
    struct buf b;
    buf_init(&b);
    encode_wait(&b, no_rid, span_str("done"), span_str("{\"sent\":true}"), span_str(NULL));
    expect_line(&b, "{\"ok\":true,\"state\":\"done\",\"result\":{\"sent\":true}}\n");
    encode_wait(&b, no_rid, span_str("dead"), span_str(NULL), span_str("smtp \"timeout\""));
    expect_line(&b, "{\"ok\":true,\"state\":\"dead\",\"error\":\"smtp \\\"timeout\\\"\"}\n");
    encode_wait(&b, no_rid, span_str("cancelled"), span_str(NULL), span_str(NULL));
    expect_line(&b, "{\"ok\":true,\"state\":\"cancelled\"}\n");
    encode_wait(&b, no_rid, span_str("done"), encode_null(), span_str(NULL));
    expect_line(&b, "{\"ok\":true,\"state\":\"done\",\"result\":null}\n");
    encode_wait(&b, no_rid, span_str("dead"), span_str(NULL), encode_null());
    expect_line(&b, "{\"ok\":true,\"state\":\"dead\",\"error\":null}\n");
    buf_clear(&b);
}
END_TEST

START_TEST(generic_fields_follow_ok_in_their_order)
{
    struct buf b;
    buf_init(&b);
    json_t *f = json_pack("{s:s, s:s, s:i}", "server", "chanqd", "version", "0.1.0", "protocol", 1);
    ck_assert_msg(encode_ok_fields(&b, span_str("9"), f) == 0, "encode");
    expect_line(&b, "{\"ok\":true,\"rid\":9,\"server\":\"chanqd\",\"version\":\"0.1.0\","
                    "\"protocol\":1}\n");
    json_decref(f);
    f = json_object();
    encode_ok_fields(&b, no_rid, f);
    expect_line(&b, "{\"ok\":true}\n");
    json_decref(f);
    f = json_array();
    ck_assert_msg(encode_ok_fields(&b, no_rid, f) == -EINVAL, "an array is refused");
    ck_assert_msg(b.len == 0, "and nothing is written");
    json_decref(f);
    buf_clear(&b);
}
END_TEST

START_TEST(revoked_and_cancel_events_have_no_ok_key)
{
    struct buf b;
    buf_init(&b);
    encode_event_revoked(&b, span_str("j1"), REVOKE_TTR);
    expect_line(&b, "{\"event\":\"revoked\",\"id\":\"j1\",\"reason\":\"ttr\"}\n");
    encode_event_revoked(&b, span_str("j1"), REVOKE_DEADLINE);
    expect_line(&b, "{\"event\":\"revoked\",\"id\":\"j1\",\"reason\":\"deadline\"}\n");
    encode_event_cancel(&b, span_str("j2"));
    expect_line(&b, "{\"event\":\"cancel\",\"id\":\"j2\"}\n");
    buf_clear(&b);
}
END_TEST

START_TEST(jobs_and_consume_end_events)
{
    struct buf b;
    buf_init(&b);
    struct proto_job jobs[2] = {
        {span_str("j1"), span_str("mail"), span_str("1"), 1, 30000, 0, {NULL, 0}},
        {span_str("j2"), span_str("mail"), span_str("\"x\""), 3, 500, 5, {NULL, 0}},
    };
    encode_event_jobs(&b, jobs, 2);
    expect_line(&b, "{\"event\":\"jobs\",\"jobs\":["
                    "{\"id\":\"j1\",\"queue\":\"mail\",\"payload\":1,\"attempt\":1,\"ttr_ms\":30000},"
                    "{\"id\":\"j2\",\"queue\":\"mail\",\"payload\":\"x\",\"attempt\":3,\"ttr_ms\":500,"
                    "\"deadline\":5}]}\n");
    encode_event_consume_end(&b, "closed");
    expect_line(&b, "{\"event\":\"consume_end\",\"reason\":\"closed\"}\n");
    buf_clear(&b);
}
END_TEST

START_TEST(several_ids_answers_list_the_failures)
{
    struct buf b;
    buf_init(&b);
    encode_ok_count(&b, span_str("7"), "acked", 3, NULL, 0);
    expect_line(&b, "{\"ok\":true,\"rid\":7,\"acked\":3}\n");
    struct proto_id_error errs[2] = {
        {span_str("12"), PROTO_NOT_FOUND, "no job with id '12'"},
        {span_str("13"), PROTO_NOT_RESERVED, "job 13 is \"gone\""},
    };
    encode_ok_count(&b, no_rid, "nacked", 0, errs, 2);
    expect_line(&b, "{\"ok\":true,\"nacked\":0,\"errors\":["
                    "{\"id\":\"12\",\"code\":\"not_found\",\"message\":\"no job with id '12'\"},"
                    "{\"id\":\"13\",\"code\":\"not_reserved\",\"message\":\"job 13 is "
                    "\\\"gone\\\"\"}]}\n");
    encode_jobs_acked(&b, no_rid, NULL, 0, errs, 1);
    expect_line(&b, "{\"ok\":true,\"jobs\":[],\"ack_errors\":["
                    "{\"id\":\"12\",\"code\":\"not_found\",\"message\":\"no job with id '12'\"}]}\n");
    buf_clear(&b);
}
END_TEST

START_TEST(encoders_append_after_what_the_buffer_holds)
{
    struct buf b;
    buf_init(&b);
    encode_ok(&b, no_rid);
    encode_event_cancel(&b, span_str("x"));
    const char *want = "{\"ok\":true}\n{\"event\":\"cancel\",\"id\":\"x\"}\n";
    ck_assert_msg(b.len == strlen(want) && memcmp(b.data, want, b.len) == 0,
                  "two lines back to back, got '%.*s'", (int)b.len, b.data);
    buf_clear(&b);
}
END_TEST

Suite *
encode_suite(void)
{
    Suite *s = suite_create("encode");
    TCase *tc = tcase_create("responses");
    tcase_add_test(tc, ok_is_exactly_ok_true);
    tcase_add_test(tc, rid_is_echoed_verbatim_right_after_ok);
    tcase_add_test(tc, ok_with_id_names_the_queue_only_for_a_select);
    tcase_add_test(tc, ok_with_an_int_or_a_string_field);
    tcase_add_test(tc, error_carries_the_wire_code_and_an_escaped_message);
    tcase_add_test(tc, every_error_code_encodes);
    tcase_add_test(tc, jobs_list_inserts_payloads_verbatim);
    tcase_add_test(tc, wait_answer_has_state_and_optional_or_null_result_or_error);
    tcase_add_test(tc, generic_fields_follow_ok_in_their_order);
    tcase_add_test(tc, several_ids_answers_list_the_failures);
    tcase_add_test(tc, encoders_append_after_what_the_buffer_holds);
    suite_add_tcase(s, tc);
    tc = tcase_create("events");
    tcase_add_test(tc, revoked_and_cancel_events_have_no_ok_key);
    tcase_add_test(tc, jobs_and_consume_end_events);
    suite_add_tcase(s, tc);
    return s;
}
