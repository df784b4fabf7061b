/* The broker's journal record codec: a type byte, then per type a fixed
 * sequence of fields: u = unsigned LEB128 varint, i = zigzag varint,
 * b = varint length + bytes, f = one flag byte. A submit's optional
 * fields follow at the very end of a SUBMIT or JOB record as (u tag,
 * value) pairs, written only when set: a record without them is the
 * record as it was before they existed. */
#include "chanq_config.h"

#include "daemon/jrec.h"

#include <errno.h>
#include <string.h>

/* Encoding goes through a cursor that only counts when buf is NULL. */

struct enc {
    uint8_t *p; /* NULL: measuring */
    size_t n;   /* bytes produced */
};

static void
put_u(struct enc *e, uint64_t v)
{
    do {
        uint8_t b = v & 0x7f;
        v >>= 7;
        if (v)
            b |= 0x80;
        if (e->p)
            e->p[e->n] = b;
        e->n++;
    } while (v);
}

static void
put_i(struct enc *e, int64_t v)
{
    put_u(e, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

static void
put_byte(struct enc *e, uint8_t b)
{
    if (e->p)
        e->p[e->n] = b;
    e->n++;
}

static void
put_b(struct enc *e, const char *s, size_t len)
{
    put_u(e, len);
    if (e->p && len)
        memcpy(e->p + e->n, s, len);
    e->n += len;
}

/* ---- a queue record's optional delivery limits: (tag, value) pairs ---- */

enum queue_tag {
    QTAG_CONCURRENCY = 1,
    QTAG_RATE = 2,
    QTAG_RATE_PER_MS = 3,
    QTAG_BURST = 4,
};

static void
put_tagged(struct enc *e, enum queue_tag tag, uint64_t v)
{
    if (v) {
        put_u(e, (uint64_t)tag);
        put_u(e, v);
    }
}

static void
put_queue_limits(struct enc *e, const struct jrec_queue *q)
{
    put_tagged(e, QTAG_CONCURRENCY, q->concurrency);
    put_tagged(e, QTAG_RATE, q->rate);
    put_tagged(e, QTAG_RATE_PER_MS, q->rate_per_ms);
    put_tagged(e, QTAG_BURST, q->burst);
}

static bool
state_ok(enum jrec_type t, enum jrec_job_state s)
{
    if (t == JREC_STATE)
        return s == JREC_QUEUED || s == JREC_DELAYED || s == JREC_DEAD;
    if (t == JREC_JOB)
        return s >= JREC_QUEUED && s <= JREC_RESERVED;
    return s == JREC_DONE || s == JREC_CANCELLED || s == JREC_EXPIRED;
}

static bool
submit_fields(const struct jrec_submit *s, struct enc *e)
{
    if ((!s->queue && s->queue_len) || (!s->payload && s->payload_len))
        return false;
    put_u(e, s->id);
    put_b(e, s->queue, s->queue_len);
    put_b(e, s->payload, s->payload_len);
    put_i(e, s->ttr_ms);
    put_u(e, s->max_attempts);
    put_i(e, s->created_ms);
    put_i(e, s->deadline_ms);
    put_i(e, s->due_ms);
    put_u(e, s->parent_id);
    return true;
}

/* Tags of a submit's optional fields; an unknown tag fails the decode. */
enum submit_ext {
    EXT_KEY = 1,         /* b */
    EXT_PRIORITY = 2,    /* u */
    EXT_TRACEPARENT = 3, /* b */
};

static bool
submit_ext(const struct jrec_submit *s, struct enc *e)
{
    if ((!s->key && s->key_len) || (!s->traceparent && s->traceparent_len))
        return false;
    if (s->key_len) {
        put_u(e, EXT_KEY);
        put_b(e, s->key, s->key_len);
    }
    if (s->priority) {
        put_u(e, EXT_PRIORITY);
        put_u(e, s->priority);
    }
    if (s->traceparent_len) {
        put_u(e, EXT_TRACEPARENT);
        put_b(e, s->traceparent, s->traceparent_len);
    }
    return true;
}

static bool
encode_job(const struct jrec_job *j, struct enc *e)
{
    if (!state_ok(JREC_JOB, j->state) || (!j->error && j->error_len) ||
        (!j->result && j->result_len) || !submit_fields(&j->s, e))
        return false;
    put_byte(e, (uint8_t)j->state);
    put_u(e, j->attempt);
    put_b(e, j->error, j->error_len);
    put_b(e, j->result, j->result_len);
    return submit_ext(&j->s, e);
}

static bool
encode_order(const struct jrec_order *o, struct enc *e)
{
    if (o->kind < JREC_ORDER_QUEUED || o->kind > JREC_ORDER_FINISHED ||
        (!o->queue && o->queue_len) || (!o->ids && o->n))
        return false;
    put_byte(e, (uint8_t)o->kind);
    put_b(e, o->queue, o->queue_len);
    put_u(e, o->n);
    for (size_t i = 0; i < o->n; i++)
        put_u(e, o->ids[i]);
    return true;
}

static bool
encode_schedule(const struct jrec_schedule *s, struct enc *e)
{
    if ((!s->name && s->name_len) || (!s->cron && s->cron_len) || (!s->tz && s->tz_len) ||
        (!s->queue && s->queue_len) || (!s->payload && s->payload_len))
        return false;
    put_b(e, s->name, s->name_len);
    put_byte(e, (uint8_t)((s->deleted ? 1 : 0) | (s->paused ? 2 : 0) | (s->missed_once ? 4 : 0)));
    put_b(e, s->cron, s->cron_len);
    put_b(e, s->tz, s->tz_len);
    put_b(e, s->queue, s->queue_len);
    put_b(e, s->payload, s->payload_len);
    put_i(e, s->ttr_ms);
    put_u(e, s->max_attempts);
    put_i(e, s->since_ms);
    put_i(e, s->last_ms);
    return true;
}

static bool
encode_remove(const struct jrec_remove *r, struct enc *e)
{
    bool job = r->kind == JREC_REMOVE_JOB, purge = r->kind == JREC_REMOVE_PURGE;
    if (r->kind < JREC_REMOVE_JOB || r->kind > JREC_REMOVE_QUEUE ||
        (!r->queue && r->queue_len) || (job ? r->queue_len != 0 : r->queue_len == 0) ||
        (purge ? r->purge < JREC_PURGE_QUEUED || r->purge > JREC_PURGE_FINISHED : r->purge != 0))
        return false;
    put_byte(e, (uint8_t)r->kind);
    put_u(e, r->id);
    put_b(e, r->queue, r->queue_len);
    put_byte(e, (uint8_t)r->purge);
    return true;
}

static bool
encode_fire(const struct jrec_fire *f, struct enc *e)
{
    if (!f->name && f->name_len)
        return false;
    put_b(e, f->name, f->name_len);
    put_i(e, f->planned_ms);
    return submit_fields(&f->s, e);
}

static bool
encode_errors(const struct jrec_errors *x, struct enc *e)
{
    if (!x->v && x->n)
        return false;
    put_u(e, x->id);
    put_u(e, x->n);
    for (size_t i = 0; i < x->n; i++) {
        const struct jrec_error *er = &x->v[i];
        if (!er->text && er->text_len)
            return false;
        put_u(e, er->attempt);
        put_byte(e, er->has_text ? 1 : 0);
        put_b(e, er->text, er->text_len);
    }
    return true;
}

/* Walks r's fields into e; false when r is invalid. */
static bool
encode(const struct jrec *r, struct enc *e)
{
    put_byte(e, (uint8_t)r->type);
    switch (r->type) {
    case JREC_SUBMIT:
        return submit_fields(&r->u.submit, e) && submit_ext(&r->u.submit, e);
    case JREC_MOVE:
        if (!r->u.move.queue && r->u.move.queue_len)
            return false;
        put_u(e, r->u.move.id);
        put_b(e, r->u.move.queue, r->u.move.queue_len);
        return true;
    case JREC_JOB:
        return encode_job(&r->u.job, e);
    case JREC_ORDER:
        return encode_order(&r->u.order, e);
    case JREC_SCHEDULE:
        return encode_schedule(&r->u.schedule, e);
    case JREC_FIRE:
        return encode_fire(&r->u.fire, e);
    case JREC_REMOVE:
        return encode_remove(&r->u.remove, e);
    case JREC_ERRORS:
        return encode_errors(&r->u.errors, e);
    case JREC_RESERVE:
        put_u(e, r->u.reserve.id);
        put_u(e, r->u.reserve.attempt);
        return true;
    case JREC_STATE: {
        const struct jrec_state *s = &r->u.state;
        if (!state_ok(r->type, s->state) || (!s->error && s->error_len))
            return false;
        put_u(e, s->id);
        put_byte(e, (uint8_t)s->state);
        put_u(e, s->attempt);
        put_i(e, s->due_ms);
        put_b(e, s->error, s->error_len);
        return true;
    }
    case JREC_FINAL: {
        const struct jrec_final *f = &r->u.final;
        if (!state_ok(r->type, f->state) || (!f->result && f->result_len))
            return false;
        put_u(e, f->id);
        put_byte(e, (uint8_t)f->state);
        put_b(e, f->result, f->result_len);
        return true;
    }
    case JREC_DROP:
        put_u(e, r->u.drop.id);
        return true;
    case JREC_KEY:
        if (!r->u.key.key || !r->u.key.key_len)
            return false;
        put_b(e, r->u.key.key, r->u.key.key_len);
        put_u(e, r->u.key.id);
        put_i(e, r->u.key.until_ms);
        return true;
    case JREC_QUEUE: {
        const struct jrec_queue *q = &r->u.queue;
        if (!q->name && q->name_len)
            return false;
        put_b(e, q->name, q->name_len);
        put_i(e, q->capacity);
        put_i(e, q->ttr_ms);
        put_u(e, q->max_attempts);
        put_byte(e, (uint8_t)((q->paused ? 1 : 0) | (q->closed ? 2 : 0)));
        put_queue_limits(e, q);
        return true;
    }
    }
    return false;
}

size_t
jrec_size(const struct jrec *r)
{
    struct enc e = {NULL, 0};
    return encode(r, &e) ? e.n : 0;
}

int
jrec_encode(const struct jrec *r, void *buf, size_t cap)
{
    size_t need = jrec_size(r);
    if (need == 0)
        return -EINVAL;
    if (need > cap || need > INT32_MAX)
        return -ENOBUFS;
    struct enc e = {buf, 0};
    encode(r, &e);
    return (int)e.n;
}

/* Decoding: every getter fails (and stays failed) on short input. */

struct dec {
    const uint8_t *p, *end;
    const char *why; /* first failure, or NULL */
};

static void
fail(struct dec *d, const char *why)
{
    if (!d->why)
        d->why = why;
    d->p = d->end;
}

static uint64_t
get_u(struct dec *d)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (d->p >= d->end) {
            fail(d, "record cut short in a number");
            return 0;
        }
        uint8_t b = *d->p++;
        if (shift == 63 && b > 1) {
            fail(d, "number out of range");
            return 0;
        }
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return v;
    }
    fail(d, "number longer than 10 bytes");
    return 0;
}

static int64_t
get_i(struct dec *d)
{
    uint64_t z = get_u(d);
    return (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
}

static uint32_t
get_u32(struct dec *d)
{
    uint64_t v = get_u(d);
    if (v > UINT32_MAX) {
        fail(d, "number out of range");
        return 0;
    }
    return (uint32_t)v;
}

static uint8_t
get_byte(struct dec *d)
{
    if (d->p >= d->end) {
        fail(d, "record cut short");
        return 0;
    }
    return *d->p++;
}

static const char *
get_b(struct dec *d, size_t *len)
{
    uint64_t n = get_u(d);
    *len = 0;
    if (d->why)
        return "";
    if (n > (uint64_t)(d->end - d->p)) {
        fail(d, "string longer than the record");
        return "";
    }
    const char *s = (const char *)d->p;
    d->p += n;
    *len = (size_t)n;
    return s;
}

/* The trailing (tag, value) pairs of a queue record, in tag order, each
 * at most once, none zero. */
static void
get_queue_limits(struct dec *d, struct jrec_queue *q)
{
    uint64_t last = 0;
    while (!d->why && d->p < d->end) {
        uint64_t tag = get_u(d), v = get_u(d);
        if (d->why)
            return;
        if (tag <= last || v == 0) {
            fail(d, "bad queue limit field");
            return;
        }
        last = tag;
        switch (tag) {
        case QTAG_CONCURRENCY: q->concurrency = v; break;
        case QTAG_RATE: q->rate = v; break;
        case QTAG_RATE_PER_MS: q->rate_per_ms = v; break;
        case QTAG_BURST: q->burst = v; break;
        default: fail(d, "unknown queue limit field"); return;
        }
    }
}

static void
decode_state(struct dec *d, enum jrec_type t, enum jrec_job_state *out)
{
    uint8_t s = get_byte(d);
    *out = (enum jrec_job_state)s;
    if (!d->why && !state_ok(t, *out))
        fail(d, "bad job state");
}

static void
decode_submit(struct dec *d, struct jrec_submit *s)
{
    s->id = get_u(d);
    s->queue = get_b(d, &s->queue_len);
    s->payload = get_b(d, &s->payload_len);
    s->ttr_ms = get_i(d);
    s->max_attempts = get_u32(d);
    s->created_ms = get_i(d);
    s->deadline_ms = get_i(d);
    s->due_ms = get_i(d);
    s->parent_id = get_u(d);
}

/* Reads the optional fields up to the end of the record. */
static void
decode_submit_ext(struct dec *d, struct jrec_submit *s)
{
    while (!d->why && d->p < d->end) {
        switch (get_u(d)) {
        case EXT_KEY:
            s->key = get_b(d, &s->key_len);
            break;
        case EXT_PRIORITY:
            s->priority = get_u32(d);
            break;
        case EXT_TRACEPARENT:
            s->traceparent = get_b(d, &s->traceparent_len);
            break;
        default:
            fail(d, "unknown submit field");
        }
    }
}

static void
decode_order(struct dec *d, struct jrec_order *o)
{
    uint8_t kind = get_byte(d);
    o->kind = (enum jrec_order_kind)kind;
    if (!d->why && (kind < JREC_ORDER_QUEUED || kind > JREC_ORDER_FINISHED))
        fail(d, "unknown order kind");
    o->queue = get_b(d, &o->queue_len);
    uint64_t n = get_u(d);
    o->packed = d->p;
    for (uint64_t i = 0; i < n && !d->why; i++)
        get_u(d);
    o->n = d->why ? 0 : (size_t)n;
    o->packed_len = (size_t)(d->p - o->packed);
}

static void
decode_schedule(struct dec *d, struct jrec_schedule *s)
{
    s->name = get_b(d, &s->name_len);
    uint8_t flags = get_byte(d);
    if (!d->why && (flags & ~7u))
        fail(d, "unknown schedule flags");
    s->deleted = flags & 1;
    s->paused = (flags & 2) != 0;
    s->missed_once = (flags & 4) != 0;
    s->cron = get_b(d, &s->cron_len);
    s->tz = get_b(d, &s->tz_len);
    s->queue = get_b(d, &s->queue_len);
    s->payload = get_b(d, &s->payload_len);
    s->ttr_ms = get_i(d);
    s->max_attempts = get_u32(d);
    s->since_ms = get_i(d);
    s->last_ms = get_i(d);
}

static void
decode_remove(struct dec *d, struct jrec_remove *r)
{
    uint8_t kind = get_byte(d);
    r->kind = (enum jrec_remove_kind)kind;
    r->id = get_u(d);
    r->queue = get_b(d, &r->queue_len);
    uint8_t purge = get_byte(d);
    r->purge = (enum jrec_purge_state)purge;
    if (d->why)
        return;
    bool job = kind == JREC_REMOVE_JOB;
    if (kind < JREC_REMOVE_JOB || kind > JREC_REMOVE_QUEUE)
        fail(d, "unknown remove kind");
    else if (job ? r->queue_len != 0 : r->queue_len == 0)
        fail(d, "remove record with a bad queue name");
    else if (kind == JREC_REMOVE_PURGE ? purge < JREC_PURGE_QUEUED || purge > JREC_PURGE_FINISHED
                                       : purge != 0)
        fail(d, "bad purge state");
}

/* One error entry; fails d when it is malformed. */
static void
decode_error(struct dec *d, struct jrec_error *out)
{
    out->attempt = get_u32(d);
    uint8_t has = get_byte(d);
    if (!d->why && has > 1)
        fail(d, "bad error flag");
    out->has_text = has == 1;
    out->text = get_b(d, &out->text_len);
}

static void
decode_errors(struct dec *d, struct jrec_errors *x)
{
    x->id = get_u(d);
    uint64_t n = get_u(d);
    x->packed = d->p;
    struct jrec_error er;
    for (uint64_t i = 0; i < n && !d->why; i++)
        decode_error(d, &er);
    x->n = d->why ? 0 : (size_t)n;
    x->packed_len = (size_t)(d->p - x->packed);
}

static void
decode_body(struct dec *d, struct jrec *r)
{
    switch (r->type) {
    case JREC_SUBMIT:
        decode_submit(d, &r->u.submit);
        decode_submit_ext(d, &r->u.submit);
        return;
    case JREC_MOVE:
        r->u.move.id = get_u(d);
        r->u.move.queue = get_b(d, &r->u.move.queue_len);
        return;
    case JREC_JOB: {
        struct jrec_job *j = &r->u.job;
        decode_submit(d, &j->s);
        decode_state(d, r->type, &j->state);
        j->attempt = get_u32(d);
        j->error = get_b(d, &j->error_len);
        j->result = get_b(d, &j->result_len);
        decode_submit_ext(d, &j->s);
        return;
    }
    case JREC_ORDER:
        decode_order(d, &r->u.order);
        return;
    case JREC_SCHEDULE:
        decode_schedule(d, &r->u.schedule);
        return;
    case JREC_FIRE:
        r->u.fire.name = get_b(d, &r->u.fire.name_len);
        r->u.fire.planned_ms = get_i(d);
        decode_submit(d, &r->u.fire.s);
        return;
    case JREC_REMOVE:
        decode_remove(d, &r->u.remove);
        return;
    case JREC_ERRORS:
        decode_errors(d, &r->u.errors);
        return;
    case JREC_RESERVE:
        r->u.reserve.id = get_u(d);
        r->u.reserve.attempt = get_u32(d);
        return;
    case JREC_STATE: {
        struct jrec_state *s = &r->u.state;
        s->id = get_u(d);
        decode_state(d, r->type, &s->state);
        s->attempt = get_u32(d);
        s->due_ms = get_i(d);
        s->error = get_b(d, &s->error_len);
        return;
    }
    case JREC_FINAL: {
        struct jrec_final *f = &r->u.final;
        f->id = get_u(d);
        decode_state(d, r->type, &f->state);
        f->result = get_b(d, &f->result_len);
        return;
    }
    case JREC_DROP:
        r->u.drop.id = get_u(d);
        return;
    case JREC_KEY:
        r->u.key.key = get_b(d, &r->u.key.key_len);
        r->u.key.id = get_u(d);
        r->u.key.until_ms = get_i(d);
        if (!d->why && r->u.key.key_len == 0)
            fail(d, "empty key");
        return;
    case JREC_QUEUE: {
        struct jrec_queue *q = &r->u.queue;
        q->name = get_b(d, &q->name_len);
        q->capacity = get_i(d);
        q->ttr_ms = get_i(d);
        q->max_attempts = get_u32(d);
        uint8_t flags = get_byte(d);
        if (!d->why && (flags & ~3u))
            fail(d, "unknown queue flags");
        q->paused = flags & 1;
        q->closed = (flags & 2) != 0;
        get_queue_limits(d, q);
        return;
    }
    }
    fail(d, "unknown record type");
}

int
jrec_decode(const void *buf, size_t len, struct jrec *out, const char **why)
{
    struct dec d = {buf, (const uint8_t *)buf + len, NULL};
    memset(out, 0, sizeof(*out));
    if (len == 0)
        fail(&d, "empty record");
    else {
        out->type = (enum jrec_type)get_byte(&d);
        decode_body(&d, out);
    }
    if (!d.why && d.p != d.end)
        fail(&d, "trailing bytes after the record");
    if (why)
        *why = d.why;
    return d.why ? -EBADMSG : 0;
}

const char *
jrec_type_name(enum jrec_type t)
{
    static const char *const names[] = {
        [JREC_SUBMIT] = "submit", [JREC_RESERVE] = "reserve", [JREC_STATE] = "state",
        [JREC_FINAL] = "final",   [JREC_DROP] = "drop",       [JREC_QUEUE] = "queue",
        [JREC_MOVE] = "move",     [JREC_JOB] = "job",         [JREC_ORDER] = "order",
        [JREC_KEY] = "key",
        [JREC_SCHEDULE] = "schedule", [JREC_FIRE] = "fire",
        [JREC_REMOVE] = "remove", [JREC_ERRORS] = "errors",
    };
    return (unsigned)t < sizeof(names) / sizeof(names[0]) && names[t] ? names[t] : "unknown";
}

bool
jrec_order_next(const struct jrec_order *o, size_t *pos, uint64_t *id)
{
    if (*pos >= o->packed_len)
        return false;
    struct dec d = {o->packed + *pos, o->packed + o->packed_len, NULL};
    *id = get_u(&d);
    *pos = (size_t)(d.p - o->packed);
    return d.why == NULL;
}

bool
jrec_errors_next(const struct jrec_errors *e, size_t *pos, struct jrec_error *out)
{
    if (*pos >= e->packed_len)
        return false;
    struct dec d = {e->packed + *pos, e->packed + e->packed_len, NULL};
    decode_error(&d, out);
    *pos = (size_t)(d.p - e->packed);
    return d.why == NULL;
}
