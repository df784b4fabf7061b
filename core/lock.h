/* A small futex lock for state that a goroutine locks and its worker's
 * scheduler stack unlocks (the park step): pthread mutexes are owned by the
 * locking thread, and TSan treats each goroutine as its own thread. Plain
 * atomics give TSan the happens-before edges. Internal to core/. */
#ifndef CHANQ_CORE_LOCK_H
#define CHANQ_CORE_LOCK_H

#include <stdatomic.h>
#include <stdint.h>

/* Zero-initialised means unlocked. */
struct lock {
    _Atomic uint32_t state; /* 0 free, 1 held, 2 held with sleepers */
};

void lock_acquire_slow(struct lock *l);
void lock_wake(struct lock *l);

/* Takes l; spins briefly, then sleeps. Any thread or goroutine. */
static inline void
lock_acquire(struct lock *l)
{
    uint32_t free_state = 0;
    if (!atomic_compare_exchange_strong_explicit(&l->state, &free_state, 1, memory_order_acquire,
                                                 memory_order_relaxed))
        lock_acquire_slow(l);
}

/* Releases l (any thread: not tied to the one that took it). */
static inline void
lock_release(struct lock *l)
{
    if (atomic_exchange_explicit(&l->state, 0, memory_order_release) == 2)
        lock_wake(l);
}

#endif
