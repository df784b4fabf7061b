/* The iothread: a pthread waiting on a condition variable for one call at a
 * time, answering on a channel the calling goroutine parks on. */
#include "chanq_config.h"

#include "daemon/journal/iothread.h"

#include <errno.h>
#include <string.h>

#include "core/chan.h"
#include "core/go.h"
#include "core/sched.h"

static void *
iothread_main(void *arg)
{
    struct iothread *t = arg;
    pthread_mutex_lock(&t->mu);
    for (;;) {
        while (!t->fn && !t->stop)
            pthread_cond_wait(&t->cv, &t->mu);
        if (!t->fn)
            break;
        int (*fn)(void *) = t->fn;
        void *fa = t->arg;
        pthread_mutex_unlock(&t->mu);
        int rc = fn(fa);
        pthread_mutex_lock(&t->mu);
        t->fn = NULL;
        chan_try_send(t->done, &rc);
        /* The caller is runnable now: the deadlock check may count again. */
        sched_external_unref();
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

int
iothread_start(struct iothread *t)
{
    memset(t, 0, sizeof(*t));
    if (!(t->done = chan_new(sizeof(int), 1)))
        return -ENOMEM;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    int rc = pthread_create(&t->tid, NULL, iothread_main, t);
    if (rc != 0) {
        chan_unref(t->done);
        return -rc;
    }
    t->started = true;
    return 0;
}

int
iothread_call(struct iothread *t, int (*fn)(void *), void *arg)
{
    int rc = 0;
    if (!t->started || !go_on_goroutine())
        return fn(arg);
    sched_external_ref();
    pthread_mutex_lock(&t->mu);
    t->fn = fn;
    t->arg = arg;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
    chan_recv(t->done, &rc, NULL);
    return rc;
}

void
iothread_stop(struct iothread *t)
{
    if (!t->started)
        return;
    pthread_mutex_lock(&t->mu);
    t->stop = true;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
    pthread_join(t->tid, NULL);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    chan_unref(t->done);
    t->started = false;
}
