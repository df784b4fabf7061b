/* Helpers for the msg and pipeline tests (see msg_helpers.h). */
#include "chanq_config.h"

#include "tests/proto/msg_helpers.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *
json(const char *s)
{
    char *c = strdup(s);
    ck_assert_msg(c != NULL, "strdup");
    for (char *p = c; *p; p++) {
        if (*p == '\'')
            *p = '"';
    }
    return c;
}

void
decode_ok(const char *line, struct request *out)
{
    char *j = json(line);
    struct proto_error err;
    int rc = msg_decode(j, strlen(j), NULL, out, &err);
    ck_assert_msg(rc == 0, "%s should decode, got %s: %s", j, proto_err_code(err.code),
                  err.message);
    ck_assert_msg(err.code == PROTO_OK, "success leaves err->code at PROTO_OK");
    free(j);
}

void
expect_reject(const char *line, enum proto_err code, const char *needle)
{
    char *j = json(line);
    struct request req;
    struct proto_error err;
    int rc = msg_decode(j, strlen(j), NULL, &req, &err);
    ck_assert_msg(rc != 0, "%s should be rejected", j);
    ck_assert_msg(err.code == code, "%s: code %s, want %s (%s)", j, proto_err_code(err.code),
                  proto_err_code(code), err.message);
    ck_assert_msg(strstr(err.message, needle) != NULL, "%s: message '%s' should contain '%s'", j,
                  err.message, needle);
    request_clear(&req);
    free(j);
}

void
expect_rejects(const struct reject_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++)
        expect_reject(cases[i].line, cases[i].code, cases[i].needle);
}

int
span_is(struct span s, const char *want)
{
    return s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

static int
describe_span(struct buf *b, const char *name, struct span s)
{
    if (!s.len)
        return 0;
    char head[32];
    snprintf(head, sizeof head, " %s=%zu:", name, s.len);
    return buf_append_str(b, head) || buf_append(b, s.ptr, s.len);
}

static int
describe_int(struct buf *b, const char *name, bool has, int64_t v)
{
    if (!has)
        return 0;
    char tmp[64];
    snprintf(tmp, sizeof tmp, " %s=%lld", name, (long long)v);
    return buf_append_str(b, tmp);
}

int
request_describe(const struct request *r, struct buf *b)
{
    const char *op = msg_op_name(r->op);
    int rc = buf_append_str(b, op ? op : "?");
    rc = rc || describe_span(b, "rid", r->rid) || describe_span(b, "queue", r->queue);
    for (size_t i = 0; i < r->nqueues; i++)
        rc = rc || describe_span(b, "queues[]", r->queues[i]);
    rc = rc || describe_span(b, "payload", r->payload) || describe_span(b, "id", r->id) ||
         describe_span(b, "parent", r->parent) || describe_span(b, "result", r->result) ||
         describe_span(b, "error", r->error) || describe_span(b, "client", r->client) ||
         describe_span(b, "token", r->token);
    rc = rc || describe_int(b, "capacity", r->has_capacity, r->capacity) ||
         describe_int(b, "ttr_ms", r->has_ttr_ms, r->ttr_ms) ||
         describe_int(b, "max_attempts", r->has_max_attempts, r->max_attempts) ||
         describe_int(b, "delay_ms", r->has_delay_ms, r->delay_ms) ||
         describe_int(b, "deadline_ms", r->has_deadline_ms, r->deadline_ms) ||
         describe_int(b, "wait_ms", r->has_wait_ms, r->wait_ms) ||
         describe_int(b, "timeout_ms", r->has_timeout_ms, r->timeout_ms) ||
         describe_int(b, "count", r->has_count, r->count);
    rc = rc || describe_int(b, "strict", r->strict, 1) || describe_int(b, "dead", r->dead, 1);
    return rc ? -1 : 0;
}
