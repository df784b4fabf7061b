/* Cluster mode's gate in front of the ops (docs/cluster.md): whether this
 * node serves (it is the ready leader and its state was promoted), its
 * role and the leader's client address, for not_leader and hello. Built
 * with or without the cluster code (it uses neither libraft nor libuv).
 * The server owns it and opens or closes it on the loop thread; ops read
 * it from any thread. */
#ifndef CHANQ_DAEMON_CLUSTER_GATE_H
#define CHANQ_DAEMON_CLUSTER_GATE_H

#include <stdbool.h>
#include <stddef.h>

struct cluster_gate;

/* Fills role ("leader", "follower", ...) and leader (the leader's client
 * address, "" when unknown) with what the node is now. Any thread. */
typedef void cluster_describe_fn(void *arg, char *role, size_t rolelen, char *leader,
                                 size_t leaderlen);

/* A gate that does not serve and asks describe (borrowed arg) what the
 * node is; NULL when out of memory. */
struct cluster_gate *cluster_gate_new(cluster_describe_fn *describe, void *arg);
void cluster_gate_free(struct cluster_gate *g);

/* Opens (serving) or closes the gate. */
void cluster_gate_set(struct cluster_gate *g, bool serving);

/* The committed state's digest, for `stats` with "digest" (the same on
 * every node once they have applied the same log): fn(arg, hex) returns 0
 * or -1. Set once before serving. */
void cluster_gate_set_digest(struct cluster_gate *g, int (*fn)(void *arg, char *hex), void *arg);
/* fn's answer, or -1 when none was set. Any thread. */
int cluster_gate_digest(const struct cluster_gate *g, char *hex);

/* Any thread. */
bool cluster_gate_serving(const struct cluster_gate *g);

/* The describe function's answer. Any thread. */
void cluster_gate_get(const struct cluster_gate *g, char *role, size_t rolelen, char *leader,
                      size_t leaderlen);

#endif
