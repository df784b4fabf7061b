/* The daemon's one memory budget (--max-memory): the job payloads the
 * broker holds and the bytes connections buffer (partial request lines,
 * framed lines not yet handled, answers not yet written) are counted in
 * one total. Payloads and answers are counted as they come (a submit
 * checks the total first, less its own request line); input that would
 * pass the limit is refused (daemon/conn.c) unless the buffers alone stay
 * within a reserve of twice the longest request line. Lock-free: any
 * thread. */
#ifndef CHANQ_DAEMON_MEMBUDGET_H
#define CHANQ_DAEMON_MEMBUDGET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

struct membudget {
    _Atomic size_t used;    /* everything counted */
    _Atomic size_t buffers; /* the connections' part of it (for stats) */
};

static inline size_t
membudget_used(struct membudget *m)
{
    return atomic_load_explicit(&m->used, memory_order_relaxed);
}

/* Counts n more bytes, over the limit or not (they are held already). */
static inline void
membudget_take(struct membudget *m, size_t n)
{
    atomic_fetch_add_explicit(&m->used, n, memory_order_relaxed);
}

static inline void
membudget_give(struct membudget *m, size_t n)
{
    atomic_fetch_sub_explicit(&m->used, n, memory_order_relaxed);
}

/* Counts n more bytes if the total stays within limit. */
static inline bool
membudget_try_take(struct membudget *m, size_t n, size_t limit)
{
    size_t cur = atomic_load_explicit(&m->used, memory_order_relaxed);
    do {
        if (n > limit || cur > limit - n)
            return false;
    } while (!atomic_compare_exchange_weak_explicit(&m->used, &cur, cur + n,
                                                    memory_order_relaxed, memory_order_relaxed));
    return true;
}

/* Counts n more bytes of connection buffers if the total stays within
 * limit, or else if the buffers alone stay within reserve: while payloads
 * fill the budget, a request can still be read and answered `limit`. */
static inline bool
membudget_try_buffers(struct membudget *m, size_t n, size_t limit, size_t reserve)
{
    if (!membudget_try_take(m, n, limit)) {
        size_t b = atomic_load_explicit(&m->buffers, memory_order_relaxed);
        if (n > reserve || b > reserve - n)
            return false;
        membudget_take(m, n);
    }
    atomic_fetch_add_explicit(&m->buffers, n, memory_order_relaxed);
    return true;
}

/* A connection buffer grew (delta > 0) or shrank: counted in both totals. */
static inline void
membudget_buffers(struct membudget *m, ptrdiff_t delta)
{
    atomic_fetch_add_explicit(&m->buffers, (size_t)delta, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->used, (size_t)delta, memory_order_relaxed);
}

#endif
