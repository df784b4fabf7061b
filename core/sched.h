/* The M:N scheduler: worker threads (GOMAXPROCS of them) with per-thread run
 * queues, a global queue, work stealing, futex-sleeping idle threads, the
 * runtime's timers and the deadlock check. One scheduler per process. */
#ifndef CHANQ_CORE_SCHED_H
#define CHANQ_CORE_SCHED_H

#include <stdbool.h>

#include "core/go.h"

/* Starts `nthreads` worker threads (0: the environment variable GOMAXPROCS,
 * else the number of CPUs) and returns at once; the caller does not become a
 * worker. While started this way the calling thread counts as an outside
 * waker (see sched_external_ref), so no deadlock is reported: use
 * sched_run_main() for Go's "all goroutines are asleep" check.
 * Main thread, once (again only after sched_shutdown). Returns 0, -EALREADY
 * (already running), -ENOMEM or -EAGAIN (thread creation failed; nothing was
 * started). */
int sched_start(int nthreads);

/* Stops and joins the worker threads. Call it after the program's goroutines
 * have ended (or parked for good: they stay parked and are never resumed).
 * A goroutine that never parks keeps its worker and makes this wait.
 * Not from a goroutine. */
void sched_shutdown(void);

/* Go's main(): starts the scheduler with `nthreads` (as sched_start), runs
 * fn(arg) as a goroutine, blocks the calling thread until fn returns, then
 * shuts down. While fn runs, if every goroutine is parked and no timer or
 * outside waker could wake one, prints "all goroutines are asleep -
 * deadlock!" and the goroutine dump to stderr and aborts.
 * Main thread; not from a goroutine. Returns 0, or a negative code of
 * sched_start. */
int sched_run_main(go_fn *fn, void *arg, int nthreads);

/* Worker threads currently configured (0 when not started). Any thread. */
int sched_threads(void);

/* Declares an outside waker (a libevent loop, a foreign thread that will
 * try-send or spawn): while the count is > 0 no deadlock is reported.
 * Any thread; pairs with sched_external_unref. */
void sched_external_ref(void);
void sched_external_unref(void);

/* An event loop's thread (libevent's, not a worker) lent to the scheduler,
 * so that a goroutine its callbacks wake runs right there once the
 * callbacks are done, instead of waking a worker thread (two cross-thread
 * wake-ups per request saved; DESIGN: "let a goroutine that is ready run on
 * the thread that readied it when that thread is about to idle").
 *
 * sched_loop_attach: after sched_start, on the loop thread; 0, -EALREADY
 * (already a scheduler thread), -EINVAL (not started), -ENOMEM.
 * On the attached thread, go_spawn and every wake-up (chan_try_send...)
 * put goroutines in a small local queue (32); more go to the
 * workers. sched_loop_run(budget): runs up to `budget` goroutines of that
 * queue (each until it parks or ends), then hands the rest to the workers;
 * call it between two loop iterations, never from a callback running on a
 * goroutine. sched_loop_has_work: whether it would run anything (then poll
 * without blocking). sched_loop_detach: before sched_shutdown. A goroutine
 * that runs on the loop thread must not block the thread (it may park). */
int sched_loop_attach(void);
void sched_loop_run(int budget);
bool sched_loop_has_work(void);
void sched_loop_detach(void);

#endif
