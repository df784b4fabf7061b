/* The timer heap (one 4-ary min-heap under one lock), the monotonic clock,
 * go_sleep and the public one-shot timers. Each heap entry carries its due
 * time, and each armed timer's heap position is kept in a dense slot array:
 * the timers themselves live on parked goroutines' stacks, and with 100k of
 * them every comparison or position update through the timer was a cache
 * (and TLB) miss per level. */
#include "chanq_config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "core/sched-internal.h"
#include "core/chan-internal.h"
#include "core/timer-internal.h"
#include "core/timer.h"

enum {
    FIRE_BATCH = 64, /* deferred callbacks collected per heap-lock hold */
    /* Children per heap node (Go's timers use 4 too): half the levels of a
     * binary heap, and every level moved costs a write to a timer that
     * lives on some parked goroutine's stack, often a cache miss. The four
     * children's entries share one or two cache lines. */
    HEAP_ARITY = 4,
};

/* Idle workers sleeping without a timeout (see timers_idle_timeout). */
static atomic_int forever_sleepers;
/* When a timer was last armed (sched_coarse_ms clock). */
static _Atomic int64_t last_arm_ms;

/* The runtime's timers (process-wide, see docs/hacking.md). */
static struct {
    pthread_mutex_t lock;      /* guards heap, slots and every rtimer.slot */
    struct heap_entry *heap;   /* min-heap on when */
    size_t len, cap;
    struct slot *slots;        /* slot_cap of them, indexed by rtimer.slot - 1 */
    uint32_t slot_cap;
    uint32_t free_slot;        /* 1 + first free slot, 0 when none */
    _Atomic int64_t next_when; /* heap[0]->when or INT64_MAX, for lock-free peeks */
    atomic_size_t pending;     /* len, for lock-free peeks */
} timers = {.lock = PTHREAD_MUTEX_INITIALIZER, .next_when = INT64_MAX};

/* A heap entry: a copy of its timer's due time and the timer's slot. */
struct heap_entry {
    int64_t when;
    uint32_t slot; /* index into timers.slots */
};

/* Where an armed timer is: the heap position is written every time an
 * entry moves, so it lives here, in one dense array, and not in the timer
 * (on some parked goroutine's stack: a cache and TLB miss per move). */
struct slot {
    struct rtimer *t; /* the armed timer, or NULL */
    uint32_t pos;     /* its heap position; next free slot + 1 when free */
};

/* A public timer: an rtimer that spawns a goroutine. */
struct timer {
    struct rtimer rt; /* mode RTIMER_SPAWN, fn/arg are the user's */
};

int64_t
timer_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
heap_set(size_t i, struct heap_entry e)
{
    timers.heap[i] = e;
    timers.slots[e.slot].pos = (uint32_t)i;
}

/* A free slot for t (heap lock held); grows the array when needed. */
static uint32_t
slot_take(struct rtimer *t)
{
    if (!timers.free_slot) {
        if (timers.slot_cap > UINT32_MAX / 2)
            sched_fatal("timer slots: more than 2^31 timers armed");
        uint32_t cap = timers.slot_cap ? 2 * timers.slot_cap : 64;
        struct slot *v = realloc(timers.slots, (size_t)cap * sizeof *v);
        if (!v)
            sched_fatal("timer slots: out of memory");
        for (uint32_t i = timers.slot_cap; i < cap; i++)
            v[i] = (struct slot){NULL, i + 1 < cap ? i + 2 : 0};
        timers.slots = v;
        timers.free_slot = timers.slot_cap + 1;
        timers.slot_cap = cap;
    }
    uint32_t i = timers.free_slot - 1;
    timers.free_slot = timers.slots[i].pos;
    timers.slots[i].t = t;
    t->slot = i + 1;
    return i;
}

static void
slot_give(uint32_t i)
{
    timers.slots[i].t->slot = 0;
    timers.slots[i] = (struct slot){NULL, timers.free_slot};
    timers.free_slot = i + 1;
}

static void
heap_up(size_t i)
{
    struct heap_entry e = timers.heap[i];
    while (i > 0) {
        size_t p = (i - 1) / HEAP_ARITY;
        if (timers.heap[p].when <= e.when)
            break;
        heap_set(i, timers.heap[p]);
        i = p;
    }
    heap_set(i, e);
}

static void
heap_down(size_t i)
{
    struct heap_entry e = timers.heap[i];
    for (;;) {
        size_t first = HEAP_ARITY * i + 1;
        if (first >= timers.len)
            break;
        size_t end = first + HEAP_ARITY < timers.len ? first + HEAP_ARITY : timers.len;
        size_t c = first;
        for (size_t k = first + 1; k < end; k++)
            if (timers.heap[k].when < timers.heap[c].when)
                c = k;
        if (timers.heap[c].when >= e.when)
            break;
        heap_set(i, timers.heap[c]);
        i = c;
    }
    heap_set(i, e);
}

/* Removes the timer at heap position i (heap lock held). */
static void
heap_remove(size_t i)
{
    slot_give(timers.heap[i].slot);
    timers.len--;
    if (i == timers.len)
        return;
    heap_set(i, timers.heap[timers.len]);
    uint32_t moved = timers.heap[i].slot;
    heap_down(i);
    heap_up(timers.slots[moved].pos);
}

static void
publish_locked(void)
{
    atomic_store(&timers.next_when, timers.len ? timers.heap[0].when : INT64_MAX);
    atomic_store(&timers.pending, timers.len);
}

void
rtimer_arm(struct rtimer *t, int64_t when)
{
    pthread_mutex_lock(&timers.lock);
    int64_t old_min = timers.len ? timers.heap[0].when : INT64_MAX;
    if (t->slot) {
        uint32_t i = t->slot - 1;
        timers.heap[timers.slots[i].pos].when = when;
        heap_down(timers.slots[i].pos);
        heap_up(timers.slots[i].pos);
    } else {
        if (timers.len == timers.cap) {
            size_t cap = timers.cap ? 2 * timers.cap : 64;
            struct heap_entry *h = realloc(timers.heap, cap * sizeof *h);
            if (!h)
                sched_fatal("timer heap: out of memory");
            timers.heap = h;
            timers.cap = cap;
        }
        heap_set(timers.len++, (struct heap_entry){when, slot_take(t)});
        heap_up(timers.len - 1);
    }
    bool new_min = timers.slots[timers.heap[0].slot].t == t && when < old_min;
    publish_locked();
    pthread_mutex_unlock(&timers.lock);
    atomic_store_explicit(&last_arm_ms, sched_coarse_ms(), memory_order_relaxed);
    /* seq_cst against timers_sleep_forever_begin: either the sleeper sees
     * this timer in next_when, or we see the sleeper. */
    if (new_min && (when - timer_now_ms() < TIMERS_IDLE_POLL_MS ||
                    atomic_load(&forever_sleepers) > 0))
        sched_wake_for_timer();
}

int64_t
timers_idle_timeout(void)
{
    int64_t next = timers_next_when();
    int64_t now = timer_now_ms();
    if (next != INT64_MAX)
        return next - now < TIMERS_IDLE_POLL_MS ? (next > now ? next - now : 0)
                                                 : TIMERS_IDLE_POLL_MS;
    if (sched_coarse_ms() - atomic_load_explicit(&last_arm_ms, memory_order_relaxed) <
        TIMERS_QUIET_MS)
        return TIMERS_IDLE_POLL_MS;
    return -1;
}

void
timers_sleep_forever_begin(void)
{
    atomic_fetch_add(&forever_sleepers, 1);
}

void
timers_sleep_forever_end(void)
{
    atomic_fetch_sub(&forever_sleepers, 1);
}

bool
rtimer_stop(struct rtimer *t)
{
    pthread_mutex_lock(&timers.lock);
    bool armed = t->slot != 0;
    if (armed) {
        heap_remove(timers.slots[t->slot - 1].pos);
        publish_locked();
    }
    pthread_mutex_unlock(&timers.lock);
    return armed;
}

int64_t
timers_next_when(void)
{
    return atomic_load(&timers.next_when);
}

size_t
timers_pending(void)
{
    return atomic_load(&timers.pending);
}

/* A callback to run once the heap lock is released. */
struct fire {
    enum rtimer_mode mode;
    go_fn *fn;
    void *arg;
};

void
timers_run_due(void)
{
    if (atomic_load_explicit(&timers.next_when, memory_order_relaxed) == INT64_MAX)
        return;
    int64_t now = timer_now_ms();
    if (atomic_load_explicit(&timers.next_when, memory_order_relaxed) > now)
        return;
    struct fire batch[FIRE_BATCH];
    size_t n;
    do {
        n = 0;
        pthread_mutex_lock(&timers.lock);
        while (timers.len && timers.heap[0].when <= now && n < FIRE_BATCH) {
            struct rtimer *t = timers.slots[timers.heap[0].slot].t;
            heap_remove(0);
            /* t may be gone once its callback ran (its owner was woken). */
            if (t->mode == RTIMER_INLINE)
                t->fn(t->arg);
            else
                batch[n++] = (struct fire){t->mode, t->fn, t->arg};
        }
        publish_locked();
        pthread_mutex_unlock(&timers.lock);
        for (size_t i = 0; i < n; i++) {
            if (batch[i].mode == RTIMER_DEFERRED)
                batch[i].fn(batch[i].arg);
            else if (go_spawn(batch[i].fn, batch[i].arg, "timer", 0) != 0)
                sched_fatal("timer: cannot spawn the callback goroutine: out of memory");
        }
    } while (n == FIRE_BATCH);
}

int
go_sleep(int64_t ms, struct ctx *ctx)
{
    sched_require_goroutine("go_sleep");
    if (ms <= 0) {
        go_yield();
        return 0;
    }
    int rc = select_wait(NULL, 0, ctx, ms, "sleep");
    return rc == SELECT_TIMED_OUT ? 0 : rc;
}

struct timer *
timer_new(go_fn *fn, void *arg)
{
    struct timer *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->rt.mode = RTIMER_SPAWN;
    t->rt.fn = fn;
    t->rt.arg = arg;
    return t;
}

void
timer_reset(struct timer *t, int64_t delay_ms)
{
    rtimer_arm(&t->rt, timer_now_ms() + (delay_ms > 0 ? delay_ms : 0));
}

bool
timer_stop(struct timer *t)
{
    return rtimer_stop(&t->rt);
}

void
timer_free(struct timer *t)
{
    if (!t)
        return;
    rtimer_stop(&t->rt);
    free(t);
}
