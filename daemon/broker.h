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
    int64_t key_window_ms;          /* an idempotency key stays bound this long after its
                                     * job finished */
    size_t max_keys_kept;           /* keys of finished jobs kept at most (the oldest
                                     * windows end early past it) */
    size_t max_schedules;           /* named schedules; more -> `limit` */
};

struct consumer;
struct chan;

/* A connection as the broker sees it: the jobs it holds, its consume and
 * where its events go. Embedded in the connection (zeroed, then the
 * callbacks set); the broker owns the other fields. The callbacks must be
 * callable from any thread under the broker lock and never park. */
struct holder {
    void (*send_event)(struct holder *h, const char *line, size_t len);
    /* Pushed jobs wait while the connection's unsent output is over its
     * share: returns a new reference to a channel that receives a value
     * once the output drained below half of it, or NULL while there is
     * room. NULL: no limit but the consume's prefetch. */
    struct chan *(*output_room)(struct holder *h);
    struct job_list reserved;   /* jobs reserved by this connection */
    struct client_info *info;   /* who it is, for operators (daemon/clientreg.h); may be NULL */
    struct consumer *consumer;  /* its consume (broker_consume.c), or NULL */
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
 * cancelled at shutdown and ends the broker's own goroutines. It does not
 * serve until broker_start (a journal is replayed into it first).
 * Returns NULL when out of memory. Any thread. */
struct broker *broker_new(const struct broker_config *cfg, struct ctx *root);
/* A standby state: records applied into it (broker_replay_apply) build
 * the state they describe, which never serves (no channels, timers or
 * goroutines); broker_snapshot_write writes it out. What a compaction (and
 * a replica) keeps. NULL when out of memory. Any thread. */
struct broker *broker_new_standby(const struct broker_config *cfg);
/* The daemon's memory budget, whose payload part the broker counts; the
 * connections count their buffers in it too. Any thread. */
struct membudget *broker_membudget(struct broker *b);
/* SIGHUP: replaces the settings; ops that start after it use them (queues
 * that exist keep their capacity). Any thread. */
void broker_set_config(struct broker *b, const struct broker_config *cfg);
/* Frees every queue and job. No op may run any more. */
void broker_free(struct broker *b);
/* Queues allocated now: the listed ones, plus deleted ones that a request,
 * a job or a timer still holds (freed when it lets go). Any thread. */
size_t broker_queues_allocated(struct broker *b);

/* The ops. Each validates against the broker's state, then either appends
 * its success line (proto encoders, rid echoed) to out and returns 0, or
 * fills *err and returns -1 with nothing changed. Goroutine only; submit,
 * fetch and wait may park (bounded by their timeouts and s->ctx). */
typedef int broker_op_fn(struct broker *b, struct session *s, const struct request *req,
                         struct buf *out, struct proto_error *err);
broker_op_fn broker_op_declare, broker_op_submit, broker_op_fetch, broker_op_ack,
    broker_op_nack, broker_op_release, broker_op_touch, broker_op_cancel, broker_op_wait,
    broker_op_job, broker_op_close, broker_op_pause, broker_op_resume, broker_op_kick,
    broker_op_queues, broker_op_stats, broker_op_consume, broker_op_cancel_consume;
/* The operator ops (broker_operator.c). */
broker_op_fn broker_op_list, broker_op_retry, broker_op_delete, broker_op_purge,
    broker_op_queue_delete, broker_op_configure;

/* Ends h's consume, gives back every job h holds (they go back to their
 * queues at once, the interrupted delivery counted) and detaches h: no
 * event reaches it after this returns. Any goroutine; call before freeing
 * the connection. */
void broker_release_holder(struct broker *b, struct holder *h);
/* True while h holds a reserved job or consumes. Any thread. */
bool broker_holder_busy(struct broker *b, struct holder *h);

/* Durability. The broker records every state change in j (borrowed;
 * NULL = none) and answers only once they are durable. Call before
 * broker_start. */
struct journal;
void broker_set_journal(struct broker *b, struct journal *j);
/* journal_apply_fn: decodes one record and applies it (daemon/apply.h).
 * -EBADMSG for an undecodable record, -ENOMEM. Before broker_start, or on
 * a standby. Any thread. */
int broker_replay_apply(void *arg, const void *rec, size_t len);
/* From a replayed state to a serving one: queued jobs go into their
 * channels in order, jobs reserved when the log ended go back to their
 * queues (the delivery counted; recorded), and the delay, ttr and deadline
 * timers start. Main thread, scheduler started, before serving. */
void broker_start(struct broker *b);
/* Writes a standby's state as the records that rebuild it (every queue,
 * every job, the order of every list) through emit; 0 or a negative
 * errno (emit's, or -EINVAL for a broker that serves). Any thread. */
int broker_snapshot_write(struct broker *b, int (*emit)(void *arg, const void *rec, size_t len),
                          void *arg);
/* The journal's snapshotter (daemon/journal/journal.h) for a live broker
 * (its arg): compaction replays the old records into a standby and writes
 * it out. */
extern const struct journal_snapshotter broker_snapshotter;

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
