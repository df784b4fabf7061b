/* A thread that runs blocking system calls for one goroutine at a time: the
 * goroutine parks while the call runs, so a 0.5 ms fsync does not hold one
 * of the runtime's worker threads (the runtime has no syscall hand-off). */
#ifndef CHANQ_DAEMON_IOTHREAD_H
#define CHANQ_DAEMON_IOTHREAD_H

#include <pthread.h>
#include <stdbool.h>

struct chan;

/* Public so that owners can embed it; treat the fields as private. */
struct iothread {
    pthread_t tid;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int (*fn)(void *arg); /* the pending call, or NULL */
    void *arg;
    bool stop;         /* set by iothread_stop */
    bool started;      /* tid is valid */
    struct chan *done; /* int results, cap 1: the caller parks on it */
};

/* Starts the thread. Returns 0, -ENOMEM or -EAGAIN (nothing started). Any
 * thread. */
int iothread_start(struct iothread *t);

/* Runs fn(arg) on t and returns its result; the calling goroutine parks
 * meanwhile (and the runtime's deadlock check counts the thread as a
 * waker). Off a goroutine, or on a thread never started, fn runs right
 * here. One caller at a time per iothread. */
int iothread_call(struct iothread *t, int (*fn)(void *arg), void *arg);

/* Stops and joins the thread (no call may be pending). Any thread; blocks.
 * A never-started iothread is ignored. */
void iothread_stop(struct iothread *t);

#endif
