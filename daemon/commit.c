/* Records: applied, then queued in the journal; and the waits for their
 * durability (see commit.h). docs/durability.md, "Integration". */
#include "chanq_config.h"

#include "daemon/commit.h"

#include "daemon/journal/journal.h"
#include "daemon/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- the journal side ---- */

static int
durable_add(struct durable *w, struct journal_wait *jw)
{
    if (w->n && w->v[w->n - 1] == jw) {
        /* Same batch as the previous record: one wait covers both. */
        journal_wait_release(jw);
        return 0;
    }
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 4;
        struct journal_wait **v = w->v == w->inline_v ? malloc(cap * sizeof *v)
                                                        : realloc(w->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        if (w->v == w->inline_v)
            memcpy(v, w->inline_v, w->n * sizeof *v);
        w->v = v;
        w->cap = cap;
    }
    w->v[w->n++] = jw;
    return 0;
}

static int
log_record(struct broker *b, const struct jrec *r, struct durable *w)
{
    size_t size = jrec_size(r);
    uint8_t stackbuf[512];
    uint8_t *buf = size <= sizeof stackbuf ? stackbuf : malloc(size);
    if (!buf)
        return -ENOMEM;
    int rc = jrec_encode(r, buf, size);
    if (rc > 0) {
        struct journal_wait *jw = NULL;
        rc = journal_append_async(b->journal, buf, size, w ? &jw : NULL);
        if (rc == 0 && jw && durable_add(w, jw) < 0) {
            journal_wait_release(jw);
            rc = -ENOMEM;
        }
    }
    if (buf != stackbuf)
        free(buf);
    if (rc < 0)
        log_error_kv(
            LOG_FIELDS(LOG_STR("record", jrec_type_name(r->type)), LOG_STR("error", strerror(-rc))),
            "journal: cannot queue a %s record: %s", jrec_type_name(r->type), strerror(-rc));
    return rc < 0 ? rc : 0;
}

int
commit(struct broker *b, const struct jrec *r, const struct apply_how *how, struct durable *w)
{
    if (apply_record(b, r, how) < 0)
        return -1;
    if (b->journal && log_record(b, r, w) < 0 && w)
        w->rc = -EIO;
    return 0;
}

/* ---- the records of live transitions ---- */

int
commit_state(struct broker *b, struct job *j, struct jrec_state st, struct durable *w)
{
    const struct job_extra *x = j->extra;
    if (!st.error)
        st.error = x && x->error ? x->error : "";
    st.id = j->id;
    st.error_len = strlen(st.error);
    if (st.state != JREC_DELAYED)
        st.due_ms = 0;
    struct jrec r = {.type = JREC_STATE, .u.state = st};
    return commit(b, &r, NULL, w);
}

int
commit_final(struct broker *b, struct job *j, enum jrec_job_state to, const struct span *result,
             struct durable *w)
{
    struct jrec r = {.type = JREC_FINAL};
    r.u.final = (struct jrec_final){
        .id = j->id,
        .state = to,
        .result = result ? result->ptr : NULL,
        .result_len = result ? result->len : 0,
    };
    return commit(b, &r, NULL, w);
}

int
commit_drop(struct broker *b, struct job *j, struct durable *w)
{
    struct jrec r = {.type = JREC_DROP};
    r.u.drop.id = j->id;
    return commit(b, &r, NULL, w);
}

int
commit_queue_settings(struct broker *b, const struct queue *q, const struct queue_settings *set,
                      bool paused, bool closed, struct durable *w)
{
    struct jrec r = {.type = JREC_QUEUE};
    r.u.queue = (struct jrec_queue){
        .name = q->name,
        .name_len = q->name_len,
        .capacity = set->capacity,
        .ttr_ms = set->ttr_ms,
        .max_attempts = (uint32_t)set->max_attempts,
        .concurrency = (uint64_t)set->concurrency,
        .rate = (uint64_t)set->rate,
        .rate_per_ms = (uint64_t)set->rate_per_ms,
        .burst = (uint64_t)set->burst,
        .paused = paused,
        .closed = closed,
    };
    return commit(b, &r, NULL, w);
}

int
commit_queue(struct broker *b, const struct queue *q, bool paused, bool closed,
             struct durable *w)
{
    return commit_queue_settings(b, q, &q->set, paused, closed, w);
}

/* ---- waiting for durability ---- */

void
durable_init(struct durable *w)
{
    w->v = w->inline_v;
    w->n = 0;
    w->cap = sizeof w->inline_v / sizeof w->inline_v[0];
    w->rc = 0;
}

/* Empties w (its waits were used up or handed over). */
static void
durable_reset(struct durable *w)
{
    if (w->v != w->inline_v)
        free(w->v);
    durable_init(w);
}

int
durable_finish(struct durable *w, struct proto_error *err)
{
    int r = journal_wait_all(w->v, w->n, NULL);
    int rc = w->rc < 0 ? w->rc : r;
    durable_reset(w);
    if (rc < 0 && err)
        answers_durable_error(rc, err);
    return rc;
}

int
durable_defer(struct broker_op *op, size_t mark, answer_done_fn *done, void *arg)
{
    struct durable *w = &op->w;
    struct session *s = op->s;
    if (!s || !s->answers || w->n == 0 || w->rc < 0 ||
        answers_defer(s->answers, op->out, mark, w->v, w->n, op->req->rid, done, arg) < 0)
        return -1;
    durable_reset(w);
    return 0;
}

/* ---- an op's steps ---- */

void
op_begin(struct broker_op *op, struct broker *b, struct session *s, const struct request *req,
         struct buf *out, struct proto_error *err)
{
    *op = (struct broker_op){.b = b, .s = s, .req = req, .out = out, .err = err};
    durable_init(&op->w);
    pthread_mutex_lock(&b->lock);
}

int
op_end(struct broker_op *op, int rc)
{
    pthread_mutex_unlock(&op->b->lock);
    if (rc < 0 && op->err->code == PROTO_OK)
        proto_error_set(op->err, PROTO_INTERNAL, "out of memory encoding the answer");
    return rc < 0 ? -1 : 0;
}

int
op_end_durable(struct broker_op *op, int rc, size_t mark)
{
    rc = op_end(op, rc);
    if (rc == 0 && durable_defer(op, mark, NULL, NULL) == 0)
        return 0;
    if (durable_finish(&op->w, rc == 0 ? op->err : NULL) < 0 && rc == 0) {
        op->out->len = mark;
        rc = -1;
    }
    return rc;
}

struct span
broker_id_span(uint64_t id, char *buf)
{
    struct span s = {buf, job_id_format(id, buf)};
    return s;
}
