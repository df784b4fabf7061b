/* Checking and storing one request field: the field table with its
 * ranges (docs/protocol.md lists the same) and one small function per
 * kind of value. */
#include "chanq_config.h"

#include "proto/field.h"
#include "proto/traceparent.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define DAY_MS INT64_C(86400000)
/* clang-format off */
#define SPAN_F(n, k, m) {n, sizeof n - 1, k, offsetof(struct request, m), 0, 0, 0}
#define INT_F(n, m, lo, hi) \
    {n, sizeof n - 1, K_INT, offsetof(struct request, m), offsetof(struct request, has_##m), lo, hi}
#define BOOL_F(n, m) {n, sizeof n - 1, K_BOOL, offsetof(struct request, m), 0, 0, 0}
/* clang-format on */

/* The ranges here are the ones docs/protocol.md lists. */
const struct field_def field_defs[F_NFIELDS] = {
    [F_OP] = {"op", 2, K_OP, 0, 0, 0, 0},
    [F_RID] = SPAN_F("rid", K_RID, rid),
    [F_QUEUE] = SPAN_F("queue", K_QUEUE, queue),
    [F_QUEUES] = {"queues", 6, K_QUEUES, 0, 0, 0, 0},
    [F_PAYLOAD] = SPAN_F("payload", K_JSON, payload),
    [F_ID] = SPAN_F("id", K_ID, id),
    [F_PARENT] = SPAN_F("parent", K_ID, parent),
    [F_RESULT] = SPAN_F("result", K_JSON, result),
    [F_ERROR] = SPAN_F("error", K_TEXT, error),
    [F_CLIENT] = SPAN_F("client", K_TEXT, client),
    [F_TOKEN] = SPAN_F("token", K_TEXT, token),
    [F_CAPACITY] = INT_F("capacity", capacity, 0, 1000000000),
    [F_TTR_MS] = INT_F("ttr_ms", ttr_ms, 1, 7 * DAY_MS),
    [F_MAX_ATTEMPTS] = INT_F("max_attempts", max_attempts, 1, 1000),
    [F_DELAY_MS] = INT_F("delay_ms", delay_ms, 0, 365 * DAY_MS),
    [F_DEADLINE_MS] = INT_F("deadline_ms", deadline_ms, 1, 365 * DAY_MS),
    [F_WAIT_MS] = INT_F("wait_ms", wait_ms, 0, DAY_MS),
    [F_TIMEOUT_MS] = INT_F("timeout_ms", timeout_ms, 0, DAY_MS),
    [F_COUNT] = INT_F("count", count, 1, 1000000000),
    [F_STRICT] = BOOL_F("strict", strict),
    [F_DEAD] = BOOL_F("dead", dead),
    [F_AFTER] = SPAN_F("after", K_QUEUE, after),
    [F_DIGEST] = BOOL_F("digest", digest),
    [F_IDS] = {"ids", 3, K_IDS, 0, 0, 0, 0},
    [F_ACK] = {"ack", 3, K_IDS, 0, 0, 0, 0},
    [F_PREFETCH] = INT_F("prefetch", prefetch, 1, MSG_MAX_PREFETCH),
    [F_NODE] = INT_F("node", node, 1, UINT32_MAX),
    [F_ADDRESS] = SPAN_F("address", K_TEXT, address),
    /* per-queue limits, idempotency keys and priorities */
    [F_CONCURRENCY] = INT_F("concurrency", concurrency, 0, MSG_MAX_LIMIT),
    [F_RATE] = INT_F("rate", rate, 0, MSG_MAX_LIMIT),
    [F_RATE_PER_MS] = INT_F("rate_per_ms", rate_per_ms, 1, DAY_MS),
    [F_BURST] = INT_F("burst", burst, 1, MSG_MAX_LIMIT),
    [F_KEY] = SPAN_F("key", K_ID, key),
    [F_PRIORITY] = INT_F("priority", priority, 0, MSG_MAX_PRIORITY),
    [F_TRACEPARENT] = SPAN_F("traceparent", K_TRACEPARENT, traceparent),
    /* schedules */
    [F_RUN_AT] = INT_F("run_at", run_at, 0, MSG_MAX_RUN_AT),
    [F_ACTION] = SPAN_F("action", K_TEXT, action),
    [F_NAME] = SPAN_F("name", K_QUEUE, name),
    [F_CRON] = SPAN_F("cron", K_TEXT, cron),
    [F_TZ] = SPAN_F("tz", K_TEXT, tz),
    [F_MISSED] = SPAN_F("missed", K_TEXT, missed),
    /* operator ops */
    [F_STATE] = SPAN_F("state", K_TEXT, state),
    [F_ORDER] = SPAN_F("order", K_TEXT, order),
    [F_CURSOR] = SPAN_F("cursor", K_ID, cursor),
    [F_LIMIT] = INT_F("limit", limit, 1, MSG_MAX_LIST),
    [F_FORCE] = BOOL_F("force", force),
};
_Static_assert(F_NFIELDS <= 64, "struct decoder's seen mask has 64 bits");

int
field_reject(struct decoder *d, enum proto_err code, const char *fmt, ...)
{
    if (d->err) {
        char msg[sizeof d->err->message];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        proto_error_set(d->err, code, "%s", msg);
    }
    return -EINVAL;
}

int
field_lookup(const struct scan_value *key)
{
    char tmp[16];
    const char *name = key->raw + 1;
    size_t len = key->len - 2;
    if (key->has_escape) {
        if (key->len > sizeof tmp)
            return -1; /* an escaped key this long cannot unescape to a known name */
        len = scan_unescape(key, tmp);
        name = tmp;
    }
    for (int i = 0; i < F_NFIELDS; i++) {
        if (field_defs[i].name_len == len && memcmp(field_defs[i].name, name, len) == 0)
            return i;
    }
    return -1;
}

int
field_wrong_type(struct decoder *d, enum field f, const char *want)
{
    return field_reject(d, PROTO_BAD_REQUEST, "field '%s': must be %s, got %s", field_defs[f].name,
                        want, scan_type_name(d->vals[f].type));
}

/* Unescapes a string value into the store; *sp gets the bytes (NUL after). */
void
field_store_string(struct decoder *d, const struct scan_value *v, struct span *sp)
{
    size_t n = scan_unescape(v, d->w);
    sp->ptr = d->w;
    sp->len = n;
    d->w += n;
    *d->w++ = '\0';
}

static int
take_queue_name(struct decoder *d, enum field f, const struct scan_value *v, struct span *sp)
{
    if (v->type != SCAN_STRING)
        return field_reject(d, PROTO_BAD_REQUEST,
                            "field '%s': must be a string of queue names, got %s",
                            field_defs[f].name, scan_type_name(v->type));
    field_store_string(d, v, sp);
    if (!msg_queue_name_valid(sp->ptr, sp->len))
        return field_reject(d, PROTO_BAD_REQUEST,
                            "field '%s': '%.*s%s' is not a %s name ([A-Za-z0-9_.:-]{1,128})",
                            field_defs[f].name, QUOTE(sp->ptr, sp->len),
                            f == F_NAME ? "schedule" : "queue");
    return 0;
}

static int
take_queues(struct decoder *d)
{
    const struct scan_value *v = &d->vals[F_QUEUES];
    struct request *r = d->out;
    if (v->type != SCAN_ARRAY)
        return field_wrong_type(d, F_QUEUES, "an array of queue names");
    if (v->nelems < 1 || v->nelems > MSG_MAX_QUEUES)
        return field_reject(d, PROTO_BAD_REQUEST,
                            "field 'queues': must list 1 to %d queues, got %zu", MSG_MAX_QUEUES,
                            v->nelems);
    size_t pos = 0;
    struct scan_value e;
    while (scan_array_next(v, &pos, &e)) {
        struct span *sp = &r->queues[r->nqueues];
        if (e.type != SCAN_STRING)
            return field_reject(d, PROTO_BAD_REQUEST,
                                "field 'queues': element %zu must be a string, got %s", r->nqueues,
                                scan_type_name(e.type));
        if (take_queue_name(d, F_QUEUES, &e, sp))
            return -EINVAL;
        for (size_t i = 0; i < r->nqueues; i++) {
            if (r->queues[i].len == sp->len && memcmp(r->queues[i].ptr, sp->ptr, sp->len) == 0)
                return field_reject(d, PROTO_BAD_REQUEST, "field 'queues': '%.*s' is listed twice",
                                    (int)sp->len, sp->ptr);
        }
        r->nqueues++;
    }
    return 0;
}

static int
take_json(struct decoder *d, enum field f, struct span *sp)
{
    const struct scan_value *v = &d->vals[f];
    size_t n = scan_compact(v, d->w);
    size_t max = d->lim ? d->lim->max_payload : MSG_DEFAULT_MAX_PAYLOAD;
    if (n > max)
        return field_reject(d, PROTO_TOO_LARGE,
                            "field '%s': %zu bytes is over the limit of %zu bytes",
                            field_defs[f].name, n, max);
    sp->ptr = d->w;
    sp->len = n;
    d->w += n;
    *d->w++ = '\0';
    return 0;
}

/* The rules of an id (K_ID) or a free text (K_TEXT) already stored in sp;
 * what names the value in a message (e.g. "field 'ids': element 3"). */
static int
check_text(struct decoder *d, const char *what, bool id, const struct span *sp)
{
    size_t max = id ? MSG_MAX_ID : MSG_MAX_TEXT;
    if (id && sp->len == 0)
        return field_reject(d, PROTO_BAD_REQUEST, "%s: must not be empty", what);
    if (sp->len > max)
        return field_reject(d, PROTO_BAD_REQUEST, "%s: longer than %zu bytes", what, max);
    for (size_t i = 0; i < sp->len; i++) {
        unsigned char c = (unsigned char)sp->ptr[i];
        if (c == 0 || (id && (c < 0x20 || c == 0x7f)))
            return field_reject(d, PROTO_BAD_REQUEST, "%s: contains a %s", what,
                                id ? "control character" : "NUL character");
    }
    return 0;
}

/* A job's W3C trace context, kept as given once its syntax checks. */
static int
take_traceparent(struct decoder *d, enum field f, struct span *sp)
{
    const struct scan_value *v = &d->vals[f];
    if (v->type != SCAN_STRING)
        return field_wrong_type(d, f, "a string");
    field_store_string(d, v, sp);
    const char *why;
    if (!traceparent_valid(sp->ptr, sp->len, &why))
        return field_reject(d, PROTO_BAD_REQUEST,
                            "field '%s': not a W3C traceparent (VERSION-TRACEID-PARENTID-FLAGS, "
                            "lowercase hex): %s",
                            field_defs[f].name, why);
    return 0;
}

static int
take_text(struct decoder *d, enum field f, struct span *sp)
{
    const struct scan_value *v = &d->vals[f];
    if (v->type != SCAN_STRING)
        return field_wrong_type(d, f, "a string");
    field_store_string(d, v, sp);
    char what[32];
    snprintf(what, sizeof what, "field '%s'", field_defs[f].name);
    return check_text(d, what, field_defs[f].kind == K_ID, sp);
}

/* "ids" (ack, nack) and "ack" (fetch): job ids into out->ids. Repeats are
 * allowed (the second one finds the job acked already). */
static int
take_ids(struct decoder *d, enum field f)
{
    const struct scan_value *v = &d->vals[f];
    struct request *r = d->out;
    const char *name = field_defs[f].name;
    if (v->type != SCAN_ARRAY)
        return field_wrong_type(d, f, "an array of job ids");
    if (v->nelems < 1 || v->nelems > MSG_MAX_IDS)
        return field_reject(d, PROTO_BAD_REQUEST, "field '%s': must list 1 to %d ids, got %zu",
                            name, MSG_MAX_IDS, v->nelems);
    size_t pos = 0;
    struct scan_value e;
    while (scan_array_next(v, &pos, &e)) {
        struct span *sp = &r->ids[r->nids];
        if (e.type != SCAN_STRING)
            return field_reject(d, PROTO_BAD_REQUEST,
                                "field '%s': element %zu must be a string, got %s", name, r->nids,
                                scan_type_name(e.type));
        field_store_string(d, &e, sp);
        char what[48];
        snprintf(what, sizeof what, "field '%s': element %zu", name, r->nids);
        if (check_text(d, what, true, sp))
            return -EINVAL;
        r->nids++;
    }
    return 0;
}

static int
take_int(struct decoder *d, const struct rule *rule)
{
    const struct field_def *fd = &field_defs[rule->f];
    const struct scan_value *v = &d->vals[rule->f];
    int64_t lo = fd->min, hi = fd->max, n;
    if (rule->min || rule->max) {
        lo = rule->min;
        hi = rule->max;
    }
    if (v->type != SCAN_NUMBER)
        return field_wrong_type(d, rule->f, "an integer");
    if (!v->is_int)
        return field_reject(d, PROTO_BAD_REQUEST, "field '%s': must be an integer, got %.*s%s",
                            fd->name, QUOTE(v->raw, v->len));
    if (!scan_int64(v, &n) || n < lo || n > hi)
        return field_reject(d, PROTO_BAD_REQUEST, "field '%s': %.*s%s is out of range [%lld, %lld]",
                            fd->name, QUOTE(v->raw, v->len), (long long)lo, (long long)hi);
    char *base = (char *)d->out;
    memcpy(base + fd->off, &n, sizeof n);
    *(bool *)(base + fd->has_off) = true;
    return 0;
}

int
field_take(struct decoder *d, const struct rule *rule)
{
    const struct field_def *fd = &field_defs[rule->f];
    const struct scan_value *v = &d->vals[rule->f];
    char *base = (char *)d->out;
    switch (fd->kind) {
    case K_QUEUE:
        return take_queue_name(d, rule->f, v, (struct span *)(base + fd->off));
    case K_QUEUES:
        return take_queues(d);
    case K_JSON:
        return take_json(d, rule->f, (struct span *)(base + fd->off));
    case K_IDS:
        return take_ids(d, rule->f);
    case K_ID:
    case K_TEXT:
        return take_text(d, rule->f, (struct span *)(base + fd->off));
    case K_INT:
        return take_int(d, rule);
    case K_TRACEPARENT:
        return take_traceparent(d, rule->f, (struct span *)(base + fd->off));
    case K_BOOL:
        if (v->type != SCAN_BOOL)
            return field_wrong_type(d, rule->f, "a boolean");
        *(bool *)(base + fd->off) = v->truth;
        return 0;
    default:
        return 0;
    }
}
