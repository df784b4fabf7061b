/* libFuzzer target for proto/: the input is a byte stream fed to the frame
 * decoder in input-derived chunks (checked against a simple reference
 * splitter); every line goes through msg_decode() (checked against
 * jansson's opinion of the same text) and the decoded request through the
 * encoders (whose output must be valid JSON). Any broken invariant aborts. */
#include "chanq_config.h"

#include "proto/encode.h"
#include "proto/frame.h"
#include "proto/msg.h"
#include "tests/fuzz/fuzz.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_MAX_LINE 256

static void
check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_proto: invariant broken: %s\n", what);
        abort();
    }
}

/* jansson reports numbers it cannot hold as errors; JSON allows them. */
static bool
jansson_overflow(const json_error_t *e)
{
    return strstr(e->text, "too big") || strstr(e->text, "overflow");
}

/* The encoder output must be exactly one line holding a JSON object. */
static void
check_line(const struct buf *b, size_t from)
{
    check(b->len > from && b->data[b->len - 1] == '\n', "encoder output ends in a newline");
    const char *line = b->data + from;
    size_t len = b->len - from - 1;
    check(memchr(line, '\n', len) == NULL, "encoder output is one line");
    json_error_t e;
    json_t *j = json_loadb(line, len, JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL, &e);
    check(j != NULL || jansson_overflow(&e), "encoder output is valid JSON");
    check(j == NULL || json_is_object(j), "encoder output is an object");
    json_decref(j);
}

static bool
span_in(struct span s, const struct request *r, size_t store_cap)
{
    if (!s.len)
        return true;
    return s.ptr >= r->store && s.ptr + s.len < r->store + store_cap && s.ptr[s.len] == '\0';
}

static void
check_decoded(const char *line, size_t len, const struct request *r, size_t store_cap)
{
    check(r->op > OP_NONE && r->op < OP_COUNT, "a decoded op is valid");
    const struct span *spans[] = {&r->rid,    &r->queue, &r->payload, &r->id,   &r->parent,
                                  &r->result, &r->error, &r->client,  &r->token};
    for (size_t i = 0; i < sizeof spans / sizeof spans[0]; i++)
        check(span_in(*spans[i], r, store_cap), "spans point into the store");
    for (size_t i = 0; i < r->nqueues; i++)
        check(msg_queue_name_valid(r->queues[i].ptr, r->queues[i].len), "queue names valid");
    if (r->queue.len)
        check(msg_queue_name_valid(r->queue.ptr, r->queue.len), "queue name valid");
    check(r->nids <= MSG_MAX_IDS, "at most MSG_MAX_IDS ids");
    for (size_t i = 0; i < r->nids; i++)
        check(r->ids[i].len > 0 && r->ids[i].len <= MSG_MAX_ID && span_in(r->ids[i], r, store_cap),
              "ids valid and in the store");
    check((r->op != OP_ACK && r->op != OP_NACK) || (r->id.len > 0) != (r->nids > 0),
          "ack and nack name one job or several");
    check(r->op != OP_FETCH || r->nqueues >= 1, "fetch has queues");
    check(r->op != OP_SUBMIT || r->payload.len > 0, "submit has a payload");
    const struct span *json_spans[] = {&r->payload, &r->result};
    for (size_t i = 0; i < 2; i++) {
        if (!json_spans[i]->len)
            continue;
        json_error_t e;
        json_t *j = json_loadb(json_spans[i]->ptr, json_spans[i]->len,
                               JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
        check(j != NULL || jansson_overflow(&e), "payload/result is valid JSON");
        json_decref(j);
    }
    (void)line;
    (void)len;
}

/* Our scanner and jansson must agree on what is JSON (modulo numbers too
 * big for jansson and our depth bound). */
static void
check_agrees_with_jansson(const char *line, size_t len, int rc, const struct proto_error *err)
{
    if (memchr(line, '\0', len))
        return; /* jansson's lexer takes a raw NUL for the end of the text */
    json_error_t e;
    json_t *j = json_loadb(line, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    bool ours_json = rc == 0 || strncmp(err->message, "invalid JSON", 12) != 0;
    bool not_object = rc != 0 && strcmp(err->message, "request is not a JSON object") == 0;
    bool agree = true;
    if (not_object)
        agree = j == NULL || !json_is_object(j);
    else if (ours_json)
        agree = j != NULL || jansson_overflow(&e);
    else if (!strstr(err->message, "nested deeper"))
        agree = j == NULL;
    if (!agree)
        fprintf(stderr, "fuzz_proto: line '%.*s': ours: %s; jansson: %s\n", (int)len, line,
                rc ? err->message : "ok", j ? "ok" : e.text);
    check(agree, "our scanner and jansson agree on what is JSON");
    json_decref(j);
}

static void
encode_request(const struct request *r, struct buf *b)
{
    size_t from = b->len;
    switch (r->op) {
    case OP_SUBMIT: {
        struct span q = r->nqueues ? r->queues[0] : (struct span){NULL, 0};
        check(encode_ok_id(b, r->rid, span_str("job-1"), q) == 0, "encode_ok_id");
        break;
    }
    case OP_FETCH: {
        struct proto_job job = {span_str("job-1"),
                                r->queues[0],
                                span_str("{\"a\":1}"),
                                1,
                                r->has_timeout_ms ? r->timeout_ms : 0,
                                r->count,
                                r->traceparent};
        check(encode_jobs(b, r->rid, &job, 1) == 0, "encode_jobs");
        break;
    }
    case OP_ACK:
    case OP_CANCEL:
    case OP_TOUCH:
        check(encode_event_cancel(b, r->id) == 0, "encode_event_cancel");
        check_line(b, from);
        from = b->len;
        check(encode_event_revoked(b, r->id, REVOKE_DEADLINE) == 0, "encode_event_revoked");
        break;
    case OP_NACK:
    case OP_WAIT:
        check(encode_wait(b, r->rid, span_str("dead"), r->result, r->error) == 0, "encode_wait");
        break;
    case OP_HELLO: {
        json_t *f = json_object();
        json_object_set_new(f, "client",
                            json_stringn(r->client.ptr ? r->client.ptr : "", r->client.len));
        check(encode_ok_fields(b, r->rid, f) == 0, "encode_ok_fields");
        json_decref(f);
        break;
    }
    default:
        check(encode_ok_str(b, r->rid, "queue", r->queue) == 0, "encode_ok_str");
        break;
    }
    check_line(b, from);
}

static void
decode_line(const char *line, size_t len, size_t max_payload, struct buf *b)
{
    struct msg_limits lim = {max_payload};
    struct request r;
    struct proto_error err;
    int rc = msg_decode(line, len, &lim, &r, &err);
    if (rc == 0) {
        check(err.code == PROTO_OK, "success leaves PROTO_OK");
        check_decoded(line, len, &r, len + 1 + sizeof(struct span) * (MSG_MAX_QUEUES + 1 + MSG_MAX_IDS) + 64);
        encode_request(&r, b);
    } else {
        check(err.code == PROTO_BAD_REQUEST || err.code == PROTO_UNKNOWN_OP ||
                  err.code == PROTO_TOO_LARGE,
              "a rejection uses a decode error code");
        check(err.message[0] != '\0', "a rejection has a message");
        for (const char *p = err.message; *p; p++)
            check(*p >= 0x20 && *p < 0x7f, "the message is printable ASCII");
        size_t from = b->len;
        check(encode_proto_error(b, r.rid, &err) == 0, "encode_proto_error");
        check_line(b, from);
    }
    check_agrees_with_jansson(line, len, rc, &err);
    request_clear(&r);
}

/* The reference splitter: what the frame decoder must report for data. */
static size_t
reference_events(const char *data, size_t size, char *ev, size_t cap)
{
    size_t n = 0, start = 0;
    for (size_t i = 0; i <= size && n < cap; i++) {
        if (i < size && data[i] != '\n')
            continue;
        size_t len = i - start;
        if (i == size) { /* no newline: reported only once surely too long */
            if (len > FUZZ_MAX_LINE + 1)
                ev[n++] = 'T';
            break;
        }
        if (len && data[start + len - 1] == '\r')
            len--;
        if (len > FUZZ_MAX_LINE)
            ev[n++] = 'T';
        else if (len)
            ev[n++] = 'L';
        start = i + 1;
    }
    return n;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    struct buf b;
    buf_init(&b);

    /* The whole input as one line, with the default limits. */
    size_t whole = size;
    if (whole && in[whole - 1] == '\n')
        whole--;
    if (!memchr(in, '\n', whole))
        decode_line(in, whole, MSG_DEFAULT_MAX_PAYLOAD, &b);

    /* As a stream, split at input-derived points, lines decoded with a
     * small payload limit. */
    static char ev_want[4096], ev_got[4096];
    size_t nwant = reference_events(in, size, ev_want, sizeof ev_want), ngot = 0;
    struct frame *f = frame_new(FUZZ_MAX_LINE);
    check(f != NULL, "frame_new");
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < size && i < 64; i++)
        h = (h ^ data[i]) * 16777619u;
    for (size_t off = 0; off < size;) {
        h = h * 1103515245u + 12345u;
        size_t chunk = 1 + (h >> 16) % 97;
        if (chunk > size - off)
            chunk = size - off;
        frame_push(f, in + off, chunk);
        off += chunk;
        const char *line;
        size_t len;
        enum frame_status st;
        while ((st = frame_next_line(f, &line, &len)) != FRAME_MORE) {
            check(st != FRAME_NOMEM, "no out-of-memory");
            check(ngot < sizeof ev_got, "event count");
            if (st == FRAME_TOO_LARGE) {
                ev_got[ngot++] = 'T';
                continue;
            }
            check(len > 0 && len <= FUZZ_MAX_LINE, "line length within bounds");
            check(memchr(line, '\n', len) == NULL, "no newline inside a line");
            ev_got[ngot++] = 'L';
            decode_line(line, len, 64, &b);
        }
    }
    frame_free(f);
    if (nwant < sizeof ev_want)
        check(ngot == nwant && memcmp(ev_got, ev_want, ngot) == 0,
              "frame events match the reference splitter");
    buf_clear(&b);
    return 0;
}
