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
    FREE_CACHE_MAX = 1024, /* dead goroutines kept with their stacks for reuse */
};

/* Process-wide goroutine bookkeeping (the runtime's state is process-wide,
 * see docs/hacking.md). */
static struct {
    pthread_mutex_t lock;     /* guards all, free, nfree */
    struct g *all;            /* live goroutines, newest first */
    struct g *free;           /* dead goroutines with their stacks, LIFO */
    size_t nfree;
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

/* A recycled goroutine whose stack has the wanted size, or a new one. */
static struct g *
g_alloc(void)
{
    size_t size = stack_size_get();
    pthread_mutex_lock(&gs.lock);
    struct g *g = gs.free;
    if (g) {
        gs.free = g->schedlink;
        gs.nfree--;
    }
    pthread_mutex_unlock(&gs.lock);
    if (g && g->stack.size >= size && g->stack.size <= 2 * size)
        return g;
    if (g) {
        stack_free(&g->stack);
        free(g);
    }
    g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    if (stack_alloc(&g->stack, size) != 0) {
        free(g);
        return NULL;
    }
    return g;
}

int
go_spawn(go_fn *fn, void *arg, const char *file, int line)
{
    struct g *g = g_alloc();
    if (!g)
        return -ENOMEM;
    g->fn = fn;
    g->arg = arg;
    g->file = file;
    g->line = line;
    g->system = false;
    atomic_store_explicit(&g->wait_reason, NULL, memory_order_relaxed);
    atomic_store_explicit(&g->wait_obj, NULL, memory_order_relaxed);
    g->schedlink = NULL;
    g->asan_fake = NULL;
    g->id = atomic_fetch_add_explicit(&gs.next_id, 1, memory_order_relaxed) + 1;
    g->tsan_fiber = san_fiber_create();
    switch_init(&g->ctx, g->stack.lo, g->stack.size, go_entry, g);
    atomic_store_explicit(&g->state, G_RUNNABLE, memory_order_relaxed);
    atomic_fetch_add(&gs.nuser, 1);

    pthread_mutex_lock(&gs.lock);
    g->all_prev = NULL;
    g->all_next = gs.all;
    if (gs.all)
        gs.all->all_prev = g;
    gs.all = g;
    pthread_mutex_unlock(&gs.lock);

    sched_ready_new(g);
    return 0;
}

void
go_release(struct g *g)
{
    san_fiber_destroy(g->tsan_fiber);
    g->tsan_fiber = NULL;
    g->arg = NULL;
    bool user = !g->system;
    bool keep; /* once on the free list, g belongs to the next go_spawn */
    pthread_mutex_lock(&gs.lock);
    if (g->all_prev)
        g->all_prev->all_next = g->all_next;
    else
        gs.all = g->all_next;
    if (g->all_next)
        g->all_next->all_prev = g->all_prev;
    keep = gs.nfree < FREE_CACHE_MAX;
    if (keep) {
        g->schedlink = gs.free;
        gs.free = g;
        gs.nfree++;
    }
    pthread_mutex_unlock(&gs.lock);
    if (user)
        atomic_fetch_sub(&gs.nuser, 1);
    if (!keep) {
        stack_free(&g->stack);
        free(g);
    }
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
    int64_t now = sched_coarse_ms();
    pthread_mutex_lock(&gs.lock);
    for (struct g *g = gs.all; g; g = g->all_next) {
        if (g->system)
            continue;
        int state = atomic_load(&g->state);
        const char *reason = atomic_load_explicit(&g->wait_reason, memory_order_relaxed);
        const void *obj = atomic_load_explicit(&g->wait_obj, memory_order_relaxed);
        int64_t since = atomic_load_explicit(&g->wait_since_ms, memory_order_relaxed);
        if (state == G_WAITING)
            fprintf(out, "goroutine %" PRIu64 " [%s, %" PRId64 " ms]:\n", g->id,
                    reason ? reason : "parked", now - since);
        else
            fprintf(out, "goroutine %" PRIu64 " [%s]:\n", g->id, g_state_name(state));
        if (state == G_WAITING && obj)
            fprintf(out, "\twaiting on %p\n", obj);
        fprintf(out, "\tspawned at %s:%d\n\n", g->file ? g->file : "?", g->line);
    }
    pthread_mutex_unlock(&gs.lock);
    fflush(out);
}
