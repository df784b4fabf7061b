/* A connection's answers that wait for the journal (see answers.h). */
#include "chanq_config.h"

#include "daemon/answers.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/log.h"
#include "proto/encode.h"

/* One entry: bytes ready to go (no waits), or an answer held until its
 * waits are settled. */
struct answer {
    struct answer *next;
    struct buf bytes;
    struct journal_wait **waits; /* NULL for ready bytes */
    size_t nwaits;
    char *rid;                   /* copy of the request id, for the error answer */
    size_t rid_len;
    answer_done_fn *done;
    void *arg;
};

struct answers {
    struct answer *head, *tail;
};

struct answers *
answers_new(void)
{
    return calloc(1, sizeof(struct answers));
}

void
answers_free(struct answers *a)
{
    if (!a)
        return;
    if (a->head)
        log_error("answers: freed with answers still waiting for the journal");
    free(a);
}

static void
answer_free(struct answer *e)
{
    buf_clear(&e->bytes);
    free(e->waits);
    free(e->rid);
    free(e);
}

static void
link_tail(struct answers *a, struct answer *e)
{
    if (a->tail)
        a->tail->next = e;
    else
        a->head = e;
    a->tail = e;
}

/* Appends len bytes as ready ones: to the last entry when it is ready bytes
 * too. Returns 0 or -ENOMEM. */
static int
push_ready(struct answers *a, const char *data, size_t len)
{
    if (len == 0)
        return 0;
    if (a->tail && !a->tail->waits)
        return buf_append(&a->tail->bytes, data, len) < 0 ? -ENOMEM : 0;
    struct answer *e = calloc(1, sizeof *e);
    if (!e)
        return -ENOMEM;
    buf_init(&e->bytes);
    if (buf_append(&e->bytes, data, len) < 0) {
        free(e);
        return -ENOMEM;
    }
    link_tail(a, e);
    return 0;
}

int
answers_defer(struct answers *a, struct buf *out, size_t mark, struct journal_wait **waits,
              size_t n, struct span rid, answer_done_fn *done, void *arg)
{
    struct answer *e = calloc(1, sizeof *e);
    if (!e)
        return -ENOMEM;
    buf_init(&e->bytes);
    e->waits = malloc(n * sizeof *waits);
    e->rid = rid.len ? malloc(rid.len) : NULL;
    if (!e->waits || (rid.len && !e->rid) ||
        buf_append(&e->bytes, out->data + mark, out->len - mark) < 0)
        goto nomem;
    /* The answers before this one go first, ready. */
    if (push_ready(a, out->data, mark) < 0)
        goto nomem;
    memcpy(e->waits, waits, n * sizeof *waits);
    e->nwaits = n;
    if (rid.len)
        memcpy(e->rid, rid.ptr, rid.len);
    e->rid_len = rid.len;
    e->done = done;
    e->arg = arg;
    link_tail(a, e);
    buf_reset(out);
    return 0;

nomem:
    answer_free(e);
    return -ENOMEM;
}

void
answers_push(struct answers *a, struct buf *fresh, struct buf *ready)
{
    if (fresh->len == 0)
        return;
    if (a->head && push_ready(a, fresh->data, fresh->len) == 0) {
        buf_reset(fresh);
        return;
    }
    /* Nothing pending, or no memory to queue them: (wait for the ones
     * ahead, then) they are ready. */
    answers_settle(a, ready, true);
    if (buf_append(ready, fresh->data, fresh->len) < 0)
        log_error("answers: out of memory sending answers; %zu bytes lost", fresh->len);
    buf_reset(fresh);
}

void
answers_durable_error(int rc, struct proto_error *err)
{
    if (rc == -ECANCELED || rc == -ETIMEDOUT)
        proto_error_set(err, PROTO_SHUTTING_DOWN, "stopped before the change was durable");
    else
        proto_error_set(err, PROTO_INTERNAL, "journal write failed: %s", strerror(-rc));
    log_error_kv(LOG_FIELDS(LOG_STR("error", strerror(-rc))),
                 "journal: a change was not made durable: %s", strerror(-rc));
}

/* Waits for e's batches (settled already unless block), then emits its
 * answer or the error answer. */
static void
settle_one(struct answer *e, struct buf *out)
{
    int rc = journal_wait_all(e->waits, e->nwaits, NULL);
    if (rc == 0) {
        if (buf_append(out, e->bytes.data, e->bytes.len) < 0)
            log_error("answers: out of memory sending a durable answer");
    } else {
        struct proto_error err = {PROTO_OK, ""};
        answers_durable_error(rc, &err);
        if (encode_proto_error(out, (struct span){e->rid, e->rid_len}, &err) < 0)
            log_error("answers: out of memory sending an error answer");
    }
    if (e->done)
        e->done(e->arg, rc);
}

void
answers_settle(struct answers *a, struct buf *out, bool block)
{
    struct answer *e;
    while ((e = a->head)) {
        if (e->waits) {
            /* Batches settle in order: the last one settled means all did. */
            if (!block && !chan_is_closed(journal_wait_chan(e->waits[e->nwaits - 1])))
                return;
            settle_one(e, out);
        } else if (buf_append(out, e->bytes.data, e->bytes.len) < 0) {
            log_error("answers: out of memory sending %zu bytes of answers", e->bytes.len);
        }
        a->head = e->next;
        if (!a->head)
            a->tail = NULL;
        answer_free(e);
    }
}

struct chan *
answers_wait_chan(const struct answers *a)
{
    const struct answer *e = a->head;
    while (e && !e->waits)
        e = e->next; /* ready bytes (before the next settle) */
    return e ? journal_wait_chan(e->waits[e->nwaits - 1]) : NULL;
}
