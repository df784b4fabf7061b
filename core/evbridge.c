/* The libevent bridge: a mutex-protected queue of calls for the loop thread,
 * drained by one user-triggered event; only the call that finds the queue
 * idle activates the event, so a batch costs one wake-up. */
#include "chanq_config.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <stdlib.h>

#include "core/evbridge.h"
#include "core/sched.h"

/* One queued call. */
struct evcall {
    evbridge_fn *fn;
    void *arg;
    struct evcall *next;
};

struct evbridge {
    struct event_base *base; /* borrowed */
    struct event *ev;        /* activated to drain the queue on the loop */
    pthread_mutex_t lock;    /* guards the queue and pending */
    struct evcall *first, *last;
    bool pending;            /* ev is activated and has not drained yet */
};

/* Runs the queued calls on the loop thread, in order, batch by batch. */
static void
evbridge_drain(evutil_socket_t fd, short what, void *arg)
{
    struct evbridge *b = arg;
    pthread_mutex_lock(&b->lock);
    struct evcall *list = b->first;
    b->first = b->last = NULL;
    b->pending = false;
    pthread_mutex_unlock(&b->lock);
    while (list) {
        struct evcall *c = list;
        list = c->next;
        c->fn(c->arg);
        free(c);
    }
}

struct evbridge *
evbridge_new(struct event_base *base)
{
    struct evbridge *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->base = base;
    b->ev = event_new(base, -1, 0, evbridge_drain, b);
    if (!b->ev) {
        free(b);
        return NULL;
    }
    evthread_make_base_notifiable(base);
    pthread_mutex_init(&b->lock, NULL);
    sched_external_ref();
    return b;
}

void
evbridge_free(struct evbridge *b)
{
    if (!b)
        return;
    evbridge_drain(-1, 0, b);
    event_free(b->ev);
    pthread_mutex_destroy(&b->lock);
    free(b);
    sched_external_unref();
}

int
evbridge_call(struct evbridge *b, evbridge_fn *fn, void *arg)
{
    struct evcall *c = malloc(sizeof *c);
    if (!c)
        return -ENOMEM;
    *c = (struct evcall){.fn = fn, .arg = arg};
    pthread_mutex_lock(&b->lock);
    if (b->last)
        b->last->next = c;
    else
        b->first = c;
    b->last = c;
    bool wake = !b->pending;
    b->pending = true;
    pthread_mutex_unlock(&b->lock);
    if (wake)
        event_active(b->ev, EV_READ, 0);
    return 0;
}
