/* proto/msg: decoding and validating every op. Lines are written with
 * single quotes (see msg_helpers.h). */
#include "chanq_config.h"

#include "proto/msg.h"
#include "tests/proto/msg_helpers.h"
#include "tests/proto/suites.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* whole-request rules */

START_TEST(text_that_is_not_json_is_bad_request)
{
    static const struct reject_case cases[] = {
        BAD("hello", "not a JSON object"),
        BAD("{'op':'ping'", "invalid JSON at byte 12: unterminated object"),
        BAD("{'op':'ping',}", "invalid JSON"),
        BAD("{'op':'ping'} {}", "data after the object"),
        BAD("{'op':'ping','x':[1,}", "invalid JSON"),
        BAD("{'op':'pi\x01ng'}", "control character"),
        BAD("{'op':'ping','x':'\xff'}", "invalid UTF-8"),
    };
    EXPECT_REJECTS(cases);
}
END_TEST

START_TEST(json_that_is_not_an_object_is_bad_request)
{
    static const struct reject_case cases[] = {
        BAD("[{'op':'ping'}]", "request is not a JSON object"),
        BAD("'ping'", "request is not a JSON object"),
        BAD("42", "request is not a JSON object"),
        BAD("null", "request is not a JSON object"),
    };
    EXPECT_REJECTS(cases);
}
END_TEST

START_TEST(missing_or_mistyped_op_is_bad_request_and_unknown_op_is_unknown_op)
{
    static const struct reject_case cases[] = {
        BAD("{}", "field 'op': missing"),
        BAD("{'queue':'a'}", "field 'op': missing"),
        BAD("{'op':1}", "field 'op': must be a string, got number"),
        BAD("{'op':null}", "field 'op': must be a string, got null"),
        BAD("{'op':['ping']}", "field 'op': must be a string, got array"),
        {"{'op':'frobnicate'}", PROTO_UNKNOWN_OP, "unknown op 'frobnicate'"},
        {"{'op':'PING'}", PROTO_UNKNOWN_OP, "unknown op 'PING'"},
        {"{'op':''}", PROTO_UNKNOWN_OP, "unknown op ''"},
    };
    EXPECT_REJECTS(cases);
}
END_TEST

START_TEST(a_known_field_given_twice_is_bad_request)
{
    expect_reject("{'op':'ping','op':'ping'}", PROTO_BAD_REQUEST, "field 'op': given twice");
    expect_reject("{'op':'ack','id':'a','id':'b'}", PROTO_BAD_REQUEST, "field 'id': given twice");
}
END_TEST

START_TEST(unknown_fields_of_any_type_are_ignored)
{
    struct request r;
    decode_ok("{'future':{'deep':[1,2,{'x':null}]},'op':'ping','another':'x','z':-1.5e3}", &r);
    ck_assert_msg(r.op == OP_PING, "op decoded");
    request_clear(&r);
    /* A field another op uses is ignored, even mistyped, by an op that does not. */
    decode_ok("{'op':'ping','queue':7,'ttr_ms':'soon'}", &r);
    ck_assert_msg(r.op == OP_PING && !r.has_ttr_ms && r.queue.len == 0,
                  "fields the op does not use stay zero");
    request_clear(&r);
}
END_TEST

START_TEST(escaped_field_names_are_matched_after_unescaping)
{
    struct request r;
    decode_ok("{'\\u006fp':'\\u0070ing'}", &r);
    ck_assert_msg(r.op == OP_PING, "op spelled with escapes");
    request_clear(&r);
}
END_TEST

START_TEST(rid_is_kept_as_raw_text_and_echoed_even_on_rejection)
{
    struct request r;
    decode_ok("{'op':'ping','rid':'a\\u0062'}", &r);
    ck_assert_msg(span_is(r.rid, "\"a\\u0062\""), "string rid kept verbatim");
    request_clear(&r);
    decode_ok("{'rid':-1.5e3,'op':'ping'}", &r);
    ck_assert_msg(span_is(r.rid, "-1.5e3"), "number rid kept verbatim");
    request_clear(&r);
    decode_ok("{'op':'ping','rid':null}", &r);
    ck_assert_msg(span_is(r.rid, "null"), "null rid kept");
    request_clear(&r);

    char *j = json("{'op':'submit','queue':'bad name','payload':1,'rid':42}");
    struct proto_error err;
    ck_assert_msg(msg_decode(j, strlen(j), NULL, &r, &err) != 0, "bad queue rejected");
    ck_assert_msg(span_is(r.rid, "42"), "rid available for the error reply");
    ck_assert_msg(r.op == OP_SUBMIT, "op available for the error reply");
    request_clear(&r);
    free(j);

    j = json("{'op':'nope','rid':'x'}");
    ck_assert_msg(msg_decode(j, strlen(j), NULL, &r, &err) != 0, "unknown op rejected");
    ck_assert_msg(span_is(r.rid, "\"x\""), "rid echoed for unknown_op too");
    request_clear(&r);
    free(j);
}
END_TEST

START_TEST(rid_that_is_not_a_scalar_or_too_long_is_bad_request)
{
    expect_reject("{'op':'ping','rid':{}}", PROTO_BAD_REQUEST,
                  "field 'rid': must be a scalar, got object");
    expect_reject("{'op':'ping','rid':[1]}", PROTO_BAD_REQUEST,
                  "field 'rid': must be a scalar, got array");
    char line[400];
    snprintf(line, sizeof line, "{'op':'ping','rid':'%0300d'}", 0);
    expect_reject(line, PROTO_BAD_REQUEST, "field 'rid': longer than 256 bytes");
}
END_TEST

/* A submit whose payload is `levels` nested arrays. */
static void
nested_submit(char *line, size_t cap, int levels)
{
    size_t n = (size_t)snprintf(line, cap, "{'op':'submit','queue':'q','payload':");
    for (int i = 0; i < levels; i++)
        line[n++] = '[';
    for (int i = 0; i < levels; i++)
        line[n++] = ']';
    line[n++] = '}';
    line[n] = '\0';
}

START_TEST(nesting_is_bounded_to_64_levels)
{
    char line[512];
    struct request r;
    nested_submit(line, sizeof line, 63); /* 1 (the request) + 63 = 64 */
    decode_ok(line, &r);
    ck_assert_msg(r.payload.len == 126, "payload kept");
    request_clear(&r);
    nested_submit(line, sizeof line, 64);
    expect_reject(line, PROTO_BAD_REQUEST, "nested deeper than 64");
}
END_TEST

/* hello, ping, queues, stats */

START_TEST(hello_with_client_and_token_decodes)
{
    struct request r;
    decode_ok("{'op':'hello','client':'billing-worker','token':'s3cr\\u0065t'}", &r);
    ck_assert_msg(r.op == OP_HELLO, "op");
    ck_assert_msg(span_is(r.client, "billing-worker"), "client");
    ck_assert_msg(span_is(r.token, "s3cret"), "token unescaped");
    request_clear(&r);
    decode_ok("{'op':'hello'}", &r);
    ck_assert_msg(r.client.len == 0 && r.token.len == 0, "both optional");
    request_clear(&r);
}
END_TEST

START_TEST(hello_with_mistyped_fields_is_bad_request)
{
    static const struct reject_case cases[] = {
        BAD("{'op':'hello','client':1}", "field 'client': must be a string, got number"),
        BAD("{'op':'hello','token':true}", "field 'token': must be a string, got boolean"),
        BAD("{'op':'hello','token':'a\\u0000b'}", "field 'token': contains a NUL"),
    };
    EXPECT_REJECTS(cases);
    char *line = malloc(5000);
    snprintf(line, 5000, "{'op':'hello','client':'%04200d'}", 0);
    expect_reject(line, PROTO_BAD_REQUEST, "field 'client': longer than 4096 bytes");
    free(line);
}
END_TEST

START_TEST(ping_and_queues_take_no_fields)
{
    struct request r;
    decode_ok("{'op':'ping'}", &r);
    ck_assert_msg(r.op == OP_PING, "ping");
    request_clear(&r);
    decode_ok("{'op':'queues','rid':1}", &r);
    ck_assert_msg(r.op == OP_QUEUES && span_is(r.rid, "1"), "queues");
    request_clear(&r);
}
END_TEST

START_TEST(stats_takes_an_optional_queue)
{
    struct request r;
    decode_ok("{'op':'stats'}", &r);
    ck_assert_msg(r.op == OP_STATS && r.queue.len == 0, "server stats");
    request_clear(&r);
    decode_ok("{'op':'stats','queue':'mail'}", &r);
    ck_assert_msg(span_is(r.queue, "mail"), "queue stats");
    request_clear(&r);
    expect_reject("{'op':'stats','queue':1}", PROTO_BAD_REQUEST, "field 'queue': must be a string");
    expect_reject("{'op':'stats','queue':'no/slash'}", PROTO_BAD_REQUEST,
                  "field 'queue': 'no/slash' is not a queue name");
}
END_TEST

/* declare */

START_TEST(declare_with_every_setting_decodes)
{
    struct request r;
    decode_ok("{'op':'declare','queue':'mail','capacity':100,'ttr_ms':60000,'max_attempts':5}", &r);
    ck_assert_msg(r.op == OP_DECLARE && span_is(r.queue, "mail"), "op and queue");
    ck_assert_msg(r.has_capacity && r.capacity == 100, "capacity");
    ck_assert_msg(r.has_ttr_ms && r.ttr_ms == 60000, "ttr_ms");
    ck_assert_msg(r.has_max_attempts && r.max_attempts == 5, "max_attempts");
    request_clear(&r);
    decode_ok("{'op':'declare','queue':'rendezvous','capacity':0}", &r);
    ck_assert_msg(r.has_capacity && r.capacity == 0, "capacity 0 is unbuffered");
    ck_assert_msg(!r.has_ttr_ms && !r.has_max_attempts, "others absent");
    request_clear(&r);
}
END_TEST

START_TEST(declare_rejects_missing_mistyped_and_out_of_range_fields)
{
    static const struct reject_case cases[] = {
        BAD("{'op':'declare'}", "field 'queue': missing"),
        BAD("{'op':'declare','capacity':1}", "field 'queue': missing"),
        BAD("{'op':'declare','queue':['a']}", "field 'queue': must be a string"),
        BAD("{'op':'declare','queue':''}", "field 'queue': '' is not a queue name"),
        BAD("{'op':'declare','queue':'a','capacity':'10'}",
            "field 'capacity': must be an integer, got string"),
        BAD("{'op':'declare','queue':'a','capacity':-1}", "field 'capacity': -1 is out of range"),
        BAD("{'op':'declare','queue':'a','capacity':1.5}",
            "field 'capacity': must be an integer, got 1.5"),
        BAD("{'op':'declare','queue':'a','capacity':1000000001}", "out of range"),
        BAD("{'op':'declare','queue':'a','ttr_ms':0}", "field 'ttr_ms': 0 is out of range [1, "),
        BAD("{'op':'declare','queue':'a','ttr_ms':null}",
            "field 'ttr_ms': must be an integer, got null"),
        BAD("{'op':'declare','queue':'a','max_attempts':0}", "field 'max_attempts': 0 is out"),
        BAD("{'op':'declare','queue':'a','max_attempts':1001}", "field 'max_attempts': 1001"),
        BAD("{'op':'declare','queue':'a','max_attempts':true}", "must be an integer, got boolean"),
    };
    EXPECT_REJECTS(cases);
}
END_TEST

START_TEST(queue_names_follow_the_documented_syntax)
{
    ck_assert_msg(msg_queue_name_valid("aZ09_.:-", 8), "every allowed class");
    ck_assert_msg(!msg_queue_name_valid("", 0), "empty");
    ck_assert_msg(!msg_queue_name_valid("a b", 3), "space");
    ck_assert_msg(!msg_queue_name_valid("a/b", 3), "slash");
    ck_assert_msg(!msg_queue_name_valid("\xc3\xa9", 2), "non-ASCII");
    char name[130];
    memset(name, 'q', sizeof name);
    ck_assert_msg(msg_queue_name_valid(name, 128), "128 bytes is the maximum");
    ck_assert_msg(!msg_queue_name_valid(name, 129), "129 bytes is too long");
    struct request r;
    decode_ok("{'op':'close','queue':'m\\u0061il'}", &r);
    ck_assert_msg(span_is(r.queue, "mail"), "escapes are decoded before the check");
    request_clear(&r);
}
END_TEST

/* submit */

START_TEST(submit_with_a_queue_and_payload_decodes)
{
    struct request r;
    decode_ok("{'op':'submit','queue':'mail','payload':{'to':'a@b.c','n':[1,2]}}", &r);
    ck_assert_msg(r.op == OP_SUBMIT && span_is(r.queue, "mail"), "op and queue");
    ck_assert_msg(span_is(r.payload, "{\"to\":\"a@b.c\",\"n\":[1,2]}"), "payload verbatim");
    ck_assert_msg(r.nqueues == 0, "no select list");
    ck_assert_msg(!r.has_wait_ms && !r.has_delay_ms && !r.has_ttr_ms, "options absent");
    request_clear(&r);
}
END_TEST

START_TEST(submit_with_every_option_decodes)
{
    struct request r;
    decode_ok("{'op':'submit','queue':'q','payload':null,'delay_ms':0,'ttr_ms':30000,"
              "'max_attempts':3,'deadline_ms':60000,'parent':'job-1','wait_ms':0,'rid':'r'}",
              &r);
    ck_assert_msg(span_is(r.payload, "null"), "null payload");
    ck_assert_msg(r.has_delay_ms && r.delay_ms == 0, "delay_ms");
    ck_assert_msg(r.has_ttr_ms && r.ttr_ms == 30000, "ttr_ms");
    ck_assert_msg(r.has_max_attempts && r.max_attempts == 3, "max_attempts");
    ck_assert_msg(r.has_deadline_ms && r.deadline_ms == 60000, "deadline_ms");
    ck_assert_msg(span_is(r.parent, "job-1"), "parent");
    ck_assert_msg(r.has_wait_ms && r.wait_ms == 0, "wait_ms 0 means do not wait");
    request_clear(&r);
}
END_TEST

START_TEST(submit_payload_of_any_type_is_kept_compact)
{
    static const char *const in[] = {
        "{'op':'submit','queue':'q','payload':'text with  spaces'}",
        "{'op':'submit','queue':'q','payload':-1.25e+2}",
        "{'op':'submit','queue':'q','payload':true}",
        "{'op':'submit','queue':'q','payload':[ 1 , { 'a' : ' b ' } ] }",
        "{'op':'submit','queue':'q','payload':{'\\u00e9':'\\n'}}",
    };
    static const char *const want[] = {
        "\"text with  spaces\"", "-1.25e+2", "true", "[1,{\"a\":\" b \"}]", "{\"\\u00e9\":\"\\n\"}",
    };
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
        struct request r;
        decode_ok(in[i], &r);
        ck_assert_msg(span_is(r.payload, want[i]), "case %zu: payload '%.*s', want '%s'", i,
                      (int)r.payload.len, r.payload.ptr, want[i]);
        ck_assert_msg(r.payload.ptr[r.payload.len] == '\0', "payload is NUL-terminated");
        request_clear(&r);
    }
}
END_TEST

START_TEST(submit_with_queues_is_a_send_side_select)
{
    struct request r;
    decode_ok("{'op':'submit','queues':['mail-a','mail-b'],'payload':1}", &r);
    ck_assert_msg(r.queue.len == 0, "no single queue");
    ck_assert_msg(r.nqueues == 2, "two queues, got %zu", r.nqueues);
    ck_assert_msg(span_is(r.queues[0], "mail-a") && span_is(r.queues[1], "mail-b"), "in order");
    request_clear(&r);
}
END_TEST

START_TEST(submit_without_queue_is_bad_request)
{
    expect_reject("{'op':'submit','payload':1}", PROTO_BAD_REQUEST,
                  "field 'queue': missing (or give 'queues')");
}
END_TEST

START_TEST(submit_without_payload_is_bad_request)
{
    expect_reject("{'op':'submit','queue':'q'}", PROTO_BAD_REQUEST, "field 'payload': missing");
}
END_TEST

START_TEST(submit_rejects_mistyped_and_out_of_range_fields)
{
    static const struct reject_case cases[] = {
        BAD("{'op':'submit','queue':'q','queues':['r'],'payload':1}",
            "fields 'queue' and 'queues': give one, not both"),
        BAD("{'op':'submit','queue':5,'payload':1}", "field 'queue': must be a string"),
        BAD("{'op':'submit','queues':'q','payload':1}",
            "field 'queues': must be an array of queue names, got string"),
        BAD("{'op':'submit','queues':[],'payload':1}", "field 'queues': must list 1 to 64"),
        BAD("{'op':'submit','queues':['a',1],'payload':1}",
            "field 'queues': element 1 must be a string, got number"),
        BAD("{'op':'submit','queues':['a','a'],'payload':1}", "'a' is listed twice"),
        BAD("{'op':'submit','queues':['a','b c'],'payload':1}",
            "field 'queues': 'b c' is not a queue name"),
        BAD("{'op':'submit','queue':'q','payload':1,'delay_ms':-1}",
            "field 'delay_ms': -1 is out of range"),
        BAD("{'op':'submit','queue':'q','payload':1,'delay_ms':'1'}",
            "field 'delay_ms': must be an integer, got string"),
        BAD("{'op':'submit','queue':'q','payload':1,'ttr_ms':-5}", "field 'ttr_ms': -5 is out"),
        BAD("{'op':'submit','queue':'q','payload':1,'ttr_ms':604800001}", "field 'ttr_ms'"),
        BAD("{'op':'submit','queue':'q','payload':1,'max_attempts':2.0}",
            "field 'max_attempts': must be an integer, got 2.0"),
        BAD("{'op':'submit','queue':'q','payload':1,'deadline_ms':0}",
            "field 'deadline_ms': 0 is out of range"),
        BAD("{'op':'submit','queue':'q','payload':1,'deadline_ms':1e3}",
            "field 'deadline_ms': must be an integer, got 1e3"),
        BAD("{'op':'submit','queue':'q','payload':1,'parent':12}",
            "field 'parent': must be a string, got number"),
        BAD("{'op':'submit','queue':'q','payload':1,'parent':''}",
            "field 'parent': must not be empty"),
        BAD("{'op':'submit','queue':'q','payload':1,'wait_ms':-1}",
            "field 'wait_ms': -1 is out of range [0, 86400000]"),
        BAD("{'op':'submit','queue':'q','payload':1,'wait_ms':86400001}", "field 'wait_ms'"),
        BAD("{'op':'submit','queue':'q','payload':1,'wait_ms':99999999999999999999}",
            "field 'wait_ms': 99999999999999999999 is out of range"),
    };
    EXPECT_REJECTS(cases);
}
END_TEST

/* W3C Trace Context's traceparent: VERSION-TRACEID-PARENTID-FLAGS. */
START_TEST(submit_traceparent_follows_the_w3c_syntax)
{
    static const char *const good[] = {
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-a-later-version-may-add-fields",
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char line[400];
        struct request r;
        snprintf(line, sizeof line, "{'op':'submit','queue':'q','payload':1,'traceparent':'%s'}",
                 good[i]);
        decode_ok(line, &r);
        ck_assert_msg(span_is(r.traceparent, good[i]), "kept verbatim: %s", good[i]);
        request_clear(&r);
    }
#define TP_BAD(tp, why) BAD("{'op':'submit','queue':'q','payload':1,'traceparent':'" tp "'}", why)
    static const struct reject_case cases[] = {
        TP_BAD("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1", "shorter than 55"),
        TP_BAD("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
               "version 00 has nothing after"),
        TP_BAD("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", "only after a '-'"),
        TP_BAD("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "version is not"),
        TP_BAD("0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "version is not"),
        TP_BAD("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "trace-id is not"),
        TP_BAD("00-00000000000000000000000000000000-00f067aa0ba902b7-01", "trace-id is not"),
        TP_BAD("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "parent-id is not"),
        TP_BAD("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0G", "trace-flags is not"),
        TP_BAD("00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
               "not four '-'-separated parts"),
        BAD("{'op':'submit','queue':'q','payload':1,'traceparent':1}",
            "field 'traceparent': must be a string, got number"),
    };
#undef TP_BAD
    EXPECT_REJECTS(cases);
}
END_TEST

START_TEST(submit_payload_over_the_limit_is_too_large)
{
    struct msg_limits lim = {.max_payload = 10};
    struct request r;
    struct proto_error err;
    char *j = json("{'op':'submit','queue':'q','payload':'123456789012'}");
    ck_assert_msg(msg_decode(j, strlen(j), &lim, &r, &err) == -EINVAL, "rejected");
    ck_assert_msg(err.code == PROTO_TOO_LARGE, "too_large, got %s", proto_err_code(err.code));
    ck_assert_msg(strstr(err.message, "field 'payload': 14 bytes is over the limit of 10") != NULL,
                  "message: %s", err.message);
    request_clear(&r);
    free(j);
    /* The limit applies to the compact text: whitespace does not count. */
    j = json("{'op':'submit','queue':'q','payload':[ 1 , 2 , 3 , 4 ]}");
    ck_assert_msg(msg_decode(j, strlen(j), &lim, &r, &err) == 0, "9 compact bytes fit");
    request_clear(&r);
    free(j);
}
END_TEST

START_TEST(default_payload_limit_is_512_kib)
{
    size_t n = 512 * 1024 + 64;
    char *line = malloc(n);
    size_t off = (size_t)snprintf(line, n, "{\"op\":\"submit\",\"queue\":\"q\",\"payload\":\"");
    size_t fill = 512 * 1024 - 2; /* payload text = fill + 2 quotes = 512 KiB exactly */
    memset(line + off, 'x', fill);
    off += fill;
    memcpy(line + off, "\"}", 3);
    struct request r;
    struct proto_error err;
    ck_assert_msg(msg_decode(line, strlen(line), NULL, &r, &err) == 0, "512 KiB fits: %s",
                  err.message);
    request_clear(&r);
    memcpy(line + off, "x\"}", 4);
    ck_assert_msg(msg_decode(line, strlen(line), NULL, &r, &err) != 0, "one more byte");
    ck_assert_msg(err.code == PROTO_TOO_LARGE, "is too_large");
    request_clear(&r);
    free(line);
}
END_TEST

/* fetch */

START_TEST(fetch_with_queues_timeout_count_and_strict_decodes)
{
    struct request r;
    decode_ok("{'op':'fetch','queues':['mail','sms'],'timeout_ms':5000,'count':10,'strict':true}",
              &r);
    ck_assert_msg(r.op == OP_FETCH && r.nqueues == 2, "two queues");
    ck_assert_msg(span_is(r.queues[0], "mail") && span_is(r.queues[1], "sms"), "names in order");
    ck_assert_msg(r.has_timeout_ms && r.timeout_ms == 5000, "timeout_ms");
    ck_assert_msg(r.has_count && r.count == 10, "count");
    ck_assert_msg(r.strict, "strict");
    request_clear(&r);
    decode_ok("{'op':'fetch','queues':['a']}", &r);
    ck_assert_msg(!r.has_timeout_ms && !r.has_count && !r.strict, "defaults left to the server");
    request_clear(&r);
}
END_TEST

START_TEST(fetch_takes_queue_as_shorthand_for_one_queue)
{
    struct request r;
    decode_ok("{'op':'fetch','queue':'mail','timeout_ms':0}", &r);
    ck_assert_msg(r.nqueues == 1 && span_is(r.queues[0], "mail"), "queues[] filled");
    ck_assert_msg(r.has_timeout_ms && r.timeout_ms == 0, "timeout_ms 0 is select-default");
    request_clear(&r);
}
END_TEST

START_TEST(fetch_rejects_missing_mistyped_and_out_of_range_fields)
{
    char many[1200];
    size_t n = (size_t)snprintf(many, sizeof many, "{'op':'fetch','queues':[");
    for (int i = 0; i < 65; i++)
        n += (size_t)snprintf(many + n, sizeof many - n, "%s'q%d'", i ? "," : "", i);
    snprintf(many + n, sizeof many - n, "]}");
    struct reject_case cases[] = {
        BAD("{'op':'fetch'}", "field 'queues': missing"),
        BAD("{'op':'fetch','queues':['a'],'queue':'b'}", "give one, not both"),
        BAD("{'op':'fetch','queues':'a'}", "field 'queues': must be an array"),
        BAD("{'op':'fetch','queues':[]}", "field 'queues': must list 1 to 64 queues, got 0"),
        BAD(many, "field 'queues': must list 1 to 64 queues, got 65"),
        BAD("{'op':'fetch','queues':[['a']]}", "element 0 must be a string, got array"),
        BAD("{'op':'fetch','queues':['a'],'timeout_ms':-1}", "field 'timeout_ms': -1 is out"),
        BAD("{'op':'fetch','queues':['a'],'timeout_ms':'5s'}",
            "field 'timeout_ms': must be an integer, got string"),
        BAD("{'op':'fetch','queues':['a'],'count':0}",
            "field 'count': 0 is out of range [1, 1000]"),
        BAD("{'op':'fetch','queues':['a'],'count':1001}", "field 'count': 1001 is out of range"),
        BAD("{'op':'fetch','queues':['a'],'count':'1'}", "field 'count': must be an integer"),
        BAD("{'op':'fetch','queues':['a'],'strict':1}",
            "field 'strict': must be a boolean, got number"),
        BAD("{'op':'fetch','queues':['a'],'strict':'true'}", "field 'strict': must be a boolean"),
    };
    EXPECT_REJECTS(cases);
}
END_TEST

/* ack, nack, release, touch, cancel, wait, job */

START_TEST(ack_with_and_without_result_decodes)
{
    struct request r;
    decode_ok("{'op':'ack','id':'j-1','result':{ 'sent' : true }}", &r);
    ck_assert_msg(r.op == OP_ACK && span_is(r.id, "j-1"), "id");
    ck_assert_msg(span_is(r.result, "{\"sent\":true}"), "result compact");
    request_clear(&r);
    decode_ok("{'op':'ack','id':'j-1'}", &r);
    ck_assert_msg(r.result.len == 0, "result optional");
    request_clear(&r);
}
END_TEST

START_TEST(nack_with_every_option_decodes)
{
    struct request r;
    decode_ok("{'op':'nack','id':'j','error':'smtp\\ttimeout','delay_ms':1000,'dead':false}", &r);
    ck_assert_msg(r.op == OP_NACK && span_is(r.id, "j"), "id");
    ck_assert_msg(span_is(r.error, "smtp\ttimeout"), "error unescaped");
    ck_assert_msg(r.has_delay_ms && r.delay_ms == 1000, "delay_ms");
    ck_assert_msg(!r.dead, "dead false");
    request_clear(&r);
    decode_ok("{'op':'nack','id':'j','dead':true}", &r);
    ck_assert_msg(r.dead && !r.has_delay_ms && r.error.len == 0, "dead true, rest absent");
    request_clear(&r);
}
END_TEST

START_TEST(ack_and_nack_take_several_ids)
{
    struct request r;
    decode_ok("{'op':'ack','ids':['1','2','\\u0033','1']}", &r);
    ck_assert_msg(r.op == OP_ACK && r.nids == 4 && r.id.len == 0, "four ids, no id");
    ck_assert_msg(span_is(r.ids[0], "1") && span_is(r.ids[2], "3") && span_is(r.ids[3], "1"),
                  "ids unescaped, in order, repeats kept");
    request_clear(&r);
    decode_ok("{'op':'nack','ids':['a'],'error':'e','delay_ms':0}", &r);
    ck_assert_msg(r.op == OP_NACK && r.nids == 1 && span_is(r.error, "e") && r.has_delay_ms,
                  "nack of ids with its options");
    request_clear(&r);
    /* A fetch's "ack" fills the same list; "ids" means nothing to it. */
    decode_ok("{'op':'fetch','queue':'q','ack':['x','y'],'ids':['z']}", &r);
    ck_assert_msg(r.op == OP_FETCH && r.nids == 2 && span_is(r.ids[1], "y"), "fetch's acks");
    request_clear(&r);
}
END_TEST

START_TEST(several_ids_reject_bad_lists)
{
    char many[8192];
    size_t n = (size_t)snprintf(many, sizeof many, "{'op':'ack','ids':[");
    for (int i = 0; i < 1001; i++)
        n += (size_t)snprintf(many + n, sizeof many - n, "%s'%d'", i ? "," : "", i % 10);
    snprintf(many + n, sizeof many - n, "]}");
    struct reject_case cases[] = {
        BAD("{'op':'ack'}", "field 'id': missing (or give 'ids')"),
        BAD("{'op':'nack'}", "field 'id': missing (or give 'ids')"),
        BAD("{'op':'ack','id':'1','ids':['2']}", "fields 'id' and 'ids': give one, not both"),
        BAD("{'op':'ack','ids':['1'],'result':1}", "a result goes with one 'id'"),
        BAD("{'op':'ack','ids':'1'}", "field 'ids': must be an array of job ids, got string"),
        BAD("{'op':'ack','ids':[]}", "field 'ids': must list 1 to 1000 ids, got 0"),
        BAD(many, "field 'ids': must list 1 to 1000 ids, got 1001"),
        BAD("{'op':'nack','ids':['1',2]}", "field 'ids': element 1 must be a string, got number"),
        BAD("{'op':'ack','ids':['']}", "field 'ids': element 0: must not be empty"),
        BAD("{'op':'ack','ids':['a\\nb']}", "field 'ids': element 0: contains a control"),
        BAD("{'op':'fetch','queue':'q','ack':{}}", "field 'ack': must be an array of job ids"),
    };
    EXPECT_REJECTS(cases);
}
END_TEST

START_TEST(consume_decodes_its_queues_prefetch_and_strict)
{
    struct request r;
    decode_ok("{'op':'consume','queues':['a','b'],'prefetch':64,'strict':true}", &r);
    ck_assert_msg(r.op == OP_CONSUME && r.nqueues == 2 && span_is(r.queues[1], "b"), "queues");
    ck_assert_msg(r.has_prefetch && r.prefetch == 64 && r.strict, "prefetch and strict");
    request_clear(&r);
    decode_ok("{'op':'consume','queue':'a'}", &r);
    ck_assert_msg(r.nqueues == 1 && span_is(r.queues[0], "a") && !r.has_prefetch,
                  "queue as shorthand, prefetch optional");
    request_clear(&r);
    decode_ok("{'op':'consume','prefetch':1000}", &r);
    ck_assert_msg(r.nqueues == 0 && r.prefetch == 1000, "queues optional (a change of credit)");
    request_clear(&r);
    decode_ok("{'op':'cancel_consume','rid':3}", &r);
    ck_assert_msg(r.op == OP_CANCEL_CONSUME && span_is(r.rid, "3"), "cancel_consume");
    request_clear(&r);
    static const struct reject_case cases[] = {
        BAD("{'op':'consume','queue':'a','queues':['b']}", "give one, not both"),
        BAD("{'op':'consume','queue':'a','prefetch':0}", "field 'prefetch': 0 is out of range"),
        BAD("{'op':'consume','queue':'a','prefetch':1001}", "1001 is out of range [1, 1000]"),
        BAD("{'op':'consume','queue':'a','prefetch':'5'}", "field 'prefetch': must be an integer"),
        BAD("{'op':'consume','queues':['a','a']}", "'a' is listed twice"),
    };
    EXPECT_REJECTS(cases);
}
END_TEST

START_TEST(release_takes_only_an_id)
{
    struct request r;
    decode_ok("{'op':'release','id':'j-7'}", &r);
    ck_assert_msg(r.op == OP_RELEASE && span_is(r.id, "j-7"), "release with its id");
    request_clear(&r);
    /* nack's fields mean nothing to release: ignored, not stored. */
    decode_ok("{'op':'release','id':'j','error':'e','delay_ms':5,'dead':true}", &r);
    ck_assert_msg(r.op == OP_RELEASE && r.error.len == 0 && !r.has_delay_ms && !r.dead,
                  "nack's fields are ignored");
    request_clear(&r);
}
END_TEST

START_TEST(touch_cancel_wait_and_job_decode)
{
    struct request r;
    decode_ok("{'op':'touch','id':'j','ttr_ms':30000}", &r);
    ck_assert_msg(r.op == OP_TOUCH && r.has_ttr_ms && r.ttr_ms == 30000, "touch");
    request_clear(&r);
    decode_ok("{'op':'touch','id':'j'}", &r);
    ck_assert_msg(!r.has_ttr_ms, "touch ttr_ms optional");
    request_clear(&r);
    decode_ok("{'op':'cancel','id':'j'}", &r);
    ck_assert_msg(r.op == OP_CANCEL && span_is(r.id, "j"), "cancel");
    request_clear(&r);
    decode_ok("{'op':'wait','id':'j','timeout_ms':10000}", &r);
    ck_assert_msg(r.op == OP_WAIT && r.has_timeout_ms && r.timeout_ms == 10000, "wait");
    request_clear(&r);
    decode_ok("{'op':'job','id':'j'}", &r);
    ck_assert_msg(r.op == OP_JOB && span_is(r.id, "j"), "job");
    request_clear(&r);
}
END_TEST

START_TEST(job_id_ops_reject_missing_mistyped_and_out_of_range_fields)
{
    char longid[200];
    snprintf(longid, sizeof longid, "{'op':'job','id':'%0129d'}", 0);
    struct reject_case cases[] = {
        BAD("{'op':'ack'}", "field 'id': missing"),
        BAD("{'op':'ack','id':1}", "field 'id': must be a string, got number"),
        BAD("{'op':'ack','id':''}", "field 'id': must not be empty"),
        BAD("{'op':'ack','id':'a\\nb'}", "field 'id': contains a control character"),
        BAD(longid, "field 'id': longer than 128 bytes"),
        BAD("{'op':'nack'}", "field 'id': missing"),
        BAD("{'op':'nack','id':['j']}", "field 'id': must be a string, got array"),
        BAD("{'op':'nack','id':'j','error':404}", "field 'error': must be a string, got number"),
        BAD("{'op':'nack','id':'j','delay_ms':-1}", "field 'delay_ms': -1 is out of range"),
        BAD("{'op':'nack','id':'j','delay_ms':true}", "field 'delay_ms': must be an integer"),
        BAD("{'op':'nack','id':'j','dead':'yes'}", "field 'dead': must be a boolean, got string"),
        BAD("{'op':'release'}", "field 'id': missing"),
        BAD("{'op':'release','id':7}", "field 'id': must be a string, got number"),
        BAD("{'op':'release','id':''}", "field 'id': must not be empty"),
        BAD("{'op':'touch'}", "field 'id': missing"),
        BAD("{'op':'touch','id':'j','ttr_ms':0}", "field 'ttr_ms': 0 is out of range"),
        BAD("{'op':'touch','id':'j','ttr_ms':'30s'}", "field 'ttr_ms': must be an integer"),
        BAD("{'op':'cancel'}", "field 'id': missing"),
        BAD("{'op':'cancel','id':{}}", "field 'id': must be a string, got object"),
        BAD("{'op':'wait'}", "field 'id': missing"),
        BAD("{'op':'wait','id':'j','timeout_ms':-10}", "field 'timeout_ms': -10 is out of range"),
        BAD("{'op':'wait','id':'j','timeout_ms':[1]}", "field 'timeout_ms': must be an integer"),
        BAD("{'op':'job'}", "field 'id': missing"),
        BAD("{'op':'job','id':null}", "field 'id': must be a string, got null"),
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (cases[i].code != PROTO_OK)
            expect_reject(cases[i].line, cases[i].code, cases[i].needle);
    }
}
END_TEST

START_TEST(ack_result_over_the_limit_is_too_large)
{
    struct msg_limits lim = {.max_payload = 8};
    struct request r;
    struct proto_error err;
    char *j = json("{'op':'ack','id':'j','result':{'a':'bcdefgh'}}");
    ck_assert_msg(msg_decode(j, strlen(j), &lim, &r, &err) != 0, "rejected");
    ck_assert_msg(err.code == PROTO_TOO_LARGE, "code %s", proto_err_code(err.code));
    ck_assert_msg(strstr(err.message, "field 'result'") != NULL, "names the field: %s",
                  err.message);
    request_clear(&r);
    free(j);
}
END_TEST

/* close, pause, resume, kick */

START_TEST(queue_ops_decode_with_their_queue)
{
    static const struct {
        const char *line;
        enum op op;
    } ok[] = {
        {"{'op':'close','queue':'mail'}", OP_CLOSE},
        {"{'op':'pause','queue':'mail'}", OP_PAUSE},
        {"{'op':'resume','queue':'mail'}", OP_RESUME},
        {"{'op':'kick','queue':'mail'}", OP_KICK},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        struct request r;
        decode_ok(ok[i].line, &r);
        ck_assert_msg(r.op == ok[i].op && span_is(r.queue, "mail"), "%s", ok[i].line);
        request_clear(&r);
    }
    struct request r;
    decode_ok("{'op':'kick','queue':'mail','count':100}", &r);
    ck_assert_msg(r.has_count && r.count == 100, "kick count");
    request_clear(&r);
}
END_TEST

START_TEST(queue_ops_reject_missing_mistyped_and_out_of_range_fields)
{
    static const struct reject_case cases[] = {
        BAD("{'op':'close'}", "field 'queue': missing"),
        BAD("{'op':'close','queue':1}", "field 'queue': must be a string"),
        BAD("{'op':'pause'}", "field 'queue': missing"),
        BAD("{'op':'pause','queue':true}", "field 'queue': must be a string"),
        BAD("{'op':'resume'}", "field 'queue': missing"),
        BAD("{'op':'resume','queue':'a b'}", "field 'queue': 'a b' is not a queue name"),
        BAD("{'op':'kick'}", "field 'queue': missing"),
        BAD("{'op':'kick','queue':'q','count':0}",
            "field 'count': 0 is out of range [1, 1000000000]"),
        BAD("{'op':'kick','queue':'q','count':'all'}", "field 'count': must be an integer"),
    };
    EXPECT_REJECTS(cases);
}
END_TEST

START_TEST(op_names_round_trip_through_the_table)
{
    for (int i = OP_NONE + 1; i < OP_COUNT; i++) {
        const char *name = msg_op_name((enum op)i);
        ck_assert_msg(name != NULL, "op %d has a name", i);
        ck_assert_msg(msg_op_lookup(name, strlen(name)) == (enum op)i, "'%s' looks up", name);
    }
    ck_assert_msg(msg_op_name(OP_NONE) == NULL && msg_op_name(OP_COUNT) == NULL, "no name");
    ck_assert_msg(msg_op_lookup("pin", 3) == OP_NONE, "prefix is not an op");
}
END_TEST

START_TEST(clearing_a_zeroed_request_is_safe)
{
    struct request r;
    memset(&r, 0, sizeof r);
    request_clear(&r);
    ck_assert_msg(r.store == NULL, "still zero");
}
END_TEST

Suite *
msg_suite(void)
{
    Suite *s = suite_create("msg");
    TCase *tc = tcase_create("request");
    tcase_add_test(tc, text_that_is_not_json_is_bad_request);
    tcase_add_test(tc, json_that_is_not_an_object_is_bad_request);
    tcase_add_test(tc, missing_or_mistyped_op_is_bad_request_and_unknown_op_is_unknown_op);
    tcase_add_test(tc, a_known_field_given_twice_is_bad_request);
    tcase_add_test(tc, unknown_fields_of_any_type_are_ignored);
    tcase_add_test(tc, escaped_field_names_are_matched_after_unescaping);
    tcase_add_test(tc, rid_is_kept_as_raw_text_and_echoed_even_on_rejection);
    tcase_add_test(tc, rid_that_is_not_a_scalar_or_too_long_is_bad_request);
    tcase_add_test(tc, nesting_is_bounded_to_64_levels);
    tcase_add_test(tc, op_names_round_trip_through_the_table);
    tcase_add_test(tc, clearing_a_zeroed_request_is_safe);
    suite_add_tcase(s, tc);

    tc = tcase_create("ops");
    tcase_add_test(tc, hello_with_client_and_token_decodes);
    tcase_add_test(tc, hello_with_mistyped_fields_is_bad_request);
    tcase_add_test(tc, ping_and_queues_take_no_fields);
    tcase_add_test(tc, stats_takes_an_optional_queue);
    tcase_add_test(tc, declare_with_every_setting_decodes);
    tcase_add_test(tc, declare_rejects_missing_mistyped_and_out_of_range_fields);
    tcase_add_test(tc, queue_names_follow_the_documented_syntax);
    tcase_add_test(tc, submit_with_a_queue_and_payload_decodes);
    tcase_add_test(tc, submit_with_every_option_decodes);
    tcase_add_test(tc, submit_payload_of_any_type_is_kept_compact);
    tcase_add_test(tc, submit_with_queues_is_a_send_side_select);
    tcase_add_test(tc, submit_without_queue_is_bad_request);
    tcase_add_test(tc, submit_without_payload_is_bad_request);
    tcase_add_test(tc, submit_traceparent_follows_the_w3c_syntax);
    tcase_add_test(tc, submit_rejects_mistyped_and_out_of_range_fields);
    tcase_add_test(tc, submit_payload_over_the_limit_is_too_large);
    tcase_add_test(tc, default_payload_limit_is_512_kib);
    tcase_add_test(tc, fetch_with_queues_timeout_count_and_strict_decodes);
    tcase_add_test(tc, fetch_takes_queue_as_shorthand_for_one_queue);
    tcase_add_test(tc, fetch_rejects_missing_mistyped_and_out_of_range_fields);
    tcase_add_test(tc, ack_with_and_without_result_decodes);
    tcase_add_test(tc, nack_with_every_option_decodes);
    tcase_add_test(tc, ack_and_nack_take_several_ids);
    tcase_add_test(tc, several_ids_reject_bad_lists);
    tcase_add_test(tc, consume_decodes_its_queues_prefetch_and_strict);
    tcase_add_test(tc, release_takes_only_an_id);
    tcase_add_test(tc, touch_cancel_wait_and_job_decode);
    tcase_add_test(tc, job_id_ops_reject_missing_mistyped_and_out_of_range_fields);
    tcase_add_test(tc, ack_result_over_the_limit_is_too_large);
    tcase_add_test(tc, queue_ops_decode_with_their_queue);
    tcase_add_test(tc, queue_ops_reject_missing_mistyped_and_out_of_range_fields);
    suite_add_tcase(s, tc);
    return s;
}
