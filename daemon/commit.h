/* Changing the broker's state: every change is a journal record, applied
 * to the state (daemon/apply.h) and queued in the journal under the broker
 * lock, so that the log's order is the order of the changes; an op's `ok`
 * leaves only once its records are durable, waited for after the lock is
 * released. Also the context an op carries through its steps. */
#ifndef CHANQ_DAEMON_COMMIT_H
#define CHANQ_DAEMON_COMMIT_H

#include "daemon/answers.h"
#include "daemon/apply.h"
#include "daemon/broker-internal.h"
#include "daemon/jrec.h"

struct journal_wait;

/* The journal records one op waits for before answering (usually one). */
struct durable {
    struct journal_wait **v;          /* inline_v or a heap array */
    struct journal_wait *inline_v[4]; /* room for the common case */
    size_t n, cap;
    int rc; /* a record that could not even be queued: -EIO */
};

/* One request on its way through the broker. */
struct broker_op {
    struct broker *b;
    struct session *s;
    const struct request *req;
    struct buf *out;
    struct proto_error *err;
    struct durable w; /* the records its answer waits for */
};

/* Fills op and takes the broker lock. */
void op_begin(struct broker_op *op, struct broker *b, struct session *s, const struct request *req,
              struct buf *out, struct proto_error *err);
/* Ends an op: releases the lock and turns rc into the op's result (an
 * encoding failure becomes `internal`). */
int op_end(struct broker_op *op, int rc);
/* op_end for a change recorded in op->w: the `ok` already in out (from
 * mark on) stands only once the records are durable; otherwise it is taken
 * back and err says why. With s->answers the answer is handed over to wait
 * there instead (the op returns at once, see daemon/answers.h). */
int op_end_durable(struct broker_op *op, int rc, size_t mark);

/* Applies r to b's state, then queues it in the journal (when there is
 * one); w (may be NULL: nobody waits) collects its wait, or w->rc = -EIO
 * when it could not be queued (the change stands in memory; the op then
 * answers with the error). Returns 0, or -1 when the state machine refused
 * r (nothing changed, nothing logged). Lock held. */
int commit(struct broker *b, const struct jrec *r, const struct apply_how *how,
           struct durable *w);

/* The records of the live transitions, built from the job (lock held).
 * commit_state: to st.state with st.attempt (st.due_ms when delayed) and
 * st.error (NULL: the job's own); the id is j's. */
int commit_state(struct broker *b, struct job *j, struct jrec_state st, struct durable *w);
int commit_final(struct broker *b, struct job *j, enum jrec_job_state to,
                 const struct span *result, struct durable *w);
int commit_drop(struct broker *b, struct job *j, struct durable *w);
/* The same with other settings than q's (configure: the record is what
 * changes them). */
int commit_queue_settings(struct broker *b, const struct queue *q,
                          const struct queue_settings *set, bool paused, bool closed,
                          struct durable *w);
int commit_queue(struct broker *b, const struct queue *q, bool paused, bool closed,
                 struct durable *w);

void durable_init(struct durable *w);
/* Lock NOT held: parks until every record is durable. 0, or a negative
 * errno with err filled (when not NULL). */
int durable_finish(struct durable *w, struct proto_error *err);
/* Hands op->w's waits and the answer op->out[mark..] over to the
 * connection's answers (see answers_defer; done(arg, rc) runs once they
 * settle; may be NULL); op->w is left empty. -1 when there is nothing to
 * hand over or no way to (no answers queue, a record that was not queued,
 * no memory): the caller then finishes op->w itself. */
int durable_defer(struct broker_op *op, size_t mark, answer_done_fn *done, void *arg);

/* Writes a job id as a span into buf (>= 21 bytes). */
struct span broker_id_span(uint64_t id, char *buf);

#endif
