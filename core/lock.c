/* The futex lock's slow paths (Drepper's "mutex 2" from "Futexes are
 * tricky"): spin a little, then mark the lock contended and sleep. */
#include "chanq_config.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/lock.h"

enum {
    SPIN_ROUNDS = 12,  /* looks at the lock before sleeping */
    SPIN_MAX_PAUSE = 64, /* cpu_relax() calls between two looks, at most */
};

/* The spin-wait hint of each architecture. */
#if defined(__x86_64__) || defined(__i386__)
static inline void
cpu_relax(void)
{
    __builtin_ia32_pause();
}
#elif defined(__aarch64__)
static inline void
cpu_relax(void)
{
    __asm__ volatile("yield");
}
#else
static inline void
cpu_relax(void)
{
}
#endif

void
lock_acquire_slow(struct lock *l)
{
    /* Critical sections are a few dozen instructions. Between two looks
     * wait longer and longer (exponential backoff): a waiter that polls the
     * lock's cache line without pause pulls it away from the holder, whose
     * unlock and next lock then each wait for it (two cores hammering one
     * channel); letting the holder run a few operations in a row is faster
     * for both. */
    int pause = 1;
    for (int i = 0; i < SPIN_ROUNDS; i++) {
        uint32_t free_state = 0;
        if (atomic_load_explicit(&l->state, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_weak_explicit(&l->state, &free_state, 1,
                                                  memory_order_acquire, memory_order_relaxed))
            return;
        for (int k = 0; k < pause; k++)
            cpu_relax();
        if (pause < SPIN_MAX_PAUSE)
            pause *= 2;
    }
    while (atomic_exchange_explicit(&l->state, 2, memory_order_acquire) != 0)
        syscall(SYS_futex, (uint32_t *)&l->state, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
}

void
lock_wake(struct lock *l)
{
    syscall(SYS_futex, (uint32_t *)&l->state, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}
