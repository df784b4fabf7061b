/* struct job: one unit of work, its states and the transitions the broker
 * allows. Jobs are refcounted: the job table, a queue channel slot, a timer
 * and an operation in flight each hold a reference. Fields are guarded by
 * the broker lock (see broker.c); refs are atomic. */
#ifndef CHANQ_DAEMON_JOB_H
#define CHANQ_DAEMON_JOB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct queue;
struct holder;
struct timer;
struct chan;

enum job_state {
    JOB_DELAYED,   /* waiting for its delay; not in the channel */
    JOB_QUEUED,    /* in (or on its way into) the queue's channel */
    JOB_RESERVED,  /* held by a connection until ack/nack/touch or ttr */
    JOB_DONE,      /* acked (final) */
    JOB_DEAD,      /* attempts used up or buried; kick revives it */
    JOB_CANCELLED, /* cancelled (final) */
    JOB_EXPIRED,   /* its deadline passed (final) */
};

/* Rarely used fields, allocated only when one is needed, to keep the common
 * queued job small (docs/performance.md: bytes per queued job). */
struct job_extra {
    struct job *parent;       /* cancelling it cancels this job (a reference) */
    struct job *first_child;  /* children list head (borrowed: a child unlinks itself) */
    struct job *next_sibling; /* next child of the same parent */
    char *result;             /* ack's result, compact JSON text (owned) */
    char *error;              /* nack's last error text (owned) */
    struct chan *done;        /* closed when the job becomes final; wakes `wait` */
    struct timer *deadline_timer; /* expires the job at deadline_ms */
};

struct job {
    uint64_t id;           /* server-assigned, unique across restarts */
    struct queue *queue;   /* the queue it belongs to (queues live as long as the broker) */
    char *payload;         /* compact JSON text, owned; NULL once final */
    uint32_t payload_len;  /* bytes of payload */
    _Atomic uint32_t refs; /* references (job_ref/job_unref) */
    uint8_t state;         /* enum job_state */
    uint8_t in_channel;    /* a pointer to it sits in the queue channel */
    uint16_t max_attempts; /* deliveries allowed before it goes dead */
    uint16_t attempt;      /* deliveries so far (1 on first) */
    int32_t ttr_ms;        /* reservation time */
    int64_t created_ms;    /* wall clock, ms since the epoch */
    int64_t deadline_ms;   /* wall clock expiry, 0 = none */
    int64_t ttr_due;       /* RESERVED: monotonic ms when the reservation runs out;
                            * DELAYED: wall-clock ms when it becomes queued (journaled) */
    int64_t since_ms;      /* monotonic ms when it last became QUEUED or RESERVED:
                            * the queue's oldest-job age, the run-time histogram */
    struct holder *holder; /* connection holding the reservation, or NULL */
    struct job *res_prev, *res_next; /* holder's list of reserved jobs */
    struct job *fin_next;  /* broker's list of final jobs kept for `wait` */
    struct job *dead_next; /* queue's dead list (kick order) */
    struct timer *timer;   /* delay or ttr timer, NULL when none */
    struct job_extra *extra; /* parent/children, result, error, waiters */
};

/* A new job with one reference, owning a copy of payload[0..len).
 * Returns NULL when out of memory. */
struct job *job_new(uint64_t id, struct queue *q, const char *payload, size_t len);

void job_ref(struct job *j);
/* Drops a reference; the last one frees the job and what it owns. */
void job_unref(struct job *j);

/* The extra fields, allocated on first use. NULL when out of memory. */
struct job_extra *job_extra(struct job *j);

/* done, dead, cancelled and expired are final (dead until a kick revives it). */
bool job_state_is_final(enum job_state s);
const char *job_state_name(enum job_state s);

/* Writes the decimal id into buf (at least 21 bytes); returns its length. */
size_t job_id_format(uint64_t id, char *buf);
/* Parses a decimal id; false when s[0..len) is not one. */
bool job_id_parse(const char *s, size_t len, uint64_t *out);

#endif
