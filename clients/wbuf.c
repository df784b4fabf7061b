/* libchanq: the growable buffer requests are written into, with the JSON
 * pieces the hot requests need (strings, integers, payload text). */
#include "chanq_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clients/client-internal.h"

static int
wbuf_reserve(struct wbuf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) {
        errno = ENOMEM;
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

int
chanqi_wbuf_put(struct wbuf *b, const void *p, size_t n)
{
    if (wbuf_reserve(b, n) < 0)
        return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int
chanqi_wbuf_puts(struct wbuf *b, const char *s)
{
    return chanqi_wbuf_put(b, s, strlen(s));
}

int
chanqi_wbuf_put_i64(struct wbuf *b, int64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%lld", (long long)v);
    return chanqi_wbuf_put(b, tmp, (size_t)n);
}

int
chanqi_wbuf_put_jstr(struct wbuf *b, const char *s)
{
    /* Worst case every byte becomes \u00XX. */
    size_t n = strlen(s);
    if (wbuf_reserve(b, n * 6 + 2) < 0)
        return -1;
    char *o = b->data + b->len;
    *o++ = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char ch = *p;
        if (ch == '"' || ch == '\\') {
            *o++ = '\\';
            *o++ = (char)ch;
        } else if (ch == '\n') {
            *o++ = '\\';
            *o++ = 'n';
        } else if (ch == '\t') {
            *o++ = '\\';
            *o++ = 't';
        } else if (ch < 0x20) {
            o += sprintf(o, "\\u%04x", ch);
        } else {
            *o++ = (char)ch;
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    return 0;
}

int
chanqi_wbuf_put_jtext(struct wbuf *b, const char *json)
{
    if (!json)
        return chanqi_wbuf_puts(b, "null");
    size_t n = strlen(json);
    /* Leading/trailing blanks would be harmless, but an empty or multi-line
     * text must be checked and re-encoded to keep one request per line. */
    if (n > 0 && !memchr(json, '\n', n) && !memchr(json, '\r', n))
        return chanqi_wbuf_put(b, json, n);
    json_error_t jerr;
    json_t *v = json_loads(json, JSON_DECODE_ANY, &jerr);
    if (!v)
        return -1;
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(v);
    if (!text)
        return -1;
    int rc = chanqi_wbuf_puts(b, text);
    free(text);
    return rc;
}

void
chanqi_wbuf_free(struct wbuf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
