/* Cron expressions and their next planned times in an IANA time zone.
 *
 * A struct cron is a plain value (copy it freely; it owns nothing): five
 * fields (minute hour day-of-month month day-of-week) with `*`, numbers,
 * ranges `a-b`, steps (`a-b/n`, `a/n`, and
 * a star followed by `/n`), lists `a,b`, and month and
 * day names (jan..dec, sun..sat; 7 is Sunday too); the macros @yearly
 * (@annually), @monthly, @weekly, @daily (@midnight), @hourly; or a fixed
 * interval `@every DURATION` (1h30m, 90s, 2d; 1 s to 366 days). As in
 * Vixie cron, when both day fields are restricted (neither starts with
 * `*`) a day matches if either does.
 *
 * Planned times are local wall-clock minutes in the schedule's zone,
 * mapped to instants like Vixie/ISC cron does across DST: a local time the
 * clocks skip runs once at the next valid time (the moment of the change),
 * a local time that happens twice runs once, at its first occurrence.
 *
 * Time zones come from the system's tzdata (TZDIR, default
 * /usr/share/zoneinfo) through glibc: TZ is set and tzset() called under
 * one process-wide mutex, and chanqd formats no local time anywhere else,
 * so no other thread sees the switch. Call cron_init once before threads
 * start (it makes sure TZ exists in the environment, so that later
 * changes replace it in place instead of growing the environment under a
 * concurrent getenv). Every function: any thread. */
#ifndef CHANQ_DAEMON_CRON_H
#define CHANQ_DAEMON_CRON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CRON_MAX_TEXT 256 /* bytes of a cron expression */
#define CRON_MAX_TZ 64    /* bytes of a zone name */
#define CRON_MIN_EVERY_MS INT64_C(1000)
#define CRON_MAX_EVERY_MS (INT64_C(366) * 86400000)

struct cron {
    uint64_t minute;           /* bit m: minute m (0..59) matches */
    uint32_t hour;             /* bits 0..23 */
    uint32_t mday;             /* bits 1..31 */
    uint16_t month;            /* bits 1..12 */
    uint8_t wday;              /* bits 0..6, Sunday = 0 */
    bool mday_star, wday_star; /* the field started with '*' (Vixie's day rule) */
    int64_t every_ms;          /* > 0: `@every`, a fixed interval; the fields are unused */
};

/* Parses text (NUL-terminated) into *out. 0, or -EINVAL with why (why_len
 * bytes, may be NULL) saying which field and what is wrong, e.g.
 * "field 2 (hour): 24 is out of range 0-23". An expression that can never
 * fire (`0 0 30 2 *`) is refused too. */
int cron_parse(const char *text, struct cron *out, char *why, size_t why_len);

/* Whether tz names a zone of the system's tzdata ("" and "UTC" are UTC).
 * 0, or -EINVAL with why. */
int cron_tz_check(const char *tz, char *why, size_t why_len);

/* The first planned time strictly after after_ms (ms since the epoch) in
 * zone tz ("" = UTC; checked with cron_tz_check first). An @every
 * interval plans anchor_ms + k * every_ms and ignores tz. Returns 0 with
 * *next_ms, or -ERANGE when there is none within 8 years. */
int cron_next(const struct cron *c, const char *tz, int64_t anchor_ms, int64_t after_ms,
              int64_t *next_ms);

/* The latest planned time in (after_ms, upto_ms]: 0 with *out, or -ENOENT
 * when there is none. */
int cron_latest(const struct cron *c, const char *tz, int64_t anchor_ms, int64_t after_ms,
                int64_t upto_ms, int64_t *out);

/* See above: before any thread is started. */
void cron_init(void);

#endif
