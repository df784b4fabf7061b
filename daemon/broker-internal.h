/* Broker internals shared by broker.c (registry, submit, fetch),
 * broker_jobs.c (ack, nack, release, touch, cancel, wait, job, timers) and
 * broker_admin.c (declare, close, pause, resume, kick, stats). */
#ifndef CHANQ_DAEMON_BROKER_INTERNAL_H
#define CHANQ_DAEMON_BROKER_INTERNAL_H

#include <pthread.h>

#include "daemon/answers.h"
#include "daemon/broker.h"
#include "daemon/job.h"
#include "daemon/jobtable.h"
#include "daemon/membudget.h"

/* j->in_channel: where a QUEUED job's pointer is, for tombstone counting. */
enum {
    CHAN_OUT = 0,     /* not in the channel (or taken out by a fetcher) */
    CHAN_SENDING = 1, /* a submitter or requeuer is sending it */
    CHAN_IN = 2,      /* sitting in the channel */
};

struct journal;
struct journal_wait;

/* The journal records one op waits for before answering (usually one). */
struct bj_waits {
    struct journal_wait **v;           /* inline_v or a heap array */
    struct journal_wait *inline_v[4];  /* room for the common case */
    size_t n, cap;
    int rc;                            /* a record that could not even be queued */
};

struct broker {
    pthread_mutex_t lock;      /* guards everything below and every job/queue field */
    struct journal *journal;   /* NULL with --memory */
    struct job *replay_head, *replay_tail; /* queued jobs during a replay, in order */
    struct broker_config cfg;  /* settings */
    struct ctx *root;          /* cancelled at shutdown (borrowed) */
    struct queue **queues;     /* sorted by name */
    size_t nqueues, queues_cap;
    struct jobtable *jobs;     /* every job not yet evicted */
    uint64_t next_id;          /* next job id */
    size_t payload_bytes;      /* payload bytes held */
    struct membudget mem;      /* --max-memory: payloads + connection buffers */
    struct job *fin_head, *fin_tail; /* final jobs kept for wait, oldest first */
    size_t nfinished;          /* length of that list */
    uint64_t total_done, total_cancelled, total_expired; /* final states reached */
    /* While a journal compaction runs: the jobs forgotten since it began,
     * which it must still treat as live (broker_keep_batch). NULL between
     * compactions. */
    struct idset *compact_forgotten;
    bool compact_oom; /* that set could not grow: keep every record */
};

/* The broker a job belongs to, for callers that do not hold the lock yet
 * (timers, deferred answers). A send-side select may move a job to another
 * queue of the same broker under the lock meanwhile: the queue pointer is
 * read and written atomically (job_set_queue) so that this read is not a
 * data race. */
static inline struct broker *
job_broker(struct job *j)
{
    return __atomic_load_n(&j->queue, __ATOMIC_RELAXED)->broker;
}
/* Moves j to q (same broker). Lock held. */
static inline void
job_set_queue(struct job *j, struct queue *q)
{
    __atomic_store_n(&j->queue, q, __ATOMIC_RELAXED);
}

/* A payload of n bytes is now held, or was freed. Lock held. */
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

/* Registry (broker.c). Lock held. */
struct queue *broker_find_queue(struct broker *b, const char *name, size_t len);
/* Index in b->queues (sorted by name) of the first queue named after name. */
size_t broker_queue_index_after(struct broker *b, const char *name, size_t len);
/* Finds or creates (with the defaults) the queue; NULL with err set when a
 * limit or memory says no. */
struct queue *broker_get_queue(struct broker *b, const char *name, size_t len,
                               struct proto_error *err);

/* Job lifecycle helpers. Lock held unless said otherwise. */
struct job *broker_lookup(struct broker *b, const struct span *id, struct proto_error *err);
/* Puts a QUEUED job into its queue's channel: at once when there is room,
 * else from a goroutine that parks until there is (capacity only counts
 * queued jobs, so a returning job waits its turn like a submit). */
void broker_enqueue(struct broker *b, struct job *j);
/* The submit record of a live job did not reach the disk: takes the job
 * back from wherever it got meanwhile (queued, delayed, or reserved: the
 * holder gets a cancel event) and forgets it. Lock held. */
void broker_withdraw(struct broker *b, struct job *j);
/* A reserved job goes back to the tail of its queue with this delivery
 * not counted (release; a fetch whose connection is closing), recorded in
 * the journal (w may be NULL: nobody waits). Lock held. */
void broker_give_back_uncounted(struct broker *b, struct job *j, struct bj_waits *w);
/* Takes j out of its holder's reservation list and stops its ttr timer. */
void broker_unreserve(struct broker *b, struct job *j);
/* Moves j to a final state: frees the payload, wakes waiters, keeps it for
 * `wait` within the retention bound. */
void broker_finalize(struct broker *b, struct job *j, enum job_state final);
/* Takes j out of the job table (the caller gets the table's reference),
 * telling a running compaction that j is gone. */
struct job *broker_untrack(struct broker *b, struct job *j);
/* Arms j->timer (allocating it) to fire in delay_ms: a DELAYED job becomes
 * queued, a RESERVED one is revoked if its ttr ran out. The armed timer
 * holds a job reference until it fires or is stopped. */
void broker_arm_timer(struct job *j, int64_t delay_ms);
void broker_stop_timer(struct job *j);
/* After a fetch took j out of the channel: true when it is deliverable
 * (QUEUED); otherwise drops the channel's reference bookkeeping. */
bool broker_took_from_channel(struct broker *b, struct queue *q, struct job *j);
/* Reserves a QUEUED job for h (attempt counted, ttr armed). */
void broker_reserve(struct broker *b, struct job *j, struct holder *h);
/* After a queue lost a queued job or its last sender: closes `drained`
 * once it is closed and empty. */
void broker_check_drained(struct queue *q);
/* Arms the job's deadline timer (broker_jobs.c). */
void broker_arm_deadline(struct job *j, int64_t delay_ms);
/* Removes a job that never became real (a refused submit) from the table. */
void broker_forget_job(struct broker *b, struct job *j);

/* Journal records (broker_journal.c). Lock held. A NULL waits means nobody
 * waits for the record's durability. */
void bj_waits_init(struct bj_waits *w);
int bj_waits_add(struct bj_waits *w, struct journal_wait *jw);
/* Lock NOT held: parks until every record is durable. 0, or a negative
 * errno with err filled (when not NULL). */
int bj_waits_finish(struct bj_waits *w, struct ctx *ctx, struct proto_error *err);
/* Hands w's waits and the answer out[mark..] over to s->answers (see
 * answers_defer); w is left empty. -1 when there is nothing to hand over or
 * no way to (no s->answers, a record that was not queued, no memory): the
 * caller then finishes w itself. */
int bj_waits_defer(struct bj_waits *w, struct session *s, struct span rid, struct buf *out,
                   size_t mark, answer_done_fn *done, void *arg);
void bj_log_submit(struct broker *b, struct job *j, int64_t delay_ms, struct bj_waits *w);
void bj_log_reserve(struct broker *b, struct job *j);
void bj_log_state(struct broker *b, struct job *j, struct bj_waits *w);
void bj_log_final(struct broker *b, struct job *j, struct bj_waits *w);
void bj_log_drop(struct broker *b, uint64_t id, struct bj_waits *w);
void bj_log_queue(struct broker *b, const struct queue *q, struct bj_waits *w);

/* Ends an op: releases the lock and turns rc into the op's result (an
 * encoding failure becomes `internal`). */
int broker_answer(struct broker *b, int rc, struct proto_error *err);
/* broker_answer for a change recorded in w: the `ok` already in out (from
 * mark on) stands only once the records are durable; otherwise it is taken
 * back and err says why. With s->answers the answer is handed over to wait
 * there instead (the op returns at once, see daemon/answers.h). */
int broker_answer_durable(struct broker *b, struct session *s, struct span rid, int rc,
                          struct bj_waits *w, struct buf *out, size_t mark,
                          struct proto_error *err);

/* Writes a job id as a span into buf (>= 21 bytes). */
struct span broker_id_span(uint64_t id, char *buf);
int64_t broker_wall_ms(void);

#endif
