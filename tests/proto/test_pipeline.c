/* frame + msg together: a pipelined stream decodes to the same requests
 * however the reads split it. */
#include "chanq_config.h"

#include "proto/frame.h"
#include "proto/msg.h"
#include "tests/proto/msg_helpers.h"
#include "tests/proto/suites.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STREAM_REQUESTS 1000
#define STREAM_MAX_LINE 512

/* Templates cycled through to build the stream: every op, a few invalid
 * lines, and (as "BIG") a line over STREAM_MAX_LINE. %d is the index. */
static const char *const templates[] = {
    "{'op':'submit','queue':'mail','payload':{'n':%d,'s':'x y'},'rid':%d}",
    "{'op':'fetch','queues':['mail','sms'],'timeout_ms':%d,'count':2}",
    "{'op':'ack','id':'job-%d','result':[ 1 , 2 ]}",
    "{'op':'nack','id':'job-%d','error':'e\\u00e9','delay_ms':1000,'dead':false}",
    "{'op':'hello','client':'w%d','token':'t'}",
    "{'op':'ping','rid':'p%d'}",
    "{'op':'declare','queue':'q%d','capacity':10,'ttr_ms':100,'max_attempts':2}",
    "{'op':'touch','id':'j%d','ttr_ms':5}",
    "{'op':'cancel','id':'j%d'}",
    "{'op':'wait','id':'j%d','timeout_ms':10}",
    "{'op':'job','id':'j%d'}",
    "{'op':'close','queue':'q%d'}",
    "{'op':'pause','queue':'q%d'}",
    "{'op':'resume','queue':'q%d'}",
    "{'op':'kick','queue':'q%d','count':3}",
    "{'op':'queues','rid':%d}",
    "{'op':'stats','queue':'q%d'}",
    "{'op':'submit','queues':['a','b'],'payload':%d,'wait_ms':0,'parent':'p'}",
    "{'op':'submit','queue':'bad name','payload':%d,'rid':1}",
    "{'op':'nope','rid':%d}",
    "not json %d",
    "BIG",
};

/* Writes template t with every "%d" replaced by i; returns the length. */
static size_t
fill(const char *t, int i, char *out)
{
    size_t n = 0;
    for (const char *p = t; *p; p++) {
        if (p[0] == '%' && p[1] == 'd') {
            n += (size_t)sprintf(out + n, "%d", i);
            p++;
        } else {
            out[n++] = *p;
        }
    }
    return n;
}

/* The stream: the lines, with a mix of "\n", "\r\n" and empty lines. */
static char *
make_stream(size_t *len)
{
    size_t cap = STREAM_REQUESTS * 4096, n = 0;
    char *s = malloc(cap);
    ck_assert_msg(s != NULL, "malloc");
    size_t nt = sizeof templates / sizeof templates[0];
    for (int i = 0; i < STREAM_REQUESTS; i++) {
        const char *t = templates[(size_t)i % nt];
        if (strcmp(t, "BIG") == 0) {
            size_t big = i % 2 ? 600 : 3000;
            memset(s + n, 'x', big);
            n += big;
        } else {
            char *j = json(t);
            n += fill(j, i, s + n);
            free(j);
        }
        n += (size_t)snprintf(s + n, cap - n, "%s", i % 3 == 0 ? "\r\n" : "\n");
        if (i % 17 == 0)
            n += (size_t)snprintf(s + n, cap - n, "\n\r\n");
    }
    *len = n;
    return s;
}

/* Feeds the stream in chunks and writes one description line per event.
 * (No ck_assert in the loop: each one costs Check a write(2).) */
static void
decode_stream(const char *s, size_t len, size_t chunk, struct buf *out)
{
    struct frame *f = frame_new(STREAM_MAX_LINE);
    bool nomem = false;
    ck_assert_msg(f != NULL, "frame_new");
    for (size_t off = 0; off < len; off += chunk) {
        frame_push(f, s + off, len - off < chunk ? len - off : chunk);
        const char *line;
        size_t ll;
        enum frame_status st;
        while ((st = frame_next_line(f, &line, &ll)) != FRAME_MORE) {
            if (st == FRAME_NOMEM) {
                nomem = true;
                break;
            }
            if (st == FRAME_TOO_LARGE) {
                buf_append_str(out, "frame_too_large\n");
                continue;
            }
            struct request r;
            struct proto_error err;
            if (msg_decode(line, ll, NULL, &r, &err) == 0) {
                request_describe(&r, out);
            } else {
                buf_append_str(out, proto_err_code(err.code));
                buf_append_str(out, err.message);
                buf_append(out, r.rid.ptr, r.rid.len);
            }
            buf_append_char(out, '\n');
            request_clear(&r);
        }
    }
    frame_free(f);
    ck_assert_msg(!nomem, "frame ran out of memory with chunks of %zu", chunk);
}

static size_t
count_lines(const struct buf *b, const char *prefix)
{
    size_t n = 0, pl = strlen(prefix);
    for (size_t i = 0; i < b->len;) {
        const char *nl = memchr(b->data + i, '\n', b->len - i);
        if (b->len - i >= pl && memcmp(b->data + i, prefix, pl) == 0)
            n++;
        i = (size_t)(nl - b->data) + 1;
    }
    return n;
}

START_TEST(pipelined_requests_decode_the_same_in_every_chunking)
{
    size_t len;
    char *s = make_stream(&len);
    struct buf want, got;
    buf_init(&want);
    buf_init(&got);
    decode_stream(s, len, len, &want);
    size_t events = count_lines(&want, "");
    ck_assert_msg(events == STREAM_REQUESTS, "one event per request, got %zu", events);
    ck_assert_msg(count_lines(&want, "frame_too_large") == STREAM_REQUESTS / 22,
                  "every oversize line reported once");
    ck_assert_msg(count_lines(&want, "submit ") > 0 && count_lines(&want, "bad_request") > 0,
                  "both valid and invalid requests in the stream");

    /* Every chunk size from 1 byte to 2 KiB, then a few larger ones. */
    size_t sizes[2048 + 8], nsizes = 0;
    for (size_t c = 1; c <= 2048; c++)
        sizes[nsizes++] = c;
    for (size_t c = 4096; c < len; c *= 4)
        sizes[nsizes++] = c + 7;
    for (size_t i = 0; i < nsizes; i++) {
        buf_reset(&got);
        decode_stream(s, len, sizes[i], &got);
        ck_assert_msg(got.len == want.len && memcmp(got.data, want.data, got.len) == 0,
                      "chunks of %zu bytes decode differently", sizes[i]);
    }
    buf_clear(&want);
    buf_clear(&got);
    free(s);
}
END_TEST

Suite *
pipeline_suite(void)
{
    Suite *s = suite_create("pipeline");
    TCase *tc = tcase_create("split");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, pipelined_requests_decode_the_same_in_every_chunking);
    suite_add_tcase(s, tc);
    return s;
}
