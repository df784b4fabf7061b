/* The runtime's timer heap, shared by sleep, select timeouts, context
 * deadlines and public timers. One 4-ary min-heap under one lock; workers
 * run due timers between goroutines and idle workers sleep until the
 * earliest one. Internal to core/. */
#ifndef CHANQ_CORE_TIMER_INTERNAL_H
#define CHANQ_CORE_TIMER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "core/go.h"

/* How a due timer runs its callback. */
enum rtimer_mode {
    RTIMER_INLINE,   /* fn(arg) under the heap lock: may only claim and sched_ready */
    RTIMER_DEFERRED, /* fn(arg) after the lock, on a worker's scheduler stack; no parking */
    RTIMER_SPAWN,    /* go_spawn(fn, arg) after the lock */
};

/* One timer; embedded in its owner (a select frame, a ctx, struct timer). */
struct rtimer {
    uint32_t slot;         /* 1 + its slot in the heap's index; 0 when not armed (heap lock);
                            * its due time is in the heap entry */
    enum rtimer_mode mode; /* see above */
    go_fn *fn;             /* callback and its argument */
    void *arg;
};

/* Arms (or re-arms) t to fire at `when`. Any thread. Lock order: may be
 * called holding channel locks; takes the heap lock, then the scheduler's. */
void rtimer_arm(struct rtimer *t, int64_t when);

/* Disarms t; true if it was armed. Once it returns, an INLINE callback of t
 * is not running. Any thread. */
bool rtimer_stop(struct rtimer *t);

/* The earliest due time, or INT64_MAX. Lock-free. */
int64_t timers_next_when(void);

/* Armed timers right now (the deadlock check needs 0). Lock-free. */
size_t timers_pending(void);

/* Idle workers and timers (avoid a futex wake per timer armed): an idle
 * worker with timers pending wakes at least every TIMERS_IDLE_POLL_MS, and
 * keeps doing so for TIMERS_QUIET_MS after the last timer was armed even
 * when none is pending; only then does it sleep without a timeout, between
 * timers_sleep_forever_begin() and _end(). So a timer due later than
 * TIMERS_IDLE_POLL_MS wakes nobody unless a worker sleeps forever: with a
 * 30 s reservation timer armed per fetched job, that saves two futex calls
 * per job. */
#define TIMERS_IDLE_POLL_MS 1000
#define TIMERS_QUIET_MS 10000
/* How long an idle worker may sleep (ms), or -1 for no timeout, given what
 * is pending; when -1, the caller must bracket its wait with
 * timers_sleep_forever_begin/end and recheck timers_next_when() after
 * begin. */
int64_t timers_idle_timeout(void);
void timers_sleep_forever_begin(void);
void timers_sleep_forever_end(void);

/* Fires every due timer. Worker scheduler stack only. */
void timers_run_due(void);

#endif
