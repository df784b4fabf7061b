/* A goroutine-aware mutex: contended lockers park (the worker thread runs
 * other goroutines) and get the lock in FIFO order. Not recursive. */
#ifndef CHANQ_CORE_MUTEX_H
#define CHANQ_CORE_MUTEX_H

#include <stdbool.h>

struct mutex;

/* An unlocked mutex owned by the caller, or NULL when out of memory. */
struct mutex *mutex_new(void);

/* Locks m, parking while another goroutine holds it. Goroutine only
 * (aborts elsewhere when it would have to wait). */
void mutex_lock(struct mutex *m);

/* Locks m if free: true when taken. Any thread; never parks. */
bool mutex_trylock(struct mutex *m);

/* Unlocks m, handing it to the longest waiter. Any thread (the lock is not
 * tied to a goroutine, like Go's). Unlocking an unlocked mutex aborts. */
void mutex_unlock(struct mutex *m);

/* Frees an unlocked mutex. NULL is ignored. */
void mutex_free(struct mutex *m);

#endif
