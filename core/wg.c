/* Wait groups: a counter and, while someone waits, a channel that is closed
 * when the counter returns to zero (so waits can also take a ctx). */
#include "chanq_config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "core/chan.h"
#include "core/sched-internal.h"
#include "core/wg.h"

struct wg {
    pthread_mutex_t lock; /* guards zero; orders waiters against the last done */
    atomic_long count;    /* outstanding work (one atomic add per wg_add/wg_done) */
    struct chan *zero;    /* closed when count reaches 0; created by the first waiter */
};

struct wg *
wg_new(void)
{
    struct wg *wg = calloc(1, sizeof *wg);
    if (wg)
        pthread_mutex_init(&wg->lock, NULL);
    return wg;
}

void
wg_add(struct wg *wg, int n)
{
    /* Fast path: a change that cannot reach zero needs no lock. */
    long cur = atomic_load(&wg->count);
    while (cur + n > 0 && cur > 0)
        if (atomic_compare_exchange_weak(&wg->count, &cur, cur + n))
            return;
    /* It may reach zero: change it under the lock, so that a waiter, which
     * checks the count under the lock, sees zero only once this call no
     * longer touches wg (the waiter may free it as soon as wg_wait
     * returns). After the unlock only our own reference to the channel is
     * used. A count that went back up meanwhile has new work: the waiters
     * keep waiting, as they would in Go. */
    struct chan *wake = NULL;
    pthread_mutex_lock(&wg->lock);
    long v = atomic_fetch_add(&wg->count, n) + n;
    if (v < 0) {
        pthread_mutex_unlock(&wg->lock);
        sched_fatal("wg_add: negative wait group counter");
    }
    if (v == 0 && wg->zero) {
        wake = wg->zero;
        wg->zero = NULL;
    }
    pthread_mutex_unlock(&wg->lock);
    if (wake) {
        chan_close(wake);
        chan_unref(wake);
    }
}

void
wg_done(struct wg *wg)
{
    wg_add(wg, -1);
}

int
wg_wait(struct wg *wg, struct ctx *ctx)
{
    sched_require_goroutine("wg_wait");
    pthread_mutex_lock(&wg->lock);
    if (atomic_load(&wg->count) == 0) {
        pthread_mutex_unlock(&wg->lock);
        return 0;
    }
    if (!wg->zero && !(wg->zero = chan_new(0, 0))) {
        pthread_mutex_unlock(&wg->lock);
        sched_fatal("wg_wait: out of memory");
    }
    struct chan *zero = wg->zero;
    chan_ref(zero);
    pthread_mutex_unlock(&wg->lock);
    int rc = chan_recv(zero, NULL, ctx);
    chan_unref(zero);
    return rc == -EPIPE ? 0 : rc;
}

void
wg_free(struct wg *wg)
{
    if (!wg)
        return;
    chan_unref(wg->zero);
    pthread_mutex_destroy(&wg->lock);
    free(wg);
}
