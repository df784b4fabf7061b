/* The entry framing (see entry.h). Little-endian lengths, so that nodes of
 * any byte order read each other's logs. */
#include "chanq_config.h"

#include "daemon/cluster/entry.h"

#include <errno.h>
#include <raft.h>
#include <string.h>

enum { HEADER = 8 };

static void
put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t
get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static size_t
round8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

/* Room for the header (on first use) plus `more` bytes and the padding. */
static int
reserve(struct entry_builder *b, size_t more)
{
    size_t used = b->used ? b->used : HEADER;
    size_t need = round8(used + more);
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < need)
            cap *= 2;
        uint8_t *p = raft_realloc(b->buf, cap);
        if (!p)
            return -ENOMEM;
        b->buf = p;
        b->cap = cap;
    }
    if (b->used == 0) {
        memset(b->buf, 0, HEADER);
        b->buf[0] = ENTRY_VERSION;
        b->used = b->len = HEADER;
    }
    return 0;
}

/* The header's length and the zero padding, after records were added. */
static void
close_up(struct entry_builder *b)
{
    put_u32(b->buf + 4, (uint32_t)(b->used - HEADER));
    b->len = round8(b->used);
    memset(b->buf + b->used, 0, b->len - b->used);
}

int
entry_add(struct entry_builder *b, const void *rec, size_t len)
{
    if (len == 0 || len > ENTRY_MAX_RECORD)
        return -EMSGSIZE;
    if (reserve(b, 4 + len) < 0)
        return -ENOMEM;
    put_u32(b->buf + b->used, (uint32_t)len);
    memcpy(b->buf + b->used + 4, rec, len);
    b->used += 4 + len;
    close_up(b);
    return 0;
}

int
entry_seal(struct entry_builder *b)
{
    if (reserve(b, 0) < 0)
        return -ENOMEM;
    close_up(b);
    return 0;
}

int
entry_emit(void *builder, const void *rec, size_t len)
{
    return entry_add(builder, rec, len);
}

void
entry_reset(struct entry_builder *b)
{
    raft_free(b->buf);
    *b = (struct entry_builder){0};
}

/* The records' region of a well-formed entry, or -EBADMSG. */
static int
records_of(const uint8_t *p, size_t len, size_t *end)
{
    if (len < HEADER || len % 8 != 0 || p[0] != ENTRY_VERSION || p[1] || p[2] || p[3])
        return -EBADMSG;
    uint32_t body = get_u32(p + 4);
    if (body > len - HEADER || len - HEADER - body >= 8)
        return -EBADMSG;
    for (size_t i = HEADER + body; i < len; i++)
        if (p[i] != 0)
            return -EBADMSG;
    *end = HEADER + body;
    return 0;
}

long
entry_count(const void *buf, size_t len)
{
    const uint8_t *p = buf;
    size_t end;
    if (records_of(p, len, &end) < 0)
        return -EBADMSG;
    long n = 0;
    for (size_t at = HEADER; at < end; n++) {
        if (end - at < 4)
            return -EBADMSG;
        uint32_t rl = get_u32(p + at);
        if (rl == 0 || rl > ENTRY_MAX_RECORD || rl > end - at - 4)
            return -EBADMSG;
        at += 4 + rl;
    }
    return n;
}

int
entry_each(const void *buf, size_t len, entry_record_fn *fn, void *arg)
{
    if (entry_count(buf, len) < 0)
        return -EBADMSG;
    const uint8_t *p = buf;
    size_t end = HEADER + get_u32(p + 4);
    for (size_t at = HEADER; at < end;) {
        uint32_t rl = get_u32(p + at);
        int rc = fn(arg, p + at + 4, rl);
        if (rc != 0)
            return rc;
        at += 4 + rl;
    }
    return 0;
}
