/* Strict JSON scanning without a tree: validate once, remember spans. This
 * is what lets a submit be decoded without a jansson allocation per value
 * (docs/protocol.md has the measurement). */
#include "chanq_config.h"

#include "proto/scan.h"

#include <string.h>

/* Bytes that end the fast path inside a string: '"', '\\', control
 * characters and anything non-ASCII (which needs a UTF-8 check). */
static const unsigned char str_stop[256] = {
    [0x00 ... 0x1f] = 1,
    ['"'] = 1,
    ['\\'] = 1,
    [0x80 ... 0xff] = 1,
};

static const unsigned char is_ws[256] = {[' '] = 1, ['\t'] = 1, ['\n'] = 1, ['\r'] = 1};

static int
fail(struct scan *s, const char *at, const char *why)
{
    s->why = why;
    s->at = (size_t)(at - s->start);
    return -1;
}

void
scan_init(struct scan *s, const char *text, size_t len, int max_depth)
{
    memset(s, 0, sizeof *s);
    s->start = text;
    s->p = text;
    s->end = text + len;
    s->max_depth = max_depth;
}

static void
skip_ws(struct scan *s)
{
    const char *p = s->p;
    while (p < s->end && is_ws[(unsigned char)*p])
        p++;
    s->ws += (size_t)(p - s->p);
    s->p = p;
}

bool
scan_at_end(struct scan *s)
{
    skip_ws(s);
    return s->p == s->end;
}

/* Length of one valid UTF-8 sequence at p, or 0 (RFC 3629: no overlongs,
 * no surrogates, nothing above U+10FFFF). */
static size_t
utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned char c = p[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4;
    else
        return 0;
    if (c == 0xe0)
        lo = 0xa0;
    else if (c == 0xed)
        hi = 0x9f;
    else if (c == 0xf0)
        lo = 0x90;
    else if (c == 0xf4)
        hi = 0x8f;
    if ((size_t)(end - p) < n)
        return 0;
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    }
    return n;
}

static int
hex4(const unsigned char *p, const unsigned char *end, unsigned *out)
{
    if (end - p < 4)
        return -1;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* A \u escape at p (pointing at the backslash); returns its length (6 or
 * 12 for a surrogate pair) and the code point, or 0 when invalid. */
static size_t
u_escape(const unsigned char *p, const unsigned char *end, unsigned *cp)
{
    unsigned hi, lo;
    if (hex4(p + 2, end, &hi))
        return 0;
    if (hi >= 0xdc00 && hi <= 0xdfff)
        return 0;
    if (hi < 0xd800 || hi > 0xdbff) {
        *cp = hi;
        return 6;
    }
    if (end - p < 12 || p[6] != '\\' || p[7] != 'u' || hex4(p + 8, end, &lo))
        return 0;
    if (lo < 0xdc00 || lo > 0xdfff)
        return 0;
    *cp = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
    return 12;
}

static int
scan_string(struct scan *s, struct scan_value *v)
{
    const unsigned char *p = (const unsigned char *)s->p + 1;
    const unsigned char *end = (const unsigned char *)s->end;
    v->type = SCAN_STRING;
    v->has_escape = false;
    for (;;) {
        while (p < end && !str_stop[*p])
            p++;
        if (p >= end)
            return fail(s, (const char *)p, "unterminated string");
        unsigned char c = *p;
        if (c == '"') {
            p++;
            break;
        }
        if (c == '\\') {
            v->has_escape = true;
            if (end - p < 2)
                return fail(s, (const char *)p, "unterminated string");
            switch (p[1]) {
            case '"':
            case '\\':
            case '/':
            case 'b':
            case 'f':
            case 'n':
            case 'r':
            case 't':
                p += 2;
                continue;
            case 'u': {
                unsigned cp;
                size_t n = u_escape(p, end, &cp);
                if (!n)
                    return fail(s, (const char *)p, "invalid \\u escape");
                p += n;
                continue;
            }
            default:
                return fail(s, (const char *)p, "invalid escape in string");
            }
        }
        if (c < 0x20)
            return fail(s, (const char *)p, "control character in string");
        size_t n = utf8_len(p, end);
        if (!n)
            return fail(s, (const char *)p, "invalid UTF-8 in string");
        p += n;
    }
    v->len = (size_t)((const char *)p - s->p);
    s->p = (const char *)p;
    return 0;
}

static int
scan_number(struct scan *s, struct scan_value *v)
{
    const char *p = s->p, *end = s->end;
    v->type = SCAN_NUMBER;
    v->is_int = true;
    if (*p == '-')
        p++;
    if (p >= end || *p < '0' || *p > '9')
        return fail(s, p, "invalid number");
    if (*p == '0') {
        p++;
    } else {
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || *p < '0' || *p > '9')
            return fail(s, p, "invalid number");
        while (p < end && *p >= '0' && *p <= '9')
            p++;
        v->is_int = false;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || *p < '0' || *p > '9')
            return fail(s, p, "invalid number");
        while (p < end && *p >= '0' && *p <= '9')
            p++;
        v->is_int = false;
    }
    v->len = (size_t)(p - s->p);
    s->p = p;
    return 0;
}

static int
scan_literal(struct scan *s, struct scan_value *v, const char *word, size_t n)
{
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return fail(s, s->p, "invalid literal");
    v->len = n;
    s->p += n;
    return 0;
}

/* One step through an object's members after its '{' (see
 * scan_object_next()); *count is the members seen so far. */
static int
object_step(struct scan *s, int depth, size_t *count, struct scan_value *key,
            struct scan_value *val)
{
    skip_ws(s);
    if (s->p >= s->end)
        return fail(s, s->p, "unterminated object");
    if (*s->p == '}') {
        s->p++;
        return 0;
    }
    if (*count > 0) {
        if (*s->p != ',')
            return fail(s, s->p, "expected ',' or '}' in object");
        s->p++;
        skip_ws(s);
        if (s->p >= s->end)
            return fail(s, s->p, "unterminated object");
    }
    if (*s->p != '"')
        return fail(s, s->p, "expected a string key in object");
    memset(key, 0, sizeof *key);
    key->raw = s->p;
    if (scan_string(s, key))
        return -1;
    skip_ws(s);
    if (s->p >= s->end || *s->p != ':')
        return fail(s, s->p, "expected ':' after key");
    s->p++;
    if (scan_value(s, depth + 1, val))
        return -1;
    (*count)++;
    return 1;
}

static int
scan_container(struct scan *s, int depth, struct scan_value *v)
{
    if (depth > s->max_depth)
        return fail(s, s->p, "nesting too deep");
    size_t ws0 = s->ws;
    size_t count = 0;
    int rc;
    if (*s->p == '{') {
        v->type = SCAN_OBJECT;
        s->p++;
        struct scan_value k, val;
        while ((rc = object_step(s, depth, &count, &k, &val)) > 0)
            ;
        if (rc < 0)
            return -1;
    } else {
        v->type = SCAN_ARRAY;
        s->p++;
        for (;;) {
            skip_ws(s);
            if (s->p >= s->end)
                return fail(s, s->p, "unterminated array");
            if (*s->p == ']') {
                s->p++;
                break;
            }
            if (count > 0) {
                if (*s->p != ',')
                    return fail(s, s->p, "expected ',' or ']' in array");
                s->p++;
            }
            struct scan_value elem;
            if (scan_value(s, depth + 1, &elem))
                return -1;
            count++;
        }
        v->nelems = count;
    }
    v->has_ws = s->ws != ws0;
    v->len = (size_t)(s->p - v->raw);
    return 0;
}

int
scan_value(struct scan *s, int depth, struct scan_value *v)
{
    skip_ws(s);
    memset(v, 0, sizeof *v);
    v->raw = s->p;
    if (s->p >= s->end)
        return fail(s, s->p, "expected a value");
    switch (*s->p) {
    case '"':
        return scan_string(s, v);
    case '{':
    case '[':
        return scan_container(s, depth, v);
    case 't':
        v->type = SCAN_BOOL;
        v->truth = true;
        return scan_literal(s, v, "true", 4);
    case 'f':
        v->type = SCAN_BOOL;
        return scan_literal(s, v, "false", 5);
    case 'n':
        v->type = SCAN_NULL;
        return scan_literal(s, v, "null", 4);
    default:
        return scan_number(s, v);
    }
}

int
scan_object_open(struct scan *s)
{
    skip_ws(s);
    if (s->p >= s->end || *s->p != '{')
        return fail(s, s->p, "not a JSON object");
    if (s->max_depth < 1)
        return fail(s, s->p, "nesting too deep");
    s->p++;
    s->members = 0;
    return 0;
}

int
scan_object_next(struct scan *s, struct scan_value *key, struct scan_value *val)
{
    return object_step(s, 1, &s->members, key, val);
}

int
scan_array_next(const struct scan_value *arr, size_t *pos, struct scan_value *elem)
{
    struct scan s;
    scan_init(&s, arr->raw, arr->len, 1 << 30);
    s.p += *pos ? *pos : 1; /* skip the '[' on the first call */
    skip_ws(&s);
    if (*s.p == ']')
        return 0;
    if (*s.p == ',')
        s.p++;
    if (scan_value(&s, 2, elem))
        return 0; /* cannot happen on a validated array */
    *pos = (size_t)(s.p - arr->raw);
    return 1;
}

static size_t
put_utf8(char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

size_t
scan_unescape(const struct scan_value *v, char *out)
{
    const unsigned char *p = (const unsigned char *)v->raw + 1;
    const unsigned char *end = (const unsigned char *)v->raw + v->len - 1;
    if (!v->has_escape) {
        memcpy(out, p, (size_t)(end - p));
        return (size_t)(end - p);
    }
    char *o = out;
    while (p < end) {
        const unsigned char *bs = memchr(p, '\\', (size_t)(end - p));
        size_t run = bs ? (size_t)(bs - p) : (size_t)(end - p);
        memcpy(o, p, run);
        o += run;
        p += run;
        if (!bs)
            break;
        unsigned cp;
        switch (p[1]) {
        case 'b':
            *o++ = '\b';
            p += 2;
            break;
        case 'f':
            *o++ = '\f';
            p += 2;
            break;
        case 'n':
            *o++ = '\n';
            p += 2;
            break;
        case 'r':
            *o++ = '\r';
            p += 2;
            break;
        case 't':
            *o++ = '\t';
            p += 2;
            break;
        case 'u':
            p += u_escape(p, end, &cp);
            o += put_utf8(o, cp);
            break;
        default: /* '"', '\\', '/' */
            *o++ = (char)p[1];
            p += 2;
            break;
        }
    }
    return (size_t)(o - out);
}

size_t
scan_compact(const struct scan_value *v, char *out)
{
    if (!v->has_ws) {
        memcpy(out, v->raw, v->len);
        return v->len;
    }
    const char *p = v->raw, *end = v->raw + v->len;
    char *o = out;
    bool in_str = false;
    for (; p < end; p++) {
        char c = *p;
        if (in_str) {
            *o++ = c;
            if (c == '\\')
                *o++ = *++p;
            else if (c == '"')
                in_str = false;
        } else if (!is_ws[(unsigned char)c]) {
            *o++ = c;
            in_str = c == '"';
        }
    }
    return (size_t)(o - out);
}

bool
scan_int64(const struct scan_value *v, int64_t *out)
{
    const char *p = v->raw, *end = v->raw + v->len;
    bool neg = *p == '-';
    if (neg)
        p++;
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t u = 0;
    for (; p < end; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (u > (limit - d) / 10)
            return false;
        u = u * 10 + d;
    }
    *out = neg ? (int64_t)(0 - u) : (int64_t)u;
    return true;
}

const char *
scan_type_name(enum scan_type t)
{
    static const char *const names[] = {"null", "boolean", "number", "string", "array", "object"};
    return names[t];
}
