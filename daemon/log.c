/* Leveled stderr logging: "chanqd[pid]: level: message". */
#include "chanq_config.h"

#include "daemon/log.h"

#include "core/timer.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *const level_names[] = {"error", "warn", "info", "debug"};

/* The one process-wide setting: logging is shared by every thread and the
 * level may change on SIGHUP, so it is an atomic rather than server state. */
static _Atomic int current_level = LOG_INFO;

int
log_level_parse(const char *name, enum log_level *out)
{
    for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
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

/* Writes one line: prefix, the formatted message, then suffix (may be ""). */
static void __attribute__((format(printf, 3, 0)))
log_vwrite(enum log_level level, const char *suffix, const char *fmt, va_list ap)
{
    char line[2048];
    size_t slen = strlen(suffix);
    int n = snprintf(line, sizeof line, "chanqd[%d]: %s: ", (int)getpid(), level_names[level]);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - slen - 1, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - slen - 2)
        len = sizeof line - slen - 2;
    memcpy(line + len, suffix, slen);
    len += slen;
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w; /* nowhere left to report a failing stderr */
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(level, "", fmt, ap);
    va_end(ap);
}

void
log_limited(struct log_limit *lim, enum log_level level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    int64_t now = timer_now_ms();
    int64_t next = atomic_load(&lim->next_ms);
    /* One thread wins the slot; the others (and later calls) only count. */
    if (now < next || !atomic_compare_exchange_strong(&lim->next_ms, &next, now + LOG_LIMIT_MS)) {
        atomic_fetch_add(&lim->suppressed, 1);
        return;
    }
    unsigned long long skipped = atomic_exchange(&lim->suppressed, 0);
    char suffix[80] = "";
    if (skipped > 0)
        snprintf(suffix, sizeof suffix, " (%llu more like this since the last such line)",
                 skipped);
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(level, suffix, fmt, ap);
    va_end(ap);
}
