/* Wait groups (Go's sync.WaitGroup): wait until a counter returns to zero. */
#ifndef CHANQ_CORE_WG_H
#define CHANQ_CORE_WG_H

struct ctx;
struct wg;

/* A wait group at zero, owned by the caller; NULL when out of memory. */
struct wg *wg_new(void);

/* Adds n (may be negative) to the counter; reaching zero wakes every waiter.
 * Going below zero aborts. Any thread; never parks. */
void wg_add(struct wg *wg, int n);

/* wg_add(wg, -1). */
void wg_done(struct wg *wg);

/* Parks until the counter is zero. Goroutine only. Returns 0, or
 * -ECANCELED / -ETIMEDOUT when ctx (may be NULL) is done first. */
int wg_wait(struct wg *wg, struct ctx *ctx);

/* Frees wg; nobody may be waiting. NULL is ignored. */
void wg_free(struct wg *wg);

#endif
