/* The journal's replicator in cluster mode (daemon/journal/journal.h):
 * each group-commit batch becomes one Raft entry (daemon/cluster/entry.h)
 * proposed to the replica, and the batch's waiters are released when the
 * entry has committed and applied (or fail with the replica's error). */
#ifndef CHANQ_DAEMON_CLUSTER_REPLICATE_H
#define CHANQ_DAEMON_CLUSTER_REPLICATE_H

#include "daemon/journal/journal.h"

#include "daemon/cluster/replica.h"

/* Fills *out with a replicator proposing to r (borrowed: r must outlive
 * every journal given *out, i.e. journal_close before replica_stop). A
 * batch then fails with replica_done_fn's errors: -ENOTCONN (this node is
 * not the leader), -ECONNRESET (leadership lost, fate unknown), ... */
void cluster_replicator_init(struct journal_replicator *out, struct replica *r);

/* The same replicator proposing through another propose function with
 * replica_propose's contract (ownership of the entry passes, even on
 * failure; done called exactly once unless it returns an error): the seam
 * for a test that runs the journal on libraft's raft_fixture. p is
 * borrowed and must outlive every journal given *out. */
struct cluster_proposer {
    int (*propose)(void *arg, void *entry, size_t len, replica_done_fn *done, void *done_arg);
    void *arg;
};
void cluster_replicator_init_proposer(struct journal_replicator *out,
                                      struct cluster_proposer *p);

#endif
