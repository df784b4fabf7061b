/* Goroutine stacks: carved from arenas (one mmap per ARENA_SLOTS stacks),
 * guard pages (madvise guard regions or mprotect within a mapping budget),
 * canaries for the unguarded rest, and trimming of idle stacks. */
#include "chanq_config.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/stack.h"

enum {
    ARENA_SLOTS = 64, /* stacks per arena mapping (16 MiB virtual at 256 KiB) */
};

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102 /* Linux 6.13 uapi value; older kernels say EINVAL */
#endif

/* How stacks get their guard, decided once (env CHANQ_STACK_GUARDS can force
 * "mprotect" or "canary", which tests use to exercise the fallbacks). */
enum guard_mode {
    GUARD_MADVISE,  /* kernel guard region: no extra mapping */
    GUARD_MPROTECT, /* PROT_NONE page: one extra mapping each, budgeted */
    GUARD_CANARY,   /* no guard at all, canary only */
};

/* Words written at the bottom of an unguarded stack. */
static const uint64_t stack_canary = 0x6368616e71f00dULL;

/* Process-wide stack settings, written once under pthread_once. */
static struct {
    pthread_once_t once;
    size_t page;             /* system page size */
    enum guard_mode mode;    /* preferred guard */
    long mprotect_budget;    /* guarded stacks allowed in GUARD_MPROTECT mode */
    atomic_long mprotect_in_use; /* stacks holding an mprotect guard now */
    pthread_mutex_t arena_lock;  /* guards the four below */
    char *arena_lo;              /* the current arena's mapping */
    char *arena_next;            /* its lowest slot handed out so far */
    size_t arena_left;           /* bytes left in it */
    size_t arena_slot;           /* the slot size it is being cut into */
} stacks = {.once = PTHREAD_ONCE_INIT, .arena_lock = PTHREAD_MUTEX_INITIALIZER};

static long
read_max_map_count(void)
{
    long v = 65530;
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    if (f) {
        if (fscanf(f, "%ld", &v) != 1)
            v = 65530;
        fclose(f);
    }
    return v;
}

static void
stacks_init(void)
{
    stacks.page = (size_t)sysconf(_SC_PAGESIZE);
    /* A third of the mapping limit for guard pages (two mappings per stack)
     * leaves the rest to malloc, libraries, sockets and the daemon. */
    stacks.mprotect_budget = read_max_map_count() / 6;
    stacks.mode = GUARD_MADVISE;
    const char *env = getenv("CHANQ_STACK_GUARDS");
    if (env && strcmp(env, "mprotect") == 0)
        stacks.mode = GUARD_MPROTECT;
    else if (env && strcmp(env, "canary") == 0)
        stacks.mode = GUARD_CANARY;
}

/* Tries to protect the first page of s->map; sets s->guarded. */
static void
stack_guard(struct stack *s)
{
    if (stacks.mode == GUARD_MADVISE) {
        if (madvise(s->map, stacks.page, MADV_GUARD_INSTALL) == 0) {
            s->guarded = true;
            return;
        }
        stacks.mode = GUARD_MPROTECT; /* this kernel has no guard regions */
    }
    if (stacks.mode == GUARD_MPROTECT) {
        long n = atomic_fetch_add(&stacks.mprotect_in_use, 1);
        if (n < stacks.mprotect_budget && mprotect(s->map, stacks.page, PROT_NONE) == 0) {
            s->guarded = true;
            s->map_size |= 1; /* remember to give the budget back (sizes are page multiples) */
            return;
        }
        atomic_fetch_sub(&stacks.mprotect_in_use, 1);
    }
    s->guarded = false;
}

/* One slot of `slot` bytes (guard page + stack) from the current arena;
 * a new arena when it is used up (or was cut for another stack size).
 * Slots are handed out from the top down, as mmap places mappings, so an
 * overflow past an unguarded stack runs into newer or free slots first; the
 * arena's lowest page is always protected, so it never runs on into
 * whatever the kernel mapped below (a thread's stack and TLS, typically). */
static void *
arena_take(size_t slot, void **arena_lo)
{
    pthread_mutex_lock(&stacks.arena_lock);
    if (stacks.arena_slot != slot || stacks.arena_left < slot) {
        size_t len = slot * ARENA_SLOTS;
        void *map = mmap(NULL, len, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (map == MAP_FAILED) {
            pthread_mutex_unlock(&stacks.arena_lock);
            return NULL;
        }
#ifdef MADV_NOHUGEPAGE
        /* A huge page would make one touched stack top cost 2 MiB. */
        madvise(map, len, MADV_NOHUGEPAGE);
#endif
        if (madvise(map, stacks.page, MADV_GUARD_INSTALL) != 0)
            mprotect(map, stacks.page, PROT_NONE);
        /* The rest of a previous arena stays mapped and unused (only after
         * a stack size change); it costs address space, not memory. */
        stacks.arena_lo = map;
        stacks.arena_next = (char *)map + len;
        stacks.arena_left = len;
        stacks.arena_slot = slot;
    }
    stacks.arena_next -= slot;
    stacks.arena_left -= slot;
    void *p = stacks.arena_next;
    *arena_lo = stacks.arena_lo;
    pthread_mutex_unlock(&stacks.arena_lock);
    return p;
}

int
stack_alloc(struct stack *s, size_t size)
{
    pthread_once(&stacks.once, stacks_init);
    size_t page = stacks.page;
    size = (size + page - 1) & ~(page - 1);
    size_t map_size = size + page;
    void *arena_lo;
    void *map = arena_take(map_size, &arena_lo);
    if (!map)
        return -ENOMEM;
    s->floor = arena_lo;
    s->map = map;
    s->map_size = map_size;
    s->lo = (char *)map + page;
    s->size = size;
    stack_guard(s);
    if (!s->guarded) {
        uint64_t *bottom = s->lo;
        bottom[0] = stack_canary;
        bottom[1] = stack_canary ^ (uintptr_t)s->lo;
    }
    return 0;
}

void
stack_free(struct stack *s)
{
    if (s->map_size & 1) {
        s->map_size &= ~(size_t)1;
        atomic_fetch_sub(&stacks.mprotect_in_use, 1);
    }
    /* Unmapping one slot of an arena is fine (it splits the mapping); only
     * a stack size change gets here. */
    munmap(s->map, s->map_size);
    s->map = s->lo = NULL;
}

void
stack_trim(struct stack *s)
{
    size_t page = stacks.page;
    /* An unguarded stack keeps its bottom page, with the canary. */
    char *from = (char *)s->lo + (s->guarded ? 0 : page);
    char *to = (char *)s->lo + s->size;
    if (to > from)
        madvise(from, (size_t)(to - from), MADV_DONTNEED);
}

/* Reads a dead goroutine's stack: no sanitizer may check these loads. */
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 8)
__attribute__((no_sanitize("address", "thread")))
#endif
bool
stack_was_deep(const struct stack *s)
{
    size_t page = stacks.page;
    if (s->size < 2 * page)
        return true;
    /* First the lowest words of the top page, which is always resident (the
     * goroutine's first frame is there): a goroutine that went deeper wrote
     * frames on its way down through them, and when they are still zero
     * the page below is not read at all. Reading an untouched page costs a
     * page fault (it maps the shared zero page), about a microsecond, which
     * a crowd of ending goroutines would pay one by one. A single frame
     * whose unwritten locals cover these words can hide a deep stack: it
     * stays warm until the idle trim (go_pool_idle) gives it back. */
    const volatile uint64_t *edge = (const uint64_t *)((char *)s->lo + s->size - page);
    bool edge_used = false;
    for (size_t i = 0; i < 8; i++) /* one cache line */
        edge_used |= edge[i] != 0;
    if (!edge_used)
        return false;
    /* Then the page below the top one. Untouched, it reads as zeros (no
     * memory); a goroutine that went deeper wrote frames (return
     * addresses, saved registers) all over it. */
    const volatile uint64_t *p = (const uint64_t *)((char *)s->lo + s->size - 2 * page);
    for (size_t i = 0; i < page / 8; i += 16)
        if (p[i])
            return true;
    return false;
}

void
stack_prefetch_deep_check(const struct stack *s)
{
    if (s->size >= 2 * stacks.page)
        __builtin_prefetch((const char *)s->lo + s->size - stacks.page);
}

bool
stack_canary_ok(const struct stack *s)
{
    if (s->guarded)
        return true;
    const uint64_t *bottom = s->lo;
    return bottom[0] == stack_canary && bottom[1] == (stack_canary ^ (uintptr_t)s->lo);
}

bool
stack_addr_is_overflow(const struct stack *s, const void *addr)
{
    uintptr_t a = (uintptr_t)addr, lo = (uintptr_t)s->lo;
    if (!s->lo || a >= lo + 64)
        return false;
    /* The guard page, or a big frame that jumped over it (64 KiB); below an
     * unguarded stack, anywhere down to the arena's protected lowest page
     * (the overflow ran through the slots below). */
    return a + 65536 >= lo || (!s->guarded && a >= (uintptr_t)s->floor);
}

void *
stack_altstack_new(void)
{
    size_t size = 64 * 1024;
    if (size < (size_t)SIGSTKSZ)
        size = (size_t)SIGSTKSZ;
    void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return NULL;
    stack_t ss = {.ss_sp = mem, .ss_size = size, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0) {
        munmap(mem, size);
        return NULL;
    }
    return mem;
}

void
stack_altstack_free(void *mem)
{
    if (!mem)
        return;
    size_t size = 64 * 1024;
    if (size < (size_t)SIGSTKSZ)
        size = (size_t)SIGSTKSZ;
    stack_t ss = {.ss_flags = SS_DISABLE};
    sigaltstack(&ss, NULL);
    munmap(mem, size);
}

/* Appends decimal v to buf at *n (async-signal-safe formatting). */
static void
fmt_u(char *buf, size_t cap, size_t *n, unsigned long long v)
{
    char tmp[24];
    size_t k = 0;
    do {
        tmp[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v && k < sizeof tmp);
    while (k && *n < cap)
        buf[(*n)++] = tmp[--k];
}

static void
fmt_s(char *buf, size_t cap, size_t *n, const char *s)
{
    while (s && *s && *n < cap)
        buf[(*n)++] = *s++;
}

void
stack_report_overflow(unsigned long long id, const char *file, int line)
{
    char buf[512];
    size_t n = 0;
    fmt_s(buf, sizeof buf, &n, "fatal error: goroutine ");
    fmt_u(buf, sizeof buf, &n, id);
    fmt_s(buf, sizeof buf, &n, " stack overflow (spawned at ");
    fmt_s(buf, sizeof buf, &n, file ? file : "?");
    fmt_s(buf, sizeof buf, &n, ":");
    fmt_u(buf, sizeof buf, &n, (unsigned long long)(line < 0 ? 0 : line));
    fmt_s(buf, sizeof buf, &n, ")\n");
    ssize_t w = write(STDERR_FILENO, buf, n);
    (void)w;
}
