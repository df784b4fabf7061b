/* Time: the monotonic clock, goroutine sleep and one-shot timers, all served
 * by the scheduler's timer heap. */
#ifndef CHANQ_CORE_TIMER_H
#define CHANQ_CORE_TIMER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/go.h"

struct ctx;
struct timer;

/* Monotonic milliseconds (CLOCK_MONOTONIC). Any thread. */
int64_t timer_now_ms(void);

/* Parks the goroutine for `ms` milliseconds (<= 0: just yields). Goroutine
 * only. Returns 0, or -ECANCELED / -ETIMEDOUT when ctx (may be NULL) is done
 * first. */
int go_sleep(int64_t ms, struct ctx *ctx);

/* A one-shot timer, not armed: when it fires, fn(arg) runs on a fresh
 * goroutine. Returns a new timer (owned by the caller, free with
 * timer_free) or NULL. Any thread. */
struct timer *timer_new(go_fn *fn, void *arg);

/* (Re)arms t to fire `delay_ms` from now (<= 0: at the next scheduler pass).
 * Any thread. */
void timer_reset(struct timer *t, int64_t delay_ms);

/* Disarms t. Returns true if it was armed and had not fired. Any thread. */
bool timer_stop(struct timer *t);

/* Stops and frees t. A callback already started keeps running and must not
 * touch t. Any thread. NULL is ignored. */
void timer_free(struct timer *t);

#endif
