/* The broker's journal records: a binary codec (a type byte, then the type's
 * fields as LEB128 varints and length-prefixed byte strings). A new layout
 * gets a new type byte; decoding is strict, so a malformed record is reported
 * as corruption, never crashes. Ids are u64; times are i64 ms since the epoch
 * (0 = none). No I/O, no allocation. */
#ifndef CHANQ_DAEMON_JREC_H
#define CHANQ_DAEMON_JREC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum jrec_type {
    JREC_SUBMIT = 1,  /* a job was accepted */
    JREC_RESERVE = 2, /* a job was delivered (attempt counted) */
    JREC_STATE = 3,   /* back to queued / delayed / dead (nack, ttr, disconnect, kick) */
    JREC_FINAL = 4,   /* done / cancelled / expired, with its result */
    JREC_DROP = 5,    /* a written submit whose job was refused: it never existed */
    JREC_QUEUE = 6,   /* a queue's full settings (declare, pause, resume, close) */
    JREC_MOVE = 7,    /* a queued job landed in another queue of its submit's select */
    JREC_JOB = 8,     /* snapshot: one job as it is, every field */
    JREC_ORDER = 9,   /* snapshot: the order of a queue's queued or dead jobs, or of
                       * the kept results */
    JREC_KEY = 14,    /* snapshot: an idempotency key whose job finished, and when it
                       * is free again */
    JREC_SCHEDULE = 10, /* a schedule as it is now (create, replace, pause, resume,
                         * snapshot), or its deletion */
    JREC_FIRE = 11,     /* a schedule fired: its planned time and the job it made, in
                         * one record, so that neither is durable without the other */
    /* operator ops (list, delete, purge, queue_delete) */
    JREC_REMOVE = 12, /* an operator deleted a job, a queue's jobs of a state, or a queue */
    JREC_ERRORS = 13, /* snapshot: a job's error history (after its JOB record) */
};

enum jrec_job_state {
    JREC_QUEUED = 1,
    JREC_DELAYED = 2,
    JREC_DEAD = 3,
    JREC_DONE = 4,
    JREC_CANCELLED = 5,
    JREC_EXPIRED = 6,
    JREC_RESERVED = 7, /* JREC_JOB only */
};

struct jrec_submit {
    uint64_t id;
    const char *queue;   /* queue name (not NUL-terminated when decoded) */
    size_t queue_len;
    const char *payload; /* compact JSON bytes */
    size_t payload_len;
    int64_t ttr_ms;
    uint32_t max_attempts;
    int64_t created_ms;
    int64_t deadline_ms; /* 0 = none */
    int64_t due_ms;      /* delayed until; 0 = ready */
    uint64_t parent_id;  /* 0 = none */
    /* Optional fields, written at the end of the record as (tag, value)
     * pairs only when set, so records without them (and journals written
     * before they existed) read back with them unset. */
    const char *key; /* idempotency key; len 0 = none */
    size_t key_len;
    uint32_t priority;       /* 0 = the default level */
    const char *traceparent; /* W3C trace context; len 0 = none */
    size_t traceparent_len;
};

struct jrec_reserve {
    uint64_t id;
    uint32_t attempt; /* the delivery count after this delivery */
};

struct jrec_state {
    uint64_t id;
    enum jrec_job_state state; /* JREC_QUEUED, JREC_DELAYED or JREC_DEAD */
    uint32_t attempt;
    int64_t due_ms;
    const char *error; /* may be empty (len 0) */
    size_t error_len;
};

struct jrec_final {
    uint64_t id;
    enum jrec_job_state state; /* JREC_DONE, JREC_CANCELLED or JREC_EXPIRED */
    const char *result;        /* JSON bytes; may be empty (len 0) */
    size_t result_len;
};

struct jrec_drop {
    uint64_t id;
};

struct jrec_move {
    uint64_t id;
    const char *queue; /* the queue it is in now */
    size_t queue_len;
};

/* A job's whole state, for a snapshot: its submit fields plus where it
 * is. Applying it recreates the job (at the tail of its state's list). */
struct jrec_job {
    struct jrec_submit s;      /* due_ms: when a delayed job becomes queued */
    enum jrec_job_state state; /* any */
    uint32_t attempt;
    const char *error; /* may be empty */
    size_t error_len;
    const char *result; /* may be empty */
    size_t result_len;
};

enum jrec_order_kind {
    JREC_ORDER_QUEUED = 1,   /* a queue's queued jobs, next in line first */
    JREC_ORDER_DEAD = 2,     /* a queue's dead jobs, oldest first (kick order) */
    JREC_ORDER_FINISHED = 3, /* the kept results, oldest first (queue empty) */
};

/* Moves the listed jobs, in this order, to the tail of their list: after
 * the ORDER records of a snapshot, every list is in the order it had. The
 * ids are varints: encoding reads ids[0..n), decoding sets packed (use
 * jrec_order_next). */
struct jrec_order {
    enum jrec_order_kind kind;
    const char *queue;
    size_t queue_len;
    size_t n;
    const uint64_t *ids;   /* encoding */
    const uint8_t *packed; /* decoded: n varints */
    size_t packed_len;
};

/* What a REMOVE record deletes. */
enum jrec_remove_kind {
    JREC_REMOVE_JOB = 1,   /* one job (`delete`), in any state */
    JREC_REMOVE_PURGE = 2, /* every job of a queue in one state (`purge`) */
    JREC_REMOVE_QUEUE = 3, /* a queue and all its jobs (`queue_delete`) */
};
/* The states a purge takes. */
enum jrec_purge_state {
    JREC_PURGE_QUEUED = 1,
    JREC_PURGE_DELAYED = 2,
    JREC_PURGE_DEAD = 3,
    JREC_PURGE_FINISHED = 4, /* done, cancelled and expired (kept results) */
};
struct jrec_remove {
    enum jrec_remove_kind kind;
    uint64_t id;                /* JOB; 0 otherwise */
    const char *queue;          /* PURGE, QUEUE; empty for JOB */
    size_t queue_len;
    enum jrec_purge_state purge; /* PURGE; 0 otherwise */
};

/* One entry of a job's error history. */
struct jrec_error {
    uint32_t attempt;
    bool has_text;    /* false: the attempt failed without a text (null) */
    const char *text; /* may be empty */
    size_t text_len;
};
/* A job's error history, oldest first. Encoding reads v[0..n); decoding
 * sets packed (use jrec_errors_next). */
struct jrec_errors {
    uint64_t id;
    size_t n;
    const struct jrec_error *v; /* encoding */
    const uint8_t *packed;      /* decoded */
    size_t packed_len;
};

struct jrec_queue {
    const char *name;
    size_t name_len;
    int64_t capacity;
    int64_t ttr_ms;
    uint32_t max_attempts;
    bool paused;
    bool closed;
    /* Delivery limits, 0 = none: optional trailing (tag, value) varint
     * pairs, written only when set, so a queue without limits encodes as
     * before and journals written before them still read. */
    uint64_t concurrency;
    uint64_t rate, rate_per_ms, burst;
};

/* An idempotency key kept after its job finished (a snapshot's: the
 * journal itself has the key in the SUBMIT record). */
struct jrec_key {
    const char *key;
    size_t key_len; /* > 0 */
    uint64_t id;    /* the job submitted with it */
    int64_t until_ms; /* wall ms: the key is free again from then on */
};

/* A schedule (docs/scheduling.md). A deleted one carries only its name. */
struct jrec_schedule {
    const char *name;
    size_t name_len;
    bool deleted, paused;
    bool missed_once;      /* after a downtime: fire once for the missed times (else skip) */
    const char *cron;      /* the expression as given */
    size_t cron_len;
    const char *tz;        /* zone name; empty = UTC */
    size_t tz_len;
    const char *queue;     /* target queue */
    size_t queue_len;
    const char *payload;   /* the template (compact JSON) */
    size_t payload_len;
    int64_t ttr_ms;        /* 0 = the queue's default */
    uint32_t max_attempts; /* 0 = the queue's default */
    int64_t since_ms;      /* only planned times after this (created, replaced, resumed) */
    int64_t last_ms;       /* the last planned time fired; 0 = none yet */
};

/* A firing: the schedule's last planned time becomes planned_ms and, when
 * s.id is not 0, the job s is created (ready at once) in the same step. */
struct jrec_fire {
    const char *name;
    size_t name_len;
    int64_t planned_ms;
    struct jrec_submit s;
};

/* One record. Decoded strings point into the record bytes (borrowed: valid
 * while those bytes are). */
struct jrec {
    enum jrec_type type; /* says which member of u is set */
    union {
        struct jrec_submit submit;
        struct jrec_reserve reserve;
        struct jrec_state state;
        struct jrec_final final;
        struct jrec_drop drop;
        struct jrec_queue queue;
        struct jrec_move move;
        struct jrec_job job;
        struct jrec_order order;
        struct jrec_key key;
        struct jrec_schedule schedule;
        struct jrec_fire fire;
        struct jrec_remove remove;
        struct jrec_errors errors;
    } u;
};

/* The exact encoded size of r, or 0 when r is invalid (unknown type, a state
 * not allowed for the type, a NULL string with a nonzero length). */
size_t jrec_size(const struct jrec *r);

/* Encodes r into buf (cap bytes). Returns the bytes written (> 0), -ENOBUFS
 * when cap < jrec_size(r) (buf untouched), or -EINVAL when r is invalid. */
int jrec_encode(const struct jrec *r, void *buf, size_t cap);

/* Decodes len bytes into *out. Returns 0, or -EBADMSG (unknown type, a field
 * cut short, a varint over 10 bytes or out of range, a bad state, trailing
 * bytes) with *why (may be NULL) set to a static reason; *out is then
 * unspecified. Never reads outside buf. */
int jrec_decode(const void *buf, size_t len, struct jrec *out, const char **why);

/* "submit", "reserve", ... or "unknown". */
const char *jrec_type_name(enum jrec_type t);

/* The next id of a decoded ORDER record: *pos starts at 0; false after
 * the last one. */
bool jrec_order_next(const struct jrec_order *o, size_t *pos, uint64_t *id);

/* The next entry of a decoded ERRORS record: *pos starts at 0; false
 * after the last one. Strings point into the record. */
bool jrec_errors_next(const struct jrec_errors *e, size_t *pos, struct jrec_error *out);

/* Ids per ORDER record a snapshot writes: each record stays far below the
 * segment's record limit. */
#define JREC_ORDER_CHUNK 8192

#endif
