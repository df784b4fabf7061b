/* The rate history behind GET /history on --http: jobs processed (acked)
 * and failed (nacked, revoked or expired) over the last hour, as a ring of fixed
 * slots that a timer on the daemon's loop fills, one slot per period.
 * Its memory is allocated once (slots x a few integers), whatever the
 * traffic, the number of queues or the uptime.
 *
 * The counts come from a sampler callback that returns running totals
 * (the sum of the queues' counters). Totals may go down (a queue deleted
 * takes its counters with it): a slot then counts what grew, never a
 * negative amount, and the totals kept here only ever grow.
 *
 * Loop thread only (the timer and history_json both run there). */
#ifndef CHANQ_DAEMON_HISTORY_H
#define CHANQ_DAEMON_HISTORY_H

#include <event2/event.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Default shape: one slot every 10 s, an hour of them. */
#define HISTORY_PERIOD_MS 10000
#define HISTORY_SLOTS 360

/* Running totals at one moment. */
struct history_counts {
    uint64_t submitted; /* jobs accepted */
    uint64_t processed; /* jobs acked */
    uint64_t failed;    /* nacks, ttr revocations and deadline expiries */
};

/* Fills *out with the totals now; returns 0, or -1 when they cannot be
 * had (the slot is then skipped, not filled with zeros). Loop thread. */
typedef int history_sample_fn(void *arg, struct history_counts *out);

struct history;

/* A history of `slots` periods of `period_ms`, sampled by sample(arg)
 * (borrowed; outlives the history): once now, as the baseline, then on a
 * timer on base. base may be NULL for a history driven by history_tick
 * alone (tests). Returns NULL after logging why (out of memory, bad shape:
 * period_ms < 100 or slots outside 2..100000). */
struct history *history_new(struct event_base *base, int64_t period_ms, size_t slots,
                            history_sample_fn *sample, void *arg);

/* Takes one sample now: the slot ending at wall time now_ms (ms since the
 * epoch). The timer calls it; tests call it directly. */
void history_tick(struct history *h, int64_t now_ms);

/* The document served at /history (a new reference, NULL when out of
 * memory):
 *   {"period_ms": length of a slot, "slots": the ring's size,
 *    "totals": {"submitted", "processed", "failed"} since start,
 *    "points": [[t, submitted, processed, failed], ...]}
 * points are the filled slots, oldest first, at most `slots`: t is the
 * slot's end (seconds since the epoch), the others what happened during
 * it (over period_ms / 1000 for a rate per second). */
json_t *history_json(const struct history *h);

/* Stops the timer and frees. NULL is allowed. */
void history_free(struct history *h);

#endif
