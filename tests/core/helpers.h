/* Helpers for the core suites: run a test body as the main goroutine, run a
 * function in a forked child and capture how it died, scale loop counts
 * down under sanitizers. */
#ifndef CHANQ_TESTS_CORE_HELPERS_H
#define CHANQ_TESTS_CORE_HELPERS_H

#include <check.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/go.h"
#include "core/sanitizer.h"

/* Runs body(arg) as the main goroutine on `nthreads` workers (Go's main:
 * deadlock detection is on) and returns when it returned. */
void run_main(go_fn *body, void *arg, int nthreads);

/* How a forked child ended. */
struct death {
    int signal;       /* the terminating signal, or 0 */
    int status;       /* exit status when it exited */
    char err[16384];  /* what it wrote to stderr (NUL-terminated, truncated) */
};

/* Runs fn() in a forked child with stderr captured into d->err. */
void death_run(void (*fn)(void), struct death *d);

/* n, or n / div in a sanitizer build (at least 1). */
static inline size_t
san_scale(size_t n, size_t div)
{
    size_t m = SAN_ENABLED ? n / div : n;
    return m ? m : 1;
}

#endif
