/* Per-address accounting: a chained hash table of addresses under one
 * mutex (held for a few instructions; never across a park or a write). */
#include "chanq_config.h"

#include "daemon/peers.h"
#include "daemon/log.h"

#include "core/timer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* At most one log line per address per interval, with the counts since. */
#define LOG_INTERVAL_MS 10000
#define MIN_BUCKETS 256

struct peer {
    struct peer *next;       /* bucket chain */
    struct peer_addr addr;
    uint64_t conns;          /* connections open from it */
    int64_t hello_next_ms;   /* when its last queued failed hello is answered */
    uint64_t hello_failed;   /* failed hellos not logged yet */
    uint64_t hello_refused;  /* of those, refused unchecked (locked out) */
    uint64_t conns_refused;  /* connections refused, not logged yet */
    int64_t log_after_ms;    /* no line for it before then */
    int64_t counting_since;  /* when the unlogged counts started */
};

struct peers {
    pthread_mutex_t lock;
    struct peer **buckets;
    size_t nbuckets; /* a power of two */
    size_t n;
};

void
peer_addr_from_sa(struct peer_addr *a, const struct sockaddr *sa)
{
    memset(a, 0, sizeof *a);
    if (sa && sa->sa_family == AF_INET) {
        a->family = AF_INET;
        memcpy(a->b, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa && sa->sa_family == AF_INET6) {
        const struct in6_addr *in6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(in6)) {
            a->family = AF_INET;
            memcpy(a->b, in6->s6_addr + 12, 4);
        } else {
            a->family = AF_INET6;
            memcpy(a->b, in6->s6_addr, 8); /* the /64: one host's share */
        }
    }
}

/* "127.0.0.2" or "2001:db8::/64", for logs. */
static void
peer_addr_format(const struct peer_addr *a, char *buf, size_t len)
{
    char text[INET6_ADDRSTRLEN] = "?";
    if (a->family == 0) {
        snprintf(buf, len, "unix");
        return;
    }
    inet_ntop(a->family, a->b, text, sizeof text);
    snprintf(buf, len, "%s%s", text, a->family == AF_INET6 ? "/64" : "");
}

struct peers *
peers_new(void)
{
    struct peers *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->nbuckets = MIN_BUCKETS;
    p->buckets = calloc(p->nbuckets, sizeof *p->buckets);
    if (!p->buckets) {
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->lock, NULL);
    return p;
}

void
peers_free(struct peers *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->nbuckets; i++) {
        for (struct peer *e = p->buckets[i], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    }
    pthread_mutex_destroy(&p->lock);
    free(p->buckets);
    free(p);
}

static size_t
addr_hash(const struct peer_addr *a)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < sizeof a->b; i++)
        h = (h ^ a->b[i]) * 1099511628211ull;
    return (size_t)(h ^ (h >> 29));
}

static struct peer **
slot_of(struct peers *p, const struct peer_addr *a)
{
    struct peer **s = &p->buckets[addr_hash(a) & (p->nbuckets - 1)];
    while (*s && memcmp(&(*s)->addr, a, sizeof *a) != 0)
        s = &(*s)->next;
    return s;
}

/* Doubles the buckets once the chains grow long; stays as is when out of
 * memory (longer chains, still correct). */
static void
grow(struct peers *p)
{
    size_t nb = p->nbuckets * 2;
    struct peer **b = calloc(nb, sizeof *b);
    if (!b)
        return;
    for (size_t i = 0; i < p->nbuckets; i++) {
        for (struct peer *e = p->buckets[i], *next; e; e = next) {
            next = e->next;
            size_t k = addr_hash(&e->addr) & (nb - 1);
            e->next = b[k];
            b[k] = e;
        }
    }
    free(p->buckets);
    p->buckets = b;
    p->nbuckets = nb;
}

/* The entry for a, created when missing; NULL when out of memory. Locked. */
static struct peer *
get(struct peers *p, const struct peer_addr *a)
{
    struct peer **s = slot_of(p, a);
    if (*s)
        return *s;
    struct peer *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->addr = *a;
    *s = e;
    if (++p->n > 2 * p->nbuckets)
        grow(p);
    return e;
}

bool
peers_admit(struct peers *p, const struct peer_addr *a, uint64_t limit)
{
    if (a->family == 0)
        return true;
    pthread_mutex_lock(&p->lock);
    struct peer *e = get(p, a);
    bool ok = !e || limit == 0 || e->conns < limit;
    if (e && ok)
        e->conns++;
    else if (e)
        e->conns_refused++;
    pthread_mutex_unlock(&p->lock);
    return ok;
}

void
peers_release(struct peers *p, const struct peer_addr *a)
{
    if (a->family == 0)
        return;
    pthread_mutex_lock(&p->lock);
    struct peer *e = *slot_of(p, a);
    if (e && e->conns > 0)
        e->conns--;
    pthread_mutex_unlock(&p->lock);
}

bool
peers_hello_allowed(struct peers *p, const struct peer_addr *a)
{
    int64_t now = timer_now_ms();
    pthread_mutex_lock(&p->lock);
    struct peer *e = get(p, a);
    bool ok = !e || e->hello_next_ms - now <= PEERS_HELLO_BACKLOG_MS;
    if (e && !ok) {
        e->hello_failed++;
        e->hello_refused++;
    }
    pthread_mutex_unlock(&p->lock);
    return ok;
}

int64_t
peers_hello_failed(struct peers *p, const struct peer_addr *a, int64_t delay_ms)
{
    int64_t now = timer_now_ms();
    pthread_mutex_lock(&p->lock);
    struct peer *e = get(p, a);
    int64_t at = now + delay_ms;
    if (e) {
        if (e->hello_next_ms > now)
            at = e->hello_next_ms + delay_ms;
        e->hello_next_ms = at;
        if (e->hello_failed == 0 && e->conns_refused == 0)
            e->counting_since = now;
        e->hello_failed++;
    }
    pthread_mutex_unlock(&p->lock);
    return at - now;
}

/* One line with e's unlogged counts, then starts a new interval. Locked. */
static void
report(struct peer *e, int64_t now)
{
    char addr[INET6_ADDRSTRLEN + 8], refused[96] = "";
    peer_addr_format(&e->addr, addr, sizeof addr);
    if (e->hello_refused)
        snprintf(refused, sizeof refused, " (%llu refused unchecked: too many at once)",
                 (unsigned long long)e->hello_refused);
    if (e->hello_failed)
        log_warn_kv(LOG_FIELDS(LOG_STR("remote", addr), LOG_UINT("failed_hellos", e->hello_failed)),
                    "client %s: %llu failed hellos%s in the last %lld s", addr,
                    (unsigned long long)e->hello_failed, refused,
                    (long long)((now - e->counting_since) / 1000 + 1));
    if (e->conns_refused)
        log_warn_kv(LOG_FIELDS(LOG_STR("remote", addr), LOG_UINT("refused", e->conns_refused)),
                    "client %s: %llu connections refused at max-connections-per-address", addr,
                    (unsigned long long)e->conns_refused);
    e->hello_failed = e->hello_refused = e->conns_refused = 0;
    e->log_after_ms = now + LOG_INTERVAL_MS;
    e->counting_since = now;
}

void
peers_tick(struct peers *p)
{
    int64_t now = timer_now_ms();
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < p->nbuckets; i++) {
        struct peer **s = &p->buckets[i];
        while (*s) {
            struct peer *e = *s;
            bool pending = e->hello_failed || e->conns_refused;
            if (pending && now >= e->log_after_ms)
                report(e, now);
            /* Kept while it has connections, a queued hello, counts to log
             * or an interval running (a line per interval, not per return). */
            if (e->conns || pending || e->hello_next_ms > now || e->log_after_ms > now) {
                s = &e->next;
                continue;
            }
            *s = e->next;
            free(e);
            p->n--;
        }
    }
    pthread_mutex_unlock(&p->lock);
}
