/* Goroutine stacks: mmap'd with a guard page below each one. The guard is a
 * MADV_GUARD_INSTALL region where the kernel has them (Linux >= 6.13: no
 * extra memory mapping), else a PROT_NONE page, which costs a kernel mapping
 * (vm.max_map_count, 65530 by default), so only up to a budget; beyond it a
 * canary at the stack's bottom is checked at every switch. Internal. */
#ifndef CHANQ_CORE_STACK_H
#define CHANQ_CORE_STACK_H

#include <stdbool.h>
#include <stddef.h>

/* One stack. Plain data owned by its goroutine (struct g). */
struct stack {
    void *lo;        /* lowest usable byte; the stack grows down towards it */
    size_t size;     /* usable bytes above lo */
    void *map;       /* the whole mapping (guard page included) */
    size_t map_size; /* its length, for munmap */
    bool guarded;    /* a guard page sits below lo; else a canary sits at lo */
};

/* Maps a stack of at least `size` bytes. Returns 0 or -ENOMEM. */
int stack_alloc(struct stack *s, size_t size);

/* Unmaps s. */
void stack_free(struct stack *s);

/* False when an unguarded stack's canary was overwritten (overflow). */
bool stack_canary_ok(const struct stack *s);

/* True when `addr` lies in the guard page, or just below, of s. */
bool stack_addr_is_overflow(const struct stack *s, const void *addr);

/* Gives the calling thread an alternate signal stack (the handler must not
 * run on the overflowed stack). Returns the memory to pass to
 * stack_altstack_free, or NULL. */
void *stack_altstack_new(void);
void stack_altstack_free(void *mem);

/* Writes "goroutine N stack overflow (spawned at file:line)" to stderr with
 * async-signal-safe calls only. */
void stack_report_overflow(unsigned long long id, const char *file, int line);

#endif
