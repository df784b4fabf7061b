/* The growable byte buffer the encoders write into. */
#include "chanq_config.h"

#include "proto/buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void
buf_init(struct buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void
buf_clear(struct buf *b)
{
    free(b->data);
    buf_init(b);
}

void
buf_reset(struct buf *b)
{
    b->len = 0;
}

int
buf_reserve(struct buf *b, size_t extra)
{
    if (extra <= b->cap - b->len)
        return 0;
    if (extra > SIZE_MAX / 2 - b->len)
        return -ENOMEM;
    size_t want = b->len + extra;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < want)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int
buf_append(struct buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    int rc = buf_reserve(b, n);
    if (rc)
        return rc;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int
buf_append_str(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int
buf_append_char(struct buf *b, char c)
{
    int rc = buf_reserve(b, 1);
    if (rc)
        return rc;
    b->data[b->len++] = c;
    return 0;
}

int
buf_append_i64(struct buf *b, int64_t v)
{
    char tmp[24];
    char *end = tmp + sizeof tmp;
    char *p = end;
    /* Work on the magnitude as unsigned so INT64_MIN does not overflow. */
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    return buf_append(b, p, (size_t)(end - p));
}
