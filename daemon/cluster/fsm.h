/* The replicated state machine as libraft sees it (struct raft_fsm): every
 * committed entry is one batch of the broker's journal records
 * (daemon/cluster/entry.h), applied record by record through the broker's
 * one state machine (broker_replay_apply) into a standby state, a broker
 * that never serves. Every node keeps one, the leader too: it is the
 * committed state, what a snapshot writes and what a new leader starts
 * serving from.
 *
 * A snapshot is the standby written out as records (broker_snapshot_write),
 * framed as an entry; restoring one builds a fresh standby by applying
 * them, and replaces the old one only once that worked. Snapshots are
 * asynchronous (raft_fsm version 3): the standby is frozen on libraft's
 * thread and written on libuv's thread pool; entries committed meanwhile
 * are held and applied, in order, once the snapshot is stored.
 *
 * Threads: libraft calls the raft_fsm functions from the one thread that
 * drives it (the replica thread, or a test's); the other functions may be
 * called from any thread: a mutex guards the standby. */
#ifndef CHANQ_DAEMON_CLUSTER_FSM_H
#define CHANQ_DAEMON_CLUSTER_FSM_H

#include <stdbool.h>
#include <stdint.h>

#include "daemon/broker.h"

struct ctx;
struct raft_fsm;
struct cluster_fsm;

/* A state machine with an empty standby made with cfg (copied). NULL when
 * out of memory. */
struct cluster_fsm *cluster_fsm_new(const struct broker_config *cfg);
/* Frees it and its standby. libraft must be done with it (raft closed). */
void cluster_fsm_free(struct cluster_fsm *f);

/* The struct raft_fsm to give raft_init or raft_fixture_grow (borrowed,
 * valid until cluster_fsm_free). */
struct raft_fsm *cluster_fsm_raft(struct cluster_fsm *f);

/* Makes snapshots synchronous (raft_fsm version 2: written within
 * libraft's `snapshot` call, on its thread), for an io without async_work
 * (libraft 0.15's raft_fixture). Before raft_init / raft_fixture_grow. */
void cluster_fsm_sync_snapshots(struct cluster_fsm *f);

/* Figures, each a consistent read. */
struct cluster_fsm_stats {
    uint64_t entries;       /* command entries applied since start or restore */
    uint64_t records;       /* records applied by them */
    uint64_t bad_entries;   /* entries refused as malformed (applied nowhere) */
    uint64_t snapshots;     /* snapshots taken */
    uint64_t restores;      /* snapshots restored */
    uint64_t snapshot_bytes; /* size of the last snapshot taken or restored */
    bool diverged;          /* an entry failed half way (out of memory): the
                             * standby no longer is the log's state */
};
void cluster_fsm_stats(struct cluster_fsm *f, struct cluster_fsm_stats *out);

/* The standby's broker_state_digest: 0, or -1 when out of memory. */
int cluster_fsm_digest(struct cluster_fsm *f, char hex[BROKER_DIGEST_HEX]);

/* For a node that became leader: a new broker (broker_new with cfg and
 * root, borrowed) holding a copy of the standby's state, not yet serving.
 * The caller sets its journal and calls broker_start, which puts the jobs
 * the old leader had handed out back in their queues, the delivery
 * counted, and records that. The standby goes on following the log. NULL
 * when out of memory (or the copy failed; logged). */
struct broker *cluster_fsm_promote(struct cluster_fsm *f, const struct broker_config *cfg,
                                   struct ctx *root);

/* The same copy into b, a broker the caller made (broker_new), that is
 * empty and not started (the daemon's, which connections already point
 * to). 0, or -1 when out of memory: b then holds part of the state and
 * must not serve (logged). */
int cluster_fsm_promote_into(struct cluster_fsm *f, struct broker *b);

#endif
