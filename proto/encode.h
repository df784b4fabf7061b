/* Responses and events: each encoder appends exactly one line, ending in
 * "\n", to a struct buf. The hot ones (ok, ok+id, errors, fetched jobs,
 * events) write bytes directly; only encode_ok_fields() uses jansson. */
#ifndef CHANQ_PROTO_ENCODE_H
#define CHANQ_PROTO_ENCODE_H

#include <jansson.h>
#include <stdint.h>

#include "proto/buf.h"
#include "proto/err.h"
#include "proto/span.h"

/* Every encoder: `rid` is the raw JSON text to echo (struct request.rid),
 * written right after "ok" when rid.len > 0. Strings are JSON-escaped;
 * spans documented as "JSON text" are inserted verbatim and must already
 * be valid compact JSON. Returns 0, or -ENOMEM with b unchanged. Borrows
 * every argument. Any thread (a buf is not shared). */

/* One job in a fetch response. A plain description: every span is borrowed
 * for the call only. */
struct proto_job {
    struct span id;      /* job id */
    struct span queue;   /* queue it came from */
    struct span payload; /* compact JSON text, inserted verbatim */
    int64_t attempt;     /* 1 on first delivery */
    int64_t ttr_ms;      /* reservation time */
    int64_t deadline;    /* absolute expiry, ms since the epoch; 0 = none (omitted) */
    struct span traceparent; /* W3C trace context; len 0 = none (omitted) */
};

/* Why a reservation was taken back (the "reason" of a revoked event). */
enum revoke_reason {
    REVOKE_TTR,      /* "ttr": not acked/nacked/touched in time */
    REVOKE_DEADLINE, /* "deadline": the job's deadline passed */
};

/* {"ok":true} */
int encode_ok(struct buf *b, struct span rid);

/* {"ok":true,"id":ID} or, for a send-side select, {"ok":true,"id":ID,"queue":Q}
 * (queue omitted when queue.len == 0). */
int encode_ok_id(struct buf *b, struct span rid, struct span id, struct span queue);

/* {"ok":true,KEY:N}, e.g. "cancelled" / "kicked". key is a plain ASCII name. */
int encode_ok_int(struct buf *b, struct span rid, const char *key, int64_t n);

/* {"ok":true,KEY:"VALUE"}, e.g. nack's "state". */
int encode_ok_str(struct buf *b, struct span rid, const char *key, struct span value);

/* The value of a field an encoder writes as null (see encode_wait). */
static inline struct span
encode_null(void)
{
    struct span s = {"", 0};
    return s;
}

/* wait's answer: {"ok":true,"state":STATE[,"result":RESULT][,"error":ERROR]}.
 * result is JSON text, error a plain string; each is left out when its ptr
 * is NULL and written as null when it is encode_null() (the answer has the
 * field but the job has no value: done without a result, dead without an
 * error). */
int encode_wait(struct buf *b, struct span rid, struct span state, struct span result,
                struct span error);

/* {"ok":false,"error":{"code":CODE,"message":MESSAGE}} */
int encode_error(struct buf *b, struct span rid, enum proto_err code, const char *message);

/* The same from a decode failure record. */
int encode_proto_error(struct buf *b, struct span rid, const struct proto_error *err);

/* {"ok":true,"jobs":[{"id":..,"queue":..,"payload":..,"attempt":..,"ttr_ms":..
 * [,"deadline":..][,"traceparent":..]},...]}; n may be 0 (a fetch that timed out). */
int encode_jobs(struct buf *b, struct span rid, const struct proto_job *jobs, size_t n);

/* Why one job of a request that names several (ack/nack "ids", fetch's
 * "ack") was not done. Borrowed for the call. */
struct proto_id_error {
    struct span id;
    enum proto_err code;
    const char *message;
};

/* encode_jobs with the failed acks of a fetch's "ack" list appended as
 * "ack_errors":[{"id":..,"code":..,"message":..},...] (left out when
 * nerr is 0). */
int encode_jobs_acked(struct buf *b, struct span rid, const struct proto_job *jobs, size_t n,
                      const struct proto_id_error *errs, size_t nerr);

/* {"ok":true,KEY:N[,"errors":[{"id":..,"code":..,"message":..},...]]}: an
 * ack or nack of several ids, N of them done ("errors" left out when nerr
 * is 0). key is a plain ASCII name. */
int encode_ok_count(struct buf *b, struct span rid, const char *key, int64_t n,
                    const struct proto_id_error *errs, size_t nerr);

/* {"event":"jobs","jobs":[...]}: jobs pushed to a consuming connection,
 * each as in encode_jobs; n >= 1. */
int encode_event_jobs(struct buf *b, const struct proto_job *jobs, size_t n);

/* {"event":"consume_end","reason":REASON}: the server ended a consume
 * ("closed": every queue closed and drained; "shutting_down"). reason is a
 * plain ASCII name. */
int encode_event_consume_end(struct buf *b, const char *reason);

/* {"ok":true,...every member of `fields`...}: the rarely used answers
 * (hello, declare, queues, stats, job). fields must be a JSON object
 * (borrowed; members in its order). -EINVAL (b unchanged) if it is not. */
int encode_ok_fields(struct buf *b, struct span rid, const json_t *fields);

/* {"event":"revoked","id":ID,"reason":"ttr"|"deadline"} */
int encode_event_revoked(struct buf *b, struct span id, enum revoke_reason reason);

/* {"event":"cancel","id":ID} */
int encode_event_cancel(struct buf *b, struct span id);

#endif
