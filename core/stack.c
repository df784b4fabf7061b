/* Goroutine stacks: mmap, guard pages (madvise guard regions or mprotect
 * within a mapping budget), canaries for the unguarded rest. */
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
} stacks = {.once = PTHREAD_ONCE_INIT};

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

int
stack_alloc(struct stack *s, size_t size)
{
    pthread_once(&stacks.once, stacks_init);
    size_t page = stacks.page;
    size = (size + page - 1) & ~(page - 1);
    size_t map_size = size + page;
    void *map = mmap(NULL, map_size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (map == MAP_FAILED)
        return -ENOMEM;
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
    munmap(s->map, s->map_size);
    s->map = s->lo = NULL;
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
    /* The guard page, or a big frame that jumped over it (64 KiB). */
    return s->lo && a < lo + 64 && a + 65536 >= lo;
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
