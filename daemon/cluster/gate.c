/* The gate: an atomic flag for the hot path (every op reads it), and the
 * server's describe function for hello and not_leader answers, asked at
 * the time (a follower learns its leader without changing role). */
#include "chanq_config.h"

#include "daemon/cluster/gate.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

struct cluster_gate {
    _Atomic bool serving;
    cluster_describe_fn *describe;
    void *describe_arg;
    int (*digest)(void *arg, char *hex); /* set before serving, then read-only */
    void *digest_arg;
    struct cluster_control control; /* set before serving, then read-only */
};

struct cluster_gate *
cluster_gate_new(cluster_describe_fn *describe, void *arg)
{
    struct cluster_gate *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->describe = describe;
    g->describe_arg = arg;
    return g;
}

void
cluster_gate_free(struct cluster_gate *g)
{
    free(g);
}

void
cluster_gate_set_digest(struct cluster_gate *g, int (*fn)(void *arg, char *hex), void *arg)
{
    g->digest = fn;
    g->digest_arg = arg;
}

int
cluster_gate_digest(const struct cluster_gate *g, char *hex)
{
    return g->digest ? g->digest(g->digest_arg, hex) : -1;
}

void
cluster_gate_set_control(struct cluster_gate *g, const struct cluster_control *c)
{
    g->control = *c;
}

json_t *
cluster_gate_status(const struct cluster_gate *g)
{
    return g->control.status ? g->control.status(g->control.arg) : NULL;
}

int
cluster_gate_change(const struct cluster_gate *g, enum cluster_change kind, uint64_t id,
                    const char *address, cluster_change_done_fn *done, void *done_arg)
{
    if (!g->control.change)
        return -ENOSYS;
    return g->control.change(g->control.arg, kind, id, address, done, done_arg);
}

void
cluster_gate_set(struct cluster_gate *g, bool serving)
{
    atomic_store(&g->serving, serving);
}

bool
cluster_gate_serving(const struct cluster_gate *g)
{
    return atomic_load(&((struct cluster_gate *)g)->serving);
}

void
cluster_gate_get(const struct cluster_gate *g, char *role, size_t rolelen, char *leader,
                 size_t leaderlen)
{
    g->describe(g->describe_arg, role, rolelen, leader, leaderlen);
}
