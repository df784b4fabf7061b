/* The replica: this node's member of the Raft group that replicates the
 * broker's journal (docs/cluster.md). A thread of its own runs a libuv
 * loop with libraft on it: the log and snapshots under DATA/raft/
 * (raft_uv), the TCP transport to the peers with TCP_NODELAY
 * (daemon/cluster/nodelay.h), and the state machine (daemon/cluster/fsm.h)
 * applying committed entries into a standby state. libraft is only ever
 * called from that thread: other threads hand it proposals through a
 * mailbox woken with uv_async_send, and get each answer through the
 * callback they gave, called on the replica thread.
 *
 * Coded to the API common to libraft 0.15 and the cowsql fork 0.22. */
#ifndef CHANQ_DAEMON_CLUSTER_REPLICA_H
#define CHANQ_DAEMON_CLUSTER_REPLICA_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/broker.h"

struct cluster_fsm;
struct replica;

/* One voting member: its id (> 0) and address "IPv4:port", the Raft one,
 * optionally followed by "/HOST:PORT", the address its clients use. The
 * whole string is what the replicated configuration holds, so every node
 * learns each member's client address from the log; the transport reads
 * only the part before the slash. */
struct replica_peer {
    uint64_t id;
    const char *address;
};

/* Proposals answered 0 (committed and applied here), by the time from
 * replica_propose to that answer: bucket i counts those that took at
 * most REPLICA_COMMIT_LE_US[i] µs (the last is +Inf). */
#define REPLICA_COMMIT_BUCKETS 12
extern const uint64_t REPLICA_COMMIT_LE_US[REPLICA_COMMIT_BUCKETS - 1];

/* A member as the configuration in this node's log has it. */
#define REPLICA_MAX_MEMBERS 16
struct replica_member {
    uint64_t id;
    char address[128]; /* as in struct replica_peer */
    bool voter;        /* false: being added (catching up, not yet voting) */
};

enum replica_role {
    REPLICA_UNAVAILABLE, /* starting or stopping */
    REPLICA_FOLLOWER,
    REPLICA_CANDIDATE,
    REPLICA_LEADER,
};

/* What the replica thread last published (after each loop iteration). */
struct replica_status {
    enum replica_role role;
    /* A leader whose barrier has applied: every entry of earlier terms is
     * committed and in the standby, so the state may be promoted and
     * clients served. */
    bool ready;
    uint64_t term;
    uint64_t leader_id; /* 0: none known */
    char leader_address[64];
    uint64_t commit_index;
    uint64_t last_applied;
    uint64_t last_index;
    uint64_t commits;      /* proposals committed since start */
    uint64_t commit_us_sum;
    uint64_t commit_hist[REPLICA_COMMIT_BUCKETS];
    size_t nmembers; /* the configuration: at most REPLICA_MAX_MEMBERS shown */
    struct replica_member members[REPLICA_MAX_MEMBERS];
};

struct replica_config {
    uint64_t id;                     /* this node, one of peers */
    /* This node's Raft address as the peers list has it. libraft sends it
     * in the handshake of every connection it makes, and a peer that first
     * hears from this node answers there: it must be reachable from them. */
    const char *address;
    /* Where to listen instead (e.g. "0.0.0.0:PORT"); NULL: address. */
    const char *bind_address;
    const struct replica_peer *peers; /* every voter, this node included */
    size_t npeers;
    const char *data_dir;            /* DATA: the Raft files go in DATA/raft/ */
    unsigned election_ms;            /* election timeout [1000]; heartbeat 1/10 of it */
    unsigned snapshot_threshold;     /* entries between snapshots [1024] */
    /* Joins an existing cluster: no configuration is bootstrapped on a
     * fresh directory (peers may then leave this node out); the leader
     * adds it (replica_add) and sends it the log. */
    bool join;
    struct broker_config broker;     /* the standby's settings */
    /* Called on the replica thread whenever the role, term or readiness
     * changes (also once at start), with the new status (borrowed for the
     * call). Must not block. May be NULL. */
    void (*on_role)(void *arg, const struct replica_status *s);
    void *role_arg;
};

/* Creates DATA/raft/ if missing, starts the replica thread and libraft on
 * it (bootstrapping the configuration of peers on a fresh directory; a
 * directory with a log keeps its own), and returns once libraft runs.
 * NULL with the reason in err (a bad address, a port in use, a broken
 * log). Any thread; blocks briefly. All strings are copied. */
struct replica *replica_start(const struct replica_config *cfg, char *err, size_t errlen);

/* An answer to a proposal, on the replica thread; must not block.
 *   0             committed (a majority has it on disk) and applied to
 *                 this node's standby;
 *   -ENOTCONN     this node is not the leader: the entry was not appended;
 *   -ECONNRESET   leadership was lost before the entry committed: its fate
 *                 is unknown (a new leader may still commit it);
 *   -ESHUTDOWN    replica_stop came first (fate unknown as above when it
 *                 was already appended);
 *   -EBADMSG      the entry was malformed (committed, applied nowhere);
 *   -ENOMEM, -EIO. */
typedef void replica_done_fn(void *arg, int status);

/* Proposes one entry (entry.h framing, raft_malloc'd, e.g. an
 * entry_builder's buffer; ownership passes to the replica even on
 * failure). done is called exactly once, unless this returns an error:
 * -ESHUTDOWN (stopping), -EINVAL (len 0) or -ENOMEM. Any thread, but not
 * once replica_stop may have begun; never blocks. */
int replica_propose(struct replica *r, void *entry, size_t len, replica_done_fn *done, void *arg);

/* Membership changes and leadership transfer, on the leader. done is
 * called exactly once on the replica thread, unless this returns an error
 * (-ESHUTDOWN, -ENOMEM, -EINVAL for id 0 or a bad address), with
 *   0             done: the new configuration is committed, or (transfer)
 *                 the target now leads;
 *   -ENOTCONN     this node is not the leader;
 *   -EEXIST       add: the id or address is already a member;
 *   -ENOENT       remove/transfer: no such member (transfer to 0: no
 *                 voter to hand over to);
 *   -EBUSY        another configuration change is still in progress;
 *   -ETIMEDOUT    transfer: no new leader within the election timeout;
 *   -ECONNRESET, -ESHUTDOWN, -EIO as for proposals.
 * add makes id a voter once it has caught up with the log (two changes:
 * added as a spare, then promoted). transfer with id 0 picks the most
 * up-to-date voter. Any thread but not once replica_stop may have begun. */
int replica_add(struct replica *r, uint64_t id, const char *address, replica_done_fn *done,
                void *arg);
int replica_remove(struct replica *r, uint64_t id, replica_done_fn *done, void *arg);
int replica_transfer(struct replica *r, uint64_t id, replica_done_fn *done, void *arg);

/* Fences proposals to one term: from now on an entry is proposed only
 * while this node leads in that term; otherwise its done gets -ENOTCONN.
 * 0 refuses every proposal. A serving broker's records then can never
 * reach the log of a later term, even one this node leads again. Until
 * the first call, proposals are not fenced. Any thread. */
void replica_fence(struct replica *r, uint64_t term);

/* Any thread. */
void replica_status(struct replica *r, struct replica_status *out);

/* The state machine (borrowed, valid until replica_stop): its digest,
 * figures, and the copy a new leader serves from. Any thread. */
struct cluster_fsm *replica_fsm(struct replica *r);

/* libraft's status code as the negative errno replica_done_fn documents. */
int replica_errno(int raft_status);

/* Stops libraft (proposals still queued get -ESHUTDOWN, those in flight
 * libraft's own failure), ends the thread, frees r. NULL is ignored. Any
 * thread but the replica's; blocks until the thread has ended. */
void replica_stop(struct replica *r);

#endif
