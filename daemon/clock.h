/* The daemon's wall clock, in int64_t milliseconds since the epoch: for
 * what outlives the process or is shown to people (job timestamps, ids,
 * the journal). Durations and deadlines inside one run, which a clock step
 * must not stretch or cut, use the runtime's monotonic timer_now_ms
 * (core/timer.h). Any thread; never fails. */
#ifndef CHANQ_DAEMON_CLOCK_H
#define CHANQ_DAEMON_CLOCK_H

#include <stdint.h>
#include <time.h>

/* CLOCK_REALTIME: milliseconds since 1970-01-01 UTC. */
static inline int64_t
clock_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
