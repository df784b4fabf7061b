/* Leveled logging to stderr for chanqd.
 * Any thread. A line is written with one write(2), so lines never interleave. */
#ifndef CHANQ_DAEMON_LOG_H
#define CHANQ_DAEMON_LOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* Parses "error", "warn", "info" or "debug". Returns 0, or -1 and leaves
 * *out unchanged. */
int log_level_parse(const char *name, enum log_level *out);
const char *log_level_name(enum log_level level);

/* Sets the most verbose level that is printed (default LOG_INFO). */
void log_set_level(enum log_level level);
bool log_enabled(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A line that a client can trigger again and again (a refused connection)
 * goes through a log_limit: at most one such line per LOG_LIMIT_MS, the
 * next printed one ending in "(N more like this since the last such
 * line)". A limit that stays zero-initialised is ready; one per kind of
 * line (log_warn_limited keeps one per call site). Any thread. */
#define LOG_LIMIT_MS 1000
struct log_limit {
    _Atomic int64_t next_ms;                /* lines before this (monotonic ms) are counted */
    _Atomic unsigned long long suppressed; /* counted since the last printed line */
};
void log_limited(struct log_limit *lim, enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_warn_limited(...)                                                                      \
    do {                                                                                           \
        static struct log_limit log_limit_;                                                        \
        log_limited(&log_limit_, LOG_WARN, __VA_ARGS__);                                           \
    } while (0)

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_enabled(LOG_DEBUG))                                                                \
            log_msg(LOG_DEBUG, __VA_ARGS__);                                                       \
    } while (0)

#endif
