/* A set of job ids (uint64_t), an open-addressing hash set. Used by the
 * broker to remember, for the length of one journal compaction, the jobs it
 * forgot while the compaction ran. Not thread-safe: the owner's lock guards
 * it. */
#ifndef CHANQ_DAEMON_IDSET_H
#define CHANQ_DAEMON_IDSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct idset;

/* Mixes the bits of a job id for a hash table slot (ids are sequential, so
 * neighbours must spread out). Shared with the job table. */
static inline uint64_t
id_hash(uint64_t id)
{
    id ^= id >> 33;
    id *= 0xff51afd7ed558ccdULL;
    id ^= id >> 33;
    return id;
}

/* Returns an empty set or NULL. */
struct idset *idset_new(void);
/* Frees the set (NULL is fine). */
void idset_free(struct idset *s);

/* Adds id (any value, 0 included). 0 or -ENOMEM (set unchanged). */
int idset_add(struct idset *s, uint64_t id);
bool idset_has(const struct idset *s, uint64_t id);
size_t idset_count(const struct idset *s);

#endif
