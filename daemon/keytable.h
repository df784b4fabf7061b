/* Idempotency keys: key -> the job submitted with it, while that job is
 * live and for a window after it finished. A chained hash map keyed by the
 * key's bytes (FNV-1a), plus the list of the keys whose job finished,
 * oldest window first, so expired keys go in O(1) each.
 *
 * Owned by the broker; not thread-safe (the broker lock guards it). A key
 * entry is owned by the table; jobs point at theirs (job_extra.key) while
 * they are tracked. Times are wall-clock ms since the epoch, so that a
 * window survives a restart. */
#ifndef CHANQ_DAEMON_KEYTABLE_H
#define CHANQ_DAEMON_KEYTABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct keytable;

/* One key. Fields are the table's; read them, do not write them. */
struct key_entry {
    uint64_t id;       /* the job submitted with the key */
    int64_t until_ms;  /* 0 while the job is live; else when the key is free again */
    struct key_entry *chain;             /* next in its hash bucket */
    struct key_entry *win_prev, *win_next; /* the finished list, when until_ms > 0 */
    size_t len;        /* bytes of key */
    char key[];        /* the key's bytes, NUL-terminated */
};

/* An empty table, or NULL. max_finished bounds the keys kept after their
 * job finished: past it the oldest windows end early. */
struct keytable *keytable_new(size_t max_finished);
void keytable_free(struct keytable *t);

/* The entry of key[0..len) still in force at now_ms (its job live, or its
 * window not over), or NULL. Expired entries met on the way are freed. */
struct key_entry *keytable_get(struct keytable *t, const char *key, size_t len, int64_t now_ms);

/* Binds key[0..len) to job id (live): a new entry, or the existing one
 * rebound (its old binding is over). NULL when out of memory. */
struct key_entry *keytable_put(struct keytable *t, const char *key, size_t len, uint64_t id);

/* e's job finished: the key stays bound until until_ms (<= now: freed at
 * the next sweep). */
void keytable_finish(struct keytable *t, struct key_entry *e, int64_t until_ms);

/* Frees e now (its job was taken back: it never existed). */
void keytable_remove(struct keytable *t, struct key_entry *e);

/* Frees the finished keys whose window is over at now_ms (oldest first;
 * stops at the first still in force). */
void keytable_sweep(struct keytable *t, int64_t now_ms);

/* Keys in the table. */
size_t keytable_count(const struct keytable *t);

/* Calls fn for every finished key in window order (a snapshot writes
 * them). fn must not change the table. Returns the first nonzero fn
 * result, or 0. */
int keytable_each_finished(const struct keytable *t, int (*fn)(const struct key_entry *e, void *arg),
                           void *arg);

#endif
