/* Leveled logging to stderr for chanqd, as text or as JSON lines.
 * Any thread. A line is written with one write(2), so lines never interleave.
 *
 * A line is a printf-style message plus optional fields (key/value pairs:
 * which connection, queue, job, error code ...). In text the fields follow
 * the message as key=value; in JSON each is a member of the line's object,
 * after "time", "level" and "message". */
#ifndef CHANQ_DAEMON_LOG_H
#define CHANQ_DAEMON_LOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* Parses "error", "warn", "info" or "debug". Returns 0, or -1 and leaves
 * *out unchanged. */
int log_level_parse(const char *name, enum log_level *out);
const char *log_level_name(enum log_level level);

/* Sets the most verbose level that is printed (default LOG_INFO). */
void log_set_level(enum log_level level);
bool log_enabled(enum log_level level);

/* text (the default): "[TIME ]chanqd[PID]: LEVEL: MESSAGE[ KEY=VALUE...]",
 * the time (RFC 3339, UTC, milliseconds) only when stderr is not systemd's
 * journal, which stamps lines itself; there each line starts with its
 * syslog priority ("<3>") instead, so journalctl knows the level.
 * json: one object per line, {"time":..., "level":..., "message":...,
 * "pid":..., FIELDS...}; strings are escaped (bytes that are not UTF-8
 * become U+FFFD), so a client's bytes cannot break a line. */
enum log_format { LOG_FORMAT_TEXT, LOG_FORMAT_JSON };

/* Parses "text" or "json". Returns 0, or -1 and leaves *out unchanged. */
int log_format_parse(const char *name, enum log_format *out);
const char *log_format_name(enum log_format format);
void log_set_format(enum log_format format);

/* Looks once whether stderr is systemd's journal (JOURNAL_STREAM names
 * the device and inode of the stream systemd connected; they must be
 * stderr's). Call at start, before other threads log. */
void log_detect_journal(void);

/* One field. key is a string literal (lower case, '_'); a string value is
 * borrowed for the call and may be NULL (then left out). */
enum log_field_kind { LOG_KIND_STR, LOG_KIND_INT, LOG_KIND_UINT };
struct log_field {
    const char *key;
    enum log_field_kind kind;
    const char *s;
    int64_t i;
    uint64_t u;
};
#define LOG_STR(k, v) ((struct log_field){.key = (k), .kind = LOG_KIND_STR, .s = (v)})
#define LOG_INT(k, v) ((struct log_field){.key = (k), .kind = LOG_KIND_INT, .i = (int64_t)(v)})
#define LOG_UINT(k, v) ((struct log_field){.key = (k), .kind = LOG_KIND_UINT, .u = (uint64_t)(v)})

/* A list of fields: LOG_FIELDS(LOG_UINT("job", id), LOG_STR("queue", q)). */
struct log_fields {
    const struct log_field *f;
    size_t n;
};
#define LOG_FIELDS(...)                                                                            \
    ((struct log_fields){(const struct log_field[]){__VA_ARGS__},                                  \
                         sizeof((const struct log_field[]){__VA_ARGS__}) /                         \
                             sizeof(struct log_field)})
#define LOG_NO_FIELDS ((struct log_fields){NULL, 0})

/* The keys in use, so that one thing has one name in every line:
 *   conn     the connection's number (from 1, per process)
 *   client   the name the client gave in hello
 *   remote   the peer's address (HOST:PORT, [V6]:PORT, or "unix")
 *   queue    a queue name
 *   job      a job id
 *   code     a protocol error code (docs/protocol.md)
 *   error    an errno text (strerror)
 *   path     a file
 *   listen   a listening address */

void log_kv(enum log_level level, struct log_fields fields, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A line that a client can trigger again and again (a refused connection)
 * goes through a log_limit: at most one such line per LOG_LIMIT_MS, the
 * next printed one ending in "(N more like this since the last such
 * line)" (and with the field suppressed=N). A limit that stays
 * zero-initialised is ready; one per kind of line (log_warn_limited keeps
 * one per call site). Any thread. */
#define LOG_LIMIT_MS 1000
struct log_limit {
    _Atomic int64_t next_ms;                /* lines before this (monotonic ms) are counted */
    _Atomic unsigned long long suppressed; /* counted since the last printed line */
};
void log_limited(struct log_limit *lim, enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_limited_kv(struct log_limit *lim, enum log_level level, struct log_fields fields,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define log_warn_limited(...)                                                                      \
    do {                                                                                           \
        static struct log_limit log_limit_;                                                        \
        log_limited(&log_limit_, LOG_WARN, __VA_ARGS__);                                           \
    } while (0)
#define log_warn_limited_kv(fields, ...)                                                           \
    do {                                                                                           \
        static struct log_limit log_limit_;                                                        \
        log_limited_kv(&log_limit_, LOG_WARN, fields, __VA_ARGS__);                                \
    } while (0)

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_enabled(LOG_DEBUG))                                                                \
            log_msg(LOG_DEBUG, __VA_ARGS__);                                                       \
    } while (0)

/* The same with fields first: log_warn_kv(LOG_FIELDS(...), "fmt", ...). */
#define log_error_kv(fields, ...) log_kv(LOG_ERROR, fields, __VA_ARGS__)
#define log_warn_kv(fields, ...) log_kv(LOG_WARN, fields, __VA_ARGS__)
#define log_info_kv(fields, ...) log_kv(LOG_INFO, fields, __VA_ARGS__)
#define log_debug_kv(fields, ...)                                                                  \
    do {                                                                                           \
        if (log_enabled(LOG_DEBUG))                                                                \
            log_kv(LOG_DEBUG, fields, __VA_ARGS__);                                                \
    } while (0)

#endif
