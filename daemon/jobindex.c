/* The id-ordered index of a queue's jobs of one state (see jobindex.h).
 * Insertion splits the subtree where the new job's priority belongs and
 * removal merges the job's two subtrees: both iterative, through links,
 * so no recursion depth depends on the index's size. */
#include "chanq_config.h"

#include "daemon/jobindex.h"

#include "daemon/job.h"

/* The heap priority: a mix of the id (splitmix64's finaliser), so that
 * ids that grow one by one still make a balanced tree. */
static uint64_t
prio(const struct job *j)
{
    uint64_t z = j->id + UINT64_C(0x9e3779b97f4a7c15);
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

void
jobindex_insert(struct jobindex *ix, struct job *j)
{
    uint64_t p = prio(j);
    struct job **link = &ix->root;
    while (*link && prio(*link) > p)
        link = j->id < (*link)->id ? &(*link)->ix_left : &(*link)->ix_right;
    /* Split the subtree at *link into the ids below j's and those above. */
    struct job *t = *link;
    struct job **lo = &j->ix_left, **hi = &j->ix_right;
    while (t) {
        if (t->id < j->id) {
            *lo = t;
            lo = &t->ix_right;
            t = t->ix_right;
        } else {
            *hi = t;
            hi = &t->ix_left;
            t = t->ix_left;
        }
    }
    *lo = *hi = NULL;
    *link = j;
    ix->n++;
}

void
jobindex_remove(struct jobindex *ix, struct job *j)
{
    struct job **link = &ix->root;
    while (*link && *link != j)
        link = j->id < (*link)->id ? &(*link)->ix_left : &(*link)->ix_right;
    if (!*link)
        return; /* not on it: nothing to do (callers keep the invariant) */
    /* Merge the two subtrees, the higher priority on top at each step. */
    struct job *a = j->ix_left, *b = j->ix_right;
    while (a && b) {
        if (prio(a) > prio(b)) {
            *link = a;
            link = &a->ix_right;
            a = a->ix_right;
        } else {
            *link = b;
            link = &b->ix_left;
            b = b->ix_left;
        }
    }
    *link = a ? a : b;
    j->ix_left = j->ix_right = NULL;
    ix->n--;
}

struct job *
jobindex_next(const struct jobindex *ix, uint64_t after, bool descending, bool from_end)
{
    struct job *best = NULL;
    for (struct job *t = ix->root; t;) {
        bool beyond = from_end || (descending ? t->id < after : t->id > after);
        if (beyond) {
            best = t; /* a candidate; a nearer one may be on the inner side */
            t = descending ? t->ix_right : t->ix_left;
        } else {
            t = descending ? t->ix_left : t->ix_right;
        }
    }
    return best;
}
