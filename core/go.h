/* Goroutines: stackful coroutines multiplexed M:N onto the scheduler's
 * worker threads (see sched.h), with a live count and a dump for leak hunts. */
#ifndef CHANQ_CORE_GO_H
#define CHANQ_CORE_GO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The body of a goroutine (and of timer and evbridge callbacks). */
typedef void go_fn(void *arg);

/* Starts fn(arg) on a new goroutine; it becomes runnable at once (before
 * sched_start it waits in the global run queue). `file`/`line` name the
 * spawn site for go_dump() and crash reports; use the go() macro.
 * Any thread: a goroutine, a worker's scheduler, the main thread, a libevent
 * thread. Returns 0, or -ENOMEM (no goroutine was started). `arg` is passed
 * through untouched; the goroutine owns whatever the caller says it owns. */
int go_spawn(go_fn *fn, void *arg, const char *file, int line);

/* go(fn, arg): go_spawn recording the caller's file and line. */
#define go(fn, arg) go_spawn((fn), (arg), __FILE__, __LINE__)

/* Lets other runnable goroutines run first; the caller stays runnable.
 * Goroutine only (a no-op elsewhere). */
void go_yield(void);

/* The running goroutine's id (1, 2, ...), or 0 when not on a goroutine. */
uint64_t go_id(void);

/* True when the caller runs on a goroutine (not a scheduler, main or
 * foreign thread). Blocking core calls require this. */
bool go_on_goroutine(void);

/* Live user goroutines: spawned and not yet returned (runnable, running or
 * parked). Any thread; a snapshot. */
size_t go_count(void);

/* Writes one paragraph per live goroutine to `out`: id, state, for parked
 * ones the wait reason and for how long, and the spawn site file:line.
 * Any thread; takes the goroutine-list lock (do not call from a signal
 * handler). */
void go_dump(FILE *out);

/* Virtual size of the stacks of goroutines spawned from now on (rounded up to
 * whole pages, at least 16 KiB). Default 256 KiB, or the environment variable
 * CHANQ_STACK_SIZE (bytes, read once at the first spawn). Only touched pages
 * cost memory. Any thread. */
void go_set_stack_size(size_t bytes);

#endif
