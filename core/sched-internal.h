/* Scheduler internals shared inside core/ (and with tests/core): the
 * goroutine struct, the park/ready protocol, per-thread randomness. */
#ifndef CHANQ_CORE_SCHED_INTERNAL_H
#define CHANQ_CORE_SCHED_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/go.h"
#include "core/stack.h"
#include "core/switch.h"
#include "core/waiter.h"

/* Goroutine states. Only the transitions in sched.c happen:
 * RUNNABLE -> RUNNING -> (WAITING -> RUNNABLE | RUNNABLE | DEAD). */
enum g_state {
    G_RUNNABLE = 1, /* in a run queue */
    G_RUNNING,      /* on a worker, or just switched out and not yet committed */
    G_WAITING,      /* parked; only sched_ready() moves it on */
    G_DEAD,         /* returned; in a free cache */
};

/* One goroutine. Allocated and recycled by go.c; fields without a comment on
 * locking are written only by the goroutine itself or by the worker that
 * runs/switches it. */
struct g {
    /* The first cache line holds what scheduling touches (asm switch). */
    _Atomic int state;        /* enum g_state; the WAITING->RUNNABLE CAS is the wake claim */
    bool fresh;               /* ctx not yet set up: execute() does it on first run */
    bool system;              /* runtime-internal: not counted by go_count */
    struct switch_ctx ctx;    /* saved registers while switched out */
    struct g *schedlink;      /* global run queue and free lists */
    go_fn *fn;                /* body */
    void *arg;                /* its argument (also keeps it reachable for LeakSanitizer) */
    uint64_t id;              /* 1, 2, ... (go_id) */
    struct stack stack;       /* its stack, kept when recycled */
    const char *file;         /* spawn site, for go_dump and crash reports */
    int line;
    /* Read by go_dump on other threads, hence relaxed atomics: */
    _Atomic(const char *) wait_reason; /* while parked: "chan receive", "select", ... */
    _Atomic(const void *) wait_obj;    /* while parked: the channel (or NULL) */
    _Atomic uint64_t wait_since;       /* while parked: when it parked (sched_ticks) */
    struct g *all_prev;       /* the list of all goroutines, dead ones too (go.c) */
    struct g *all_next;
    void *asan_fake;          /* ASan fake stack saved while switched out */
    void *tsan_fiber;         /* TSan fiber of this goroutine */
    /* Dead, in go.c's pool: on the head of a batch, its length and the next
     * batch (the pool's lock). */
    struct g *pool_batch_next;
    size_t pool_batch_n;
    /* Its waiter record for a plain chan_send/chan_recv. Here, not on the
     * stack: a channel's queue of thousands of parked goroutines is walked
     * (chan_close) through g structs that lie side by side in the heap,
     * instead of through as many stacks, a cache and TLB miss each. */
    struct waiter wait;
};

/* Called on the worker's scheduler stack right after the parking goroutine
 * was switched out and marked WAITING: typically releases the locks under
 * which the goroutine registered itself as a waiter. Returning false
 * cancels the park (the goroutine is resumed at once). Must not touch the
 * parked goroutine's stack in a way that races with its wake-up. */
typedef bool park_unlock_fn(struct g *g, void *arg);

/* The running goroutine, or NULL (scheduler stack, foreign thread). */
struct g *sched_curg(void);

/* Aborts with "<what>: called outside a goroutine" unless on a goroutine. */
void sched_require_goroutine(const char *what);

/* The running goroutine; aborts like sched_require_goroutine when there is
 * none. One call where a blocking operation needs both the check and g. */
struct g *sched_self(const char *what);

/* Parks the running goroutine (Go's gopark): switches to the scheduler stack,
 * marks it WAITING, then runs unlock(g, arg). Returns when some thread
 * called sched_ready(g). `reason` and `obj` are shown by go_dump. */
void sched_park(park_unlock_fn *unlock, void *arg, const char *reason, const void *obj);

/* Makes a parked goroutine runnable. Exactly one waker may call it per park
 * (claims are made under the lock the parker released, or by a CAS).
 * Any thread; never call it while holding a channel lock. */
void sched_ready(struct g *g);

/* Queues a new RUNNABLE goroutine (go_spawn). Any thread. */
void sched_ready_new(struct g *g);

/* A pseudo-random 32-bit number from the calling thread's generator. */
uint32_t sched_rand(void);

/* A coarse monotonic clock in ms. */
int64_t sched_coarse_ms(void);

/* A tick counter that costs no memory access (the CPU's: TSC on x86-64,
 * the virtual counter on aarch64; elsewhere the coarse clock in ms), for
 * stamping every park: a clock read goes through the vDSO's data page,
 * whose TLB entry 100k goroutine stacks keep evicting (5% of a sleep-heavy
 * profile). sched_ticks_ms_since converts a past stamp into ms ago. */
uint64_t sched_ticks(void);
int64_t sched_ticks_ms_since(uint64_t then);

/* Timer heap -> scheduler: an idle worker must recompute its sleep (a new
 * earliest timer). Any thread; takes the scheduler lock. */
void sched_wake_for_timer(void);

/* Prints "fatal error: <message>" to stderr and aborts. */
_Noreturn void sched_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Makes a chain of parked goroutines (linked by schedlink, each claimed
 * like sched_ready's argument) runnable at once: the worker's ring takes
 * what fits, the rest goes to the global queue under one lock, and one
 * idle worker is woken. Any thread; no channel lock held. */
void sched_ready_list(struct g *head);

/* A worker's private cache of dead goroutines (with their stacks), touched
 * only by that worker's thread; go.c manages it. */
struct gcache {
    struct g *head; /* LIFO through schedlink */
    size_t n;
    uint64_t id_next, id_end; /* goroutine ids taken from the global counter
                               * in a batch: [id_next, id_end) (Go's goidcache) */
};

/* The calling worker's cache, or NULL on other threads. */
struct gcache *sched_gcache(void);

/* go.c <-> sched.c */
void go_entry(void *arg);     /* first code of every goroutine (sched.c) */
void go_release(struct g *g); /* recycles a dead goroutine, scheduler stack (go.c) */
void go_gcache_flush(struct gcache *c); /* moves a cache into the global pool (go.c) */
/* Idle worker (go.c): when the pool of dead goroutines holds more untrimmed
 * stacks than it keeps and has not been drawn from for a while, trims one
 * batch and returns 0 if more is due; else the ms until trimming is due, or
 * -1 when there is nothing to trim. */
int64_t go_pool_idle(void);

#endif
