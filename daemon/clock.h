/* The daemon's clocks, in int64_t milliseconds. Wall time (ms since the
 * epoch) is for what outlives the process or is shown to people: job
 * timestamps, ids, the journal. Monotonic time is for durations and
 * deadlines inside one run, which a clock step must not stretch or cut.
 * Any thread; never fail (clock_gettime cannot for these clocks). */
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

/* CLOCK_MONOTONIC: milliseconds since an arbitrary point (boot). */
static inline int64_t
clock_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
