/* The M:N scheduler: worker threads with per-thread lock-free run queues and
 * a `runnext` slot, a global queue, work stealing, Go's spinning protocol for
 * waking idle workers (which sleep on a futex), the park/ready protocol and
 * the deadlock check. */
#include "chanq_config.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <x86intrin.h>
#endif

#include "core/sanitizer.h"
#include "core/sched-internal.h"
#include "core/sched.h"
#include "core/timer-internal.h"
#include "core/timer.h"

enum {
    RUNQ_SIZE = 256,     /* slots of a worker's ring (a power of two) */
    MAX_THREADS = 256,   /* GOMAXPROCS cap */
    GLOBAL_EVERY = 61,   /* a worker looks at the global queue first every N picks (Go) */
    RUNNEXT_STREAK = 32, /* runnext picks in a row before the ring gets a turn */
    GQ_MIN_CAP = 256,    /* first size of the global queue's ring */
    GQ_KEEP_CAP = 4096,  /* a bigger ring is freed when the queue empties */
    READY_CHUNK = 128,   /* goroutines handed to the global queue per lock hold */
    PREFETCH_LINES = 4,  /* cache lines of the next goroutine's saved frames fetched early */
    STEAL_ROUNDS = 4,    /* passes over the victims before going idle */
    LOOP_LOCAL_MAX = 32, /* goroutines an event loop's thread keeps for itself
                          * (sched_loop_attach) before the workers get the rest */
};

/* What the goroutine that just switched to the scheduler stack asked for. */
enum after_switch {
    AFTER_PARK,  /* mark it WAITING and run park_fn */
    AFTER_YIELD, /* requeue it */
    AFTER_EXIT,  /* it returned: recycle it */
};

/* One worker thread (Go's M and P in one). Fields are owned by the worker
 * unless their comment says otherwise. */
struct m {
    int id;                       /* index in sched.ms */
    pthread_t thread;             /* the worker */
    struct switch_ctx g0ctx;      /* the thread's own (scheduler) stack while a g runs */
    struct g *curg;               /* the goroutine running now, or NULL */
    enum after_switch after;      /* set by the goroutine before switching to g0 */
    park_unlock_fn *park_fn;      /* AFTER_PARK: run on g0 */
    void *park_arg;
    /* The ring: the owner writes slots and tail, anyone CASes head. */
    _Atomic uint32_t runq_head;
    _Atomic uint32_t runq_tail;
    _Atomic(struct g *) runq[RUNQ_SIZE];
    _Atomic(struct g *) runnext;  /* readied by the running g: runs next (CAS by stealers) */
    uint32_t schedtick;           /* picks so far (global queue fairness) */
    uint32_t next_streak;         /* runnext picks in a row */
    bool spinning;                /* counted in sched.nmspinning */
    bool is_loop;                 /* an event loop's thread lent to the scheduler
                                   * (sched_loop_attach): not in sched.ms, never idle */
    /* Idle state: */
    _Atomic uint32_t park_word;   /* futex: set to 1 by whoever takes it off the idle list */
    bool in_idle;                 /* on sched.idle (sched.lock) */
    bool wake_spinning;           /* waker transferred a nmspinning count (sched.lock) */
    struct m *idle_next;          /* sched.idle link (sched.lock) */
    /* Sanitizers and signals: */
    const void *g0_lo;            /* the scheduler stack, for ASan's switch */
    size_t g0_size;
    void *g0_fake;                /* ASan fake stack of g0 while a g runs */
    void *g0_fiber;               /* TSan fiber of the thread */
    void *altstack;               /* sigaltstack for the overflow reporter */
    uint64_t rng;                 /* xorshift state */
    struct gcache gcache;         /* dead goroutines kept by this worker (go.c) */
};

/* The scheduler (process-wide, see docs/hacking.md). */
static struct {
    pthread_mutex_t lock;          /* guards the global queue, the idle list, start/stop */
    /* The global run queue: a ring of pointers that grows by doubling, so
     * taking a share of it copies pointers and never walks the goroutines
     * (a walk through 100k cold g structs was a cache miss per step). */
    struct g **gq;                 /* gq_cap slots (lock) */
    size_t gq_head, gq_cap;        /* index of the oldest; size (lock) */
    atomic_size_t gq_len;          /* its length (written under the lock) */
    struct m *idle;                /* idle workers (lock) */
    atomic_int npidle;             /* their number */
    atomic_int nmspinning;         /* workers looking for work without sleeping */
    atomic_int nthreads;           /* workers (0: not running) */
    struct m *ms[MAX_THREADS];     /* the workers */
    atomic_bool shutdown;          /* workers exit at their next pick (set under lock) */
    atomic_int nexternal;          /* outside wakers: no deadlock report while > 0 */
    atomic_bool detect_deadlock;   /* sched_run_main's main goroutine is running */
    struct sigaction old_segv;     /* handlers we chain to for faults that are not overflows */
    struct sigaction old_bus;
} sched = {.lock = PTHREAD_MUTEX_INITIALIZER};

static pthread_once_t sched_signals_once = PTHREAD_ONCE_INIT;

/* The worker of this thread; NULL on other threads. */
static __thread struct m *tls_m;

/* Random state of threads that are not workers. */
static __thread uint64_t tls_rng;

/* Goroutines migrate between threads across a park, so the address of a
 * thread-local must never be cached across one (QEMU's coroutine-tls.h
 * rule): read it through a call the compiler cannot see into. */
static __attribute__((noinline)) struct m *
m_self(void)
{
    struct m *m = tls_m;
    __asm__ volatile("" ::: "memory");
    return m;
}

void
sched_fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fatal error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
    abort();
}


static void
futex_wait(_Atomic uint32_t *word, uint32_t val, int64_t timeout_ms)
{
    struct timespec ts, *tsp = NULL;
    if (timeout_ms >= 0) {
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (timeout_ms % 1000) * 1000000;
        tsp = &ts;
    }
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, val, tsp, NULL, 0);
}

static void
futex_wake(_Atomic uint32_t *word)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}


static uint64_t
xorshift(uint64_t *s)
{
    uint64_t x = *s;
    if (!x)
        x = 0x9e3779b97f4a7c15ULL ^ (uint64_t)(uintptr_t)s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

uint32_t
sched_rand(void)
{
    struct m *m = m_self();
    return (uint32_t)(xorshift(m ? &m->rng : &tls_rng) >> 32);
}

int64_t
sched_coarse_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#if defined(__x86_64__)
uint64_t
sched_ticks(void)
{
    return __rdtsc();
}

/* Ticks per ms, measured against the monotonic clock since the first call
 * (the TSC's rate is constant on every CPU the kernel trusts it on). */
static double
ticks_per_ms(void)
{
    static _Atomic uint64_t t0;
    static _Atomic int64_t ns0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    uint64_t t = __rdtsc();
    uint64_t zero = 0;
    if (atomic_compare_exchange_strong(&t0, &zero, t)) {
        atomic_store(&ns0, ns);
        return 0;
    }
    int64_t dns = ns - atomic_load(&ns0);
    if (dns < 1000000)
        return 0; /* too soon to tell */
    return (double)(t - atomic_load(&t0)) / ((double)dns / 1e6);
}
#elif defined(__aarch64__)
uint64_t
sched_ticks(void)
{
    uint64_t v;
    __asm__ volatile("mrs %0, cntvct_el0" : "=r"(v));
    return v;
}

static double
ticks_per_ms(void)
{
    uint64_t hz;
    __asm__ volatile("mrs %0, cntfrq_el0" : "=r"(hz));
    return (double)hz / 1000.0;
}
#else
uint64_t
sched_ticks(void)
{
    return (uint64_t)sched_coarse_ms();
}

static double
ticks_per_ms(void)
{
    return 1.0;
}
#endif

int64_t
sched_ticks_ms_since(uint64_t then)
{
    uint64_t now = sched_ticks();
    double rate = ticks_per_ms();
    if (now <= then || rate <= 0)
        return 0;
    return (int64_t)((double)(now - then) / rate);
}

struct g *
sched_curg(void)
{
    struct m *m = m_self();
    return m ? m->curg : NULL;
}

void
sched_require_goroutine(const char *what)
{
    if (!sched_curg())
        sched_fatal("%s: called outside a goroutine (blocking calls need a goroutine)", what);
}

struct g *
sched_self(const char *what)
{
    struct g *g = sched_curg();
    if (!g)
        sched_fatal("%s: called outside a goroutine (blocking calls need a goroutine)", what);
    return g;
}

struct gcache *
sched_gcache(void)
{
    struct m *m = m_self();
    return m ? &m->gcache : NULL;
}

uint64_t
go_id(void)
{
    struct g *g = sched_curg();
    return g ? g->id : 0;
}

bool
go_on_goroutine(void)
{
    return sched_curg() != NULL;
}

int
sched_threads(void)
{
    return atomic_load(&sched.nthreads);
}


static uint32_t
runq_len(struct m *m)
{
    uint32_t t = atomic_load_explicit(&m->runq_tail, memory_order_acquire);
    uint32_t h = atomic_load_explicit(&m->runq_head, memory_order_acquire);
    return t - h;
}

/* Makes room for `more` goroutines in the global queue (sched.lock held):
 * a bigger ring with the queue unwrapped at its start. */
static void
gq_reserve_locked(size_t more)
{
    size_t len = atomic_load_explicit(&sched.gq_len, memory_order_relaxed);
    if (len + more <= sched.gq_cap)
        return;
    size_t cap = sched.gq_cap ? sched.gq_cap : GQ_MIN_CAP;
    while (cap < len + more)
        cap *= 2;
    struct g **ring = malloc(cap * sizeof *ring);
    if (!ring)
        sched_fatal("global run queue: out of memory");
    for (size_t i = 0; i < len; i++)
        ring[i] = sched.gq[(sched.gq_head + i) % sched.gq_cap];
    free(sched.gq);
    sched.gq = ring;
    sched.gq_head = 0;
    sched.gq_cap = cap;
}

/* Appends n goroutines to the global queue, in order (sched.lock held). */
static void
global_put_locked(struct g *const *v, size_t n)
{
    gq_reserve_locked(n);
    size_t len = atomic_load_explicit(&sched.gq_len, memory_order_relaxed);
    for (size_t i = 0; i < n; i++)
        sched.gq[(sched.gq_head + len + i) % sched.gq_cap] = v[i];
    atomic_store(&sched.gq_len, len + n);
}

static void
global_put(struct g *const *v, size_t n)
{
    pthread_mutex_lock(&sched.lock);
    global_put_locked(v, n);
    pthread_mutex_unlock(&sched.lock);
}

static void
global_put_one(struct g *g)
{
    global_put(&g, 1);
}

/* The ring is full: moves half of it plus g to the global queue. False when
 * a stealer raced us (the caller retries the fast path). */
static bool
runq_put_slow(struct m *m, struct g *g, uint32_t h, uint32_t t)
{
    struct g *batch[RUNQ_SIZE / 2 + 1];
    uint32_t n = (t - h) / 2;
    for (uint32_t i = 0; i < n; i++)
        batch[i] = atomic_load_explicit(&m->runq[(h + i) % RUNQ_SIZE], memory_order_relaxed);
    if (!atomic_compare_exchange_strong_explicit(&m->runq_head, &h, h + n, memory_order_release,
                                                 memory_order_relaxed))
        return false;
    batch[n] = g;
    global_put(batch, n + 1);
    return true;
}

/* Owner only. `next`: put g in runnext, moving the previous occupant to the
 * ring (Go: a goroutine readied by the running one runs next). */
static void
runq_put(struct m *m, struct g *g, bool next)
{
    if (next) {
        g = atomic_exchange_explicit(&m->runnext, g, memory_order_acq_rel);
        if (!g)
            return;
    }
    for (;;) {
        uint32_t h = atomic_load_explicit(&m->runq_head, memory_order_acquire);
        uint32_t t = atomic_load_explicit(&m->runq_tail, memory_order_relaxed);
        if (t - h < RUNQ_SIZE) {
            atomic_store_explicit(&m->runq[t % RUNQ_SIZE], g, memory_order_relaxed);
            atomic_store_explicit(&m->runq_tail, t + 1, memory_order_release);
            return;
        }
        if (runq_put_slow(m, g, h, t))
            return;
    }
}

/* Owner only: runnext first (bounded streak), then the ring's head. */
static struct g *
runq_get(struct m *m)
{
    struct g *g = atomic_load_explicit(&m->runnext, memory_order_relaxed);
    if (g && m->next_streak < RUNNEXT_STREAK &&
        atomic_compare_exchange_strong_explicit(&m->runnext, &g, NULL, memory_order_acquire,
                                                memory_order_relaxed)) {
        m->next_streak++;
        return g;
    }
    m->next_streak = 0;
    for (;;) {
        uint32_t h = atomic_load_explicit(&m->runq_head, memory_order_acquire);
        uint32_t t = atomic_load_explicit(&m->runq_tail, memory_order_relaxed);
        if (t == h)
            return atomic_exchange_explicit(&m->runnext, NULL, memory_order_acquire);
        g = atomic_load_explicit(&m->runq[h % RUNQ_SIZE], memory_order_relaxed);
        if (atomic_compare_exchange_strong_explicit(&m->runq_head, &h, h + 1,
                                                    memory_order_release, memory_order_relaxed))
            return g;
    }
}

/* Steals half of victim's ring into m's (empty) ring and returns one of
 * them; with `take_next` also the victim's runnext when its ring is empty. */
static struct g *
runq_steal(struct m *m, struct m *victim, bool take_next)
{
    struct g *batch[RUNQ_SIZE / 2];
    uint32_t n;
    for (;;) {
        uint32_t h = atomic_load_explicit(&victim->runq_head, memory_order_acquire);
        uint32_t t = atomic_load_explicit(&victim->runq_tail, memory_order_acquire);
        n = t - h;
        n -= n / 2;
        if (n == 0) {
            if (!take_next)
                return NULL;
            struct g *g = atomic_load_explicit(&victim->runnext, memory_order_relaxed);
            if (g && atomic_compare_exchange_strong_explicit(&victim->runnext, &g, NULL,
                                                             memory_order_acquire,
                                                             memory_order_relaxed))
                return g;
            return NULL;
        }
        if (n > RUNQ_SIZE / 2)
            continue; /* read an inconsistent head/tail pair */
        for (uint32_t i = 0; i < n; i++)
            batch[i] =
                atomic_load_explicit(&victim->runq[(h + i) % RUNQ_SIZE], memory_order_relaxed);
        if (atomic_compare_exchange_strong_explicit(&victim->runq_head, &h, h + n,
                                                    memory_order_acq_rel, memory_order_relaxed))
            break;
    }
    uint32_t t = atomic_load_explicit(&m->runq_tail, memory_order_relaxed);
    for (uint32_t i = 1; i < n; i++)
        atomic_store_explicit(&m->runq[(t + i - 1) % RUNQ_SIZE], batch[i], memory_order_relaxed);
    if (n > 1)
        atomic_store_explicit(&m->runq_tail, t + n - 1, memory_order_release);
    return batch[0];
}

/* Takes a share of the global queue (sched.lock held): returns one and
 * moves the rest of the share into m's ring (m is the caller's own). */
static struct g *
global_get_locked(struct m *m)
{
    size_t len = atomic_load_explicit(&sched.gq_len, memory_order_relaxed);
    if (!len)
        return NULL;
    size_t n = len / (size_t)atomic_load(&sched.nthreads) + 1;
    if (n > len)
        n = len;
    if (n > RUNQ_SIZE / 2)
        n = RUNQ_SIZE / 2;
    if (runq_len(m) + n > RUNQ_SIZE)
        n = 1;
    struct g *g = sched.gq[sched.gq_head];
    /* Only the owner adds to its ring, so the room checked above stays. */
    uint32_t t = atomic_load_explicit(&m->runq_tail, memory_order_relaxed);
    for (size_t i = 1; i < n; i++)
        atomic_store_explicit(&m->runq[(t + i - 1) % RUNQ_SIZE],
                              sched.gq[(sched.gq_head + i) % sched.gq_cap], memory_order_relaxed);
    if (n > 1)
        atomic_store_explicit(&m->runq_tail, t + (uint32_t)n - 1, memory_order_release);
    sched.gq_head = (sched.gq_head + n) % sched.gq_cap;
    atomic_store(&sched.gq_len, len - n);
    if (len == n && sched.gq_cap > GQ_KEEP_CAP) {
        /* A burst is over: give its ring back. */
        free(sched.gq);
        sched.gq = NULL;
        sched.gq_cap = sched.gq_head = 0;
    }
    return g;
}

static struct g *
global_get(struct m *m)
{
    pthread_mutex_lock(&sched.lock);
    struct g *g = global_get_locked(m);
    pthread_mutex_unlock(&sched.lock);
    return g;
}

/* Any runnable work visible anywhere (for the spinning protocol). */
static bool
work_visible(void)
{
    if (atomic_load(&sched.gq_len))
        return true;
    int n = atomic_load(&sched.nthreads);
    for (int i = 0; i < n; i++) {
        struct m *v = sched.ms[i];
        if (runq_len(v) || atomic_load_explicit(&v->runnext, memory_order_relaxed))
            return true;
    }
    return false;
}


/* Takes an idle worker off the list (sched.lock held) and marks it woken. */
static struct m *
idle_pop_locked(bool spinning)
{
    struct m *m = sched.idle;
    if (!m)
        return NULL;
    sched.idle = m->idle_next;
    m->in_idle = false;
    atomic_fetch_sub(&sched.npidle, 1);
    m->wake_spinning = spinning;
    atomic_store(&m->park_word, 1);
    return m;
}

/* Go's wakep: wakes one idle worker to spin, unless one already spins. */
static void
wakep(void)
{
    /* The RMW orders the caller's run queue store before the loads below
     * (Go's StoreLoad barrier in the submitter; no thread fence, which TSan
     * does not model). */
    if (atomic_fetch_add(&sched.npidle, 0) == 0 || atomic_load(&sched.nmspinning) != 0)
        return;
    int zero = 0;
    if (!atomic_compare_exchange_strong(&sched.nmspinning, &zero, 1))
        return;
    pthread_mutex_lock(&sched.lock);
    struct m *m = idle_pop_locked(true);
    pthread_mutex_unlock(&sched.lock);
    if (m)
        futex_wake(&m->park_word);
    else
        atomic_fetch_sub(&sched.nmspinning, 1);
}

void
sched_wake_for_timer(void)
{
    if (atomic_load(&sched.npidle) == 0)
        return;
    pthread_mutex_lock(&sched.lock);
    struct m *m = idle_pop_locked(false);
    pthread_mutex_unlock(&sched.lock);
    if (m)
        futex_wake(&m->park_word);
}

/* A spinning worker found work: it stops spinning; if it was the last
 * spinner and more work is visible, another worker starts (Go). */
static void
reset_spinning(struct m *m)
{
    if (!m->spinning)
        return;
    m->spinning = false;
    if (atomic_fetch_sub(&sched.nmspinning, 1) == 1 && work_visible())
        wakep();
}


/* A goroutine readied on an event loop's thread: the first one waits in
 * runnext and runs on this thread when the loop's callbacks are done
 * (sched_loop_run: no wake-up of another thread, no hand-off); any more go
 * to the global queue for the workers, so a burst still uses every core. */
static void
loop_put(struct m *m, struct g *g)
{
    struct g *none = NULL;
    if (atomic_compare_exchange_strong(&m->runnext, &none, g))
        return;
    if (runq_len(m) < LOOP_LOCAL_MAX) {
        runq_put(m, g, false);
        return;
    }
    global_put_one(g);
    wakep();
}

void
sched_ready(struct g *g)
{
    int expect = G_WAITING;
    if (!atomic_compare_exchange_strong(&g->state, &expect, G_RUNNABLE))
        sched_fatal("sched_ready: goroutine %llu is not parked (state %d)",
                    (unsigned long long)g->id, expect);
    struct m *m = m_self();
    if (m && m->is_loop) {
        loop_put(m, g);
        return;
    }
    if (m) {
        runq_put(m, g, m->curg != NULL);
        /* A g in runnext alone will run when the current one parks (the
         * ping-pong case): only wake a helper when the ring has work. */
        if (runq_len(m))
            wakep();
        return;
    }
    global_put_one(g);
    wakep();
}

void
sched_ready_list(struct g *head)
{
    if (!head)
        return;
    if (!head->schedlink) {
        sched_ready(head);
        return;
    }
    struct m *m = m_self();
    uint32_t space = 0;
    if (m && atomic_load(&sched.nthreads)) {
        /* Only the owner adds to the ring, so its free space only grows. */
        uint32_t limit = m->is_loop ? LOOP_LOCAL_MAX : RUNQ_SIZE;
        uint32_t len = runq_len(m);
        space = len < limit ? limit - len : 0;
    }
    struct g *chunk[READY_CHUNK];
    size_t n = 0;
    for (struct g *g = head, *next; g; g = next) {
        next = g->schedlink;
        g->schedlink = NULL;
        int expect = G_WAITING;
        if (!atomic_compare_exchange_strong(&g->state, &expect, G_RUNNABLE))
            sched_fatal("sched_ready: goroutine %llu is not parked (state %d)",
                        (unsigned long long)g->id, expect);
        if (space) {
            runq_put(m, g, false);
            space--;
            continue;
        }
        chunk[n++] = g;
        if (n == READY_CHUNK) {
            global_put(chunk, n);
            n = 0;
        }
    }
    if (n)
        global_put(chunk, n);
    wakep();
}

void
sched_ready_new(struct g *g)
{
    struct m *m = m_self();
    if (m && m->is_loop) {
        loop_put(m, g);
        return;
    }
    if (m && atomic_load(&sched.nthreads)) {
        runq_put(m, g, m->curg != NULL);
        if (runq_len(m))
            wakep();
        return;
    }
    global_put_one(g);
    wakep();
}

/* Goroutine -> its worker's scheduler stack. Returns when resumed (maybe on
 * another worker: do not use `m` afterwards). */
static void
switch_to_g0(struct m *m, struct g *g, bool dying)
{
    san_start_switch(dying ? NULL : &g->asan_fake, m->g0_lo, m->g0_size);
    san_fiber_switch(m->g0_fiber);
    switch_jump(&g->ctx, &m->g0ctx);
    san_finish_switch(g->asan_fake, NULL, NULL);
}

void
sched_park(park_unlock_fn *unlock, void *arg, const char *reason, const void *obj)
{
    struct m *m = m_self();
    struct g *g = m ? m->curg : NULL;
    if (!g)
        sched_fatal("%s: called outside a goroutine (blocking calls need a goroutine)", reason);
    atomic_store_explicit(&g->wait_reason, reason, memory_order_relaxed);
    atomic_store_explicit(&g->wait_obj, obj, memory_order_relaxed);
    atomic_store_explicit(&g->wait_since, sched_ticks(), memory_order_relaxed);
    m->park_fn = unlock;
    m->park_arg = arg;
    m->after = AFTER_PARK;
    switch_to_g0(m, g, false);
}

void
go_yield(void)
{
    struct m *m = m_self();
    if (!m || !m->curg)
        return;
    m->after = AFTER_YIELD;
    switch_to_g0(m, m->curg, false);
}

void
go_entry(void *arg)
{
    struct g *g = arg;
    san_finish_switch(NULL, NULL, NULL);
    g->fn(g->arg);
    struct m *m = m_self();
    m->after = AFTER_EXIT;
    switch_to_g0(m, g, true);
    abort(); /* a dead goroutine is never resumed */
}

static void
check_stack(struct g *g)
{
    if (!stack_canary_ok(&g->stack)) {
        stack_report_overflow(g->id, g->file, g->line);
        abort();
    }
}

/* With thousands of goroutines, resuming one is a cache miss on every line
 * of its stack it returns through. While g runs, fetch the lines of the one
 * likely to run next (the head of m's ring): its saved stack pointer (or
 * where its stack's first frame will go) and a few lines above. Only a hint:
 * the slot may be stolen meanwhile, and goroutines are never freed while
 * the scheduler runs (g_destroy only follows a stack size change), so the
 * load is harmless; left out of sanitizer builds, which would flag it. */
static inline void
prefetch_next(struct m *m)
{
#if !SAN_ENABLED && !CHANQ_SWITCH_UCONTEXT
    /* Two stages, so that nothing here waits for memory: the goroutine after
     * next gets its g struct fetched; the next one, whose g struct the
     * previous pick fetched, gets the top of its saved frames fetched. */
    uint32_t h = atomic_load_explicit(&m->runq_head, memory_order_relaxed);
    uint32_t len = atomic_load_explicit(&m->runq_tail, memory_order_relaxed) - h;
    if (len == 0 || len > RUNQ_SIZE)
        return;
    if (len > 1) {
        struct g *after = atomic_load_explicit(&m->runq[(h + 1) % RUNQ_SIZE], memory_order_relaxed);
        if (after)
            __builtin_prefetch(after);
    }
    struct g *n = atomic_load_explicit(&m->runq[h % RUNQ_SIZE], memory_order_relaxed);
    if (!n)
        return;
    const char *sp = n->fresh ? (const char *)n->stack.lo + n->stack.size - 128
                              : (const char *)__atomic_load_n(&n->ctx.sp, __ATOMIC_RELAXED);
    for (int i = 0; i < PREFETCH_LINES; i++)
        __builtin_prefetch(sp + 64 * i);
#else
    (void)m;
#endif
}

/* Runs g on m until it parks, yields or returns, then does what it asked. */
static void
execute(struct m *m, struct g *g)
{
    prefetch_next(m);
    m->curg = g;
    atomic_store_explicit(&g->state, G_RUNNING, memory_order_relaxed);
    if (g->fresh) {
        g->fresh = false;
        switch_init(&g->ctx, g->stack.lo, g->stack.size, go_entry, g);
    }
    san_start_switch(&m->g0_fake, g->stack.lo, g->stack.size);
    san_fiber_switch(g->tsan_fiber);
    switch_jump(&m->g0ctx, &g->ctx);
    san_finish_switch(m->g0_fake, NULL, NULL);
    m->curg = NULL;
    check_stack(g);
    switch (m->after) {
    case AFTER_PARK:
        /* g's registers are saved: from here on a waker may resume it. */
        atomic_store_explicit(&g->state, G_WAITING, memory_order_release);
        if (!m->park_fn(g, m->park_arg)) {
            int expect = G_WAITING;
            if (atomic_compare_exchange_strong(&g->state, &expect, G_RUNNABLE))
                runq_put(m, g, true);
        }
        break;
    case AFTER_YIELD:
        atomic_store_explicit(&g->state, G_RUNNABLE, memory_order_relaxed);
        runq_put(m, g, false);
        break;
    case AFTER_EXIT:
        atomic_store_explicit(&g->state, G_DEAD, memory_order_relaxed);
        go_release(g);
        break;
    }
}


static void
checkdead_locked(void)
{
    if (!atomic_load(&sched.detect_deadlock) || atomic_load(&sched.shutdown))
        return;
    if (atomic_load(&sched.npidle) != atomic_load(&sched.nthreads))
        return;
    if (atomic_load(&sched.nexternal) > 0 || timers_pending() > 0 ||
        atomic_load(&sched.gq_len))
        return;
    if (work_visible() || go_count() == 0)
        return;
    fputs("fatal error: all goroutines are asleep - deadlock!\n\n", stderr);
    go_dump(stderr);
    abort();
}

static struct g *
steal_work(struct m *m)
{
    int n = atomic_load(&sched.nthreads);
    for (int round = 0; round < STEAL_ROUNDS; round++) {
        int start = (int)(xorshift(&m->rng) % (uint64_t)n);
        for (int i = 0; i < n; i++) {
            struct m *v = sched.ms[(start + i) % n];
            if (v == m)
                continue;
            struct g *g = runq_steal(m, v, round == STEAL_ROUNDS - 1);
            if (g)
                return g;
        }
        if (atomic_load(&sched.gq_len))
            return global_get(m);
    }
    return NULL;
}

/* Takes m off the idle list if still there; consumes a wake-up. */
static void
m_unidle(struct m *m)
{
    pthread_mutex_lock(&sched.lock);
    if (m->in_idle) {
        struct m **p = &sched.idle;
        while (*p != m)
            p = &(*p)->idle_next;
        *p = m->idle_next;
        m->in_idle = false;
        atomic_fetch_sub(&sched.npidle, 1);
    }
    bool spin = m->wake_spinning;
    m->wake_spinning = false;
    pthread_mutex_unlock(&sched.lock);
    if (atomic_exchange(&m->park_word, 0) && spin)
        m->spinning = true;
}

static void
m_sleep(struct m *m)
{
    /* Idle: give the memory of pooled dead goroutines' stacks back, a batch
     * at a time, until someone wakes us (or come back when it is due). */
    int64_t trim;
    do {
        if (atomic_load(&m->park_word))
            return;
    } while ((trim = go_pool_idle()) == 0);
    int64_t timeout = timers_idle_timeout();
    if (timeout == 0)
        return;
    if (trim > 0 && (timeout < 0 || trim < timeout))
        timeout = trim;
    bool forever = timeout < 0;
    if (forever) {
        timers_sleep_forever_begin();
        if (timers_next_when() != INT64_MAX) { /* armed meanwhile: poll instead */
            timers_sleep_forever_end();
            return;
        }
    }
    while (atomic_load(&m->park_word) == 0) {
        futex_wait(&m->park_word, 0, timeout);
        if (timeout >= 0)
            break;
    }
    if (forever)
        timers_sleep_forever_end();
}

static struct g *
find_runnable(struct m *m)
{
    for (;;) {
        if (atomic_load_explicit(&sched.shutdown, memory_order_relaxed))
            return NULL;
        timers_run_due();
        struct g *g;
        if (++m->schedtick % GLOBAL_EVERY == 0 && atomic_load(&sched.gq_len) &&
            (g = global_get(m)))
            return g;
        if ((g = runq_get(m))) {
            reset_spinning(m);
            return g;
        }
        if (atomic_load(&sched.gq_len) && (g = global_get(m))) {
            reset_spinning(m);
            return g;
        }
        int n = atomic_load(&sched.nthreads);
        if (!m->spinning &&
            2 * atomic_load(&sched.nmspinning) < n - atomic_load(&sched.npidle)) {
            m->spinning = true;
            atomic_fetch_add(&sched.nmspinning, 1);
        }
        if (m->spinning && n > 1 && (g = steal_work(m))) {
            reset_spinning(m);
            return g;
        }

        pthread_mutex_lock(&sched.lock);
        if (atomic_load(&sched.shutdown)) {
            pthread_mutex_unlock(&sched.lock);
            return NULL;
        }
        if ((g = global_get_locked(m))) {
            pthread_mutex_unlock(&sched.lock);
            reset_spinning(m);
            return g;
        }
        m->in_idle = true;
        m->idle_next = sched.idle;
        sched.idle = m;
        atomic_fetch_add(&sched.npidle, 1);
        checkdead_locked();
        pthread_mutex_unlock(&sched.lock);

        if (m->spinning) {
            /* Go's rule: drop the spinning count, then recheck every queue,
             * so a submitter that saw us spinning did not skip a wake-up
             * for work nobody will look at. */
            m->spinning = false;
            atomic_fetch_sub(&sched.nmspinning, 1); /* seq_cst RMW: a full barrier */
            if (work_visible()) {
                m_unidle(m);
                if (!m->spinning) {
                    m->spinning = true;
                    atomic_fetch_add(&sched.nmspinning, 1);
                }
                continue;
            }
        }
        m_sleep(m);
        m_unidle(m);
    }
}

/* What m needs of the thread that runs it: the overflow reporter's signal
 * stack, the sanitizers' view of the thread, its own (scheduler) stack. */
static void
m_bind_thread(struct m *m)
{
    m->altstack = stack_altstack_new();
    m->g0_fiber = san_fiber_current();
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        void *lo;
        size_t size;
        if (pthread_attr_getstack(&attr, &lo, &size) == 0) {
            m->g0_lo = lo;
            m->g0_size = size;
        }
        pthread_attr_destroy(&attr);
    }
}

static void *
m_main(void *arg)
{
    struct m *m = arg;
    tls_m = m;
    m_bind_thread(m);
    struct g *g;
    while ((g = find_runnable(m)))
        execute(m, g);
    stack_altstack_free(m->altstack);
    tls_m = NULL;
    return NULL;
}


static void
on_fault(int sig, siginfo_t *si, void *uctx)
{
    struct m *m = tls_m;
    struct g *g = m ? m->curg : NULL;
    void *sp = switch_fault_sp(uctx);
    /* The fault hit the guard page, or the goroutine's stack pointer left
     * its (unguarded) stack. */
    if (g && (stack_addr_is_overflow(&g->stack, si->si_addr) ||
              (sp && (uintptr_t)sp < (uintptr_t)g->stack.lo))) {
        stack_report_overflow(g->id, g->file, g->line);
        abort();
    }
    struct sigaction *old = sig == SIGSEGV ? &sched.old_segv : &sched.old_bus;
    if ((old->sa_flags & SA_SIGINFO) && old->sa_sigaction) {
        old->sa_sigaction(sig, si, uctx);
        return;
    }
    if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
        old->sa_handler(sig);
        return;
    }
    signal(sig, SIG_DFL); /* returning re-faults into the default action */
}

static void
install_signals(void)
{
    struct sigaction sa = {0};
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &sched.old_segv);
    sigaction(SIGBUS, &sa, &sched.old_bus);
}


static int
threads_wanted(int n)
{
    if (n <= 0) {
        const char *env = getenv("GOMAXPROCS");
        n = env ? atoi(env) : 0;
    }
    if (n <= 0)
        n = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n <= 0)
        n = 1;
    return n > MAX_THREADS ? MAX_THREADS : n;
}

static void
free_ms(int n)
{
    for (int i = 0; i < n; i++) {
        free(sched.ms[i]);
        sched.ms[i] = NULL;
    }
}

static int
sched_start_with(int nthreads, bool detect_deadlock)
{
    if (tls_m)
        return -EALREADY;
    pthread_mutex_lock(&sched.lock);
    if (atomic_load(&sched.nthreads)) {
        pthread_mutex_unlock(&sched.lock);
        return -EALREADY;
    }
    pthread_once(&sched_signals_once, install_signals);
    (void)ticks_per_ms(); /* starts the tick rate's measurement */
    int n = threads_wanted(nthreads);
    for (int i = 0; i < n; i++) {
        struct m *m = aligned_alloc(64, (sizeof *m + 63) & ~(size_t)63);
        if (!m) {
            free_ms(i);
            pthread_mutex_unlock(&sched.lock);
            return -ENOMEM;
        }
        *m = (struct m){.id = i, .rng = 0x2545f4914f6cdd1dULL * (uint64_t)(i + 1)};
        sched.ms[i] = m;
    }
    atomic_store(&sched.shutdown, false);
    atomic_store(&sched.detect_deadlock, detect_deadlock);
    atomic_store(&sched.nthreads, n);
    pthread_mutex_unlock(&sched.lock);
    for (int i = 0; i < n; i++) {
        if (pthread_create(&sched.ms[i]->thread, NULL, m_main, sched.ms[i]) != 0) {
            /* Stop the ones that started; treat the rest as never created. */
            atomic_store(&sched.nthreads, i);
            sched_shutdown();
            free_ms(n);
            return -EAGAIN;
        }
    }
    return 0;
}

int
sched_start(int nthreads)
{
    return sched_start_with(nthreads, false);
}

void
sched_shutdown(void)
{
    if (tls_m)
        sched_fatal("sched_shutdown: called from a worker thread");
    int n = atomic_load(&sched.nthreads);
    if (!n)
        return;
    pthread_mutex_lock(&sched.lock);
    atomic_store(&sched.shutdown, true);
    struct m *woken[MAX_THREADS];
    int k = 0;
    struct m *m;
    while ((m = idle_pop_locked(false)))
        woken[k++] = m;
    pthread_mutex_unlock(&sched.lock);
    for (int i = 0; i < k; i++)
        futex_wake(&woken[i]->park_word);
    for (int i = 0; i < n; i++)
        pthread_join(sched.ms[i]->thread, NULL);
    for (int i = 0; i < n; i++)
        go_gcache_flush(&sched.ms[i]->gcache);
    /* Leftover runnable goroutines wait in the global queue for a restart. */
    for (int i = 0; i < n; i++) {
        struct g *g;
        m = sched.ms[i];
        m->next_streak = RUNNEXT_STREAK;
        while ((g = runq_get(m)))
            global_put_one(g);
    }
    pthread_mutex_lock(&sched.lock);
    atomic_store(&sched.nthreads, 0);
    atomic_store(&sched.npidle, 0);
    atomic_store(&sched.nmspinning, 0);
    sched.idle = NULL;
    free_ms(n);
    pthread_mutex_unlock(&sched.lock);
}

void
sched_external_ref(void)
{
    atomic_fetch_add(&sched.nexternal, 1);
}

void
sched_external_unref(void)
{
    /* The last outside waker left: let an idle worker rerun the check. */
    if (atomic_fetch_sub(&sched.nexternal, 1) == 1)
        sched_wake_for_timer();
}

/* sched_run_main's goroutine: runs the program, then wakes the main thread. */
struct main_call {
    go_fn *fn;
    void *arg;
    _Atomic uint32_t done; /* futex the main thread sleeps on */
};

static void
main_goroutine(void *arg)
{
    struct main_call *mc = arg;
    mc->fn(mc->arg);
    atomic_store(&sched.detect_deadlock, false);
    atomic_store(&mc->done, 1);
    futex_wake(&mc->done);
}

int
sched_run_main(go_fn *fn, void *arg, int nthreads)
{
    struct main_call mc = {.fn = fn, .arg = arg};
    int rc = go_spawn(main_goroutine, &mc, "main", 0);
    if (rc)
        return rc;
    rc = sched_start_with(nthreads, true);
    if (rc)
        return rc;
    while (atomic_load(&mc.done) == 0)
        futex_wait(&mc.done, 0, -1);
    sched_shutdown();
    return 0;
}

/* ---- an event loop's thread as a scheduler thread ---- */

int
sched_loop_attach(void)
{
    if (tls_m)
        return -EALREADY;
    if (!atomic_load(&sched.nthreads))
        return -EINVAL;
    struct m *m = aligned_alloc(64, (sizeof *m + 63) & ~(size_t)63);
    if (!m)
        return -ENOMEM;
    *m = (struct m){.id = -1, .is_loop = true, .rng = 0x9e3779b97f4a7c15ULL ^ (uintptr_t)m};
    m_bind_thread(m);
    tls_m = m;
    return 0;
}

/* Hands whatever the loop thread still holds to the workers, a chunk per
 * lock hold (the ring holds about LOOP_LOCAL_MAX: usually one chunk). */
static void
loop_spill(struct m *m)
{
    struct g *v[LOOP_LOCAL_MAX + 1];
    size_t n, total = 0;
    m->next_streak = 0;
    do {
        for (n = 0; n < LOOP_LOCAL_MAX + 1 && (v[n] = runq_get(m)); n++)
            ;
        if (n)
            global_put(v, n);
        total += n;
    } while (n == LOOP_LOCAL_MAX + 1);
    if (total)
        wakep();
}

void
sched_loop_run(int budget)
{
    struct m *m = m_self();
    if (!m || !m->is_loop)
        return;
    struct g *g;
    for (int i = 0; i < budget && (g = runq_get(m)); i++)
        execute(m, g);
    loop_spill(m);
}

bool
sched_loop_has_work(void)
{
    struct m *m = m_self();
    return m && m->is_loop && (runq_len(m) || atomic_load(&m->runnext));
}

void
sched_loop_detach(void)
{
    struct m *m = m_self();
    if (!m || !m->is_loop)
        return;
    loop_spill(m);
    go_gcache_flush(&m->gcache);
    stack_altstack_free(m->altstack);
    tls_m = NULL;
    free(m);
}
