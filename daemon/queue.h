/* One queue: a bounded channel of job pointers plus its bookkeeping
 * (delayed/reserved/dead counts, the dead list, counters) and the broadcast
 * channels that wake parked submitters and fetchers when its state changes;
 * and the placement of queued jobs: into the channel (at once, or from a
 * goroutine that waits for room), or, while the broker is not serving (a
 * replay, a standby state), onto an ordered list that becomes the
 * channel's content when it starts. Every field is guarded by the broker
 * lock (but refs); the channels do their own locking. Every function: lock
 * held, unless it says otherwise.
 *
 * Lifetime. A queue is reference counted (queue_ref/queue_unref); the last
 * reference frees it, so a deleted queue goes as soon as nothing can touch
 * it any more, and a client looping declare+delete holds no memory. Who
 * holds one, taken and dropped where said:
 *  - the broker's registry, while the queue is listed: queue_new's
 *    reference, dropped by broker_delete_queue (or broker_free);
 *  - every job, on j->queue: taken by job_new and job_moved, dropped when
 *    the job is freed (job_unref, any thread). A timer or a deferred answer
 *    that holds a job can so always read j->queue->broker;
 *  - a request that names queues: what broker_resolve_queues gives (a
 *    submit's plan, a fetch's or a consume's pick), dropped when the
 *    request ends or the consume changes its queues;
 *  - a parked delivery, for its park (deliver_park: the pick it parks on
 *    may change meanwhile), and the queue it hands a job from;
 *  - a requeue goroutine (queue_place's wait for room), until its send ended;
 *  - the armed rate timer (queue_limits.c), until it fired or was stopped;
 *  - a queue_snap, until queue_snap_release (a `queues` page is encoded
 *    after the lock is released);
 *  - the queue_delete op, until its REMOVE record (which names the queue
 *    with q->name) is logged: applying it drops the registry's.
 * Refs are atomic: a job's last reference, hence possibly the queue's, may
 * go on any thread without the lock; by then nothing else can reach the
 * queue, so queue_free needs no lock. A listed queue never reaches zero. */
#ifndef CHANQ_DAEMON_QUEUE_H
#define CHANQ_DAEMON_QUEUE_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/job.h"
#include "daemon/jobindex.h"

struct broker;
struct chan;

/* j->in_channel: where a QUEUED job's pointer is, for tombstone counting. */
enum placement {
    CHAN_OUT = 0,     /* not in the channel (or taken out by a fetcher) */
    CHAN_SENDING = 1, /* a submitter or requeuer is sending it */
    CHAN_IN = 2,      /* sitting in the channel */
    CHAN_STANDBY = 3, /* on the standby list (the broker is not serving) */
};

/* What `declare` sets and what new jobs inherit. */
struct queue_settings {
    int64_t capacity;     /* buffered jobs; 0 = rendezvous */
    int64_t ttr_ms;       /* default reservation time */
    int64_t max_attempts; /* default deliveries before dead */
    /* Limits on delivery (queue_limits.c); 0 = none. */
    int64_t concurrency;  /* jobs of the queue reserved at once */
    int64_t rate;         /* deliveries per rate_per_ms ... */
    int64_t rate_per_ms;  /* ... (set whenever rate is) */
    int64_t burst;        /* the rate's token bucket size (set whenever rate is) */
};

/* Run time of acked jobs (reserve to ack), Prometheus-style: bucket i
 * counts the runs of at most queue_run_le_ms[i], the last one the longer
 * runs. Since the queue was created in this process. */
#define QUEUE_RUN_BUCKETS 15
extern const int64_t queue_run_le_ms[QUEUE_RUN_BUCKETS];
struct queue_run_hist {
    uint64_t counts[QUEUE_RUN_BUCKETS + 1]; /* per bucket, not cumulative */
    uint64_t sum_ms;                        /* total run time */
};

/* Totals since the queue was created (the stats op's counters). */
struct queue_counters {
    uint64_t submitted, delivered, acked, nacked, expired, cancelled, rejected_full;
    uint64_t blocked_ms; /* time submitters spent waiting for room */
};

struct queue {
    struct broker *broker;        /* owner: timer callbacks find the lock through it */
    char *name;                   /* owned, NUL-terminated */
    size_t name_len;              /* bytes of name */
    struct queue_settings set;    /* capacity and job defaults */
    struct chan *jobs;            /* struct job * elements; capacity = set.capacity;
                                   * NULL until the broker serves (queue_start) */
    struct job_list standby;      /* while not serving: queued jobs, and reserved ones
                                   * without a holder, in the order of their last records */
    struct chan *closing;         /* closed by `close`: wakes parked submitters */
    struct chan *drained;         /* closed once closed and empty: fetchers answer `closed` */
    struct chan *changed;         /* closed and replaced on pause/resume: fetchers re-plan */
    bool paused;                  /* delivers nothing while set */
    bool closed;                  /* submits fail with `closed` */
    bool drained_sent;            /* `drained` has been closed */
    size_t tombstones;            /* jobs that left QUEUED while a fetcher held their
                                   * pointer, just received from `jobs` */
    size_t inflight_sends;        /* submits/requeues between their decision and their send's end */
    size_t reserved, delayed;     /* jobs in those states */
    struct job_list dead;         /* dead jobs, oldest first (kick order) */
    struct job_list *lanes;       /* priority mode (queue_take): per level, the QUEUED jobs
                                   * in the channel, in the order they got there; NULL
                                   * until a job with a priority above 0 is placed */
    size_t waiting_submitters;    /* submits parked for room */
    size_t waiting_fetchers;      /* fetches parked on this queue */
    struct queue_counters count;  /* totals */
    struct queue_run_hist runs;   /* run time of acked jobs */
    /* Delivery limits at run time (queue_limits.c); unused when set has none. */
    size_t armed;                 /* parked deliveries whose select receives from `jobs` */
    size_t starved;               /* parked deliveries a limit keeps off `jobs` */
    int64_t tokens;               /* rate bucket, in 1/rate_per_ms tokens */
    int64_t refill_ms;            /* monotonic ms the bucket was last filled up to */
    struct chan *gate;            /* wakes starved deliveries, one per freed slot or token */
    struct timer *rate_timer;     /* fires when the next token is due while some starve */
    struct jobindex ix[JOBINDEX_N]; /* its jobs of each state by id (`list`) */
    bool deleted;                 /* queue_delete took it out of the broker's list */
    _Atomic size_t refs;          /* references (see the top of this file) */
};

/* A new, empty queue of broker b with these settings, with one reference
 * (the registry's); its job channel is made now when b serves, else by
 * queue_start. NULL when out of memory. */
struct queue *queue_new(struct broker *b, const char *name, size_t name_len,
                        const struct queue_settings *set);
/* Takes a reference. Any thread, but the caller must already hold one, or
 * the lock while q is listed. */
void queue_ref(struct queue *q);
/* Drops a reference; the last one frees q and its channels, dropping the
 * channel's job references. Any thread, lock held or not. */
void queue_unref(struct queue *q);
/* The registry lets go of q (queue_delete, broker_free): the job
 * references its channel holds are dropped (jobs hold q: a cycle
 * otherwise), its rate timer is stopped, and the registry's reference is
 * dropped. Lock held (or the broker is being freed). */
void queue_retire(struct queue *q);
/* The broker starts serving: makes the channel (the caller then moves the
 * standby list into it, queue_standby_pop). 0 or -ENOMEM. */
int queue_start(struct queue *q);
/* Takes the first job off the standby list (NULL when empty). The list
 * holds the queued jobs of a state that does not serve, and the jobs
 * reserved without a holder (a replay's orphans), in the order of their
 * last records: the order they take when the broker starts. */
struct job *queue_standby_pop(struct queue *q);
/* Replaces the settings (declare's, configure's, a replayed queue record);
 * a new capacity applies to the live channel at once (chan_set_cap).
 * 0, or -1 when out of memory (nothing changed). */
int queue_configure(struct queue *q, const struct queue_settings *set);

/* Queued jobs: buffered pointers that are not tombstones, or the standby list. */
size_t queue_depth(const struct queue *q);

/* ---- placement of QUEUED jobs ---- */

/* Puts a QUEUED job at the tail: the standby list, or the channel at once
 * when there is room, else from a goroutine that parks until there is
 * (capacity only counts queued jobs, so a returning job waits its turn
 * like a submit). */
void queue_place(struct queue *q, struct job *j);
/* A QUEUED job leaves that state: off the standby list, or its pointer
 * stays in the channel as a tombstone until a fetch skips it. */
void queue_unplace(struct queue *q, struct job *j);
/* A sender (submit) is about to send j, which carries the channel's
 * reference, into q; queue_send_finished when the send ended (sent: it got
 * in). */
void queue_send_begin(struct queue *q, struct job *j);
void queue_send_finished(struct queue *q, struct job *j, bool sent);
/* After a fetch took x out of q's channel (with the channel's reference):
 * the job to deliver, carrying a reference, or NULL when there is none
 * (a tombstone: the reference is dropped). Without priorities that is x
 * when it is QUEUED. In priority mode the channel's entries are tickets,
 * one per queued job or tombstone: whichever entry a fetcher receives, it
 * takes the oldest job of the highest level (x itself only when it is on
 * its way in and no older job of its level or a higher one waits), so
 * capacity, fairness across fetchers and the select stay the channel's. */
struct job *queue_take(struct queue *q, struct job *x);
/* After q lost a queued job or its last sender: closes `drained` once it
 * is closed and empty. */
void queue_check_drained(struct queue *q);

/* Replaces `changed` with a fresh channel and closes the old one, waking
 * every fetcher parked on it. Returns 0 or -ENOMEM (nothing changed). */
int queue_signal_change(struct queue *q);

/* ---- delivery limits: concurrency and rate (queue_limits.c) ---- */

/* True when q has a concurrency or rate limit. */
bool queue_limited(const struct queue *q);
/* How many more deliveries may start on q now, besides the parked ones
 * already receiving from it (SIZE_MAX: no limit). Refills the bucket. */
size_t queue_room(struct queue *q);
/* Whole rate tokens available now (0 without a rate limit). */
int64_t queue_tokens(const struct queue *q);
/* q delivered a job: one rate token spent. */
void queue_spent(struct queue *q);
/* A slot or a token may have come free (a reserved job left, a parked
 * delivery stopped receiving, a token is due): wakes as many starved
 * deliveries as there is room, longest waiting first. */
void queue_room_freed(struct queue *q);
/* A parked delivery is being kept off q by a limit: makes sure it is woken
 * when the rate gives the next token. */
void queue_starving(struct queue *q);
/* The limits' share of a queue: set up or changed (a full bucket), its
 * rate timer stopped (the caller holds a reference of its own), freed. */
int queue_limits_init(struct queue *q);
void queue_limits_stop(struct queue *q);
void queue_limits_free(struct queue *q);

/* Counts an acked job that ran ms milliseconds (reserve to ack). */
void queue_record_run(struct queue *q, int64_t ms);

/* The stats object of the protocol (new reference, or NULL). */
json_t *queue_stats_json(const struct queue *q);

/* A queue's stats copied out (under the broker lock), to be turned into
 * JSON after the lock is released: a `queues` answer must not hold the
 * lock while it builds thousands of objects. name is the queue's own: the
 * snapshot holds a reference until queue_snap_release (any thread). */
struct queue_snap {
    struct queue *q;
    const char *name;
    struct queue_settings set;
    size_t depth, reserved, delayed, dead, waiting_submitters, waiting_fetchers;
    int64_t tokens; /* whole rate tokens available (rate limited queues) */
    bool paused, closed;
    struct queue_counters count;
    int64_t oldest_age_ms;
};
void queue_snapshot(struct queue *q, struct queue_snap *out);
void queue_snap_release(struct queue_snap *s);
/* The snapshot as queue_stats_json gives it (new reference, or NULL). */
json_t *queue_snap_json(const struct queue_snap *s);

/* The run-time histogram as {"le_ms": [bounds], "counts": [cumulative],
 * "sum_ms", "count"} (new reference, or NULL). */
json_t *queue_run_hist_json(const struct queue *q);

#endif
