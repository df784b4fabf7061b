/* A small growable byte buffer: where the encoders write their lines. The
 * daemon copies (or hands) buf.data to a libevent evbuffer. */
#ifndef CHANQ_PROTO_BUF_H
#define CHANQ_PROTO_BUF_H

#include <stddef.h>
#include <stdint.h>

/* Public so it can live on the stack or inside another struct; only the
 * buf_* functions change it. data is not NUL-terminated. */
struct buf {
    char *data; /* owned heap storage (NULL until the first append) */
    size_t len; /* bytes in use */
    size_t cap; /* bytes allocated */
};

/* An empty buffer; allocates nothing. Any thread (a buf is not shared). */
void buf_init(struct buf *b);

/* Frees the storage and leaves an empty buffer. */
void buf_clear(struct buf *b);

/* Forgets the contents (len = 0) but keeps the storage for reuse. */
void buf_reset(struct buf *b);

/* Makes room for `extra` more bytes. 0, or -ENOMEM with b unchanged. */
int buf_reserve(struct buf *b, size_t extra);

/* Appends bytes / a C string / one byte / a decimal integer.
 * 0, or -ENOMEM with b unchanged. */
int buf_append(struct buf *b, const void *p, size_t n);
int buf_append_str(struct buf *b, const char *s);
int buf_append_char(struct buf *b, char c);
int buf_append_i64(struct buf *b, int64_t v);

#endif
