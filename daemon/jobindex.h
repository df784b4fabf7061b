/* A queue's jobs of one state, ordered by id: what `list` pages through.
 * A treap threaded through the jobs themselves (two pointers per job, no
 * allocation), its heap priority a hash of the id, so its shape does not
 * depend on the order jobs come and go and its depth stays O(log n).
 * A page from a cursor costs O(log n) per job it returns, whatever the
 * cursor's position. Jobs are borrowed (an index holds no reference).
 * Every function: broker lock held. */
#ifndef CHANQ_DAEMON_JOBINDEX_H
#define CHANQ_DAEMON_JOBINDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct job;

struct jobindex {
    struct job *root;
    size_t n; /* jobs in it */
};

/* Which index of its queue a job of a state is on. */
enum jobindex_kind {
    JOBINDEX_DELAYED,
    JOBINDEX_QUEUED,
    JOBINDEX_RESERVED,
    JOBINDEX_DEAD,
    JOBINDEX_FINISHED, /* done, cancelled, expired (while kept) */
    JOBINDEX_N
};

/* Adds j (on no index) / takes j off ix (it must be on it). */
void jobindex_insert(struct jobindex *ix, struct job *j);
void jobindex_remove(struct jobindex *ix, struct job *j);

/* The first job after id `after` in ascending order (descending: before
 * it); with from_end, the first one at all. NULL when there is none. */
struct job *jobindex_next(const struct jobindex *ix, uint64_t after, bool descending,
                          bool from_end);

#endif
