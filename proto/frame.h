/* Incremental NDJSON framing: turn a byte stream, split anywhere, into
 * lines. No I/O: the caller pushes what it read and pulls lines. */
#ifndef CHANQ_PROTO_FRAME_H
#define CHANQ_PROTO_FRAME_H

#include <stddef.h>

/* One connection's framing state. Opaque; one per connection, used by one
 * thread at a time. */
struct frame;

/* What frame_next_line() found. */
enum frame_status {
    FRAME_MORE = 0,      /* every pushed byte is consumed; push more */
    FRAME_LINE = 1,      /* *line and *len hold one line (without "\n" or "\r\n") */
    FRAME_TOO_LARGE = 2, /* a line passed the maximum: reported once, the rest of
                          * it (up to its '\n') is skipped, then framing goes on */
    FRAME_NOMEM = -12,   /* could not buffer a partial line (-ENOMEM); the frame
                          * should be freed (the connection closed) */
};

/* A new frame decoder for lines of at most max_line bytes (not counting
 * "\n" or "\r\n"). Returns NULL when out of memory. */
struct frame *frame_new(size_t max_line);

/* Frees f and what it buffered. NULL is allowed. */
void frame_free(struct frame *f);

/* Gives f the next `len` bytes of the stream. The bytes are borrowed, not
 * copied, until frame_next_line() returns FRAME_MORE (or FRAME_NOMEM): call
 * it until then before pushing again. Only the tail of a line that is not
 * complete yet is copied. */
void frame_push(struct frame *f, const char *data, size_t len);

/* The next event of the pushed input. On FRAME_LINE, *line (not
 * NUL-terminated) and *len describe a non-empty line, valid until the next
 * frame_next_line() or frame_push() call; it may point into the pushed
 * bytes or into f's own buffer. Empty lines are skipped. */
enum frame_status frame_next_line(struct frame *f, const char **line, size_t *len);

/* Bytes of a partial line f holds. */
size_t frame_buffered(const struct frame *f);

/* Bytes f has allocated for a partial line (for memory accounting): a
 * buffer over 64 KiB is freed once its line is done, at the next
 * frame_next_line() or frame_push() call. */
size_t frame_held(const struct frame *f);

/* The most frame_held() can become while f frames n more pushed bytes. */
size_t frame_held_after(const struct frame *f, size_t n);

/* Changes the longest line accepted from now on (a connection that
 * authenticated gets the full limit); a line already partly buffered is
 * judged by the new limit. */
void frame_set_max(struct frame *f, size_t max_line);

#endif
