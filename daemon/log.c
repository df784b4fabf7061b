/* Leveled stderr logging, text or JSON lines (log.h). A line is built in a
 * bounded buffer on the caller's stack, then written with one write(2):
 * lines of several threads never interleave, and a line too long for the
 * buffer is cut, never left unterminated (JSON stays an object). */
#include "chanq_config.h"

#include "daemon/log.h"

#include "core/timer.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *const level_names[] = {"error", "warn", "info", "debug"};
static const char *const format_names[] = {"text", "json"};
/* syslog priorities (err, warning, info, debug), which the journal reads
 * from the head of a line. */
static const char *const journal_prio[] = {"<3>", "<4>", "<6>", "<7>"};

enum {
    LINE_MAX_BYTES = 4096, /* a longer line is cut */
    MSG_MAX_BYTES = 2048,  /* the formatted message, before escaping */
    FIELDS_ROOM = 1024,    /* kept free of the message for the fields */
    TAIL_ROOM = 2,         /* "}\n" (JSON) or "\n" (text) always fits */
};

/* The process-wide settings: logging is shared by every thread and level
 * and format may change on SIGHUP, so they are atomics rather than server
 * state. to_journal is set once at start. */
static _Atomic int current_level = LOG_INFO;
static _Atomic int current_format = LOG_FORMAT_TEXT;
static _Atomic bool to_journal = false;

static int
parse_name(const char *const *names, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(name, names[i]) == 0)
            return (int)i;
    return -1;
}

int
log_level_parse(const char *name, enum log_level *out)
{
    int i = parse_name(level_names, sizeof level_names / sizeof level_names[0], name);
    if (i < 0)
        return -1;
    *out = (enum log_level)i;
    return 0;
}

const char *
log_level_name(enum log_level level)
{
    return level_names[level];
}

void
log_set_level(enum log_level level)
{
    atomic_store(&current_level, (int)level);
}

bool
log_enabled(enum log_level level)
{
    return (int)level <= atomic_load_explicit(&current_level, memory_order_relaxed);
}

int
log_format_parse(const char *name, enum log_format *out)
{
    int i = parse_name(format_names, sizeof format_names / sizeof format_names[0], name);
    if (i < 0)
        return -1;
    *out = (enum log_format)i;
    return 0;
}

const char *
log_format_name(enum log_format format)
{
    return format_names[format];
}

void
log_set_format(enum log_format format)
{
    atomic_store(&current_format, (int)format);
}

void
log_detect_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    bool yes = js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
               (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
    atomic_store(&to_journal, yes);
}

/* The line being built: len never passes cap, which leaves TAIL_ROOM
 * bytes of the buffer for the end of the line. */
struct logline {
    char buf[LINE_MAX_BYTES];
    size_t len;
    size_t cap;
};

/* Appends n bytes whole, or nothing; returns whether they fit below limit. */
static bool
put(struct logline *l, size_t limit, const char *s, size_t n)
{
    if (limit > l->cap)
        limit = l->cap;
    if (l->len + n > limit)
        return false;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
    return true;
}

static bool putf(struct logline *l, size_t limit, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool
putf(struct logline *l, size_t limit, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    return n >= 0 && (size_t)n < sizeof tmp && put(l, limit, tmp, (size_t)n);
}

/* Length of the well-formed UTF-8 sequence at s (of n bytes), or 0. */
static size_t
utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, cp = c & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    /* overlong forms, surrogates, past U+10FFFF */
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* Appends s escaped for a JSON string (json) or for a text line (control
 * bytes as \n, \t or \xNN; quote and backslash escaped too when quoted),
 * as much of it as fits below limit, whole characters only. */
static void
put_escaped(struct logline *l, size_t limit, const char *s, bool json, bool quoted)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        char esc[8];
        const char *out = esc;
        size_t olen, step = 1;
        if (c == '"' || c == '\\') {
            if (json || quoted)
                esc[0] = '\\', esc[1] = (char)c, olen = 2;
            else
                esc[0] = (char)c, olen = 1;
        } else if (c == '\n' || c == '\t' || c == '\r') {
            esc[0] = '\\', esc[1] = c == '\n' ? 'n' : c == '\t' ? 't' : 'r', olen = 2;
        } else if (c < 0x20 || c == 0x7f) {
            olen = (size_t)snprintf(esc, sizeof esc, json ? "\\u%04x" : "\\x%02x", c);
        } else if (c < 0x80 || !json) {
            esc[0] = (char)c, olen = 1;
        } else if ((step = utf8_len(p + i, n - i)) > 0) {
            out = (const char *)p + i, olen = step;
        } else {
            out = "\\ufffd", olen = 6, step = 1;
        }
        if (!put(l, limit, out, olen))
            return;
        i += step;
    }
}

/* A text value needs quotes when it is empty or holds a space, quote,
 * '=' or control byte: then key=value stays splittable. */
static bool
needs_quotes(const char *s)
{
    if (!*s)
        return true;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= ' ' || *p == '"' || *p == '=' || *p == 0x7f)
            return true;
    return false;
}

static void
put_time(struct logline *l, bool json)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char t[32];
    size_t n = strftime(t, sizeof t, "%Y-%m-%dT%H:%M:%S", &tm);
    t[n] = '\0';
    putf(l, l->cap, json ? "{\"time\":\"%s.%03ldZ\"" : "%s.%03ldZ ", t, ts.tv_nsec / 1000000);
}

static void
put_field_json(struct logline *l, const struct log_field *f)
{
    size_t mark = l->len;
    bool ok;
    if (f->kind == LOG_KIND_STR) {
        ok = putf(l, l->cap - 1, ",\"%s\":\"", f->key);
        if (ok) {
            put_escaped(l, l->cap - 1, f->s, true, true);
            ok = put(l, l->cap, "\"", 1);
        }
    } else if (f->kind == LOG_KIND_INT) {
        ok = putf(l, l->cap, ",\"%s\":%" PRId64, f->key, f->i);
    } else {
        ok = putf(l, l->cap, ",\"%s\":%" PRIu64, f->key, f->u);
    }
    if (!ok)
        l->len = mark; /* a field that does not fit is left out whole */
}

static void
put_field_text(struct logline *l, const struct log_field *f)
{
    size_t mark = l->len;
    bool ok;
    if (f->kind == LOG_KIND_STR) {
        bool q = needs_quotes(f->s);
        ok = putf(l, l->cap - q, " %s=%s", f->key, q ? "\"" : "");
        if (ok) {
            put_escaped(l, l->cap - q, f->s, false, q);
            ok = !q || put(l, l->cap, "\"", 1);
        }
    } else if (f->kind == LOG_KIND_INT) {
        ok = putf(l, l->cap, " %s=%" PRId64, f->key, f->i);
    } else {
        ok = putf(l, l->cap, " %s=%" PRIu64, f->key, f->u);
    }
    if (!ok)
        l->len = mark;
}

/* Builds and writes one line: the message, its suffix (may be ""), then
 * the fields and, when non-zero, suppressed. */
static void __attribute__((format(printf, 5, 0)))
log_emit(enum log_level level, struct log_fields fields, unsigned long long suppressed,
         const char *suffix, const char *fmt, va_list ap)
{
    char msg[MSG_MAX_BYTES];
    size_t slen = strlen(suffix);
    int m = vsnprintf(msg, sizeof msg - slen, fmt, ap);
    size_t mlen = m < 0 ? 0 : (size_t)m >= sizeof msg - slen ? sizeof msg - slen - 1 : (size_t)m;
    memcpy(msg + mlen, suffix, slen + 1);

    struct logline l = {.len = 0, .cap = LINE_MAX_BYTES - TAIL_ROOM};
    bool json = atomic_load_explicit(&current_format, memory_order_relaxed) == LOG_FORMAT_JSON;
    size_t msg_limit = l.cap - FIELDS_ROOM;
    if (json) {
        put_time(&l, true);
        putf(&l, l.cap, ",\"level\":\"%s\",\"message\":\"", level_names[level]);
        put_escaped(&l, msg_limit, msg, true, true);
        put(&l, l.cap, "\"", 1);
        putf(&l, l.cap, ",\"pid\":%d", (int)getpid());
    } else {
        if (atomic_load_explicit(&to_journal, memory_order_relaxed))
            put(&l, l.cap, journal_prio[level], 3);
        else
            put_time(&l, false);
        putf(&l, l.cap, "chanqd[%d]: %s: ", (int)getpid(), level_names[level]);
        put_escaped(&l, msg_limit, msg, false, false);
    }
    struct log_field sup = LOG_UINT("suppressed", suppressed);
    for (size_t i = 0; i <= fields.n; i++) {
        const struct log_field *f = i < fields.n ? &fields.f[i] : &sup;
        if ((f == &sup && suppressed == 0) || (f->kind == LOG_KIND_STR && !f->s))
            continue;
        (json ? put_field_json : put_field_text)(&l, f);
    }
    /* TAIL_ROOM was kept for this. */
    if (json)
        l.buf[l.len++] = '}';
    l.buf[l.len++] = '\n';
    ssize_t w = write(STDERR_FILENO, l.buf, l.len);
    (void)w; /* nowhere left to report a failing stderr */
}

void
log_kv(enum log_level level, struct log_fields fields, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    va_list ap;
    va_start(ap, fmt);
    log_emit(level, fields, 0, "", fmt, ap);
    va_end(ap);
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    va_list ap;
    va_start(ap, fmt);
    log_emit(level, LOG_NO_FIELDS, 0, "", fmt, ap);
    va_end(ap);
}

/* Whether this call of a limited line is the one printed; *skipped is
 * then how many were counted since the last printed one. */
static bool
limit_pass(struct log_limit *lim, unsigned long long *skipped)
{
    int64_t now = timer_now_ms();
    int64_t next = atomic_load(&lim->next_ms);
    /* One thread wins the slot; the others (and later calls) only count. */
    if (now < next || !atomic_compare_exchange_strong(&lim->next_ms, &next, now + LOG_LIMIT_MS)) {
        atomic_fetch_add(&lim->suppressed, 1);
        return false;
    }
    *skipped = atomic_exchange(&lim->suppressed, 0);
    return true;
}

static void __attribute__((format(printf, 4, 0)))
log_vlimited(struct log_limit *lim, enum log_level level, struct log_fields fields, const char *fmt,
             va_list ap)
{
    unsigned long long skipped;
    if (!limit_pass(lim, &skipped))
        return;
    char suffix[80] = "";
    if (skipped > 0)
        snprintf(suffix, sizeof suffix, " (%llu more like this since the last such line)",
                 skipped);
    log_emit(level, fields, skipped, suffix, fmt, ap);
}

void
log_limited(struct log_limit *lim, enum log_level level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    va_list ap;
    va_start(ap, fmt);
    log_vlimited(lim, level, LOG_NO_FIELDS, fmt, ap);
    va_end(ap);
}

void
log_limited_kv(struct log_limit *lim, enum log_level level, struct log_fields fields,
               const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    va_list ap;
    va_start(ap, fmt);
    log_vlimited(lim, level, fields, fmt, ap);
    va_end(ap);
}
