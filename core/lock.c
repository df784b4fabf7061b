/* The futex lock's slow paths (Drepper's "mutex 2" from "Futexes are
 * tricky"): spin a little, then mark the lock contended and sleep. */
#include "chanq_config.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/lock.h"

enum {
    SPINS = 100, /* critical sections are a few dozen instructions */
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
    for (int i = 0; i < SPINS; i++) {
        uint32_t free_state = 0;
        if (atomic_load_explicit(&l->state, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_weak_explicit(&l->state, &free_state, 1,
                                                  memory_order_acquire, memory_order_relaxed))
            return;
        cpu_relax();
    }
    while (atomic_exchange_explicit(&l->state, 2, memory_order_acquire) != 0)
        syscall(SYS_futex, (uint32_t *)&l->state, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
}

void
lock_wake(struct lock *l)
{
    syscall(SYS_futex, (uint32_t *)&l->state, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}
