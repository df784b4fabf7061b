/* Request decoding: one strict scan of the line records where each known
 * field lies, then the op's rule table checks and copies just those fields
 * into one allocation owned by the request. */
#include "chanq_config.h"

#include "proto/msg.h"
#include "proto/field.h"
#include "proto/scan.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* "run_at" is an absolute "delay_ms": one or the other. */
static int
check_run_at(struct decoder *d)
{
    if (d->out->has_run_at && d->out->has_delay_ms)
        return field_reject(d, PROTO_BAD_REQUEST,
                            "fields 'run_at' and 'delay_ms': give one, not both");
    return 0;
}

static int
check_submit(struct decoder *d)
{
    struct request *r = d->out;
    if (check_run_at(d))
        return -EINVAL;
    if (r->queue.len && r->nqueues)
        return field_reject(d, PROTO_BAD_REQUEST,
                            "fields 'queue' and 'queues': give one, not both");
    if (!r->queue.len && !r->nqueues)
        return field_reject(d, PROTO_BAD_REQUEST, "field 'queue': missing (or give 'queues')");
    return 0;
}

/* "queue" as shorthand for a one-name "queues" (fetch, consume); 0, or
 * -EINVAL when both are given. */
static int
queue_shorthand(struct decoder *d)
{
    struct request *r = d->out;
    if (r->queue.len && r->nqueues)
        return field_reject(d, PROTO_BAD_REQUEST,
                            "fields 'queue' and 'queues': give one, not both");
    if (r->queue.len) {
        r->queues[0] = r->queue;
        r->nqueues = 1;
    }
    return 0;
}

static int
check_fetch(struct decoder *d)
{
    if (!d->out->queue.len && !d->out->nqueues)
        return field_reject(d, PROTO_BAD_REQUEST, "field 'queues': missing");
    return queue_shorthand(d);
}

/* A consume may leave the queues out to change only its prefetch. */
static int
check_consume(struct decoder *d)
{
    return queue_shorthand(d);
}

/* ack and nack name one job ("id") or several ("ids"). */
static int
check_ids(struct decoder *d)
{
    struct request *r = d->out;
    if (r->id.len && r->nids)
        return field_reject(d, PROTO_BAD_REQUEST, "fields 'id' and 'ids': give one, not both");
    if (!r->id.len && !r->nids)
        return field_reject(d, PROTO_BAD_REQUEST, "field 'id': missing (or give 'ids')");
    return 0;
}

static int
check_nack(struct decoder *d)
{
    return check_run_at(d) ? -EINVAL : check_ids(d);
}

/* span equals the C string word. */
static bool
span_is(const struct span *sp, const char *word)
{
    return sp->len == strlen(word) && memcmp(sp->ptr, word, sp->len) == 0;
}

/* What each schedule action needs; the daemon parses "cron" and looks
 * "tz" up. */
static int
check_schedule(struct decoder *d)
{
    struct request *r = d->out;
    static const char *const actions[] = {"create", "replace", "pause", "resume", "delete", "list"};
    size_t a = 0;
    while (a < 6 && !span_is(&r->action, actions[a]))
        a++;
    if (a == 6)
        return field_reject(d, PROTO_BAD_REQUEST,
                            "field 'action': '%.*s%s' is not one of create, replace, pause, "
                            "resume, delete, list",
                            QUOTE(r->action.ptr, r->action.len));
    if (a < 5 && !r->name.len)
        return field_reject(d, PROTO_BAD_REQUEST, "field 'name': missing");
    if (a < 2) {
        const char *need = !r->cron.len ? "cron" : !r->queue.len ? "queue"
                                                   : !r->payload.len ? "payload" : NULL;
        if (need)
            return field_reject(d, PROTO_BAD_REQUEST, "field '%s': missing", need);
    }
    if (r->cron.len > MSG_MAX_CRON)
        return field_reject(d, PROTO_BAD_REQUEST, "field 'cron': longer than %d bytes",
                            MSG_MAX_CRON);
    if (r->tz.len > MSG_MAX_TZ)
        return field_reject(d, PROTO_BAD_REQUEST, "field 'tz': longer than %d bytes", MSG_MAX_TZ);
    if (r->missed.len && !span_is(&r->missed, "skip") && !span_is(&r->missed, "once"))
        return field_reject(d, PROTO_BAD_REQUEST, "field 'missed': '%.*s%s' is not skip or once",
                            QUOTE(r->missed.ptr, r->missed.len));
    return 0;
}

static int
check_ack(struct decoder *d)
{
    if (d->out->nids && d->out->result.len)
        return field_reject(d, PROTO_BAD_REQUEST,
                            "fields 'ids' and 'result': a result goes with one 'id'");
    return check_ids(d);
}

/* ---- the operator ops ---- */

/* "state" as one of the names (list takes reserved, purge does not). */
static int
take_state(struct decoder *d, bool reserved_ok)
{
    static const char *const names[] = {
        [MSG_STATE_QUEUED] = "queued", [MSG_STATE_DELAYED] = "delayed",
        [MSG_STATE_RESERVED] = "reserved", [MSG_STATE_DEAD] = "dead",
        [MSG_STATE_FINISHED] = "finished",
    };
    struct request *r = d->out;
    for (int s = MSG_STATE_QUEUED; s <= MSG_STATE_FINISHED; s++) {
        if (span_is(&r->state, names[s]) && (reserved_ok || s != MSG_STATE_RESERVED)) {
            r->list_state = (enum msg_state)s;
            return 0;
        }
    }
    return field_reject(d, PROTO_BAD_REQUEST, "field 'state': '%.*s%s' is not one of %s",
                        QUOTE(r->state.ptr, r->state.len),
                        reserved_ok ? "queued, delayed, reserved, dead, finished"
                                    : "queued, delayed, dead, finished");
}

static int
check_list(struct decoder *d)
{
    struct request *r = d->out;
    if (take_state(d, true))
        return -EINVAL;
    if (r->order.len && !span_is(&r->order, "oldest") && !span_is(&r->order, "newest"))
        return field_reject(d, PROTO_BAD_REQUEST,
                            "field 'order': '%.*s%s' is not one of oldest, newest",
                            QUOTE(r->order.ptr, r->order.len));
    r->newest = span_is(&r->order, "newest");
    /* "payload" is a flag here (submit's any-JSON field, read as such). */
    if (r->payload.len && !span_is(&r->payload, "true") && !span_is(&r->payload, "false"))
        return field_reject(d, PROTO_BAD_REQUEST, "field 'payload': must be true or false");
    r->with_payload = span_is(&r->payload, "true");
    r->payload = (struct span){NULL, 0};
    return 0;
}

static int
check_purge(struct decoder *d)
{
    return take_state(d, false);
}

static int
check_configure(struct decoder *d)
{
    struct request *r = d->out;
    if (!r->has_capacity && !r->has_ttr_ms && !r->has_max_attempts)
        return field_reject(d, PROTO_BAD_REQUEST,
                            "give at least one of 'capacity', 'ttr_ms', 'max_attempts'");
    return 0;
}

/* clang-format off */
#define RULES(...) (const struct rule[]){__VA_ARGS__}, \
    sizeof((const struct rule[]){__VA_ARGS__}) / sizeof(struct rule)
#define REQ(f) {f, true, 0, 0}
#define OPT(f) {f, false, 0, 0}
/* clang-format on */

static const struct op_def ops[OP_COUNT] = {
    [OP_HELLO] = {"hello", RULES(OPT(F_CLIENT), OPT(F_TOKEN)), NULL},
    [OP_PING] = {"ping", NULL, 0, NULL},
    [OP_DECLARE] = {"declare",
                    RULES(REQ(F_QUEUE), OPT(F_CAPACITY), OPT(F_TTR_MS), OPT(F_MAX_ATTEMPTS),
                          OPT(F_CONCURRENCY), OPT(F_RATE), OPT(F_RATE_PER_MS), OPT(F_BURST)),
                    NULL},
    [OP_SUBMIT] = {"submit",
                   RULES(OPT(F_QUEUE), OPT(F_QUEUES), REQ(F_PAYLOAD), OPT(F_DELAY_MS),
                         OPT(F_TTR_MS), OPT(F_MAX_ATTEMPTS), OPT(F_DEADLINE_MS), OPT(F_PARENT),
                         OPT(F_WAIT_MS), OPT(F_KEY), OPT(F_PRIORITY),
                         OPT(F_TRACEPARENT), OPT(F_RUN_AT)),
                   check_submit},
    [OP_FETCH] = {"fetch",
                  RULES(OPT(F_QUEUE), OPT(F_QUEUES), OPT(F_TIMEOUT_MS), {F_COUNT, false, 1, 1000},
                        OPT(F_STRICT), OPT(F_ACK)),
                  check_fetch},
    [OP_ACK] = {"ack", RULES(OPT(F_ID), OPT(F_IDS), OPT(F_RESULT)), check_ack},
    [OP_NACK] = {"nack",
                 RULES(OPT(F_ID), OPT(F_IDS), OPT(F_ERROR), OPT(F_DELAY_MS), OPT(F_DEAD),
                       OPT(F_RUN_AT)),
                 check_nack},
    [OP_RELEASE] = {"release", RULES(REQ(F_ID)), NULL},
    [OP_TOUCH] = {"touch", RULES(REQ(F_ID), OPT(F_TTR_MS)), NULL},
    [OP_CANCEL] = {"cancel", RULES(REQ(F_ID)), NULL},
    [OP_WAIT] = {"wait", RULES(REQ(F_ID), OPT(F_TIMEOUT_MS)), NULL},
    [OP_JOB] = {"job", RULES(REQ(F_ID)), NULL},
    [OP_CLOSE] = {"close", RULES(REQ(F_QUEUE)), NULL},
    [OP_PAUSE] = {"pause", RULES(REQ(F_QUEUE)), NULL},
    [OP_RESUME] = {"resume", RULES(REQ(F_QUEUE)), NULL},
    [OP_KICK] = {"kick", RULES(REQ(F_QUEUE), OPT(F_COUNT)), NULL},
    [OP_QUEUES] = {"queues", RULES(OPT(F_AFTER), {F_COUNT, false, 1, QUEUES_PAGE_MAX}), NULL},
    [OP_STATS] = {"stats", RULES(OPT(F_QUEUE), OPT(F_DIGEST)), NULL},
    [OP_CONSUME] = {"consume", RULES(OPT(F_QUEUE), OPT(F_QUEUES), OPT(F_PREFETCH), OPT(F_STRICT)),
                    check_consume},
    [OP_CANCEL_CONSUME] = {"cancel_consume", NULL, 0, NULL},
    [OP_CLUSTER] = {"cluster", NULL, 0, NULL},
    [OP_CLUSTER_ADD] = {"cluster_add", RULES(REQ(F_NODE), REQ(F_ADDRESS)), NULL},
    [OP_CLUSTER_REMOVE] = {"cluster_remove", RULES(REQ(F_NODE)), NULL},
    [OP_CLUSTER_TRANSFER] = {"cluster_transfer", RULES(OPT(F_NODE)), NULL},
    [OP_SCHEDULE] = {"schedule",
                     RULES(REQ(F_ACTION), OPT(F_NAME), OPT(F_CRON), OPT(F_TZ), OPT(F_QUEUE),
                           OPT(F_PAYLOAD), OPT(F_TTR_MS), OPT(F_MAX_ATTEMPTS), OPT(F_MISSED)),
                     check_schedule},
    /* operator ops */
    [OP_LIST] = {"list",
                 RULES(REQ(F_QUEUE), REQ(F_STATE), OPT(F_ORDER), OPT(F_CURSOR), OPT(F_LIMIT),
                       OPT(F_PAYLOAD)),
                 check_list},
    [OP_RETRY] = {"retry", RULES(REQ(F_ID)), NULL},
    [OP_DELETE] = {"delete", RULES(REQ(F_ID), OPT(F_FORCE)), NULL},
    [OP_PURGE] = {"purge", RULES(REQ(F_QUEUE), REQ(F_STATE)), check_purge},
    [OP_QUEUE_DELETE] = {"queue_delete", RULES(REQ(F_QUEUE)), NULL},
    [OP_CONFIGURE] = {"configure",
                      RULES(REQ(F_QUEUE), OPT(F_CAPACITY), OPT(F_TTR_MS), OPT(F_MAX_ATTEMPTS)),
                      check_configure},
    [OP_CLIENTS] = {"clients", NULL, 0, NULL},
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
    ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1, ['_'] = 1,
    ['.'] = 1,         [':'] = 1,         ['-'] = 1,
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

/* Pass 1: the syntax of the whole line, and where the known fields are.
 * *dup is set to a known field given twice (reported later, once the rid
 * is known), or -1. 0, or -EINVAL when the line is not a JSON object. */
static int
scan_fields(struct decoder *d, const char *line, size_t len, int *dup)
{
    struct scan s;
    struct scan_value key, val;
    int rc;
    *dup = -1;
    scan_init(&s, line, len, MSG_MAX_DEPTH);
    if (scan_object_open(&s))
        return field_reject(d, PROTO_BAD_REQUEST, "request is not a JSON object");
    while ((rc = scan_object_next(&s, &key, &val)) > 0) {
        int f = field_lookup(&key);
        if (f < 0)
            continue;
        if (d->seen & (UINT64_C(1) << f))
            *dup = f;
        d->seen |= UINT64_C(1) << f;
        d->vals[f] = val;
    }
    if (rc == 0 && !scan_at_end(&s))
        return field_reject(d, PROTO_BAD_REQUEST, "invalid JSON at byte %zu: data after the object",
                            (size_t)(s.p - line));
    if (rc < 0) {
        if (!strcmp(s.why, "nesting too deep"))
            return field_reject(d, PROTO_BAD_REQUEST,
                                "invalid JSON at byte %zu: nested deeper than %d", s.at,
                                MSG_MAX_DEPTH);
        return field_reject(d, PROTO_BAD_REQUEST, "invalid JSON at byte %zu: %s", s.at, s.why);
    }
    return 0;
}

/* Elements of an array field (0 when absent or not an array). */
static size_t
array_len(const struct decoder *d, enum field f)
{
    return d->seen & (UINT64_C(1) << f) && d->vals[f].type == SCAN_ARRAY ? d->vals[f].nelems
                                                                         : 0;
}

/* One allocation holds every string of the request: queues[] and ids[]
 * first (so they are aligned), then the bytes. Each value shrinks or keeps
 * its size when unescaped or compacted, plus one NUL. An op reads only one
 * of "ids" and "ack", but both may be there: ids[] has room for either. */
static int
alloc_store(struct decoder *d)
{
    size_t nq = 1 + array_len(d, F_QUEUES), bytes = 0;
    size_t ni = array_len(d, F_IDS) > array_len(d, F_ACK) ? array_len(d, F_IDS)
                                                          : array_len(d, F_ACK);
    for (int f = 0; f < F_NFIELDS; f++) {
        if (d->seen & (UINT64_C(1) << f))
            bytes += d->vals[f].len + 1;
    }
    char *store = malloc((nq + ni) * sizeof(struct span) + bytes);
    if (!store) {
        proto_error_set(d->err, PROTO_INTERNAL, "out of memory decoding the request");
        return -ENOMEM;
    }
    d->out->store = store;
    d->out->queues = (struct span *)(void *)store;
    d->out->ids = d->out->queues + nq;
    d->w = store + (nq + ni) * sizeof(struct span);
    return 0;
}

static int
take_rid(struct decoder *d)
{
    const struct scan_value *v = &d->vals[F_RID];
    if (!(d->seen & (UINT64_C(1) << F_RID)))
        return 0;
    if (v->type == SCAN_ARRAY || v->type == SCAN_OBJECT)
        return field_wrong_type(d, F_RID, "a scalar");
    if (v->len > MSG_MAX_RID)
        return field_reject(d, PROTO_BAD_REQUEST, "field 'rid': longer than %d bytes", MSG_MAX_RID);
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
    if (!(d->seen & (UINT64_C(1) << F_OP)))
        return field_reject(d, PROTO_BAD_REQUEST, "field 'op': missing");
    if (v->type != SCAN_STRING)
        return field_wrong_type(d, F_OP, "a string");
    struct span name;
    char *mark = d->w;
    field_store_string(d, v, &name);
    d->w = mark; /* the name is not kept */
    d->out->op = msg_op_lookup(name.ptr, name.len);
    if (d->out->op == OP_NONE)
        return field_reject(d, PROTO_UNKNOWN_OP, "unknown op '%.*s%s'", QUOTE(name.ptr, name.len));
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
    int dup;
    int rc = scan_fields(&d, line, len, &dup);
    if (rc)
        return rc;
    rc = alloc_store(&d);
    if (rc)
        return rc;
    if (take_rid(&d))
        return -EINVAL;
    if (dup >= 0)
        return field_reject(&d, PROTO_BAD_REQUEST, "field '%s': given twice", field_defs[dup].name);
    if (take_op(&d))
        return -EINVAL;
    const struct op_def *op = &ops[out->op];
    for (size_t i = 0; i < op->nrules; i++) {
        const struct rule *rule = &op->rules[i];
        if (!(d.seen & (UINT64_C(1) << rule->f))) {
            if (rule->required)
                return field_reject(&d, PROTO_BAD_REQUEST, "field '%s': missing",
                                    field_defs[rule->f].name);
            continue;
        }
        if (field_take(&d, rule))
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
