/* Cron expressions: the parser, the calendar search over local wall-clock
 * minutes, and the mapping of a local minute to an instant in a zone (see
 * cron.h for the rules). */
#include "chanq_config.h"

#include "daemon/cron.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- parsing ---- */

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                          "jul", "aug", "sep", "oct", "nov", "dec"};
static const char *const day_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

struct field_def {
    const char *name;
    int lo, hi;
    const char *const *names; /* names[i] is value i + names_base */
    int names_base;
};

static const struct field_def fields[5] = {
    {"minute", 0, 59, NULL, 0},          {"hour", 0, 23, NULL, 0},
    {"day-of-month", 1, 31, NULL, 0},    {"month", 1, 12, month_names, 1},
    {"day-of-week", 0, 7, day_names, 0},
};

struct parser {
    const char *p;
    int field; /* index into fields */
    char *why;
    size_t why_len;
};

__attribute__((format(printf, 2, 3))) static int
reject(struct parser *ps, const char *fmt, ...)
{
    if (ps->why && ps->why_len) {
        char msg[200];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        if (ps->field >= 0)
            snprintf(ps->why, ps->why_len, "field %d (%s): %s", ps->field + 1,
                     fields[ps->field].name, msg);
        else
            snprintf(ps->why, ps->why_len, "%s", msg);
    }
    return -EINVAL;
}

/* A number or (where the field has them) a three-letter name. */
static int
parse_value(struct parser *ps, int *out)
{
    const struct field_def *f = &fields[ps->field];
    if (isdigit((unsigned char)*ps->p)) {
        long v = 0;
        while (isdigit((unsigned char)*ps->p)) {
            v = v * 10 + (*ps->p++ - '0');
            if (v > 1000)
                return reject(ps, "number too large");
        }
        if (v < f->lo || v > f->hi)
            return reject(ps, "%ld is out of range %d-%d", v, f->lo, f->hi);
        *out = (int)v;
        return 0;
    }
    if (isalpha((unsigned char)*ps->p) && f->names) {
        size_t n = f->hi - f->lo + 1 - (ps->field == 4 ? 1 : 0);
        for (size_t i = 0; i < n; i++) {
            if (strncasecmp(ps->p, f->names[i], 3) == 0 && !isalpha((unsigned char)ps->p[3])) {
                ps->p += 3;
                *out = (int)i + f->names_base;
                return 0;
            }
        }
    }
    int n = (int)strcspn(ps->p, " \t,-/");
    return reject(ps, "'%.*s' is not a %s", n > 12 ? 12 : n, ps->p,
                  f->names ? "number or name" : "number");
}

/* One list item: `*`, `a`, `a-b`, each with an optional `/step`. */
static int
parse_item(struct parser *ps, uint64_t *bits, bool *star)
{
    const struct field_def *f = &fields[ps->field];
    int a, b, step = 1;
    if (*ps->p == '*') {
        ps->p++;
        a = f->lo;
        b = f->hi;
        *star = true;
    } else {
        if (parse_value(ps, &a) < 0)
            return -EINVAL;
        b = a;
        if (*ps->p == '-') {
            ps->p++;
            if (parse_value(ps, &b) < 0)
                return -EINVAL;
            if (b < a)
                return reject(ps, "range %d-%d runs backwards", a, b);
        } else if (*ps->p == '/') {
            b = f->hi; /* `a/n`: from a to the end, every n */
        }
    }
    if (*ps->p == '/') {
        ps->p++;
        if (!isdigit((unsigned char)*ps->p))
            return reject(ps, "a step must be a number");
        long s = 0;
        while (isdigit((unsigned char)*ps->p) && s <= 1000)
            s = s * 10 + (*ps->p++ - '0');
        if (s < 1 || s > f->hi)
            return reject(ps, "step %ld is out of range 1-%d", s, f->hi);
        step = (int)s;
    }
    for (int v = a; v <= b; v += step)
        *bits |= UINT64_C(1) << v;
    return 0;
}

/* One whitespace-separated field: items separated by commas. */
static int
parse_field(struct parser *ps, uint64_t *bits, bool *star)
{
    *bits = 0;
    *star = false;
    bool first = true;
    for (;;) {
        if (*ps->p == '\0' || isspace((unsigned char)*ps->p) || *ps->p == ',')
            return reject(ps, "empty list item");
        bool item_star = false;
        if (parse_item(ps, bits, &item_star) < 0)
            return -EINVAL;
        if (first)
            *star = item_star; /* Vixie: the field *starts* with '*' */
        first = false;
        if (*ps->p == ',') {
            ps->p++;
            continue;
        }
        if (*ps->p == '\0' || isspace((unsigned char)*ps->p))
            return 0;
        return reject(ps, "unexpected '%c'", *ps->p);
    }
}

static const struct {
    const char *name;
    const char *fields;
} macros[] = {
    {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

/* "1h30m", "90s", "2d", "500ms": the sum of number+unit pairs. */
static int
parse_duration(struct parser *ps, int64_t *out)
{
    int64_t total = 0;
    if (*ps->p == '\0')
        return reject(ps, "@every needs a duration, e.g. '@every 5m'");
    while (*ps->p && !isspace((unsigned char)*ps->p)) {
        if (!isdigit((unsigned char)*ps->p))
            return reject(ps, "duration: '%.12s' does not start with a number", ps->p);
        int64_t n = 0;
        while (isdigit((unsigned char)*ps->p)) {
            n = n * 10 + (*ps->p++ - '0');
            if (n > CRON_MAX_EVERY_MS)
                return reject(ps, "duration: number too large");
        }
        int64_t unit;
        if (strncmp(ps->p, "ms", 2) == 0)
            unit = 1, ps->p += 2;
        else if (*ps->p == 's')
            unit = 1000, ps->p++;
        else if (*ps->p == 'm')
            unit = 60000, ps->p++;
        else if (*ps->p == 'h')
            unit = 3600000, ps->p++;
        else if (*ps->p == 'd')
            unit = 86400000, ps->p++;
        else
            return reject(ps, "duration: unit must be ms, s, m, h or d");
        total += n * unit;
        if (total > CRON_MAX_EVERY_MS)
            break;
    }
    if (total < CRON_MIN_EVERY_MS || total > CRON_MAX_EVERY_MS)
        return reject(ps, "@every: interval must be 1s to 366d");
    *out = total;
    return 0;
}

static int
days_in_month(int64_t y, int m)
{
    static const int dim[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : dim[m - 1];
}

/* A day-of-month list and months that never meet (`30 2`) never fire. */
static bool
can_fire(const struct cron *c)
{
    if (c->mday_star || !c->wday_star)
        return true; /* the weekdays decide, and every weekday comes */
    for (int m = 1; m <= 12; m++) {
        if (!(c->month & (1u << m)))
            continue;
        for (int d = 1; d <= days_in_month(2000, m); d++) /* 2000: Feb 29 exists */
            if (c->mday & (1u << d))
                return true;
    }
    return false;
}

static int
parse_fields(struct parser *ps, struct cron *out)
{
    uint64_t bits[5];
    bool star[5];
    for (int i = 0; i < 5; i++) {
        while (isspace((unsigned char)*ps->p))
            ps->p++;
        ps->field = -1;
        if (*ps->p == '\0')
            return reject(ps,
                          "5 fields needed (minute hour day-of-month month day-of-week), "
                          "got %d",
                          i);
        ps->field = i;
        if (parse_field(ps, &bits[i], &star[i]) < 0)
            return -EINVAL;
    }
    while (isspace((unsigned char)*ps->p))
        ps->p++;
    ps->field = -1;
    if (*ps->p)
        return reject(ps, "5 fields needed, got more ('%.12s')", ps->p);
    if (bits[4] & (1u << 7))
        bits[4] = (bits[4] | 1u) & 0x7f; /* 7 is Sunday too */
    *out = (struct cron){
        .minute = bits[0],
        .hour = (uint32_t)bits[1],
        .mday = (uint32_t)bits[2],
        .month = (uint16_t)bits[3],
        .wday = (uint8_t)bits[4],
        .mday_star = star[2],
        .wday_star = star[4],
    };
    if (!can_fire(out))
        return reject(ps, "no month has the days this expression names: it would never run");
    return 0;
}

int
cron_parse(const char *text, struct cron *out, char *why, size_t why_len)
{
    struct parser ps = {text, -1, why, why_len};
    if (strlen(text) > CRON_MAX_TEXT)
        return reject(&ps, "longer than %d bytes", CRON_MAX_TEXT);
    while (isspace((unsigned char)*ps.p))
        ps.p++;
    if (*ps.p != '@')
        return parse_fields(&ps, out);
    if (strncmp(ps.p, "@every", 6) == 0 && (ps.p[6] == '\0' || isspace((unsigned char)ps.p[6]))) {
        ps.p += 6;
        while (isspace((unsigned char)*ps.p))
            ps.p++;
        *out = (struct cron){.every_ms = 0};
        if (parse_duration(&ps, &out->every_ms) < 0)
            return -EINVAL;
        while (isspace((unsigned char)*ps.p))
            ps.p++;
        return *ps.p ? reject(&ps, "unexpected text after the duration") : 0;
    }
    size_t n = strcspn(ps.p, " \t\r\n");
    for (size_t i = 0; i < sizeof macros / sizeof macros[0]; i++) {
        if (strlen(macros[i].name) == n && strncmp(ps.p, macros[i].name, n) == 0) {
            const char *rest = ps.p + n;
            while (isspace((unsigned char)*rest))
                rest++;
            if (*rest)
                return reject(&ps, "unexpected text after %s", macros[i].name);
            ps.p = macros[i].fields;
            return parse_fields(&ps, out);
        }
    }
    return reject(&ps,
                  "unknown macro '%.*s' (@yearly, @annually, @monthly, @weekly, @daily, "
                  "@midnight, @hourly, @every DURATION)",
                  (int)(n > 16 ? 16 : n), ps.p);
}

/* ---- zones ---- */

static bool
tz_is_utc(const char *tz)
{
    return tz[0] == '\0' || strcmp(tz, "UTC") == 0;
}

int
cron_tz_check(const char *tz, char *why, size_t why_len)
{
    size_t n = strlen(tz);
    if (tz_is_utc(tz))
        return 0;
    bool ok = n <= CRON_MAX_TZ && tz[0] != '/' && tz[n - 1] != '/' && !strstr(tz, "//") &&
              !strstr(tz, "..");
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)tz[i]) || strchr("_+-/", tz[i]);
    if (!ok) {
        snprintf(why, why_len, "'%.48s' is not a time zone name (like Europe/Berlin)", tz);
        return -EINVAL;
    }
    const char *dir = getenv("TZDIR");
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir && *dir ? dir : "/usr/share/zoneinfo", tz);
    char magic[4] = {0};
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        fd = open(path, O_RDONLY | O_CLOEXEC); /* zoneinfo links are fine, dirs are not */
    struct stat st;
    bool found = fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && read(fd, magic, 4) == 4 &&
                 memcmp(magic, "TZif", 4) == 0;
    if (fd >= 0)
        close(fd);
    if (!found) {
        snprintf(why, why_len, "unknown time zone '%.48s' (not in the system's tzdata)", tz);
        return -EINVAL;
    }
    return 0;
}

/* TZ is process-wide: one lock around every use of it (see cron.h). */
static pthread_mutex_t tz_lock = PTHREAD_MUTEX_INITIALIZER;
static char tz_set[CRON_MAX_TZ + 1]; /* the zone TZ names now; guarded by tz_lock */
static bool tz_known;                /* tz_set is valid */

void
cron_init(void)
{
    pthread_mutex_lock(&tz_lock);
    if (!getenv("TZ"))
        setenv("TZ", ":/etc/localtime", 1); /* what an unset TZ means to glibc */
    tz_known = false;
    pthread_mutex_unlock(&tz_lock);
}

/* tz_lock held: TZ names tz. */
static void
tz_use(const char *tz)
{
    if (tz_known && strcmp(tz_set, tz) == 0)
        return;
    setenv("TZ", tz, 1);
    tzset();
    snprintf(tz_set, sizeof tz_set, "%s", tz);
    tz_known = true;
}

/* UTC offset in seconds at instant t (tz_lock held, tz_use done). */
static int64_t
utoff(int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!localtime_r(&tt, &tm))
        return 0;
    return tm.tm_gmtoff;
}

/* The instant (s) of local wall time wall_s (seconds as if UTC): the one
 * instant, or the first of two (a repeated hour), or for a time the
 * clocks skip the moment they skip it (the next valid time). */
static int64_t
resolve(int64_t wall_s)
{
    int64_t oa = utoff(wall_s - 86400), ob = utoff(wall_s + 86400);
    int64_t ta = wall_s - oa, tb = wall_s - ob;
    bool va = utoff(ta) == oa, vb = utoff(tb) == ob;
    if (va && vb)
        return ta < tb ? ta : tb;
    if (va || vb)
        return va ? ta : tb;
    /* A gap: the first instant whose wall time is at or after wall_s. */
    int64_t lo = ta < tb ? ta : tb, hi = ta < tb ? tb : ta;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (mid + utoff(mid) >= wall_s)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* ---- the calendar ---- */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void
civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int64_t
floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

static bool
day_matches(const struct cron *c, int64_t y, int m, int d)
{
    int64_t days = days_from_civil(y, m, d);
    int wd = (int)((days % 7 + 11) % 7); /* 1970-01-01 was a Thursday (4) */
    bool dm = c->mday & (1u << d), wm = c->wday & (1u << wd);
    if (c->mday_star || c->wday_star)
        return dm && wm;
    return dm || wm;
}

/* The first matching local minute (minutes since the epoch, local) at or
 * after `from`, before `limit`; -1 when none. */
static int64_t
search(const struct cron *c, int64_t from, int64_t limit)
{
    int64_t y;
    int m, d;
    civil_from_days(floor_div(from, 1440), &y, &m, &d);
    int64_t rem = from - floor_div(from, 1440) * 1440;
    int H = (int)(rem / 60), M = (int)(rem % 60);
    for (;;) {
        int64_t at = days_from_civil(y, m, d) * 1440 + H * 60 + M;
        if (at >= limit)
            return -1;
        if (!(c->month & (1u << m))) {
            d = 1, H = 0, M = 0;
            if (++m > 12)
                m = 1, y++;
        } else if (!day_matches(c, y, m, d)) {
            H = 0, M = 0;
            if (++d > days_in_month(y, m)) {
                d = 1;
                if (++m > 12)
                    m = 1, y++;
            }
        } else if (!(c->hour & (1u << H))) {
            M = 0;
            if (++H > 23) {
                H = 0;
                if (++d > days_in_month(y, m)) {
                    d = 1;
                    if (++m > 12)
                        m = 1, y++;
                }
            }
        } else if (!(c->minute & (UINT64_C(1) << M))) {
            if (++M > 59) {
                M = 0;
                if (++H > 23) {
                    H = 0;
                    if (++d > days_in_month(y, m)) {
                        d = 1;
                        if (++m > 12)
                            m = 1, y++;
                    }
                }
            }
        } else {
            return at;
        }
    }
}

#define SEARCH_YEARS 8

int
cron_next(const struct cron *c, const char *tz, int64_t anchor_ms, int64_t after_ms,
          int64_t *next_ms)
{
    if (c->every_ms > 0) {
        int64_t k = after_ms < anchor_ms ? 1 : floor_div(after_ms - anchor_ms, c->every_ms) + 1;
        *next_ms = anchor_ms + k * c->every_ms;
        return 0;
    }
    bool utc = tz_is_utc(tz);
    if (!utc) {
        pthread_mutex_lock(&tz_lock);
        tz_use(tz);
    }
    int64_t after_s = floor_div(after_ms, 1000);
    int64_t wall_min = floor_div(after_s + (utc ? 0 : utoff(after_s)), 60);
    int64_t limit = wall_min + SEARCH_YEARS * 366 * 1440;
    int rc = -ERANGE;
    for (int64_t from = wall_min + 1;;) {
        int64_t w = search(c, from, limit);
        if (w < 0)
            break;
        int64_t t = utc ? w * 60 : resolve(w * 60);
        if (t * 1000 > after_ms) {
            *next_ms = t * 1000;
            rc = 0;
            break;
        }
        from = w + 1; /* a repeated hour's second pass: already planned */
    }
    if (!utc)
        pthread_mutex_unlock(&tz_lock);
    return rc;
}

int
cron_latest(const struct cron *c, const char *tz, int64_t anchor_ms, int64_t after_ms,
            int64_t upto_ms, int64_t *out)
{
    if (upto_ms <= after_ms)
        return -ENOENT;
    if (c->every_ms > 0) {
        int64_t k = floor_div(upto_ms - anchor_ms, c->every_ms);
        int64_t t = anchor_ms + k * c->every_ms;
        if (k < 1 || t <= after_ms)
            return -ENOENT;
        *out = t;
        return 0;
    }
    /* Look back over growing windows, so a long downtime costs a few
     * searches rather than one per planned time in it. */
    for (int64_t w = INT64_C(3600000);; w *= 2) {
        int64_t from = upto_ms - w > after_ms ? upto_ms - w : after_ms;
        int64_t t;
        if (cron_next(c, tz, anchor_ms, from, &t) == 0 && t <= upto_ms) {
            int64_t n;
            while (cron_next(c, tz, anchor_ms, t, &n) == 0 && n <= upto_ms)
                t = n;
            *out = t;
            return 0;
        }
        if (from == after_ms)
            return -ENOENT;
    }
}
