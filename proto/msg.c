/* Request decoding: one strict scan of the line records where each known
 * field lies, then the op's rule table checks and copies just those fields
 * into one allocation owned by the request. */
#include "chanq_config.h"

#include "proto/msg.h"
#include "proto/scan.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every field name the decoder knows; others are skipped. */
enum field {
    F_OP, F_RID, F_QUEUE, F_QUEUES, F_PAYLOAD, F_ID, F_PARENT, F_RESULT, F_ERROR, F_CLIENT,
    F_TOKEN, F_CAPACITY, F_TTR_MS, F_MAX_ATTEMPTS, F_DELAY_MS, F_DEADLINE_MS, F_WAIT_MS,
    F_TIMEOUT_MS, F_COUNT, F_STRICT, F_DEAD, F_NFIELDS
};

/* How a field's value is checked and stored. */
enum kind {
    K_OP,     /* string naming an op (handled before the rules) */
    K_RID,    /* any scalar, kept as raw text (handled before the rules) */
    K_QUEUE,  /* string, queue-name syntax */
    K_QUEUES, /* array of 1..MSG_MAX_QUEUES distinct queue names */
    K_JSON,   /* any JSON value, kept compact, at most limits->max_payload bytes */
    K_ID,     /* string of 1..MSG_MAX_ID bytes, no control characters */
    K_TEXT,   /* string of at most MSG_MAX_TEXT bytes, no NUL */
    K_INT,    /* integer within [min, max] */
    K_BOOL,   /* true or false */
};

struct field_def {
    const char *name; /* wire name */
    size_t name_len;  /* strlen(name) */
    enum kind kind;   /* check and storage */
    size_t off;       /* offset in struct request of the span / int64_t / bool */
    size_t has_off;   /* K_INT: offset of the has_ flag */
    int64_t min, max; /* K_INT: default range */
};

#define DAY_MS INT64_C(86400000)
#define SPAN_F(n, k, m) {n, sizeof n - 1, k, offsetof(struct request, m), 0, 0, 0}
#define INT_F(n, m, lo, hi)                                                                    \
    {n, sizeof n - 1, K_INT, offsetof(struct request, m), offsetof(struct request, has_##m),  \
     lo, hi}
#define BOOL_F(n, m) {n, sizeof n - 1, K_BOOL, offsetof(struct request, m), 0, 0, 0}

/* The ranges here are the ones docs/protocol.md lists. */
static const struct field_def fields[F_NFIELDS] = {
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
};

/* One field an op reads. min/max override the field's range when not both 0. */
struct rule {
    enum field f;
    bool required;
    int64_t min, max;
};

struct decoder;
typedef int check_fn(struct decoder *d);

/* One op: its name, the fields it reads (checked in this order) and an
 * optional cross-field check run after them. */
struct op_def {
    const char *name;
    const struct rule *rules;
    size_t nrules;
    check_fn *check;
};

/* Working state of one msg_decode() call. */
struct decoder {
    struct scan_value vals[F_NFIELDS]; /* where each known field's value lies */
    uint32_t seen;                     /* bit f: field f was present */
    const struct msg_limits *lim;      /* payload limit */
    struct request *out;               /* being filled */
    struct proto_error *err;           /* why it failed */
    char *w;                           /* next free byte of out->store */
};

static int
reject(struct decoder *d, enum proto_err code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
reject(struct decoder *d, enum proto_err code, const char *fmt, ...)
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

/* How much of a client's text to quote in a message. */
#define QUOTE_MAX 48
#define QUOTE(p, n) (int)((n) < QUOTE_MAX ? (n) : QUOTE_MAX), (p), ((n) > QUOTE_MAX ? "..." : "")

static int
check_submit(struct decoder *d)
{
    struct request *r = d->out;
    if (r->queue.len && r->nqueues)
        return reject(d, PROTO_BAD_REQUEST, "fields 'queue' and 'queues': give one, not both");
    if (!r->queue.len && !r->nqueues)
        return reject(d, PROTO_BAD_REQUEST, "field 'queue': missing (or give 'queues')");
    return 0;
}

/* fetch takes "queue" as shorthand for a one-name "queues". */
static int
check_fetch(struct decoder *d)
{
    struct request *r = d->out;
    if (r->queue.len && r->nqueues)
        return reject(d, PROTO_BAD_REQUEST, "fields 'queue' and 'queues': give one, not both");
    if (!r->queue.len && !r->nqueues)
        return reject(d, PROTO_BAD_REQUEST, "field 'queues': missing");
    if (!r->nqueues) {
        r->queues[0] = r->queue;
        r->nqueues = 1;
    }
    return 0;
}

#define RULES(...) (const struct rule[]){__VA_ARGS__}, sizeof((const struct rule[]){__VA_ARGS__}) / sizeof(struct rule)
#define REQ(f) {f, true, 0, 0}
#define OPT(f) {f, false, 0, 0}

static const struct op_def ops[OP_COUNT] = {
    [OP_HELLO] = {"hello", RULES(OPT(F_CLIENT), OPT(F_TOKEN)), NULL},
    [OP_PING] = {"ping", NULL, 0, NULL},
    [OP_DECLARE] = {"declare", RULES(REQ(F_QUEUE), OPT(F_CAPACITY), OPT(F_TTR_MS),
                                     OPT(F_MAX_ATTEMPTS)), NULL},
    [OP_SUBMIT] = {"submit", RULES(OPT(F_QUEUE), OPT(F_QUEUES), REQ(F_PAYLOAD), OPT(F_DELAY_MS),
                                   OPT(F_TTR_MS), OPT(F_MAX_ATTEMPTS), OPT(F_DEADLINE_MS),
                                   OPT(F_PARENT), OPT(F_WAIT_MS)), check_submit},
    [OP_FETCH] = {"fetch", RULES(OPT(F_QUEUE), OPT(F_QUEUES), OPT(F_TIMEOUT_MS),
                                 {F_COUNT, false, 1, 1000}, OPT(F_STRICT)), check_fetch},
    [OP_ACK] = {"ack", RULES(REQ(F_ID), OPT(F_RESULT)), NULL},
    [OP_NACK] = {"nack", RULES(REQ(F_ID), OPT(F_ERROR), OPT(F_DELAY_MS), OPT(F_DEAD)), NULL},
    [OP_TOUCH] = {"touch", RULES(REQ(F_ID), OPT(F_TTR_MS)), NULL},
    [OP_CANCEL] = {"cancel", RULES(REQ(F_ID)), NULL},
    [OP_WAIT] = {"wait", RULES(REQ(F_ID), OPT(F_TIMEOUT_MS)), NULL},
    [OP_JOB] = {"job", RULES(REQ(F_ID)), NULL},
    [OP_CLOSE] = {"close", RULES(REQ(F_QUEUE)), NULL},
    [OP_PAUSE] = {"pause", RULES(REQ(F_QUEUE)), NULL},
    [OP_RESUME] = {"resume", RULES(REQ(F_QUEUE)), NULL},
    [OP_KICK] = {"kick", RULES(REQ(F_QUEUE), OPT(F_COUNT)), NULL},
    [OP_QUEUES] = {"queues", NULL, 0, NULL},
    [OP_STATS] = {"stats", RULES(OPT(F_QUEUE)), NULL},
};

const char *
msg_op_name(enum op op)
{
    if (op <= OP_NONE || op >= OP_COUNT)
        return NULL;
    return ops[op].name;
}

enum op
msg_op_lookup(const char *name, size_t len)
{
    for (int i = OP_NONE + 1; i < OP_COUNT; i++) {
        if (strlen(ops[i].name) == len && memcmp(ops[i].name, name, len) == 0)
            return (enum op)i;
    }
    return OP_NONE;
}

static const unsigned char name_char[256] = {
    ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,
    ['_'] = 1, ['.'] = 1, [':'] = 1, ['-'] = 1,
};

bool
msg_queue_name_valid(const char *s, size_t len)
{
    if (len < 1 || len > MSG_MAX_QUEUE_NAME)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!name_char[(unsigned char)s[i]])
            return false;
    }
    return true;
}

static int
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
        if (fields[i].name_len == len && memcmp(fields[i].name, name, len) == 0)
            return i;
    }
    return -1;
}

static int
wrong_type(struct decoder *d, enum field f, const char *want)
{
    return reject(d, PROTO_BAD_REQUEST, "field '%s': must be %s, got %s", fields[f].name, want,
                  scan_type_name(d->vals[f].type));
}

/* Unescapes a string value into the store; *sp gets the bytes (NUL after). */
static void
store_string(struct decoder *d, const struct scan_value *v, struct span *sp)
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
        return reject(d, PROTO_BAD_REQUEST, "field '%s': must be a string of queue names, got %s",
                      fields[f].name, scan_type_name(v->type));
    store_string(d, v, sp);
    if (!msg_queue_name_valid(sp->ptr, sp->len))
        return reject(d, PROTO_BAD_REQUEST,
                      "field '%s': '%.*s%s' is not a queue name ([A-Za-z0-9_.:-]{1,128})",
                      fields[f].name, QUOTE(sp->ptr, sp->len));
    return 0;
}

static int
take_queues(struct decoder *d)
{
    const struct scan_value *v = &d->vals[F_QUEUES];
    struct request *r = d->out;
    if (v->type != SCAN_ARRAY)
        return wrong_type(d, F_QUEUES, "an array of queue names");
    if (v->nelems < 1 || v->nelems > MSG_MAX_QUEUES)
        return reject(d, PROTO_BAD_REQUEST, "field 'queues': must list 1 to %d queues, got %zu",
                      MSG_MAX_QUEUES, v->nelems);
    size_t pos = 0;
    struct scan_value e;
    while (scan_array_next(v, &pos, &e)) {
        struct span *sp = &r->queues[r->nqueues];
        if (e.type != SCAN_STRING)
            return reject(d, PROTO_BAD_REQUEST, "field 'queues': element %zu must be a string, got %s",
                          r->nqueues, scan_type_name(e.type));
        if (take_queue_name(d, F_QUEUES, &e, sp))
            return -EINVAL;
        for (size_t i = 0; i < r->nqueues; i++) {
            if (r->queues[i].len == sp->len && memcmp(r->queues[i].ptr, sp->ptr, sp->len) == 0)
                return reject(d, PROTO_BAD_REQUEST, "field 'queues': '%.*s' is listed twice",
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
        return reject(d, PROTO_TOO_LARGE, "field '%s': %zu bytes is over the limit of %zu bytes",
                      fields[f].name, n, max);
    sp->ptr = d->w;
    sp->len = n;
    d->w += n;
    *d->w++ = '\0';
    return 0;
}

static int
take_text(struct decoder *d, enum field f, struct span *sp)
{
    const struct scan_value *v = &d->vals[f];
    bool id = fields[f].kind == K_ID;
    if (v->type != SCAN_STRING)
        return wrong_type(d, f, "a string");
    store_string(d, v, sp);
    size_t max = id ? MSG_MAX_ID : MSG_MAX_TEXT;
    if (id && sp->len == 0)
        return reject(d, PROTO_BAD_REQUEST, "field '%s': must not be empty", fields[f].name);
    if (sp->len > max)
        return reject(d, PROTO_BAD_REQUEST, "field '%s': longer than %zu bytes", fields[f].name,
                      max);
    for (size_t i = 0; i < sp->len; i++) {
        unsigned char c = (unsigned char)sp->ptr[i];
        if (c == 0 || (id && (c < 0x20 || c == 0x7f)))
            return reject(d, PROTO_BAD_REQUEST, "field '%s': contains a %s", fields[f].name,
                          id ? "control character" : "NUL character");
    }
    return 0;
}

static int
take_int(struct decoder *d, const struct rule *rule)
{
    const struct field_def *fd = &fields[rule->f];
    const struct scan_value *v = &d->vals[rule->f];
    int64_t lo = fd->min, hi = fd->max, n;
    if (rule->min || rule->max) {
        lo = rule->min;
        hi = rule->max;
    }
    if (v->type != SCAN_NUMBER)
        return wrong_type(d, rule->f, "an integer");
    if (!v->is_int)
        return reject(d, PROTO_BAD_REQUEST, "field '%s': must be an integer, got %.*s%s", fd->name,
                      QUOTE(v->raw, v->len));
    if (!scan_int64(v, &n) || n < lo || n > hi)
        return reject(d, PROTO_BAD_REQUEST, "field '%s': %.*s%s is out of range [%lld, %lld]",
                      fd->name, QUOTE(v->raw, v->len), (long long)lo, (long long)hi);
    char *base = (char *)d->out;
    memcpy(base + fd->off, &n, sizeof n);
    *(bool *)(base + fd->has_off) = true;
    return 0;
}

static int
take_field(struct decoder *d, const struct rule *rule)
{
    const struct field_def *fd = &fields[rule->f];
    const struct scan_value *v = &d->vals[rule->f];
    char *base = (char *)d->out;
    switch (fd->kind) {
    case K_QUEUE:
        return take_queue_name(d, rule->f, v, (struct span *)(base + fd->off));
    case K_QUEUES:
        return take_queues(d);
    case K_JSON:
        return take_json(d, rule->f, (struct span *)(base + fd->off));
    case K_ID:
    case K_TEXT:
        return take_text(d, rule->f, (struct span *)(base + fd->off));
    case K_INT:
        return take_int(d, rule);
    case K_BOOL:
        if (v->type != SCAN_BOOL)
            return wrong_type(d, rule->f, "a boolean");
        *(bool *)(base + fd->off) = v->truth;
        return 0;
    default:
        return 0;
    }
}

/* Pass 1: the syntax of the whole line, and where the known fields are. */
static int
scan_fields(struct decoder *d, const char *line, size_t len)
{
    struct scan s;
    struct scan_value key, val;
    int dup = -1, rc;
    scan_init(&s, line, len, MSG_MAX_DEPTH);
    if (scan_object_open(&s))
        return reject(d, PROTO_BAD_REQUEST, "request is not a JSON object");
    while ((rc = scan_object_next(&s, &key, &val)) > 0) {
        int f = field_lookup(&key);
        if (f < 0)
            continue;
        if (d->seen & (1u << f))
            dup = f;
        d->seen |= 1u << f;
        d->vals[f] = val;
    }
    if (rc == 0 && !scan_at_end(&s))
        return reject(d, PROTO_BAD_REQUEST, "invalid JSON at byte %zu: data after the object",
                      (size_t)(s.p - line));
    if (rc < 0) {
        if (!strcmp(s.why, "nesting too deep"))
            return reject(d, PROTO_BAD_REQUEST, "invalid JSON at byte %zu: nested deeper than %d",
                          s.at, MSG_MAX_DEPTH);
        return reject(d, PROTO_BAD_REQUEST, "invalid JSON at byte %zu: %s", s.at, s.why);
    }
    return dup;
}

/* One allocation holds every string of the request: queues[] first (so
 * it is aligned), then the bytes. Each value shrinks or keeps its size
 * when unescaped or compacted, plus one NUL. */
static int
alloc_store(struct decoder *d)
{
    size_t nq = 1, bytes = 0;
    if (d->seen & (1u << F_QUEUES) && d->vals[F_QUEUES].type == SCAN_ARRAY)
        nq += d->vals[F_QUEUES].nelems;
    for (int f = 0; f < F_NFIELDS; f++) {
        if (d->seen & (1u << f))
            bytes += d->vals[f].len + 1;
    }
    char *store = malloc(nq * sizeof(struct span) + bytes);
    if (!store) {
        proto_error_set(d->err, PROTO_INTERNAL, "out of memory decoding the request");
        return -ENOMEM;
    }
    d->out->store = store;
    d->out->queues = (struct span *)(void *)store;
    d->w = store + nq * sizeof(struct span);
    return 0;
}

static int
take_rid(struct decoder *d)
{
    const struct scan_value *v = &d->vals[F_RID];
    if (!(d->seen & (1u << F_RID)))
        return 0;
    if (v->type == SCAN_ARRAY || v->type == SCAN_OBJECT)
        return wrong_type(d, F_RID, "a scalar");
    if (v->len > MSG_MAX_RID)
        return reject(d, PROTO_BAD_REQUEST, "field 'rid': longer than %d bytes", MSG_MAX_RID);
    memcpy(d->w, v->raw, v->len);
    d->out->rid.ptr = d->w;
    d->out->rid.len = v->len;
    d->w += v->len;
    *d->w++ = '\0';
    return 0;
}

static int
take_op(struct decoder *d)
{
    const struct scan_value *v = &d->vals[F_OP];
    if (!(d->seen & (1u << F_OP)))
        return reject(d, PROTO_BAD_REQUEST, "field 'op': missing");
    if (v->type != SCAN_STRING)
        return wrong_type(d, F_OP, "a string");
    struct span name;
    char *mark = d->w;
    store_string(d, v, &name);
    d->w = mark; /* the name is not kept */
    d->out->op = msg_op_lookup(name.ptr, name.len);
    if (d->out->op == OP_NONE)
        return reject(d, PROTO_UNKNOWN_OP, "unknown op '%.*s%s'", QUOTE(name.ptr, name.len));
    return 0;
}

int
msg_decode(const char *line, size_t len, const struct msg_limits *limits, struct request *out,
           struct proto_error *err)
{
    struct decoder d;
    d.seen = 0;
    d.lim = limits;
    d.out = out;
    d.err = err;
    memset(out, 0, sizeof *out);
    if (err) {
        err->code = PROTO_OK;
        err->message[0] = '\0';
    }
    int dup = scan_fields(&d, line, len);
    if (dup < -1)
        return dup;
    int rc = alloc_store(&d);
    if (rc)
        return rc;
    if (take_rid(&d))
        return -EINVAL;
    if (dup >= 0)
        return reject(&d, PROTO_BAD_REQUEST, "field '%s': given twice", fields[dup].name);
    if (take_op(&d))
        return -EINVAL;
    const struct op_def *op = &ops[out->op];
    for (size_t i = 0; i < op->nrules; i++) {
        const struct rule *rule = &op->rules[i];
        if (!(d.seen & (1u << rule->f))) {
            if (rule->required)
                return reject(&d, PROTO_BAD_REQUEST, "field '%s': missing", fields[rule->f].name);
            continue;
        }
        if (take_field(&d, rule))
            return -EINVAL;
    }
    return op->check ? op->check(&d) : 0;
}

void
request_clear(struct request *req)
{
    free(req->store);
    memset(req, 0, sizeof *req);
}
