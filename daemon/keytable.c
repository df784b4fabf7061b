/* Idempotency keys (see keytable.h). */
#include "chanq_config.h"

#include "daemon/keytable.h"

#include <stdlib.h>
#include <string.h>

struct keytable {
    struct key_entry **buckets; /* power-of-two count */
    size_t nbuckets;
    size_t count;
    struct key_entry *win_head, *win_tail; /* finished keys, earliest until_ms first */
    size_t finished;
    size_t max_finished;
};

static uint64_t
hash(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

struct keytable *
keytable_new(size_t max_finished)
{
    struct keytable *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->nbuckets = 64;
    t->buckets = calloc(t->nbuckets, sizeof *t->buckets);
    if (!t->buckets) {
        free(t);
        return NULL;
    }
    t->max_finished = max_finished;
    return t;
}

void
keytable_free(struct keytable *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nbuckets; i++) {
        for (struct key_entry *e = t->buckets[i], *next; e; e = next) {
            next = e->chain;
            free(e);
        }
    }
    free(t->buckets);
    free(t);
}

static struct key_entry **
slot_of(const struct keytable *t, const char *key, size_t len)
{
    struct key_entry **p = &t->buckets[hash(key, len) & (t->nbuckets - 1)];
    while (*p && ((*p)->len != len || memcmp((*p)->key, key, len) != 0))
        p = &(*p)->chain;
    return p;
}

/* Doubles the buckets once the chains average one entry; stays as it is
 * when out of memory (longer chains, still correct). */
static void
grow(struct keytable *t)
{
    if (t->count < t->nbuckets)
        return;
    size_t n = t->nbuckets * 2;
    struct key_entry **b = calloc(n, sizeof *b);
    if (!b)
        return;
    for (size_t i = 0; i < t->nbuckets; i++) {
        for (struct key_entry *e = t->buckets[i], *next; e; e = next) {
            next = e->chain;
            size_t k = hash(e->key, e->len) & (n - 1);
            e->chain = b[k];
            b[k] = e;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = n;
}

static void
win_unlink(struct keytable *t, struct key_entry *e)
{
    if (!e->until_ms)
        return;
    if (e->win_prev)
        e->win_prev->win_next = e->win_next;
    else
        t->win_head = e->win_next;
    if (e->win_next)
        e->win_next->win_prev = e->win_prev;
    else
        t->win_tail = e->win_prev;
    e->win_prev = e->win_next = NULL;
    e->until_ms = 0;
    t->finished--;
}

/* Unlinks e from everything and frees it. */
static void
drop(struct keytable *t, struct key_entry *e)
{
    struct key_entry **p = slot_of(t, e->key, e->len);
    if (*p == e)
        *p = e->chain;
    win_unlink(t, e);
    t->count--;
    free(e);
}

void
keytable_remove(struct keytable *t, struct key_entry *e)
{
    drop(t, e);
}

void
keytable_sweep(struct keytable *t, int64_t now_ms)
{
    while (t->win_head && t->win_head->until_ms <= now_ms)
        drop(t, t->win_head);
}

struct key_entry *
keytable_get(struct keytable *t, const char *key, size_t len, int64_t now_ms)
{
    keytable_sweep(t, now_ms);
    struct key_entry *e = *slot_of(t, key, len);
    if (e && e->until_ms && e->until_ms <= now_ms) {
        drop(t, e);
        return NULL;
    }
    return e;
}

struct key_entry *
keytable_put(struct keytable *t, const char *key, size_t len, uint64_t id)
{
    struct key_entry **p = slot_of(t, key, len);
    struct key_entry *e = *p;
    if (!e) {
        e = malloc(sizeof *e + len + 1);
        if (!e)
            return NULL;
        memset(e, 0, sizeof *e);
        memcpy(e->key, key, len);
        e->key[len] = '\0';
        e->len = len;
        *p = e;
        t->count++;
        grow(t);
    }
    win_unlink(t, e);
    e->id = id;
    return e;
}

void
keytable_finish(struct keytable *t, struct key_entry *e, int64_t until_ms)
{
    win_unlink(t, e);
    if (until_ms < 1)
        until_ms = 1; /* 0 means live */
    e->until_ms = until_ms;
    /* Sorted by until_ms: nearly always the tail (one window for all). */
    struct key_entry *after = t->win_tail;
    while (after && after->until_ms > until_ms)
        after = after->win_prev;
    e->win_prev = after;
    e->win_next = after ? after->win_next : t->win_head;
    if (e->win_next)
        e->win_next->win_prev = e;
    else
        t->win_tail = e;
    if (after)
        after->win_next = e;
    else
        t->win_head = e;
    t->finished++;
    while (t->finished > t->max_finished)
        drop(t, t->win_head); /* the bound: the oldest windows end early */
}

size_t
keytable_count(const struct keytable *t)
{
    return t->count;
}

int
keytable_each_finished(const struct keytable *t, int (*fn)(const struct key_entry *e, void *arg),
                       void *arg)
{
    for (const struct key_entry *e = t->win_head; e; e = e->win_next) {
        int rc = fn(e, arg);
        if (rc)
            return rc;
    }
    return 0;
}
