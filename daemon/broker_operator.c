/* The operator ops: list, retry, delete, purge, queue_delete, configure
 * (docs/protocol.md, "Operator ops"). The changes go through the lifecycle
 * as every other op's do: a record committed (daemon/commit.h), applied by
 * the state machine, in the journal before the answer. */
#include "chanq_config.h"

#include "daemon/clientreg.h"
#include "daemon/commit.h"
#include "daemon/keytable.h"
#include "daemon/queue.h"
#include "daemon/reservation.h"

#include "core/timer.h"
#include "proto/encode.h"

#include <stdlib.h>
#include <string.h>

/* A page with payloads stops early once they pass this many bytes (it
 * always holds at least one job): its `next` says where to go on. */
#define LIST_PAYLOAD_BYTES (1u << 20)

/* An existing queue named by req->queue, or NULL with not_found. */
static struct queue *
named_queue(struct broker *b, const struct request *req, struct proto_error *err)
{
    struct queue *q = broker_find_queue(b, req->queue.ptr, req->queue.len);
    if (!q)
        proto_error_set(err, PROTO_NOT_FOUND, "no queue named '%.*s'", (int)req->queue.len,
                        req->queue.ptr);
    return q;
}

static enum jobindex_kind
index_of_state(enum msg_state s)
{
    switch (s) {
    case MSG_STATE_QUEUED:
        return JOBINDEX_QUEUED;
    case MSG_STATE_DELAYED:
        return JOBINDEX_DELAYED;
    case MSG_STATE_RESERVED:
        return JOBINDEX_RESERVED;
    case MSG_STATE_DEAD:
        return JOBINDEX_DEAD;
    default:
        return JOBINDEX_FINISHED;
    }
}

/* ---- list ---- */

static json_t *
errors_json(const struct job *j)
{
    json_t *a = json_array();
    size_t n = job_errors_count(j);
    for (size_t i = 0; a && i < n; i++) {
        const struct job_error *e = job_error_at(j, i);
        json_t *text = e->text ? json_string(e->text) : json_null();
        json_array_append_new(a, json_pack("{s:I, s:o}", "attempt", (json_int_t)e->attempt,
                                           "error", text ? text : json_null()));
    }
    return a;
}

/* The job's fields but its payload and result (those are raw JSON text,
 * appended as they are). */
static json_t *
list_job_json(const struct job *j)
{
    char idbuf[24], parentbuf[24];
    job_id_format(j->id, idbuf);
    const struct job_extra *x = j->extra;
    if (x && x->parent)
        job_id_format(x->parent->id, parentbuf);
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:o, s:o, s:o, s:o}", "id", idbuf, "queue",
        j->queue->name, "state", job_state_name(j->state), "attempt", (json_int_t)j->attempt,
        "max_attempts", (json_int_t)j->max_attempts, "ttr_ms", (json_int_t)j->ttr_ms, "created",
        (json_int_t)j->created_ms, "due",
        j->state == JOB_DELAYED ? json_integer(j->due) : json_null(), "deadline",
        j->deadline_ms ? json_integer(j->deadline_ms) : json_null(), "parent",
        x && x->parent ? json_string(parentbuf) : json_null(), "errors", errors_json(j));
    if (o) { /* what scheduling and tracing added to a job */
        json_object_set_new(o, "priority", json_integer(j->priority));
        json_object_set_new(o, "key", x && x->key ? json_stringn(x->key->key, x->key->len)
                                                  : json_null());
        json_object_set_new(o, "traceparent",
                            x && x->traceparent ? json_string(x->traceparent) : json_null());
    }
    if (o && j->state == JOB_RESERVED) {
        /* j->due is the monotonic time the reservation runs out. */
        int64_t expires = clock_wall_ms() + (j->due - timer_now_ms());
        struct client_info *ci = j->holder ? j->holder->info : NULL;
        json_object_set_new(o, "holder", ci ? client_info_holder_json(ci) : json_null());
        json_object_set_new(o, "ttr_expires", json_integer(expires));
    }
    return o;
}

/* Appends `,"KEY":RAW` (raw JSON text, or null). */
static int
append_raw(struct buf *out, const char *key, const char *raw, size_t len)
{
    if (buf_append_str(out, ",\"") < 0 || buf_append_str(out, key) < 0 ||
        buf_append_str(out, "\":") < 0)
        return -1;
    return raw ? buf_append(out, raw, len) : buf_append_str(out, "null");
}

/* Appends one job of a page. */
static int
append_job(struct buf *out, const struct job *j, bool with_payload)
{
    json_t *o = list_job_json(j);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!text)
        return -1;
    size_t len = strlen(text);
    int rc = buf_append(out, text, len - 1); /* reopened: without its '}' */
    free(text);
    bool finished = j->state != JOB_DEAD && job_state_is_final(j->state);
    const char *result = j->extra ? j->extra->result : NULL;
    if (rc == 0 && finished)
        rc = append_raw(out, "result", result, result ? strlen(result) : 0);
    if (rc == 0 && with_payload)
        rc = append_raw(out, "payload", j->payload, j->payload_len);
    return rc == 0 ? buf_append_char(out, '}') : -1;
}

/* The page: {"ok":true[,"rid":..][,"next":ID],"jobs":[...]}. */
static int
list_page(struct broker_op *op, const struct jobindex *ix, uint64_t cursor, bool from_start)
{
    const struct request *req = op->req;
    size_t limit = req->has_limit ? (size_t)req->limit : MSG_LIST_DEFAULT;
    size_t mark = op->out->len;
    if (buf_append_str(op->out, ",\"jobs\":[") < 0)
        return -1;
    struct job *j = jobindex_next(ix, cursor, req->newest, from_start);
    size_t n = 0, payload_bytes = 0;
    uint64_t last = 0;
    while (j && n < limit && (n == 0 || payload_bytes < LIST_PAYLOAD_BYTES)) {
        if ((n > 0 && buf_append_char(op->out, ',') < 0) ||
            append_job(op->out, j, req->with_payload) < 0) {
            op->out->len = mark;
            return -1;
        }
        payload_bytes += req->with_payload ? j->payload_len : 0;
        last = j->id;
        n++;
        j = jobindex_next(ix, last, req->newest, false);
    }
    if (buf_append_char(op->out, ']') < 0)
        return -1;
    if (j) {
        char idbuf[24];
        job_id_format(last, idbuf);
        if (buf_append_str(op->out, ",\"next\":\"") < 0 || buf_append_str(op->out, idbuf) < 0 ||
            buf_append_char(op->out, '"') < 0)
            return -1;
    }
    return buf_append_str(op->out, "}\n");
}

int
broker_op_list(struct broker *b, struct session *s, const struct request *req, struct buf *out,
               struct proto_error *err)
{
    uint64_t cursor = 0;
    if (req->cursor.len && !job_id_parse(req->cursor.ptr, req->cursor.len, &cursor)) {
        proto_error_set(err, PROTO_BAD_REQUEST, "field 'cursor': '%.*s' is not a job id",
                        (int)(req->cursor.len > 48 ? 48 : req->cursor.len), req->cursor.ptr);
        return -1;
    }
    struct broker_op op;
    op_begin(&op, b, s, req, out, err);
    struct queue *q = named_queue(b, req, err);
    if (!q)
        return op_end(&op, -1);
    size_t mark = out->len;
    int rc = encode_ok(out, req->rid);
    if (rc == 0) {
        out->len -= 2; /* reopen the object: drop its "}\n" */
        rc = list_page(&op, &q->ix[index_of_state(req->list_state)], cursor, !req->cursor.len);
    }
    if (rc < 0)
        out->len = mark;
    return op_end(&op, rc);
}

/* ---- retry ---- */

int
broker_op_retry(struct broker *b, struct session *s, const struct request *req, struct buf *out,
                struct proto_error *err)
{
    struct broker_op op;
    op_begin(&op, b, s, req, out, err);
    struct job *j = broker_lookup(b, &req->id, err);
    if (!j)
        return op_end(&op, -1);
    struct jrec_state st = {.state = JREC_QUEUED};
    if (j->state == JOB_DELAYED) {
        st.attempt = j->attempt; /* only its delay is cut short */
    } else if (j->state != JOB_DEAD) {
        proto_error_set(err, PROTO_CONFLICT,
                        "job %.*s is %s; only dead and delayed jobs can be retried",
                        (int)req->id.len, req->id.ptr, job_state_name(j->state));
        return op_end(&op, -1);
    }
    /* A dead job comes back with fresh attempts, as kick brings it. */
    if (commit_state(b, j, st, &op.w) < 0)
        return op_end(&op, -1);
    size_t mark = out->len;
    return op_end_durable(&op, encode_ok_str(out, req->rid, "state", span_str("queued")), mark);
}

/* ---- delete, purge, queue_delete ---- */

static int
commit_remove(struct broker *b, struct jrec_remove rm, struct durable *w)
{
    struct jrec r = {.type = JREC_REMOVE, .u.remove = rm};
    return commit(b, &r, NULL, w);
}

/* The holders of q's reserved jobs hear that they are gone. */
static void
cancel_holders(struct queue *q)
{
    const struct jobindex *ix = &q->ix[JOBINDEX_RESERVED];
    for (struct job *j = jobindex_next(ix, 0, false, true); j;
         j = jobindex_next(ix, j->id, false, false))
        holder_send_cancel(j);
}

int
broker_op_delete(struct broker *b, struct session *s, const struct request *req, struct buf *out,
                 struct proto_error *err)
{
    struct broker_op op;
    op_begin(&op, b, s, req, out, err);
    struct job *j = broker_lookup(b, &req->id, err);
    if (!j)
        return op_end(&op, -1);
    if (j->state == JOB_RESERVED && !req->force) {
        struct client_info *ci = j->holder ? j->holder->info : NULL;
        proto_error_set(err, PROTO_CONFLICT,
                        "job %.*s is reserved by connection %llu; give \"force\":true to delete it",
                        (int)req->id.len, req->id.ptr,
                        ci ? (unsigned long long)ci->id : 0ULL);
        return op_end(&op, -1);
    }
    const char *was = job_state_name(j->state);
    if (j->state == JOB_RESERVED)
        holder_send_cancel(j);
    if (commit_remove(b, (struct jrec_remove){.kind = JREC_REMOVE_JOB, .id = j->id}, &op.w) < 0)
        return op_end(&op, -1);
    size_t mark = out->len;
    return op_end_durable(&op, encode_ok_str(out, req->rid, "state", span_str(was)), mark);
}

int
broker_op_purge(struct broker *b, struct session *s, const struct request *req, struct buf *out,
                struct proto_error *err)
{
    static const enum jrec_purge_state which[] = {
        [MSG_STATE_QUEUED] = JREC_PURGE_QUEUED, [MSG_STATE_DELAYED] = JREC_PURGE_DELAYED,
        [MSG_STATE_DEAD] = JREC_PURGE_DEAD, [MSG_STATE_FINISHED] = JREC_PURGE_FINISHED,
    };
    struct broker_op op;
    op_begin(&op, b, s, req, out, err);
    struct queue *q = named_queue(b, req, err);
    if (!q)
        return op_end(&op, -1);
    size_t n = q->ix[index_of_state(req->list_state)].n;
    /* Nothing to purge, nothing to record. */
    struct jrec_remove rm = {.kind = JREC_REMOVE_PURGE, .queue = q->name,
                             .queue_len = q->name_len, .purge = which[req->list_state]};
    if (n > 0 && commit_remove(b, rm, &op.w) < 0)
        return op_end(&op, -1);
    size_t mark = out->len;
    return op_end_durable(&op, encode_ok_int(out, req->rid, "purged", (int64_t)n), mark);
}

int
broker_op_queue_delete(struct broker *b, struct session *s, const struct request *req,
                       struct buf *out, struct proto_error *err)
{
    struct broker_op op;
    op_begin(&op, b, s, req, out, err);
    struct queue *q = named_queue(b, req, err);
    if (!q)
        return op_end(&op, -1);
    size_t n = broker_queue_jobs(q);
    cancel_holders(q);
    struct jrec_remove rm = {.kind = JREC_REMOVE_QUEUE, .queue = q->name,
                             .queue_len = q->name_len};
    queue_ref(q); /* applying rm frees q; it is logged after, with q's name */
    int rc = commit_remove(b, rm, &op.w);
    queue_unref(q);
    if (rc < 0)
        return op_end(&op, -1);
    size_t mark = out->len;
    return op_end_durable(&op, encode_ok_int(out, req->rid, "deleted", (int64_t)n), mark);
}

/* ---- configure ---- */

int
broker_op_configure(struct broker *b, struct session *s, const struct request *req,
                    struct buf *out, struct proto_error *err)
{
    struct broker_op op;
    op_begin(&op, b, s, req, out, err);
    struct queue *q = named_queue(b, req, err);
    if (!q)
        return op_end(&op, -1);
    /* The QUEUE record carries every setting (the delivery limits too):
     * the old ones for what the request leaves out. Applying it resizes
     * the live channel. */
    struct queue_settings set = q->set;
    broker_request_settings(req, &set);
    if (commit_queue_settings(b, q, &set, q->paused, q->closed, &op.w) < 0) {
        proto_error_set(err, PROTO_INTERNAL, "out of memory resizing queue '%s'", q->name);
        return op_end(&op, -1);
    }
    return op_end_with_queue(&op, q);
}
