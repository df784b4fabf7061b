/* The job table: job id -> struct job *, an open-addressing hash map.
 * Not thread-safe: the broker lock guards it. */
#ifndef CHANQ_DAEMON_JOBTABLE_H
#define CHANQ_DAEMON_JOBTABLE_H

#include <stddef.h>
#include <stdint.h>

struct job;
struct jobtable;

/* Returns an empty table or NULL. */
struct jobtable *jobtable_new(void);
/* Frees the table, not the jobs. */
void jobtable_free(struct jobtable *t);

/* Adds j under j->id (which must not be present). Borrows j (the caller
 * keeps the table's reference). Returns 0 or -ENOMEM (table unchanged). */
int jobtable_put(struct jobtable *t, struct job *j);
/* The job with this id (borrowed), or NULL. */
struct job *jobtable_get(const struct jobtable *t, uint64_t id);
/* Removes the entry for id; returns the job (the caller now holds the
 * table's reference) or NULL. */
struct job *jobtable_del(struct jobtable *t, uint64_t id);

size_t jobtable_count(const struct jobtable *t);

/* Calls fn for every job, in no order. fn must not change the table. */
void jobtable_each(const struct jobtable *t, void (*fn)(struct job *j, void *arg), void *arg);

#endif
