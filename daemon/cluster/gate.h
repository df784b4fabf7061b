/* Cluster mode's gate in front of the ops (docs/cluster.md): whether this
 * node serves (it is the ready leader and its state was promoted), its
 * role and the leader's client address, for not_leader and hello. Built
 * with or without the cluster code (it uses neither libraft nor libuv).
 * The server owns it and opens or closes it on the loop thread; ops read
 * it from any thread. */
#ifndef CHANQ_DAEMON_CLUSTER_GATE_H
#define CHANQ_DAEMON_CLUSTER_GATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* What the `cluster` op and `stats` report, and what the membership ops
 * ask of the node; the server sets them once before serving.
 *   status: the node's view of the cluster as a JSON object (a new
 *           reference, NULL when out of memory). Any thread.
 *   change: starts a membership change or a leadership transfer (id 0:
 *           any voter); done(done_arg, status) follows exactly once, on
 *           another thread, unless change returns a negative errno. The
 *           statuses are replica.h's (0, -ENOTCONN, -EEXIST, -ENOENT,
 *           -EBUSY, -ETIMEDOUT, ...). */
enum cluster_change { CLUSTER_ADD, CLUSTER_REMOVE, CLUSTER_TRANSFER };
typedef void cluster_change_done_fn(void *done_arg, int status);
struct cluster_control {
    json_t *(*status)(void *arg);
    int (*change)(void *arg, enum cluster_change kind, uint64_t id, const char *address,
                  cluster_change_done_fn *done, void *done_arg);
    void *arg;
};
void cluster_gate_set_control(struct cluster_gate *g, const struct cluster_control *c);
/* control.status's answer; NULL when none was set or out of memory. */
json_t *cluster_gate_status(const struct cluster_gate *g);
/* control.change's; -ENOSYS when none was set. */
int cluster_gate_change(const struct cluster_gate *g, enum cluster_change kind, uint64_t id,
                        const char *address, cluster_change_done_fn *done, void *done_arg);

/* Any thread. */
bool cluster_gate_serving(const struct cluster_gate *g);

/* The describe function's answer. Any thread. */
void cluster_gate_get(const struct cluster_gate *g, char *role, size_t rolelen, char *leader,
                      size_t leaderlen);

#endif
