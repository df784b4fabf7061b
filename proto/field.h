/* The request fields msg_decode() knows: their wire names, how each is
 * checked and where it is stored in struct request. Internal to proto/
 * (msg.c drives it; the table is in field.c). */
#ifndef CHANQ_PROTO_FIELD_H
#define CHANQ_PROTO_FIELD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/err.h"
#include "proto/msg.h"
#include "proto/scan.h"

/* Every field name the decoder knows; others are skipped. */
enum field {
    F_OP,
    F_RID,
    F_QUEUE,
    F_QUEUES,
    F_PAYLOAD,
    F_ID,
    F_PARENT,
    F_RESULT,
    F_ERROR,
    F_CLIENT,
    F_TOKEN,
    F_CAPACITY,
    F_TTR_MS,
    F_MAX_ATTEMPTS,
    F_DELAY_MS,
    F_DEADLINE_MS,
    F_WAIT_MS,
    F_TIMEOUT_MS,
    F_COUNT,
    F_STRICT,
    F_DEAD,
    F_AFTER,
    F_DIGEST,
    F_IDS,
    F_ACK,
    F_PREFETCH,
    F_NODE,
    F_ADDRESS,
    /* per-queue limits, idempotency keys and priorities */
    F_CONCURRENCY,
    F_RATE,
    F_RATE_PER_MS,
    F_BURST,
    F_KEY,
    F_PRIORITY,
    F_TRACEPARENT,
    /* schedules (docs/scheduling.md) */
    F_RUN_AT,
    F_ACTION,
    F_NAME,
    F_CRON,
    F_TZ,
    F_MISSED,
    /* operator ops */
    F_STATE,
    F_ORDER,
    F_CURSOR,
    F_LIMIT,
    F_FORCE,
    F_NFIELDS
};

/* How a field's value is checked and stored. */
enum kind {
    K_OP,          /* string naming an op (handled before the rules) */
    K_RID,         /* any scalar, kept as raw text (handled before the rules) */
    K_QUEUE,       /* string, queue-name syntax */
    K_QUEUES,      /* array of 1..MSG_MAX_QUEUES distinct queue names */
    K_JSON,        /* any JSON value, kept compact, at most limits->max_payload bytes */
    K_ID,          /* string of 1..MSG_MAX_ID bytes, no control characters */
    K_IDS,         /* array of 1..MSG_MAX_IDS job ids (K_ID each), into ids/nids */
    K_TEXT,        /* string of at most MSG_MAX_TEXT bytes, no NUL */
    K_INT,         /* integer within [min, max] */
    K_BOOL,        /* true or false */
    K_TRACEPARENT, /* string, W3C traceparent syntax (proto/traceparent.h) */
};

struct field_def {
    const char *name; /* wire name */
    size_t name_len;  /* strlen(name) */
    enum kind kind;   /* check and storage */
    size_t off;       /* offset in struct request of the span / int64_t / bool */
    size_t has_off;   /* K_INT: offset of the has_ flag */
    int64_t min, max; /* K_INT: default range */
};

/* The table, indexed by enum field. */
extern const struct field_def field_defs[F_NFIELDS];

/* struct decoder's seen has a bit per field. */
_Static_assert(F_NFIELDS <= 64, "more request fields than bits in decoder.seen");

/* One field an op reads. min/max override the field's range when not both 0. */
struct rule {
    enum field f;
    bool required;
    int64_t min, max;
};

/* Working state of one msg_decode() call. */
struct decoder {
    struct scan_value vals[F_NFIELDS]; /* where each known field's value lies */
    uint64_t seen;                     /* bit f: field f was present (F_NFIELDS <= 64) */
    const struct msg_limits *lim;      /* payload limit */
    struct request *out;               /* being filled */
    struct proto_error *err;           /* why it failed */
    char *w;                           /* next free byte of out->store */
};

/* The field a key names, or -1 for a field proto/ does not know. */
int field_lookup(const struct scan_value *key);

/* Checks the value of rule->f (present in d) and stores it in d->out.
 * 0, or -EINVAL with d->err filled. */
int field_take(struct decoder *d, const struct rule *rule);

/* Fills d->err and returns -EINVAL. */
int field_reject(struct decoder *d, enum proto_err code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* "field 'F': must be WANT, got TYPE"; returns -EINVAL. */
int field_wrong_type(struct decoder *d, enum field f, const char *want);

/* Unescapes a string value into the store; *sp gets the bytes (NUL after). */
void field_store_string(struct decoder *d, const struct scan_value *v, struct span *sp);

/* How much of a client's text to quote in a message. */
#define QUOTE_MAX 48
#define QUOTE(p, n) (int)((n) < QUOTE_MAX ? (n) : QUOTE_MAX), (p), ((n) > QUOTE_MAX ? "..." : "")

#endif
