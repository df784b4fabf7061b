/* The broker's state, shared by the files that make up the broker: the
 * lifecycle (job.c), placement (queue.c), reservations and timers
 * (reservation.c), the state machine (apply.c), records and durability
 * (commit.c), replay and snapshots (replay.c, snapshot.c) and the ops
 * (broker_*.c). Everything here: broker lock held. */
#ifndef CHANQ_DAEMON_BROKER_INTERNAL_H
#define CHANQ_DAEMON_BROKER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "daemon/broker.h"
#include "daemon/clock.h"
#include "daemon/job.h"
#include "daemon/jobtable.h"
#include "daemon/membudget.h"
#include "proto/encode.h"

struct durable;
struct journal;
struct jrec_key;
struct key_entry;
struct keytable;
struct schedules;

struct broker {
    pthread_mutex_t lock;      /* guards everything below and every job/queue field */
    bool serving;              /* false while replaying, and in a standby state:
                                * no channels, no timers, no counters */
    struct journal *journal;   /* NULL with --memory, and in a standby state */
    struct broker_config cfg;  /* settings */
    struct ctx *root;          /* cancelled at shutdown (borrowed; NULL in a standby) */
    struct queue **queues;     /* sorted by name */
    size_t nqueues, queues_cap;
    struct jobtable *jobs;     /* every job not yet evicted */
    struct keytable *keys;     /* idempotency keys (broker_keys.c) */
    uint64_t next_id;          /* next job id */
    size_t payload_bytes;      /* payload bytes held */
    struct membudget mem;      /* --max-memory: payloads + connection buffers */
    struct job_list finished;  /* final jobs kept for wait, oldest first */
    uint64_t total_done, total_cancelled, total_expired; /* final states reached */
    struct schedules *sched;   /* named schedules (daemon/schedule.h) */
    _Atomic size_t queues_allocated; /* listed, and deleted ones still held (queue.h) */
};

/* The broker a job belongs to, for callers that do not hold the lock yet
 * (timers, deferred answers). A send-side select may move a job to another
 * queue of the same broker under the lock meanwhile: the queue pointer is
 * read and written atomically (job_set_queue) so that this read is not a
 * data race. The queue read is alive: the job holds its queue, and the
 * queue a move leaves is held by the moving submit until it answers
 * (daemon/queue.h). */
static inline struct broker *
job_broker(struct job *j)
{
    return __atomic_load_n(&j->queue, __ATOMIC_RELAXED)->broker;
}
static inline void
job_set_queue(struct job *j, struct queue *q)
{
    __atomic_store_n(&j->queue, q, __ATOMIC_RELAXED);
}

/* A payload of n bytes is now held, or was freed. */
static inline void
broker_payload_held(struct broker *b, size_t n)
{
    b->payload_bytes += n;
    membudget_take(&b->mem, n);
}
static inline void
broker_payload_freed(struct broker *b, size_t n)
{
    b->payload_bytes -= n;
    membudget_give(&b->mem, n);
}

/* Index in b->queues (sorted by name) of the first queue named after name. */
size_t broker_queue_index_after(struct broker *b, const char *name, size_t len);
/* The queue named name[0..len), or NULL. */
struct queue *broker_find_queue(struct broker *b, const char *name, size_t len);
/* Finds or creates (with set, or the defaults when NULL) the queue; NULL
 * with err set when a limit or memory says no. */
struct queue *broker_get_queue(struct broker *b, const char *name, size_t len,
                               const struct queue_settings *set, struct proto_error *err);
/* The job with this id; NULL with err (not_found) when there is none. */
struct job *broker_lookup(struct broker *b, const struct span *id, struct proto_error *err);
/* The job id names if h holds it; NULL with err (not_found, cancelled,
 * not_reserved) otherwise. */
struct job *broker_reserved_by(struct broker *b, const struct span *id, struct holder *h,
                               struct proto_error *err);

/* Why some jobs of a request that names several were not done (ack and
 * nack "ids", fetch's "ack"): one entry per failed id, in request order.
 * Zero-initialised; the entries are allocated on the first failure. */
struct id_errors {
    struct proto_id_error *v; /* borrows the ids from the request */
    struct proto_error *why;  /* v[i].message is why[i].message */
    size_t n, cap;
};
void id_errors_free(struct id_errors *e);

/* broker_consume.c. A job h held left it (acked, nacked, revoked...):
 * its consume, if any, may push again. */
void consume_credit_back(struct holder *h);
/* h's consume, if any, ends: nothing is pushed to h after this. */
void consume_stop(struct holder *h);

/* Acks each of ids[0..n) that h holds (without a result), in order,
 * recording the changes in w; the others go to e (a failure to record
 * one goes there too). Returns how many were acked. */
size_t broker_ack_ids(struct broker *b, struct holder *h, const struct span *ids, size_t n,
                      struct durable *w, struct id_errors *e);
/* Takes j out of the job table; the caller gets the table's reference. */
struct job *broker_untrack(struct broker *b, struct job *j);
/* Resolves a request's "queue" or "queues" into qs (created on first
 * use), each with a reference the caller drops (queue_unref) when the
 * request is done with it; 0, or -1 with err set (then *nq is 0 and no
 * reference is held). */
int broker_resolve_queues(struct broker *b, const struct request *req, struct queue **qs,
                          size_t *nq, struct proto_error *err);
/* Drops the references of qs[0..n) (any thread). */
void broker_release_queues(struct queue **qs, size_t n);
/* Shuffles qs (fair order among several queues). */
void broker_shuffle(struct queue **qs, size_t n);
/* A queued job was found in q's channel (sent there by a send-side
 * select): records its move when its queue still says otherwise. */
void broker_landed_in(struct broker *b, struct queue *q, struct job *j);
/* queue_remove.c: what REMOVE records do (the state machine's part).
 * Deletes every job of q on index k (job_deleted); returns how many. */
size_t broker_purge(struct broker *b, struct queue *q, enum jobindex_kind k);
/* Deletes every job of q, closes q (its parked submitters, fetchers and
 * consumers are told `closed`) and takes it out of the broker's list (its
 * name is free), dropping the registry's reference: q is freed at once,
 * or when its last holder lets go (queue.h). */
size_t broker_delete_queue(struct broker *b, struct queue *q);
/* The capacity, ttr_ms and max_attempts a declare or configure names,
 * over set (the rest stays). */
void broker_request_settings(const struct request *req, struct queue_settings *set);
struct broker_op;
/* Ends a declare or configure (broker_admin.c): answers {"queue": its
 * stats with its name} once op->w's records are durable. */
int op_end_with_queue(struct broker_op *op, const struct queue *q);
/* Every job of q, all states (for the live op's `cancel` events). */
size_t broker_queue_jobs(const struct queue *q);

/* Every tracked job, sorted by id (malloc'd; *n of them), or NULL when out
 * of memory. */
struct job **broker_jobs_by_id(struct broker *b, size_t *n);

/* ---- idempotency keys (broker_keys.c) ---- */

/* Binds key[0..len) to j (a new job, from its SUBMIT or JOB record).
 * 0, or -1 when out of memory (logged: the job has no key). */
int broker_key_bind(struct broker *b, struct job *j, const char *key, size_t len);
/* j, which may have a key, became final: its key's window starts now. */
void broker_key_finished(struct broker *b, struct job *j);
/* j, which may have a key, was taken back: its key is free at once. */
void broker_key_dropped(struct broker *b, struct job *j);
/* The key's entry while it is bound (to a live job, or in its window), or
 * NULL. */
struct key_entry *broker_key_find(struct broker *b, const char *key, size_t len);
/* A snapshot's KEY record: a finished job's key and its window's end. */
int broker_key_apply(struct broker *b, const struct jrec_key *k);

#endif
