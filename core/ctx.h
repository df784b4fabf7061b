/* Contexts (Go's context.Context): a tree of cancellation scopes with
 * deadlines and values. Cancelling a context closes its done channel and
 * cancels every descendant; the parent is untouched. Refcounted. */
#ifndef CHANQ_CORE_CTX_H
#define CHANQ_CORE_CTX_H

#include <stdint.h>

struct ctx;
struct chan;

/* The root: never cancelled, no deadline, no values. Static: ctx_ref,
 * ctx_unref, ctx_cancel and ctx_release are no-ops on it. Any thread. */
struct ctx *ctx_background(void);

/* A cancellable child of `parent` (NULL means background). Returns a new
 * reference (it also holds a reference on parent), or NULL when out of
 * memory. If parent is already done, the child starts done with its error.
 * Any thread. */
struct ctx *ctx_with_cancel(struct ctx *parent);

/* As ctx_with_cancel, also cancelled with -ETIMEDOUT at `deadline_ms`
 * (absolute, timer_now_ms() clock); a deadline later than the parent's has
 * no effect. */
struct ctx *ctx_with_deadline(struct ctx *parent, int64_t deadline_ms);

/* ctx_with_deadline(parent, timer_now_ms() + timeout_ms). */
struct ctx *ctx_with_timeout(struct ctx *parent, int64_t timeout_ms);

/* A child carrying (key, val); lookups compare key pointers. It shares its
 * parent's cancellation (cancelling it is a no-op). Returns a new reference
 * or NULL. `val` is borrowed: it must outlive the context. */
struct ctx *ctx_with_value(struct ctx *parent, const void *key, void *val);

/* Cancels c with -ECANCELED (unless already done) and every descendant.
 * Idempotent. Any thread; never parks. */
void ctx_cancel(struct ctx *c);

/* ctx_cancel + ctx_unref: Go's `defer cancel()`. */
void ctx_release(struct ctx *c);

/* Take / drop a reference. The last unref frees the context (a pending
 * deadline keeps it alive until it fires or it is cancelled). Any thread. */
void ctx_ref(struct ctx *c);
void ctx_unref(struct ctx *c);

/* The done channel: closed when c is cancelled; NULL (a nil channel, never
 * ready) for background. Borrowed: valid while you hold c. Use it as a
 * CHAN_RECV case in chan_select. Any thread. */
struct chan *ctx_done(struct ctx *c);

/* 0 while not done, -ECANCELED, or -ETIMEDOUT (deadline exceeded). Set
 * before done is closed. NULL is background. Any thread. */
int ctx_err(const struct ctx *c);

/* The value of the nearest ancestor-or-self created with `key`, or NULL. */
void *ctx_value(const struct ctx *c, const void *key);

/* The effective deadline (absolute ms, timer_now_ms() clock), or -1. */
int64_t ctx_deadline(const struct ctx *c);

#endif
