/* struct job and its lifecycle: the states a job can be in, the table of
 * allowed transitions, and one function per transition. The transition
 * functions are the only code that writes j->state: each checks the table,
 * takes the job out of its old state (occupancy counts, lists, placement in
 * its queue, timers), puts it into the new one and keeps the parent/child
 * tree. They are called by the state machine (daemon/apply.h), which turns
 * journal records into transitions, and nothing else.
 *
 *                 submit                    promote (delay over)
 *        (new) ---------> DELAYED ---------------------------.
 *          |                 ^                                v
 *          '--------------------------------------------> QUEUED <----------.
 *                            | nack with delay      reserve |  ^ nack, ttr,   | kick
 *                            '----------------------.       v  | lost, release|
 *                                                 RESERVED ----'             DEAD
 *                                                    | ack  '--- nack dead ---^
 *                                                    v         (attempts used up)
 *                                                   DONE
 *   DELAYED, QUEUED, RESERVED -> CANCELLED (cancel) or EXPIRED (deadline)
 *   DELAYED, QUEUED, RESERVED -> gone (a submit that is taken back: drop)
 *   DONE, CANCELLED, EXPIRED  -> gone (evicted from the kept results)
 *
 * Jobs are refcounted: the job table, a queue channel slot, a timer and an
 * operation in flight each hold a reference. A job holds one on its queue
 * (j->queue) until it is freed. Fields are guarded by the broker lock;
 * refs are atomic. Every function here: lock held, but job_ref/job_unref. */
#ifndef CHANQ_DAEMON_JOB_H
#define CHANQ_DAEMON_JOB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct broker;
struct queue;
struct holder;
struct timer;
struct chan;
struct key_entry;

enum job_state {
    JOB_DELAYED,   /* waiting for its delay; not in the channel */
    JOB_QUEUED,    /* in (or on its way into) the queue's channel */
    JOB_RESERVED,  /* held by a connection until ack/nack/touch or ttr */
    JOB_DONE,      /* acked (final) */
    JOB_DEAD,      /* attempts used up or buried; kick revives it */
    JOB_CANCELLED, /* cancelled (final) */
    JOB_EXPIRED,   /* its deadline passed (final) */
    JOB_NSTATES
};

/* Rarely used fields, allocated only when one is needed, to keep the common
 * queued job small (docs/performance.md: bytes per queued job). */
struct job_extra {
    struct job *parent;       /* cancelling it cancels this job (a reference) */
    struct job *first_child;  /* children list head (borrowed: a child unlinks itself) */
    struct job *next_sibling; /* next child of the same parent */
    char *result;             /* ack's result, compact JSON text (owned) */
    char *error;              /* the last attempt's error text (owned) */
    char *traceparent;        /* W3C trace context given at submit (owned), or NULL */
    struct chan *done;        /* closed when the job becomes final; wakes `wait` */
    struct timer *deadline_timer; /* expires the job at deadline_ms */
    struct key_entry *key;    /* its idempotency key while live (the broker's key table
                               * owns it), or NULL */
    struct job_errors *errors; /* the error of each recent failed attempt, or NULL */
};

struct job {
    uint64_t id;           /* server-assigned, unique across restarts */
    struct queue *queue;   /* the queue it belongs to (a reference: see queue.h) */
    char *payload;         /* compact JSON text, owned; NULL once final */
    uint32_t payload_len;  /* bytes of payload */
    _Atomic uint32_t refs; /* references (job_ref/job_unref) */
    uint8_t state;         /* enum job_state: written by this file's transitions only */
    uint8_t in_channel;    /* where a QUEUED job's pointer is (queue.h, enum placement) */
    uint8_t deleted;       /* job_deleted took it out (a parked `wait` answers not_found) */
    uint16_t max_attempts; /* deliveries allowed before it goes dead */
    uint16_t attempt;      /* deliveries so far (1 on first) */
    uint8_t priority;      /* 0..JOB_MAX_PRIORITY, higher delivered first within its queue */
    int32_t ttr_ms;        /* reservation time */
    int64_t created_ms;    /* wall clock, ms since the epoch */
    int64_t deadline_ms;   /* wall clock expiry, 0 = none */
    int64_t due;           /* DELAYED: wall-clock ms when it becomes queued (journaled);
                            * RESERVED: monotonic ms when the reservation runs out */
    int64_t since_ms;      /* monotonic ms when it last became QUEUED or RESERVED:
                            * the queue's oldest-job age, the run-time histogram */
    struct holder *holder; /* connection holding the reservation, or NULL */
    struct job *prev, *next; /* the list of its state (struct job_list): a standby
                              * queue's queued jobs, a holder's reserved ones, a
                              * queue's dead ones, the broker's kept results */
    struct timer *timer;   /* delay or ttr timer, NULL when none */
    struct job_extra *extra; /* parent/children, result, error, waiters */
    struct job *ix_left, *ix_right; /* its queue's index of its state (jobindex.h) */
};

/* Priority levels of a job (submit's "priority"). */
#define JOB_MAX_PRIORITY 9
#define JOB_PRIORITY_LEVELS (JOB_MAX_PRIORITY + 1)

/* A list of jobs through prev/next; a job is on at most one. */
struct job_list {
    struct job *head, *tail;
    size_t n;
};
void job_list_append(struct job_list *l, struct job *j);
void job_list_remove(struct job_list *l, struct job *j);

/* ---- allocation, references, names ---- */

/* A new job with one reference, owning a copy of payload[0..len), in no
 * state yet (job_submitted puts it in one). NULL when out of memory. */
struct job *job_new(uint64_t id, struct queue *q, const char *payload, size_t len);
void job_ref(struct job *j);
/* Drops a reference; the last one frees the job and what it owns. */
void job_unref(struct job *j);
/* The extra fields, allocated on first use. NULL when out of memory. */
struct job_extra *job_extra(struct job *j);
/* Replaces the error (or result) text with a copy of s[0..len); -1 when
 * out of memory (the old text stays). */
int job_set_error(struct job *j, const char *s, size_t len);
int job_set_result(struct job *j, const char *s, size_t len);
/* The job's trace context (a syntax-checked traceparent), kept for its life
 * and returned with every delivery. 0, or -1 out of memory (unchanged). */
int job_set_traceparent(struct job *j, const char *s, size_t len);
/* Borrowed, valid while j lives; NULL when the submit gave none. */
const char *job_traceparent(const struct job *j);

/* done, dead, cancelled and expired are final (dead until a kick revives it). */
bool job_state_is_final(enum job_state s);
const char *job_state_name(enum job_state s);

/* Writes the decimal id into buf (at least 21 bytes); returns its length. */
size_t job_id_format(uint64_t id, char *buf);
/* Parses a decimal id; false when s[0..len) is not one. */
bool job_id_parse(const char *s, size_t len, uint64_t *out);

/* ---- the error history (job_errors.c) ----
 * A job keeps the error of each of its last JOB_ERROR_HISTORY failed
 * attempts (nack, ttr, connection lost), oldest first; older entries are
 * dropped. Each text is the job's `error` right after that failure, cut
 * to JOB_ERROR_TEXT_MAX bytes (NULL: it had none). */
#define JOB_ERROR_HISTORY 16
#define JOB_ERROR_TEXT_MAX 512
struct job_error {
    uint32_t attempt; /* the attempt that failed */
    char *text;       /* owned; NULL: no text */
};
struct job_errors {
    struct job_error v[JOB_ERROR_HISTORY]; /* a ring: v[(start + i) % N] is the i-th */
    unsigned start, n;
};
/* Appends an entry (dropping the oldest when full); text may be NULL.
 * -1 when out of memory (nothing changed). */
int job_error_push(struct job *j, uint32_t attempt, const char *text, size_t len);
/* The number of entries, and the i-th (oldest first). */
size_t job_errors_count(const struct job *j);
const struct job_error *job_error_at(const struct job *j, size_t i);
void job_errors_free(struct job_errors *e);

/* ---- the lifecycle ---- */

/* True when the table allows from -> to. */
bool job_may(enum job_state from, enum job_state to);

/* A new job (job_new, in the job table) enters its first state: DELAYED
 * until due (wall ms) when due > 0, else QUEUED. With place false a
 * queued job is left for the caller to put into a channel (a submit
 * chooses among its queues and may wait for room). Links it under parent
 * (may be NULL). 0, or -1 when out of memory (nothing changed). */
int job_submitted(struct job *j, int64_t due, struct job *parent, bool place);

/* The transitions of a live job. Each returns 0, or -1 when the table
 * forbids it (a bug: logged; abort() in debug builds; nothing changed).
 * Back to the tail of its queue (promote, nack, ttr, lost holder, release,
 * kick, a reservation orphaned by a restart): */
int job_to_queued(struct job *j);
/* Waits until due (wall ms): */
int job_to_delayed(struct job *j, int64_t due);
/* Delivered to h (NULL: a holder that is gone, as in a replay), the
 * attempt counted as given; its ttr runs while h holds it: */
int job_to_reserved(struct job *j, struct holder *h, uint16_t attempt);
/* To the dead list (attempts used up, or buried): */
int job_to_dead(struct job *j);
/* To a final state (done, cancelled, expired): the payload is freed, the
 * job is kept for `wait` within the broker's bound on kept results. */
int job_to_final(struct job *j, enum job_state final);
/* Taken back: a submit whose job must never have existed (its record did
 * not reach the disk, or it found no room). The job leaves the table. */
int job_dropped(struct job *j);
/* A queued job moves to another queue of the same broker (a send-side
 * select placed it there). */
void job_moved(struct job *j, struct queue *to);
/* An operator deleted it (`delete`, `purge`, `queue_delete`), in any
 * state: it leaves its state (a holder loses it; the caller sent the
 * `cancel` event), its waiters wake, and it leaves the table. 0. */
int job_deleted(struct job *j);

#endif
