/* Goroutine lifecycle: spawn, first entry, exit and recycling, the list of
 * live goroutines behind go_count() and go_dump(). */
#include "chanq_config.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/go.h"
#include "core/sanitizer.h"
#include "core/sched-internal.h"

enum {
    DEFAULT_STACK_SIZE = 256 * 1024,
    MIN_STACK_SIZE = 16 * 1024,
    LOCAL_MAX = 128,         /* dead goroutines a worker keeps for itself */
    LOCAL_MOVE = 64,         /* moved between a worker's cache and the pool at once */
    POOL_WARM_KEEP = 1024,   /* untrimmed stacks the pool always may keep */
    POOL_WARM_MAX = 131072,  /* above this, every stack coming in is trimmed */
    TRIM_IDLE_MS = 100,      /* pool untouched this long: idle workers trim it */
    TRIM_BATCH = 64,         /* stacks trimmed per pool-lock hold */
    ID_BATCH = 16,           /* goroutine ids a worker takes at once */
};

/* Process-wide goroutine bookkeeping (the runtime's state is process-wide,
 * see docs/hacking.md). Dead goroutines keep their stacks and are reused:
 * first from the worker's own cache (struct gcache, no lock), then from the
 * pool here, in batches of LOCAL_MOVE. Stacks in the pool are "warm" (as
 * their last goroutine left them) or "cold" (given back to the kernel,
 * stack_trim). Beyond POOL_WARM_KEEP warm ones, a stack coming in is
 * trimmed at once if it went deeper than its top page (stack_was_deep) or
 * beyond POOL_WARM_MAX; the rest (one page each) waits until the pool has
 * not been used for TRIM_IDLE_MS, when idle workers trim it
 * (go_pool_idle). */
static struct {
    pthread_mutex_t lock;     /* guards all (links), warm, cold */
    struct g *all;            /* every goroutine ever allocated, newest first;
                                 dead ones stay (go_dump skips them) */
    struct g *warm;           /* pool: untrimmed stacks, a LIFO of batches */
    struct g *cold;           /* pool: trimmed stacks, a LIFO of batches */
    atomic_size_t nwarm;      /* their lengths (written under lock) */
    atomic_size_t ncold;
    _Atomic int64_t last_use; /* sched_coarse_ms() of the last draw from or
                                 batch into the pool */
    _Atomic uint64_t next_id; /* last id handed out */
    atomic_size_t nuser;      /* live user goroutines */
    atomic_size_t stack_size; /* for new stacks; 0 = not yet read from env */
} gs = {.lock = PTHREAD_MUTEX_INITIALIZER};

void
go_set_stack_size(size_t bytes)
{
    if (bytes < MIN_STACK_SIZE)
        bytes = MIN_STACK_SIZE;
    atomic_store(&gs.stack_size, bytes);
}

static size_t
stack_size_get(void)
{
    size_t sz = atomic_load_explicit(&gs.stack_size, memory_order_relaxed);
    if (sz)
        return sz;
    const char *env = getenv("CHANQ_STACK_SIZE");
    sz = env ? strtoull(env, NULL, 10) : 0;
    if (!sz)
        sz = DEFAULT_STACK_SIZE;
    if (sz < MIN_STACK_SIZE)
        sz = MIN_STACK_SIZE;
    size_t zero = 0;
    atomic_compare_exchange_strong(&gs.stack_size, &zero, sz);
    return atomic_load(&gs.stack_size);
}

/* The pool holds chains as they came in, one batch each: the head of a
 * batch carries the batch's length and the next batch, so taking a batch
 * never walks its goroutines (cold g structs, a cache miss each). */

/* Pops one batch from *list (lock held), split when it has more than
 * `want`; returns its length and the chain (through schedlink) in *chain. */
static size_t
pool_pop_batch(struct g **list, size_t want, struct g **chain)
{
    struct g *head = *list;
    if (!head)
        return 0;
    size_t n = head->pool_batch_n;
    *list = head->pool_batch_next;
    if (n > want) {
        struct g *last = head;
        for (size_t i = 1; i < want; i++)
            last = last->schedlink;
        struct g *rest = last->schedlink;
        last->schedlink = NULL;
        rest->pool_batch_n = n - want;
        rest->pool_batch_next = *list;
        *list = rest;
        n = want;
    }
    *chain = head;
    return n;
}

/* Takes up to `want` goroutines (one batch) from the pool (lock held), warm
 * ones first, as a chain through schedlink; returns its length. */
static size_t
pool_take_locked(struct g **chain, size_t want)
{
    size_t n = pool_pop_batch(&gs.warm, want, chain);
    if (n) {
        atomic_store_explicit(&gs.nwarm, gs.nwarm - n, memory_order_relaxed);
        return n;
    }
    n = pool_pop_batch(&gs.cold, want, chain);
    atomic_store_explicit(&gs.ncold, gs.ncold - n, memory_order_relaxed);
    return n;
}

/* Pushes a chain of n goroutines (ending in a NULL schedlink) onto the pool
 * as one batch, on the cold list if trimmed. */
static void
pool_put(struct g *head, size_t n, bool trimmed)
{
    head->pool_batch_n = n;
    pthread_mutex_lock(&gs.lock);
    if (trimmed) {
        head->pool_batch_next = gs.cold;
        gs.cold = head;
        atomic_store_explicit(&gs.ncold, gs.ncold + n, memory_order_relaxed);
    } else {
        head->pool_batch_next = gs.warm;
        gs.warm = head;
        atomic_store_explicit(&gs.nwarm, gs.nwarm + n, memory_order_relaxed);
    }
    pthread_mutex_unlock(&gs.lock);
}

/* Moves a chain of n to the pool. Above POOL_WARM_KEEP warm stacks, the
 * deep ones (and above POOL_WARM_MAX all) are trimmed first: this bounds
 * resident memory right when a crowd of goroutines ends. */
static void
pool_give(struct g *head, size_t n)
{
    size_t nwarm = atomic_load_explicit(&gs.nwarm, memory_order_relaxed);
    if (nwarm + n <= POOL_WARM_KEEP) {
        pool_put(head, n, false);
        return;
    }
    struct g *warm = NULL, *warm_tail = NULL, *cold = NULL, *cold_tail = NULL;
    size_t nw = 0, nc = 0;
    /* stack_was_deep reads a cold line of each stack: ask for all of them
     * first, so that their cache misses overlap instead of queueing. */
    if (nwarm < POOL_WARM_MAX)
        for (struct g *g = head; g; g = g->schedlink)
            stack_prefetch_deep_check(&g->stack);
    for (struct g *g = head, *next; g; g = next) {
        next = g->schedlink;
        g->schedlink = NULL;
        if (nwarm + nw >= POOL_WARM_MAX || stack_was_deep(&g->stack)) {
            stack_trim(&g->stack);
            if (cold_tail)
                cold_tail->schedlink = g;
            else
                cold = g;
            cold_tail = g;
            nc++;
        } else {
            if (warm_tail)
                warm_tail->schedlink = g;
            else
                warm = g;
            warm_tail = g;
            nw++;
        }
    }
    if (nw)
        pool_put(warm, nw, false);
    if (nc)
        pool_put(cold, nc, true);
    /* Goroutines are ending in numbers: not idle yet. */
    atomic_store_explicit(&gs.last_use, sched_coarse_ms(), memory_order_relaxed);
}

int64_t
go_pool_idle(void)
{
    if (atomic_load_explicit(&gs.nwarm, memory_order_relaxed) <= POOL_WARM_KEEP)
        return -1;
    int64_t wait = atomic_load_explicit(&gs.last_use, memory_order_relaxed) + TRIM_IDLE_MS -
                   sched_coarse_ms();
    if (wait > 0)
        return wait;
    struct g *chain = NULL;
    size_t n = 0;
    pthread_mutex_lock(&gs.lock);
    if (gs.nwarm > POOL_WARM_KEEP) {
        size_t want = gs.nwarm - POOL_WARM_KEEP;
        n = pool_take_locked(&chain, want < TRIM_BATCH ? want : TRIM_BATCH);
    }
    pthread_mutex_unlock(&gs.lock);
    if (!n)
        return -1;
    for (struct g *g = chain; g; g = g->schedlink)
        stack_trim(&g->stack);
    pool_put(chain, n, true);
    return atomic_load_explicit(&gs.nwarm, memory_order_relaxed) > POOL_WARM_KEEP ? 0 : -1;
}

void
go_gcache_flush(struct gcache *c)
{
    if (c->head)
        pool_give(c->head, c->n);
    c->head = NULL;
    c->n = 0;
}

/* A dead goroutine from the worker's cache (refilled from the pool), or
 * from the pool; NULL when there is none. */
static struct g *
g_take(struct gcache *c)
{
    struct g *g;
    if (c && (g = c->head)) {
        c->head = g->schedlink;
        c->n--;
        return g;
    }
    pthread_mutex_lock(&gs.lock);
    size_t n = pool_take_locked(&g, c ? LOCAL_MOVE : 1);
    pthread_mutex_unlock(&gs.lock);
    atomic_store_explicit(&gs.last_use, sched_coarse_ms(), memory_order_relaxed);
    if (!n)
        return NULL;
    if (c) {
        c->head = g->schedlink;
        c->n = n - 1;
    }
    return g;
}

/* Unlinks g from the list of all goroutines and frees it with its stack. */
static void
g_destroy(struct g *g)
{
    pthread_mutex_lock(&gs.lock);
    if (g->all_prev)
        g->all_prev->all_next = g->all_next;
    else
        gs.all = g->all_next;
    if (g->all_next)
        g->all_next->all_prev = g->all_prev;
    pthread_mutex_unlock(&gs.lock);
    stack_free(&g->stack);
    free(g);
}

/* A recycled goroutine whose stack has the wanted size, or a new one. */
static struct g *
g_alloc(void)
{
    size_t size = stack_size_get();
    struct g *g = g_take(sched_gcache());
    if (g && g->stack.size >= size && g->stack.size <= 2 * size)
        return g;
    if (g)
        g_destroy(g); /* only after a stack size change */
    g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    if (stack_alloc(&g->stack, size) != 0) {
        free(g);
        return NULL;
    }
    pthread_mutex_lock(&gs.lock);
    g->all_prev = NULL;
    g->all_next = gs.all;
    if (gs.all)
        gs.all->all_prev = g;
    gs.all = g;
    pthread_mutex_unlock(&gs.lock);
    return g;
}

/* A new goroutine id. Workers take them from the shared counter ID_BATCH
 * at a time (Go's goidcache): one contended atomic per spawn, shared by
 * every worker, showed up at GOMAXPROCS=2. Ids are unique and never 0,
 * not in spawn order across workers. */
static uint64_t
next_id(void)
{
    struct gcache *c = sched_gcache();
    if (!c)
        return atomic_fetch_add_explicit(&gs.next_id, 1, memory_order_relaxed) + 1;
    if (c->id_next == c->id_end) {
        c->id_next = atomic_fetch_add_explicit(&gs.next_id, ID_BATCH, memory_order_relaxed) + 1;
        c->id_end = c->id_next + ID_BATCH;
    }
    return c->id_next++;
}

int
go_spawn(go_fn *fn, void *arg, const char *file, int line)
{
    struct g *g = g_alloc();
    if (!g)
        return -ENOMEM;
    g->fn = fn;
    g->arg = arg;
    /* go_dump reads these of any goroutine in the list without a lock. */
    __atomic_store_n(&g->file, file, __ATOMIC_RELAXED);
    __atomic_store_n(&g->line, line, __ATOMIC_RELAXED);
    __atomic_store_n(&g->id, next_id(), __ATOMIC_RELAXED);
    atomic_store_explicit(&g->wait_reason, NULL, memory_order_relaxed);
    atomic_store_explicit(&g->wait_obj, NULL, memory_order_relaxed);
    g->schedlink = NULL;
    g->asan_fake = NULL;
    g->tsan_fiber = san_fiber_create();
    g->fresh = true; /* its first frame is written when it first runs (hot then) */
    atomic_fetch_add(&gs.nuser, 1);
    atomic_store_explicit(&g->state, G_RUNNABLE, memory_order_release);
    sched_ready_new(g);
    return 0;
}

void
go_release(struct g *g)
{
    san_fiber_destroy(g->tsan_fiber);
    g->tsan_fiber = NULL;
    g->arg = NULL;
    if (!g->system)
        atomic_fetch_sub(&gs.nuser, 1);
    /* From here on g belongs to the next go_spawn. */
    struct gcache *c = sched_gcache();
    if (!c) {
        g->schedlink = NULL;
        pool_give(g, 1);
        return;
    }
    g->schedlink = c->head;
    c->head = g;
    if (++c->n <= LOCAL_MAX)
        return;
    /* Keep the newest (hottest) ones; the older LOCAL_MOVE go to the pool. */
    struct g *last = c->head;
    for (size_t i = 1; i < c->n - LOCAL_MOVE; i++)
        last = last->schedlink;
    struct g *old = last->schedlink;
    last->schedlink = NULL;
    c->n -= LOCAL_MOVE;
    pool_give(old, LOCAL_MOVE);
}

size_t
go_count(void)
{
    return atomic_load(&gs.nuser);
}

static const char *
g_state_name(int state)
{
    switch (state) {
    case G_RUNNABLE:
        return "runnable";
    case G_RUNNING:
        return "running";
    case G_WAITING:
        return "parked";
    default:
        return "dead";
    }
}

void
go_dump(FILE *out)
{
    pthread_mutex_lock(&gs.lock);
    for (struct g *g = gs.all; g; g = g->all_next) {
        int state = atomic_load(&g->state);
        if (g->system || (state != G_RUNNABLE && state != G_RUNNING && state != G_WAITING))
            continue; /* dead: in a cache, or being reused right now */
        uint64_t id = __atomic_load_n(&g->id, __ATOMIC_RELAXED);
        const char *file = __atomic_load_n(&g->file, __ATOMIC_RELAXED);
        int line = __atomic_load_n(&g->line, __ATOMIC_RELAXED);
        const char *reason = atomic_load_explicit(&g->wait_reason, memory_order_relaxed);
        const void *obj = atomic_load_explicit(&g->wait_obj, memory_order_relaxed);
        uint64_t since = atomic_load_explicit(&g->wait_since, memory_order_relaxed);
        if (state == G_WAITING)
            fprintf(out, "goroutine %" PRIu64 " [%s, %" PRId64 " ms]:\n", id,
                    reason ? reason : "parked", sched_ticks_ms_since(since));
        else
            fprintf(out, "goroutine %" PRIu64 " [%s]:\n", id, g_state_name(state));
        if (state == G_WAITING && obj)
            fprintf(out, "\twaiting on %p\n", obj);
        fprintf(out, "\tspawned at %s:%d\n\n", file ? file : "?", line);
    }
    pthread_mutex_unlock(&gs.lock);
    fflush(out);
}
