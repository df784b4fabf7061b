/* The broker: queues, jobs, reservations, retries, cancellation. Every op
 * of the protocol that touches jobs or queues is one broker_op_* function.
 * State lives behind one broker lock held only for short bookkeeping, never
 * across a park; waiting (for room, for jobs, for a result) is a goroutine
 * parked in chan_select over queue channels, the caller's ctx and a timer. */
#ifndef CHANQ_DAEMON_BROKER_H
#define CHANQ_DAEMON_BROKER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/queue.h"
#include "proto/buf.h"
#include "proto/err.h"
#include "proto/msg.h"

struct ctx;
struct job;
struct broker;

struct broker_config {
    struct queue_settings defaults; /* for queues made on first use */
    int64_t submit_wait_ms;         /* submit's wait_ms when absent */
    size_t max_queues;              /* more -> `limit` */
    size_t max_payload_bytes;       /* budget for payloads held; more -> `limit` */
    size_t max_finished;            /* final jobs kept for `wait`/`job` */
};

/* A connection as the broker sees it: the jobs it holds and where its
 * events go. Embedded in the connection; the broker owns the list fields.
 * send_event must be callable from any thread under the broker lock and
 * never park. */
struct holder {
    void (*send_event)(struct holder *h, const char *line, size_t len);
    struct job *reserved; /* jobs reserved by this connection (list head) */
    size_t nreserved;     /* length of that list */
};

/* One request's context: who asks and how long they may wait. */
struct answers;

struct session {
    struct holder *holder; /* the asking connection */
    struct ctx *ctx;       /* cancelled when the connection goes away */
    /* Called (without the broker lock) right before the request parks, so
     * the connection can send the answers it already has: a parked submit
     * must not hold back the answers to the requests before it. May be NULL. */
    void (*before_park)(struct session *s);
    /* Where an op puts an answer that waits for the journal, instead of
     * parking until its records are durable (see daemon/answers.h); NULL:
     * the op waits. */
    struct answers *answers;
    /* Bytes of the request line being handled, which its connection
     * counts in the memory budget until the answer: a submit's admission
     * leaves them out, since the payload it keeps replaces them. */
    size_t line_bytes;
};

/* Calls s->before_park if set. */
static inline void
session_before_park(struct session *s)
{
    if (s->before_park)
        s->before_park(s);
}

/* A broker with these settings; `root` (borrowed, outlives the broker) is
 * cancelled at shutdown and ends the broker's own goroutines.
 * Returns NULL when out of memory. Any thread. */
struct broker *broker_new(const struct broker_config *cfg, struct ctx *root);
/* The daemon's memory budget, whose payload part the broker counts; the
 * connections count their buffers in it too. Any thread. */
struct membudget *broker_membudget(struct broker *b);
/* SIGHUP: replaces the settings; ops that start after it use them (queues
 * that exist keep their capacity). Any thread. */
void broker_set_config(struct broker *b, const struct broker_config *cfg);
/* Frees every queue and job. No op may run any more. */
void broker_free(struct broker *b);

/* The ops. Each validates against the broker's state, then either appends
 * its success line (proto encoders, rid echoed) to out and returns 0, or
 * fills *err and returns -1 with nothing changed. Goroutine only; submit,
 * fetch and wait may park (bounded by their timeouts and s->ctx). */
typedef int broker_op_fn(struct broker *b, struct session *s, const struct request *req,
                         struct buf *out, struct proto_error *err);
broker_op_fn broker_op_declare, broker_op_submit, broker_op_fetch, broker_op_ack,
    broker_op_nack, broker_op_release, broker_op_touch, broker_op_cancel, broker_op_wait,
    broker_op_job, broker_op_close, broker_op_pause, broker_op_resume, broker_op_kick,
    broker_op_queues, broker_op_stats;

/* Gives back every job h holds (they go back to their queues at once, the
 * interrupted delivery counted) and detaches h: no event reaches it after
 * this returns. Any goroutine; call before freeing the connection. */
void broker_release_holder(struct broker *b, struct holder *h);
/* True while h holds a reserved job. Any thread. */
bool broker_holder_busy(struct broker *b, struct holder *h);

/* Durability (broker_journal.c). The broker records every state change in
 * j (borrowed; NULL = none) and answers only once they are durable. Call
 * before serving. */
struct journal;
struct journal_rec;
void broker_set_journal(struct broker *b, struct journal *j);
/* journal_replay's apply callback (arg is the broker), then the step that
 * puts the replayed jobs in their queues and arms their timers. Main
 * thread, with the scheduler started, before serving. */
int broker_replay_apply(void *arg, const void *rec, size_t len);
void broker_replay_finish(struct broker *b);
/* The replayed state as text (malloc'd; NULL when out of memory): every
 * queue with its settings and its queued and dead jobs in order, every job
 * by id with its fields, so that two replays can be compared. Only between
 * replay and broker_replay_finish (the queued order lives in the replay
 * list then). Any thread. */
char *broker_replay_dump(struct broker *b);
/* journal_keep_batch_fn: a record is live while its job or queue is, and
 * journal_compact_window_fn, which holds that answer steady for a job
 * forgotten while a compaction runs (broker_journal.c says why). */
void broker_keep_batch(void *arg, const struct journal_rec *recs, size_t n, bool *keep);
void broker_compact_window(void *arg, bool open);

/* The state digest: SHA-256, as 64 hex digits and a NUL, of the durable
 * state in a canonical order: every queue with its settings and dead list,
 * every tracked job by id with its state, attempt, payload, timers, parent,
 * error and result, and the kept results in order. Equal states give equal
 * digests, whatever their history. 0, or -1 when out of memory. Any
 * thread; O(jobs) under the broker lock, so only on request. */
#define BROKER_DIGEST_HEX 65
int broker_state_digest(struct broker *b, char hex[BROKER_DIGEST_HEX]);

/* Server-wide figures for the stats op: jobs by state and totals
 * (new reference). */
json_t *broker_jobs_json(struct broker *b);
/* Every queue's stats object keyed by name, each with its run-time
 * histogram "run_hist" (new reference): the /stats document's queues. */
json_t *broker_queues_json(struct broker *b);

#endif
