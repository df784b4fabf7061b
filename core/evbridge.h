/* The bridge between a libevent loop on its own (non-goroutine) thread and
 * the goroutines. Loop -> goroutines: go_spawn() and chan_try_send() are
 * callable from the loop thread and never block. Goroutines -> loop:
 * evbridge_call() queues a function to run on the loop thread. */
#ifndef CHANQ_CORE_EVBRIDGE_H
#define CHANQ_CORE_EVBRIDGE_H

struct event_base;
struct evbridge;

/* Runs on the loop thread: the body of an evbridge_call. */
typedef void evbridge_fn(void *arg);

/* A bridge for `base` (borrowed; must outlive the bridge). The program must
 * have called evthread_use_pthreads() before creating base. While the bridge
 * lives it holds a sched_external_ref (the loop may wake goroutines, so no
 * deadlock is reported). Loop thread. Returns NULL when out of memory. */
struct evbridge *evbridge_new(struct event_base *base);

/* Runs the calls still queued, then frees b and drops its external ref.
 * Loop thread; no evbridge_call may race with it. NULL is ignored. */
void evbridge_free(struct evbridge *b);

/* Queues fn(arg) to run on the loop thread soon. Calls from one thread run in
 * the order they were made; a batch of calls costs one loop wake-up. Any
 * thread (a goroutine, the loop itself); never blocks or parks. Returns 0, or
 * -ENOMEM (nothing was queued). */
int evbridge_call(struct evbridge *b, evbridge_fn *fn, void *arg);

#endif
