/* Linear probing with backward-shift deletion: no tombstones, so lookups
 * stay short however many jobs come and go. */
#include "chanq_config.h"

#include "daemon/jobtable.h"
#include "daemon/job.h"

#include <errno.h>
#include <stdlib.h>

struct jobtable {
    struct job **slots; /* NULL = empty; size is a power of two */
    size_t mask;        /* size - 1 */
    size_t count;       /* jobs stored */
};

/* Mixes the bits of a job id (ids are sequential, so neighbours must
 * spread out over the slots). */
static size_t
slot_of(uint64_t id, size_t mask)
{
    id ^= id >> 33;
    id *= 0xff51afd7ed558ccdULL;
    id ^= id >> 33;
    return (size_t)id & mask;
}

struct jobtable *
jobtable_new(void)
{
    struct jobtable *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->slots = calloc(1024, sizeof *t->slots);
    if (!t->slots) {
        free(t);
        return NULL;
    }
    t->mask = 1023;
    return t;
}

void
jobtable_free(struct jobtable *t)
{
    if (!t)
        return;
    free(t->slots);
    free(t);
}

static void
insert_slot(struct job **slots, size_t mask, struct job *j)
{
    size_t i = slot_of(j->id, mask);
    while (slots[i])
        i = (i + 1) & mask;
    slots[i] = j;
}

static int
grow(struct jobtable *t)
{
    size_t size = (t->mask + 1) * 2;
    struct job **slots = calloc(size, sizeof *slots);
    if (!slots)
        return -ENOMEM;
    for (size_t i = 0; i <= t->mask; i++)
        if (t->slots[i])
            insert_slot(slots, size - 1, t->slots[i]);
    free(t->slots);
    t->slots = slots;
    t->mask = size - 1;
    return 0;
}

int
jobtable_put(struct jobtable *t, struct job *j)
{
    /* Keep the load under 3/4 so probes stay short. */
    if ((t->count + 1) * 4 > (t->mask + 1) * 3 && grow(t) < 0)
        return -ENOMEM;
    insert_slot(t->slots, t->mask, j);
    t->count++;
    return 0;
}

struct job *
jobtable_get(const struct jobtable *t, uint64_t id)
{
    for (size_t i = slot_of(id, t->mask);; i = (i + 1) & t->mask) {
        struct job *j = t->slots[i];
        if (!j || j->id == id)
            return j;
    }
}

struct job *
jobtable_del(struct jobtable *t, uint64_t id)
{
    size_t i = slot_of(id, t->mask);
    while (t->slots[i] && t->slots[i]->id != id)
        i = (i + 1) & t->mask;
    struct job *found = t->slots[i];
    if (!found)
        return NULL;
    /* Shift later members of the probe run back so no gap breaks a lookup. */
    size_t hole = i;
    for (size_t k = (i + 1) & t->mask; t->slots[k]; k = (k + 1) & t->mask) {
        size_t home = slot_of(t->slots[k]->id, t->mask);
        bool between = hole <= k ? (home > hole && home <= k) : (home > hole || home <= k);
        if (!between) {
            t->slots[hole] = t->slots[k];
            hole = k;
        }
    }
    t->slots[hole] = NULL;
    t->count--;
    return found;
}

size_t
jobtable_count(const struct jobtable *t)
{
    return t->count;
}

void
jobtable_each(const struct jobtable *t, void (*fn)(struct job *j, void *arg), void *arg)
{
    for (size_t i = 0; i <= t->mask; i++)
        if (t->slots[i])
            fn(t->slots[i], arg);
}
