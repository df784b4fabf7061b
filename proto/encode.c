/* Response and event encoding. Each encoder works out an upper bound of
 * its line, reserves it once and then writes without further checks, so
 * a failure leaves the buffer as it was and the hot paths do no
 * allocation beyond the buffer's own growth. */
#include "chanq_config.h"

#include "proto/encode.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Longest decimal int64 ("-9223372036854775808"). */
#define I64_MAX_CHARS 20

/* Bytes that cannot appear raw inside a JSON string. */
static const unsigned char needs_escape[256] = {[0x00 ... 0x1f] = 1, ['"'] = 1, ['\\'] = 1};

/* Worst case of a string: every byte as \u00XX, plus quotes. */
static size_t
str_bound(struct span s)
{
    return 6 * s.len + 2;
}

static void
put(struct buf *b, const void *p, size_t n)
{
    if (n == 0)
        return; /* p may be NULL for an empty span */
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

#define PUT_LIT(b, lit) put(b, lit, sizeof lit - 1)

static void
put_i64(struct buf *b, int64_t v)
{
    /* Capacity was reserved, so buf_append_i64 cannot fail here. */
    (void)buf_append_i64(b, v);
}

static void
put_str(struct buf *b, struct span s)
{
    static const char hex[] = "0123456789abcdef";
    b->data[b->len++] = '"';
    if (s.len == 0) {
        b->data[b->len++] = '"';
        return;
    }
    const unsigned char *p = (const unsigned char *)s.ptr, *end = p + s.len;
    while (p < end) {
        const unsigned char *run = p;
        while (p < end && !needs_escape[*p])
            p++;
        put(b, run, (size_t)(p - run));
        if (p == end)
            break;
        char *o = b->data + b->len;
        switch (*p) {
        case '"':
            o[0] = '\\';
            o[1] = '"';
            b->len += 2;
            break;
        case '\\':
            o[0] = '\\';
            o[1] = '\\';
            b->len += 2;
            break;
        case '\n':
            o[0] = '\\';
            o[1] = 'n';
            b->len += 2;
            break;
        case '\r':
            o[0] = '\\';
            o[1] = 'r';
            b->len += 2;
            break;
        case '\t':
            o[0] = '\\';
            o[1] = 't';
            b->len += 2;
            break;
        default:
            memcpy(o, "\\u00", 4);
            o[4] = hex[*p >> 4];
            o[5] = hex[*p & 15];
            b->len += 6;
            break;
        }
        p++;
    }
    b->data[b->len++] = '"';
}

/* {"ok":true[,"rid":RID] -- the caller adds the rest and end_line(). */
static size_t
ok_bound(struct span rid)
{
    return sizeof "{\"ok\":true,\"rid\":}\n" + rid.len;
}

static void
put_ok(struct buf *b, struct span rid, bool ok)
{
    if (ok)
        PUT_LIT(b, "{\"ok\":true");
    else
        PUT_LIT(b, "{\"ok\":false");
    if (rid.len) {
        PUT_LIT(b, ",\"rid\":");
        put(b, rid.ptr, rid.len);
    }
}

static void
end_line(struct buf *b)
{
    PUT_LIT(b, "}\n");
}

int
encode_ok(struct buf *b, struct span rid)
{
    if (buf_reserve(b, ok_bound(rid)))
        return -ENOMEM;
    put_ok(b, rid, true);
    end_line(b);
    return 0;
}

int
encode_ok_id(struct buf *b, struct span rid, struct span id, struct span queue)
{
    if (buf_reserve(b, ok_bound(rid) + 16 + str_bound(id) + str_bound(queue)))
        return -ENOMEM;
    put_ok(b, rid, true);
    PUT_LIT(b, ",\"id\":");
    put_str(b, id);
    if (queue.len) {
        PUT_LIT(b, ",\"queue\":");
        put_str(b, queue);
    }
    end_line(b);
    return 0;
}

int
encode_ok_int(struct buf *b, struct span rid, const char *key, int64_t n)
{
    struct span k = span_str(key);
    if (buf_reserve(b, ok_bound(rid) + 2 + str_bound(k) + I64_MAX_CHARS))
        return -ENOMEM;
    put_ok(b, rid, true);
    PUT_LIT(b, ",");
    put_str(b, k);
    PUT_LIT(b, ":");
    put_i64(b, n);
    end_line(b);
    return 0;
}

int
encode_ok_str(struct buf *b, struct span rid, const char *key, struct span value)
{
    struct span k = span_str(key);
    if (buf_reserve(b, ok_bound(rid) + 2 + str_bound(k) + str_bound(value)))
        return -ENOMEM;
    put_ok(b, rid, true);
    PUT_LIT(b, ",");
    put_str(b, k);
    PUT_LIT(b, ":");
    put_str(b, value);
    end_line(b);
    return 0;
}

int
encode_wait(struct buf *b, struct span rid, struct span state, struct span result,
            struct span error)
{
    size_t need = ok_bound(rid) + 40 + str_bound(state) + result.len + str_bound(error);
    if (buf_reserve(b, need))
        return -ENOMEM;
    put_ok(b, rid, true);
    PUT_LIT(b, ",\"state\":");
    put_str(b, state);
    if (result.ptr) {
        PUT_LIT(b, ",\"result\":");
        if (result.len)
            put(b, result.ptr, result.len);
        else
            PUT_LIT(b, "null");
    }
    if (error.ptr) {
        PUT_LIT(b, ",\"error\":");
        if (error.len)
            put_str(b, error);
        else
            PUT_LIT(b, "null");
    }
    end_line(b);
    return 0;
}

int
encode_error(struct buf *b, struct span rid, enum proto_err code, const char *message)
{
    struct span c = span_str(proto_err_code(code));
    struct span m = span_str(message);
    if (buf_reserve(b, ok_bound(rid) + 32 + str_bound(c) + str_bound(m)))
        return -ENOMEM;
    put_ok(b, rid, false);
    PUT_LIT(b, ",\"error\":{\"code\":");
    put_str(b, c);
    PUT_LIT(b, ",\"message\":");
    put_str(b, m);
    PUT_LIT(b, "}");
    end_line(b);
    return 0;
}

int
encode_proto_error(struct buf *b, struct span rid, const struct proto_error *err)
{
    return encode_error(b, rid, err->code, err->message);
}

static size_t
job_bound(const struct proto_job *j)
{
    return 96 + str_bound(j->id) + str_bound(j->queue) + j->payload.len + 3 * I64_MAX_CHARS +
           str_bound(j->traceparent);
}

static void
put_job(struct buf *b, const struct proto_job *j)
{
    PUT_LIT(b, "{\"id\":");
    put_str(b, j->id);
    PUT_LIT(b, ",\"queue\":");
    put_str(b, j->queue);
    PUT_LIT(b, ",\"payload\":");
    if (j->payload.len)
        put(b, j->payload.ptr, j->payload.len);
    else
        PUT_LIT(b, "null");
    PUT_LIT(b, ",\"attempt\":");
    put_i64(b, j->attempt);
    PUT_LIT(b, ",\"ttr_ms\":");
    put_i64(b, j->ttr_ms);
    if (j->deadline) {
        PUT_LIT(b, ",\"deadline\":");
        put_i64(b, j->deadline);
    }
    if (j->traceparent.len) {
        PUT_LIT(b, ",\"traceparent\":");
        put_str(b, j->traceparent);
    }
    PUT_LIT(b, "}");
}

static size_t
jobs_bound(const struct proto_job *jobs, size_t n)
{
    size_t need = 16;
    for (size_t i = 0; i < n; i++)
        need += job_bound(&jobs[i]) + 1;
    return need;
}

static void
put_jobs(struct buf *b, const struct proto_job *jobs, size_t n)
{
    PUT_LIT(b, "\"jobs\":[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            PUT_LIT(b, ",");
        put_job(b, &jobs[i]);
    }
    PUT_LIT(b, "]");
}

static size_t
id_errors_bound(const struct proto_id_error *errs, size_t n)
{
    size_t need = 16;
    for (size_t i = 0; i < n; i++)
        need += 40 + str_bound(errs[i].id) + str_bound(span_str(proto_err_code(errs[i].code))) +
                str_bound(span_str(errs[i].message));
    return need;
}

/* ,KEY:[{"id":..,"code":..,"message":..},...] */
static void
put_id_errors(struct buf *b, const char *key, const struct proto_id_error *errs, size_t n)
{
    PUT_LIT(b, ",");
    put_str(b, span_str(key));
    PUT_LIT(b, ":[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            PUT_LIT(b, ",");
        PUT_LIT(b, "{\"id\":");
        put_str(b, errs[i].id);
        PUT_LIT(b, ",\"code\":");
        put_str(b, span_str(proto_err_code(errs[i].code)));
        PUT_LIT(b, ",\"message\":");
        put_str(b, span_str(errs[i].message));
        PUT_LIT(b, "}");
    }
    PUT_LIT(b, "]");
}

int
encode_jobs_acked(struct buf *b, struct span rid, const struct proto_job *jobs, size_t n,
                  const struct proto_id_error *errs, size_t nerr)
{
    if (buf_reserve(b, ok_bound(rid) + 16 + jobs_bound(jobs, n) + id_errors_bound(errs, nerr)))
        return -ENOMEM;
    put_ok(b, rid, true);
    PUT_LIT(b, ",");
    put_jobs(b, jobs, n);
    if (nerr)
        put_id_errors(b, "ack_errors", errs, nerr);
    end_line(b);
    return 0;
}

int
encode_jobs(struct buf *b, struct span rid, const struct proto_job *jobs, size_t n)
{
    return encode_jobs_acked(b, rid, jobs, n, NULL, 0);
}

int
encode_ok_count(struct buf *b, struct span rid, const char *key, int64_t n,
                const struct proto_id_error *errs, size_t nerr)
{
    struct span k = span_str(key);
    if (buf_reserve(b, ok_bound(rid) + 2 + str_bound(k) + I64_MAX_CHARS +
                           id_errors_bound(errs, nerr)))
        return -ENOMEM;
    put_ok(b, rid, true);
    PUT_LIT(b, ",");
    put_str(b, k);
    PUT_LIT(b, ":");
    put_i64(b, n);
    if (nerr)
        put_id_errors(b, "errors", errs, nerr);
    end_line(b);
    return 0;
}

int
encode_event_jobs(struct buf *b, const struct proto_job *jobs, size_t n)
{
    if (buf_reserve(b, 24 + jobs_bound(jobs, n)))
        return -ENOMEM;
    PUT_LIT(b, "{\"event\":\"jobs\",");
    put_jobs(b, jobs, n);
    PUT_LIT(b, "}\n");
    return 0;
}

int
encode_event_consume_end(struct buf *b, const char *reason)
{
    struct span r = span_str(reason);
    if (buf_reserve(b, 40 + str_bound(r)))
        return -ENOMEM;
    PUT_LIT(b, "{\"event\":\"consume_end\",\"reason\":");
    put_str(b, r);
    PUT_LIT(b, "}\n");
    return 0;
}

int
encode_ok_fields(struct buf *b, struct span rid, const json_t *fields)
{
    if (!json_is_object(fields))
        return -EINVAL;
    char *text = json_dumps(fields, JSON_COMPACT);
    if (!text)
        return -ENOMEM;
    size_t n = strlen(text); /* "{...}" */
    if (buf_reserve(b, ok_bound(rid) + n)) {
        free(text);
        return -ENOMEM;
    }
    put_ok(b, rid, true);
    if (n > 2) {
        PUT_LIT(b, ",");
        put(b, text + 1, n - 2);
    }
    end_line(b);
    free(text);
    return 0;
}

static const char *const revoke_reasons[] = {
    [REVOKE_TTR] = "ttr",
    [REVOKE_DEADLINE] = "deadline",
};

int
encode_event_revoked(struct buf *b, struct span id, enum revoke_reason reason)
{
    const char *why = (unsigned)reason <= REVOKE_DEADLINE ? revoke_reasons[reason] : "ttr";
    if (buf_reserve(b, 48 + str_bound(id) + strlen(why)))
        return -ENOMEM;
    PUT_LIT(b, "{\"event\":\"revoked\",\"id\":");
    put_str(b, id);
    PUT_LIT(b, ",\"reason\":\"");
    put(b, why, strlen(why));
    PUT_LIT(b, "\"}\n");
    return 0;
}

int
encode_event_cancel(struct buf *b, struct span id)
{
    if (buf_reserve(b, 32 + str_bound(id)))
        return -ENOMEM;
    PUT_LIT(b, "{\"event\":\"cancel\",\"id\":");
    put_str(b, id);
    PUT_LIT(b, "}\n");
    return 0;
}
