/* Incremental line framing. Whole lines inside a pushed chunk are handed
 * out in place (one memchr per line, no copy); only a line that straddles
 * two pushes is copied into the frame's own buffer. */
#include "chanq_config.h"

#include "proto/frame.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct frame {
    size_t max;      /* longest line accepted, without "\n"/"\r\n" */
    const char *in;  /* pushed bytes not consumed yet (borrowed) */
    size_t in_len;   /* how many */
    char *pend;      /* start of a line whose end has not arrived */
    size_t pend_len; /* bytes in pend */
    size_t pend_cap; /* bytes allocated for pend, never above max + 1 */
    bool skipping;   /* an oversize line was reported; drop bytes to its '\n' */
};

struct frame *
frame_new(size_t max_line)
{
    struct frame *f = calloc(1, sizeof *f);
    if (f)
        f->max = max_line;
    return f;
}

void
frame_free(struct frame *f)
{
    if (!f)
        return;
    free(f->pend);
    free(f);
}

/* A partial-line buffer this big is freed once its line is done, so that
 * one long line does not pin its buffer for the connection's life. */
#define KEEP_CAP (64u * 1024)

/* Frees a big partial-line buffer that holds no line any more (the line
 * handed out last is done with once the caller asks for the next). */
static void
trim(struct frame *f)
{
    if (f->pend_len == 0 && f->pend_cap > KEEP_CAP) {
        free(f->pend);
        f->pend = NULL;
        f->pend_cap = 0;
    }
}

void
frame_push(struct frame *f, const char *data, size_t len)
{
    trim(f);
    f->in = data;
    f->in_len = len;
}

size_t
frame_buffered(const struct frame *f)
{
    return f->pend_len;
}

void
frame_set_max(struct frame *f, size_t max_line)
{
    f->max = max_line;
}

size_t
frame_held(const struct frame *f)
{
    return f->pend_cap;
}

/* The capacity pend needs to hold want bytes (never above max + 1). */
static size_t
grown_cap(const struct frame *f, size_t want)
{
    if (want <= f->pend_cap)
        return f->pend_cap;
    size_t cap = f->pend_cap ? f->pend_cap : 4096;
    while (cap < want)
        cap *= 2;
    return cap > f->max + 1 ? f->max + 1 : cap;
}

size_t
frame_held_after(const struct frame *f, size_t n)
{
    size_t want = f->pend_len + n;
    return want > f->max + 1 ? f->pend_cap : grown_cap(f, want);
}

/* Appends to the partial line; the caller has checked it stays within
 * max + 1 bytes (the +1 leaves room for a '\r' before the '\n'). */
static bool
pend_append(struct frame *f, const char *p, size_t n)
{
    size_t want = f->pend_len + n;
    if (want > f->pend_cap) {
        size_t cap = grown_cap(f, want);
        char *np = realloc(f->pend, cap);
        if (!np)
            return false;
        f->pend = np;
        f->pend_cap = cap;
    }
    memcpy(f->pend + f->pend_len, p, n);
    f->pend_len = want;
    return true;
}

static void
consume(struct frame *f, size_t n)
{
    f->in += n;
    f->in_len -= n;
}

/* The input ends inside a line: keep it, or report it once as too large. */
static enum frame_status
keep_partial(struct frame *f)
{
    /* Even if the last byte is the '\r' of a "\r\n", more than max + 1
     * bytes means more than max bytes of content. */
    if (f->in_len > f->max + 1 - f->pend_len) {
        f->pend_len = 0;
        f->skipping = true;
        consume(f, f->in_len);
        return FRAME_TOO_LARGE;
    }
    if (!pend_append(f, f->in, f->in_len))
        return FRAME_NOMEM;
    consume(f, f->in_len);
    return FRAME_MORE;
}

enum frame_status
frame_next_line(struct frame *f, const char **line, size_t *len)
{
    trim(f);
    while (f->in_len > 0) {
        const char *nl = memchr(f->in, '\n', f->in_len);
        if (f->skipping) {
            if (!nl) {
                consume(f, f->in_len);
                return FRAME_MORE;
            }
            consume(f, (size_t)(nl - f->in) + 1);
            f->skipping = false;
            continue;
        }
        if (!nl)
            return keep_partial(f);

        size_t n = (size_t)(nl - f->in);
        const char *l = f->in;
        size_t ll = n;
        bool too_large = false;
        if (f->pend_len > 0) {
            if (n > f->max + 1 - f->pend_len) {
                too_large = true;
            } else {
                if (!pend_append(f, f->in, n))
                    return FRAME_NOMEM;
                l = f->pend;
                ll = f->pend_len;
            }
            f->pend_len = 0;
        }
        consume(f, n + 1);
        if (too_large)
            return FRAME_TOO_LARGE;
        if (ll > 0 && l[ll - 1] == '\r')
            ll--;
        if (ll == 0)
            continue;
        if (ll > f->max)
            return FRAME_TOO_LARGE;
        *line = l;
        *len = ll;
        return FRAME_LINE;
    }
    return FRAME_MORE;
}
