/* The daemon's wall clock. Monotonic time comes from core/timer.h
 * (timer_now_ms); wall time is for what is journaled or shown to users. */
#ifndef CHANQ_DAEMON_CLOCK_H
#define CHANQ_DAEMON_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Milliseconds since the epoch (CLOCK_REALTIME). Any thread. */
static inline int64_t
clock_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
