/* TEMPORARY stand-in for the few core/ calls `chanq work` makes, with one
 * pthread per goroutine, used only until core/ builds libchanqcore.la. Same
 * signatures as the core/ headers, so cmd_work.c does not change when it goes. */
#include "chanq_config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/chan.h"
#include "core/ctx.h"
#include "core/go.h"
#include "core/sched.h"
#include "core/timer.h"
#include "core/wg.h"

static pthread_mutex_t big = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;

struct spawn {
    go_fn *fn;
    void *arg;
};

static void *
spawn_main(void *arg)
{
    struct spawn s = *(struct spawn *)arg;
    free(arg);
    s.fn(s.arg);
    return NULL;
}

int
go_spawn(go_fn *fn, void *arg, const char *file, int line)
{
    pthread_t t;
    struct spawn *s = malloc(sizeof *s);
    if (!s)
        return -ENOMEM;
    *s = (struct spawn){fn, arg};
    if (pthread_create(&t, NULL, spawn_main, s) != 0) {
        free(s);
        return -ENOMEM;
    }
    pthread_detach(t);
    return 0;
}

int
sched_run_main(go_fn *fn, void *arg, int nthreads)
{
    fn(arg);
    return 0;
}

void sched_external_ref(void) {}
void sched_external_unref(void) {}

int64_t
timer_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct ctx {
    bool done;
};

struct ctx *
ctx_with_cancel(struct ctx *parent)
{
    return calloc(1, sizeof(struct ctx));
}

void
ctx_cancel(struct ctx *c)
{
    pthread_mutex_lock(&big);
    c->done = true;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&big);
}

int
ctx_err(const struct ctx *c)
{
    pthread_mutex_lock(&big);
    int e = c && c->done ? -ECANCELED : 0;
    pthread_mutex_unlock(&big);
    return e;
}

void
ctx_release(struct ctx *c)
{
    free(c);
}

int
go_sleep(int64_t ms, struct ctx *ctx)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    int rc = 0;
    pthread_mutex_lock(&big);
    while (!(ctx && ctx->done) &&
           pthread_cond_timedwait(&changed, &big, &until) != ETIMEDOUT)
        ;
    if (ctx && ctx->done)
        rc = -ECANCELED;
    pthread_mutex_unlock(&big);
    return rc;
}

struct chan {
    size_t elem, cap, len, head;
    bool closed;
    char *buf;
};

struct chan *
chan_new(size_t elem_size, size_t cap)
{
    struct chan *c = calloc(1, sizeof *c);
    c->elem = elem_size;
    c->cap = cap ? cap : 1; /* the stand-in buffers rendezvous channels */
    c->buf = calloc(c->cap, elem_size ? elem_size : 1);
    return c;
}

void
chan_unref(struct chan *c)
{
    free(c->buf);
    free(c);
}

int
chan_send(struct chan *c, const void *elem, struct ctx *ctx)
{
    pthread_mutex_lock(&big);
    while (c->len == c->cap)
        pthread_cond_wait(&changed, &big);
    memcpy(c->buf + ((c->head + c->len) % c->cap) * c->elem, elem, c->elem);
    c->len++;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&big);
    return 0;
}

int
chan_recv(struct chan *c, void *elem, struct ctx *ctx)
{
    pthread_mutex_lock(&big);
    while (c->len == 0 && !c->closed)
        pthread_cond_wait(&changed, &big);
    int rc = -EPIPE;
    if (c->len > 0) {
        if (elem)
            memcpy(elem, c->buf + c->head * c->elem, c->elem);
        c->head = (c->head + 1) % c->cap;
        c->len--;
        rc = 0;
    }
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&big);
    return rc;
}

void
chan_close(struct chan *c)
{
    pthread_mutex_lock(&big);
    c->closed = true;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&big);
}

struct wg {
    int n;
};

struct wg *
wg_new(void)
{
    return calloc(1, sizeof(struct wg));
}

void
wg_add(struct wg *wg, int n)
{
    pthread_mutex_lock(&big);
    wg->n += n;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&big);
}

void
wg_done(struct wg *wg)
{
    wg_add(wg, -1);
}

int
wg_wait(struct wg *wg, struct ctx *ctx)
{
    pthread_mutex_lock(&big);
    while (wg->n > 0)
        pthread_cond_wait(&changed, &big);
    pthread_mutex_unlock(&big);
    return 0;
}

void
wg_free(struct wg *wg)
{
    free(wg);
}
