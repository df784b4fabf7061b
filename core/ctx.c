/* Contexts: Go's cancelCtx/timerCtx/valueCtx. A cancellable context owns a
 * done channel (elem size 0) that its cancel closes; children register with
 * their nearest cancellable ancestor. Lock order: parent before child. */
#include "chanq_config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/chan.h"
#include "core/ctx.h"
#include "core/sched-internal.h"
#include "core/timer-internal.h"
#include "core/timer.h"

enum ctx_kind {
    CTX_BACKGROUND, /* the static root */
    CTX_CANCEL,     /* with_cancel / with_deadline */
    CTX_VALUE,      /* with_value: shares the parent's cancellation */
};

struct ctx {
    enum ctx_kind kind;
    atomic_int refs;         /* references (the armed deadline timer holds one) */
    struct ctx *parent;      /* a reference; NULL for background */
    const void *key;         /* CTX_VALUE */
    void *val;
    /* CTX_CANCEL only: */
    pthread_mutex_t mu;      /* guards children and the links below */
    struct chan *done;       /* closed on cancel */
    atomic_int err;          /* 0, -ECANCELED, -ETIMEDOUT; set before done closes */
    int64_t deadline_ms;     /* effective deadline or -1 */
    struct ctx *children;    /* registered cancellable descendants */
    struct ctx *sib_prev;    /* links in the registered ancestor's children (its mu) */
    struct ctx *sib_next;
    struct ctx *registered;  /* the ancestor we are registered with, or NULL (its mu) */
    struct rtimer timer;     /* deadline */
};

static struct ctx background = {.kind = CTX_BACKGROUND, .deadline_ms = -1};

struct ctx *
ctx_background(void)
{
    return &background;
}

static struct ctx *
norm(const struct ctx *c)
{
    return c ? (struct ctx *)c : &background;
}

void
ctx_ref(struct ctx *c)
{
    if (c && c->kind != CTX_BACKGROUND)
        atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

/* The nearest cancellable ancestor-or-self, or NULL (background). */
static struct ctx *
cancel_ancestor(struct ctx *c)
{
    while (c && c->kind == CTX_VALUE)
        c = c->parent;
    return c && c->kind == CTX_CANCEL ? c : NULL;
}

static void
unregister(struct ctx *c)
{
    struct ctx *p = cancel_ancestor(c->parent);
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    if (c->registered == p) {
        if (c->sib_prev)
            c->sib_prev->sib_next = c->sib_next;
        else
            p->children = c->sib_next;
        if (c->sib_next)
            c->sib_next->sib_prev = c->sib_prev;
        c->registered = NULL;
    }
    pthread_mutex_unlock(&p->mu);
}

void
ctx_unref(struct ctx *c)
{
    if (!c || c->kind == CTX_BACKGROUND ||
        atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (c->kind == CTX_CANCEL) {
        unregister(c);
        rtimer_stop(&c->timer);
        chan_unref(c->done);
        pthread_mutex_destroy(&c->mu);
    }
    ctx_unref(c->parent);
    free(c);
}

/* A reference on c unless it is already being freed. */
static bool
ctx_tryref(struct ctx *c)
{
    int r = atomic_load(&c->refs);
    while (r > 0)
        if (atomic_compare_exchange_weak(&c->refs, &r, r + 1))
            return true;
    return false;
}

/* Cancels c, then its registered descendants. No lock is held while the
 * children are cancelled: they are detached under c->mu, each with a
 * reference (a child already being freed is skipped: nobody can wait on it). */
static void
cancel_tree(struct ctx *c, int err)
{
    pthread_mutex_lock(&c->mu);
    int zero = 0;
    if (!atomic_compare_exchange_strong(&c->err, &zero, err)) {
        pthread_mutex_unlock(&c->mu);
        return;
    }
    chan_close(c->done);
    struct ctx *held = NULL;
    for (struct ctx *k = c->children, *next; k; k = next) {
        next = k->sib_next;
        k->registered = NULL;
        k->sib_prev = NULL;
        if (ctx_tryref(k)) {
            k->sib_next = held; /* detached: the links are ours now */
            held = k;
        }
    }
    c->children = NULL;
    pthread_mutex_unlock(&c->mu);
    for (struct ctx *k = held, *next; k; k = next) {
        next = k->sib_next;
        cancel_tree(k, err);
        ctx_unref(k);
    }
    if (rtimer_stop(&c->timer))
        ctx_unref(c); /* the timer's reference; the caller holds another */
}

static void
ctx_cancel_err(struct ctx *c, int err)
{
    if (!c || c->kind != CTX_CANCEL)
        return;
    cancel_tree(c, err);
    unregister(c);
}

void
ctx_cancel(struct ctx *c)
{
    ctx_cancel_err(c, -ECANCELED);
}

void
ctx_release(struct ctx *c)
{
    ctx_cancel(c);
    ctx_unref(c);
}

/* Deadline timer callback (scheduler stack, after the heap lock). */
static void
ctx_deadline_fire(void *arg)
{
    struct ctx *c = arg;
    ctx_cancel_err(c, -ETIMEDOUT);
    ctx_unref(c);
}

static struct ctx *
ctx_new(struct ctx *parent, enum ctx_kind kind)
{
    struct ctx *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->kind = kind;
    atomic_init(&c->refs, 1);
    c->parent = parent;
    ctx_ref(parent);
    c->deadline_ms = ctx_deadline(parent);
    return c;
}

struct ctx *
ctx_with_deadline(struct ctx *parent, int64_t deadline_ms)
{
    parent = norm(parent);
    struct ctx *c = ctx_new(parent, CTX_CANCEL);
    if (!c)
        return NULL;
    if (!(c->done = chan_new(0, 0))) {
        ctx_unref(parent);
        free(c);
        return NULL;
    }
    pthread_mutex_init(&c->mu, NULL);
    c->timer = (struct rtimer){.mode = RTIMER_DEFERRED, .fn = ctx_deadline_fire, .arg = c};
    bool own_deadline = deadline_ms >= 0 && (c->deadline_ms < 0 || deadline_ms < c->deadline_ms);
    if (own_deadline)
        c->deadline_ms = deadline_ms;

    if (own_deadline && deadline_ms <= timer_now_ms()) {
        cancel_tree(c, -ETIMEDOUT);
        return c;
    }

    /* Register with the nearest cancellable ancestor, or inherit its end. */
    struct ctx *p = cancel_ancestor(parent);
    if (p) {
        pthread_mutex_lock(&p->mu);
        int perr = atomic_load(&p->err);
        if (!perr) {
            c->sib_next = p->children;
            if (p->children)
                p->children->sib_prev = c;
            p->children = c;
            c->registered = p;
        }
        pthread_mutex_unlock(&p->mu);
        if (perr) {
            cancel_tree(c, perr);
            return c;
        }
    }
    if (own_deadline) {
        ctx_ref(c); /* held by the armed timer */
        rtimer_arm(&c->timer, deadline_ms);
        /* A cancel that raced with the arming may have missed the timer. */
        if (atomic_load(&c->err) && rtimer_stop(&c->timer))
            ctx_unref(c);
    }
    return c;
}

struct ctx *
ctx_with_cancel(struct ctx *parent)
{
    return ctx_with_deadline(parent, -1);
}

struct ctx *
ctx_with_timeout(struct ctx *parent, int64_t timeout_ms)
{
    return ctx_with_deadline(parent, timer_now_ms() + (timeout_ms > 0 ? timeout_ms : 0));
}

struct ctx *
ctx_with_value(struct ctx *parent, const void *key, void *val)
{
    struct ctx *c = ctx_new(norm(parent), CTX_VALUE);
    if (!c)
        return NULL;
    c->key = key;
    c->val = val;
    return c;
}

struct chan *
ctx_done(struct ctx *c)
{
    struct ctx *a = cancel_ancestor(c);
    return a ? a->done : NULL;
}

int
ctx_err(const struct ctx *c)
{
    struct ctx *a = cancel_ancestor((struct ctx *)c);
    return a ? atomic_load(&a->err) : 0;
}

void *
ctx_value(const struct ctx *c, const void *key)
{
    for (; c; c = c->parent)
        if (c->kind == CTX_VALUE && c->key == key)
            return c->val;
    return NULL;
}

int64_t
ctx_deadline(const struct ctx *c)
{
    c = norm(c);
    if (c->kind == CTX_VALUE)
        return ctx_deadline(c->parent);
    return c->deadline_ms;
}
