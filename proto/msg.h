/* Requests: decode one NDJSON line into a validated, plain C struct
 * request. The field rules (types, ranges, defaults) are documented in
 * docs/protocol.md and live in one table in msg.c. */
#ifndef CHANQ_PROTO_MSG_H
#define CHANQ_PROTO_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/err.h"
#include "proto/span.h"

/* Every op of the protocol. OP_NONE is "not decoded". */
enum op {
    OP_NONE = 0,
    OP_HELLO,
    OP_PING,
    OP_DECLARE,
    OP_SUBMIT,
    OP_FETCH,
    OP_ACK,
    OP_NACK,
    OP_RELEASE,
    OP_TOUCH,
    OP_CANCEL,
    OP_WAIT,
    OP_JOB,
    OP_CLOSE,
    OP_PAUSE,
    OP_RESUME,
    OP_KICK,
    OP_QUEUES,
    OP_STATS,
    OP_CONSUME,
    OP_CANCEL_CONSUME,
    OP_CLUSTER,          /* cluster mode: this node's view of the cluster */
    OP_CLUSTER_ADD,      /* ... and its membership changes, on the leader */
    OP_CLUSTER_REMOVE,
    OP_CLUSTER_TRANSFER,
    OP_SCHEDULE, /* docs/scheduling.md */
    /* operator ops */
    OP_LIST,
    OP_RETRY,
    OP_DELETE,
    OP_PURGE,
    OP_QUEUE_DELETE,
    OP_CONFIGURE,
    OP_CLIENTS,
    OP_COUNT /* number of values; not an op */
};

/* Bounds that are not a server setting (see docs/protocol.md). */
#define MSG_MAX_DEPTH 64       /* arrays/objects nested in one request (the request is 1) */
#define MSG_MAX_QUEUE_NAME 128 /* bytes in a queue name */
#define MSG_MAX_QUEUES 64      /* names in a "queues" list */
#define QUEUES_PAGE_DEFAULT 1000 /* queues one `queues` answer lists without "count" */
#define QUEUES_PAGE_MAX 10000    /* ... and with it, at most */
#define MSG_MAX_ID 128         /* bytes in a job id */
#define MSG_MAX_IDS 1000       /* ids in an "ids" (ack, nack) or "ack" (fetch) list */
#define MSG_MAX_PREFETCH 1000  /* consume's "prefetch" */
#define MSG_MAX_LIST 1000      /* list's "limit" */
#define MSG_LIST_DEFAULT 100   /* ... when absent */
#define MSG_MAX_RID 256        /* bytes of raw JSON text in "rid" */
#define MSG_MAX_TEXT 4096      /* bytes in "error", "client", "token" */
#define MSG_MAX_LIMIT 1000000   /* declare's "concurrency", "rate", "burst" */
#define MSG_MAX_PRIORITY 9      /* submit's "priority": 0 (default) .. 9, higher first */
#define MSG_MAX_KEY MSG_MAX_ID  /* bytes in submit's idempotency "key" */
#define MSG_DEFAULT_MAX_PAYLOAD (512 * 1024) /* --max-job default */
#define MSG_MAX_RUN_AT INT64_C(253402300799999) /* "run_at": 9999-12-31T23:59:59.999Z */
#define MSG_MAX_CRON 256 /* bytes of a schedule's "cron" */
#define MSG_MAX_TZ 64    /* bytes of a schedule's "tz" */

/* The job states list and purge name ("state"). */
enum msg_state {
    MSG_STATE_NONE = 0, /* absent */
    MSG_STATE_QUEUED,
    MSG_STATE_DELAYED,
    MSG_STATE_RESERVED,
    MSG_STATE_DEAD,
    MSG_STATE_FINISHED, /* done, cancelled, expired (kept results) */
};

/* Server settings the decoder enforces. */
struct msg_limits {
    size_t max_payload; /* bytes of compact JSON in "payload"/"result" (--max-job);
                         * more is PROTO_TOO_LARGE */
};

/* One decoded request. Plain data, filled by msg_decode(): every string is
 * a span into `store` (owned by the request, NUL-terminated after len),
 * so the request outlives the line it came from. A span with len 0 means
 * the field was absent; an integer field is meaningful only when its has_
 * flag is set (the daemon applies its own default otherwise). Fields an op
 * does not use are left zero even if the client sent them. */
struct request {
    enum op op;          /* which operation */
    struct span rid;     /* raw JSON text of "rid" (a scalar), echoed verbatim */
    struct span queue;   /* "queue": declare, submit, close, pause, resume, kick,
                          * stats (optional there), fetch (shorthand) */
    struct span *queues; /* "queues": fetch (always set, >= 1), submit (send-side
                          * select, instead of "queue"), consume (set when given);
                          * no duplicates */
    size_t nqueues;      /* entries in queues[]; 0 when absent */
    struct span *ids;    /* job ids: ack and nack ("ids", instead of "id"), fetch
                          * ("ack": the jobs to ack first); may repeat */
    size_t nids;         /* entries in ids[]; 0 when absent */
    struct span payload; /* submit: the payload as compact JSON text (any value) */
    struct span id;      /* job id: ack, nack, release, touch, cancel, wait, job */
    struct span parent;  /* submit: parent job id */
    struct span result;  /* ack: result as compact JSON text */
    struct span error;   /* nack: the failure text (unescaped UTF-8) */
    struct span client;  /* hello: client name (unescaped) */
    struct span token;   /* hello: auth token (unescaped) */
    struct span after;   /* queues: list the queues whose names sort after this one */
    struct span address; /* cluster_add: "IPV4:PORT[/HOST:PORT]" of the new member */
    struct span key;     /* submit: idempotency key (1..MSG_MAX_KEY bytes) */
    struct span traceparent; /* submit: W3C trace context, syntax checked (proto/traceparent.h) */
    /* schedule: "action" (create, replace, pause, resume, delete, list; checked),
     * "name" (queue-name syntax), "cron" (at most MSG_MAX_CRON bytes, parsed by
     * the daemon), "tz" (at most MSG_MAX_TZ bytes), "missed" (skip or once) */
    struct span action, name, cron, tz, missed;

    int64_t capacity;     /* declare: 0 = unbuffered */
    int64_t ttr_ms;       /* declare, submit, touch */
    int64_t max_attempts; /* declare, submit */
    int64_t delay_ms;     /* submit, nack */
    int64_t deadline_ms;  /* submit: relative expiry */
    int64_t wait_ms;      /* submit: how long to wait for room */
    int64_t timeout_ms;   /* fetch, wait: 0 = do not wait */
    int64_t count;        /* fetch (max jobs), kick (max jobs), queues (max queues) */
    int64_t prefetch;     /* consume: jobs the connection may hold unacked */
    int64_t node;         /* cluster_add, cluster_remove, cluster_transfer: a member id */
    bool has_capacity, has_ttr_ms, has_max_attempts, has_delay_ms, has_deadline_ms, has_wait_ms,
        has_timeout_ms, has_count, has_prefetch, has_node;
    /* declare: per-queue limits (0 = none); submit: priority */
    int64_t concurrency;  /* jobs of the queue reserved at once */
    int64_t rate;         /* deliveries per rate_per_ms */
    int64_t rate_per_ms;  /* the rate's interval (default 1000) */
    int64_t burst;        /* the token bucket's size (default: rate) */
    int64_t priority;     /* submit: 0..MSG_MAX_PRIORITY, higher first */
    bool has_concurrency, has_rate, has_rate_per_ms, has_burst, has_priority;
    int64_t run_at;       /* submit, nack: ms since the epoch (not with delay_ms) */
    bool has_run_at;

    bool strict; /* fetch, consume: first listed ready queue wins (false when absent) */
    bool dead;   /* nack: bury the job now (false when absent) */
    bool digest; /* stats: add the state digest (false when absent) */

    /* operator ops */
    struct span state;    /* list, purge: the state's name (see list_state) */
    struct span order;    /* list: "oldest" or "newest" */
    struct span cursor;   /* list: the page starts after this job id */
    int64_t limit;        /* list: jobs per page */
    bool has_limit;
    bool force;           /* delete: also a reserved job */
    enum msg_state list_state; /* list, purge: "state" checked */
    bool newest;          /* list: "order":"newest" */
    bool with_payload;    /* list: "payload":true */

    char *store; /* owns the bytes every span above points to */
};

/* Decodes and validates one line (without its "\n") into *out, which needs
 * no initialisation. limits may be NULL for the defaults.
 *
 * Returns 0 on success. On failure returns -EINVAL (err->code is
 * PROTO_BAD_REQUEST, PROTO_UNKNOWN_OP or PROTO_TOO_LARGE) or -ENOMEM
 * (PROTO_INTERNAL), and err->message names the field and the reason. Even
 * on failure, out->rid (and out->op once known) are filled when the line
 * was a JSON object, so the error reply can echo the rid: call
 * request_clear(out) after either outcome. Any thread; no shared state. */
int msg_decode(const char *line, size_t len, const struct msg_limits *limits, struct request *out,
               struct proto_error *err);

/* Frees what *req owns and zeroes it. Safe on a zeroed request. */
void request_clear(struct request *req);

/* The wire name of an op ("submit"), or NULL for OP_NONE/out of range. */
const char *msg_op_name(enum op op);

/* The op called name[0..len), or OP_NONE. */
enum op msg_op_lookup(const char *name, size_t len);

/* True when s[0..len) is a valid queue name ([A-Za-z0-9_.:-]{1,128}). */
bool msg_queue_name_valid(const char *s, size_t len);

#endif
