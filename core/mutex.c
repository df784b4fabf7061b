/* The goroutine-aware mutex: a flag and a FIFO of parked lockers under a
 * short futex lock; unlock hands the mutex straight to the first waiter. */
#include "chanq_config.h"

#include <stdlib.h>

#include "core/lock.h"
#include "core/mutex.h"
#include "core/sched-internal.h"

/* A parked locker, on its own stack. */
struct mutex_waiter {
    struct g *g;
    struct mutex_waiter *next;
};

struct mutex {
    struct lock guard;          /* guards the fields below; released by the park step */
    bool locked;                /* owned by someone */
    struct mutex_waiter *first; /* FIFO of parked lockers */
    struct mutex_waiter *last;
};

struct mutex *
mutex_new(void)
{
    return calloc(1, sizeof(struct mutex));
}

static bool
mutex_park_unlock(struct g *g, void *arg)
{
    struct mutex *m = arg;
    lock_release(&m->guard);
    return true;
}

void
mutex_lock(struct mutex *m)
{
    lock_acquire(&m->guard);
    if (!m->locked) {
        m->locked = true;
        lock_release(&m->guard);
        return;
    }
    struct g *self = sched_curg();
    if (!self) {
        lock_release(&m->guard);
        sched_fatal("mutex_lock: would park outside a goroutine");
    }
    struct mutex_waiter w = {.g = self};
    if (m->last)
        m->last->next = &w;
    else
        m->first = &w;
    m->last = &w;
    sched_park(mutex_park_unlock, m, "mutex", m);
    /* mutex_unlock handed us the lock. */
}

bool
mutex_trylock(struct mutex *m)
{
    lock_acquire(&m->guard);
    bool taken = !m->locked;
    m->locked = true;
    lock_release(&m->guard);
    return taken;
}

void
mutex_unlock(struct mutex *m)
{
    lock_acquire(&m->guard);
    if (!m->locked) {
        lock_release(&m->guard);
        sched_fatal("mutex_unlock: mutex %p is not locked", (void *)m);
    }
    struct mutex_waiter *w = m->first;
    if (w) {
        m->first = w->next;
        if (!m->first)
            m->last = NULL;
    } else {
        m->locked = false;
    }
    struct g *g = w ? w->g : NULL;
    lock_release(&m->guard);
    if (g)
        sched_ready(g);
}

void
mutex_free(struct mutex *m)
{
    if (!m)
        return;
    if (m->locked)
        sched_fatal("mutex_free: mutex %p is locked", (void *)m);
    free(m);
}
