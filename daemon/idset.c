/* Linear probing; 0 marks an empty slot, so id 0 has a flag of its own.
 * Nothing is ever removed: a set lives for one compaction and is freed. */
#include "chanq_config.h"

#include "daemon/idset.h"

#include <errno.h>
#include <stdlib.h>

#define IDSET_MIN_SLOTS 256

struct idset {
    uint64_t *slots; /* 0 = empty; size is a power of two */
    size_t mask;     /* size - 1 */
    size_t count;    /* ids stored, id 0 included */
    bool has_zero;
};

static size_t
slot_of(uint64_t id, size_t mask)
{
    return (size_t)id_hash(id) & mask;
}

struct idset *
idset_new(void)
{
    struct idset *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->slots = calloc(IDSET_MIN_SLOTS, sizeof *s->slots);
    if (!s->slots) {
        free(s);
        return NULL;
    }
    s->mask = IDSET_MIN_SLOTS - 1;
    return s;
}

void
idset_free(struct idset *s)
{
    if (!s)
        return;
    free(s->slots);
    free(s);
}

static void
insert_slot(uint64_t *slots, size_t mask, uint64_t id)
{
    size_t i = slot_of(id, mask);
    while (slots[i] && slots[i] != id)
        i = (i + 1) & mask;
    slots[i] = id;
}

static int
grow(struct idset *s)
{
    size_t size = (s->mask + 1) * 2;
    uint64_t *slots = calloc(size, sizeof *slots);
    if (!slots)
        return -ENOMEM;
    for (size_t i = 0; i <= s->mask; i++)
        if (s->slots[i])
            insert_slot(slots, size - 1, s->slots[i]);
    free(s->slots);
    s->slots = slots;
    s->mask = size - 1;
    return 0;
}

int
idset_add(struct idset *s, uint64_t id)
{
    if (idset_has(s, id))
        return 0;
    if (id == 0) {
        s->has_zero = true;
        s->count++;
        return 0;
    }
    /* Keep the load under 3/4 so probes stay short. */
    if ((s->count + 1) * 4 > (s->mask + 1) * 3 && grow(s) < 0)
        return -ENOMEM;
    insert_slot(s->slots, s->mask, id);
    s->count++;
    return 0;
}

bool
idset_has(const struct idset *s, uint64_t id)
{
    if (id == 0)
        return s->has_zero;
    for (size_t i = slot_of(id, s->mask);; i = (i + 1) & s->mask) {
        if (s->slots[i] == id)
            return true;
        if (!s->slots[i])
            return false;
    }
}

size_t
idset_count(const struct idset *s)
{
    return s->count;
}
