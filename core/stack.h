/* Goroutine stacks: slots of larger mmap'd arenas, a guard page below each. The guard is a
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
    void *floor;     /* the arena's lowest page (always protected) */
    bool guarded;    /* a guard page sits below lo; else a canary sits at lo */
};

/* A stack of at least `size` bytes, carved from an arena: one mmap serves
 * many stacks, and stacks are meant to be kept and reused (go.c's pools),
 * not freed. Returns 0 or -ENOMEM. */
int stack_alloc(struct stack *s, size_t size);

/* Unmaps s (its slot of the arena). */
void stack_free(struct stack *s);

/* Gives the pages of an idle stack back to the kernel (MADV_DONTNEED), all
 * but the canary page of an unguarded stack. The contents become zero; the
 * next goroutine on it takes a page fault on its first frame. */
void stack_trim(struct stack *s);

/* A heuristic for an idle stack: true when its last goroutines went below
 * the top page (the lowest words of the top page and samples of the page
 * below it are not all zero), so it holds more than one page. May say false
 * for a stack that holds more. Never faults in a page it has not touched
 * unless the top page's lowest words say a goroutine went deeper. */
bool stack_was_deep(const struct stack *s);

/* Starts fetching what stack_was_deep(s) reads first (no fault, no wait),
 * so that a batch of checks overlaps its cache misses. */
void stack_prefetch_deep_check(const struct stack *s);

/* False when an unguarded stack's canary was overwritten (overflow). */
bool stack_canary_ok(const struct stack *s);

/* True when `addr` lies in the guard page, or just below, of s; for an
 * unguarded stack, anywhere below it in its arena. */
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
