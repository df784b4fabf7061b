/* One fast random number generator for the daemon: a per-thread xorshift,
 * for choices that need to be fair, not secret (queue order, retry
 * jitter), without a shared lock. Any thread. */
#ifndef CHANQ_DAEMON_FASTRAND_H
#define CHANQ_DAEMON_FASTRAND_H

#include <stdint.h>
#include <time.h>

static inline uint32_t
fast_rand(void)
{
    static _Thread_local uint32_t state;
    if (state == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        state = (uint32_t)(uintptr_t)&state ^ (uint32_t)ts.tv_nsec ^ 0x9e3779b9u;
        if (state == 0)
            state = 0x9e3779b9u;
    }
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    return state;
}

/* A number in [0, n) (n > 0); the modulo bias is negligible for the
 * small n it is used with. */
static inline uint64_t
fast_rand_below(uint64_t n)
{
    return (((uint64_t)fast_rand() << 32) | fast_rand()) % n;
}

#endif
