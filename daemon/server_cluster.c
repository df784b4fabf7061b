/* Cluster mode (docs/cluster.md), the server's side: the replica, the
 * journal handing every batch to it, and the node's role turned into
 * serving or not. Built only with the cluster code (configure).
 *
 * Until this node is the ready leader, the server's broker is empty and
 * not started: the gate (daemon/cluster/gate.h) keeps every op but hello,
 * ping and stats away from it. On becoming ready, the committed state is
 * copied into it and it starts serving.
 * Losing leadership ends the process: its serving state may hold changes
 * that never committed, and timers and waits still running on it must not
 * reach a later term's log, so a restart (systemd's Restart=on-failure)
 * rejoins as a follower from the replicated log. */
#include "chanq_config.h"

#include "daemon/server-internal.h"

#include <event2/event.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "daemon/cluster/fsm.h"
#include "daemon/cluster/gate.h"
#include "daemon/cluster/replica.h"
#include "daemon/cluster/replicate.h"
#include "daemon/conn.h"
#include "daemon/journal/journal.h"
#include "daemon/log.h"

static const char *
role_name(const struct replica_status *s)
{
    switch (s->role) {
    case REPLICA_LEADER:
        return "leader";
    case REPLICA_FOLLOWER:
        return "follower";
    case REPLICA_CANDIDATE:
        return "candidate";
    case REPLICA_UNAVAILABLE:
        break;
    }
    return "unavailable";
}

/* The client address the peers list gives node id, or NULL. */
static const char *
client_address(const struct server *srv, uint64_t id)
{
    for (size_t i = 0; i < srv->ncpeers; i++)
        if (srv->cpeers[i].id == id && srv->cpeers[i].client[0])
            return srv->cpeers[i].client;
    return NULL;
}

static int
standby_digest(void *arg, char *hex)
{
    return cluster_fsm_digest(replica_fsm(arg), hex);
}

static void step_down(struct server *srv, const struct replica_status *s);

/* The committed state becomes the serving state (loop thread): copied into
 * the server's broker, empty and not started until now, so connections
 * keep the one broker (and memory budget) they were given. */
static void
promote(struct server *srv, const struct replica_status *s)
{
    if (cluster_fsm_promote_into(replica_fsm(srv->replica), srv->broker) < 0) {
        step_down(srv, s); /* half a state must not serve */
        return;
    }
    broker_start(srv->broker); /* requeues the old leader's reservations, attempt counted */
    srv->serving = true;
    srv->serving_term = s->term;
    log_info("cluster: node %" PRIu64 " serves as the leader of term %" PRIu64
             " (log index %" PRIu64 ")",
             srv->cfg->node_id, s->term, s->last_applied);
}

/* Leadership lost: close every connection and stop (see the top). */
static void
step_down(struct server *srv, const struct replica_status *s)
{
    log_error("cluster: node %" PRIu64 " does not serve (now %s, term %" PRIu64
              "): closing connections and exiting; restart it to rejoin as a follower",
              srv->cfg->node_id, role_name(s), s->term);
    cluster_gate_set(srv->gate, false);
    srv->serving = false;
    srv->cluster_lost = true;
    struct conn *next;
    for (struct conn *c = srv->env.conns; c; c = next) {
        next = conn_next(c);
        conn_shutdown(c);
    }
    atomic_store(&srv->env.stopping, true);
    event_base_loopbreak(srv->base);
}

/* The role event: the replica's status changed (loop thread). */
static void
on_role_event(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;
    struct replica_status s;
    (void)fd;
    (void)what;
    replica_status(srv->replica, &s);
    bool lead = s.role == REPLICA_LEADER && s.ready;
    /* A term change while serving is a lost leadership too, even when this
     * node won the next election before this ran: entries the broker took
     * back as failed may commit in the new term. */
    if (srv->serving && (!lead || s.term != srv->serving_term))
        step_down(srv, &s);
    else if (lead && !srv->serving && !srv->cluster_lost)
        promote(srv, &s);
    cluster_gate_set(srv->gate, srv->serving);
}

/* cluster_describe_fn: the replica's latest status (any thread). */
static void
describe(void *arg, char *role, size_t rolelen, char *leader, size_t leaderlen)
{
    struct server *srv = arg;
    struct replica_status s;
    replica_status(srv->replica, &s);
    const char *addr = s.leader_id ? client_address(srv, s.leader_id) : NULL;
    snprintf(role, rolelen, "%s", role_name(&s));
    snprintf(leader, leaderlen, "%s", addr ? addr : "");
}

/* replica_config.on_role, on the replica thread: hand over to the loop. */
static void
on_role(void *arg, const struct replica_status *s)
{
    struct server *srv = arg;
    (void)s;
    pthread_mutex_lock(&srv->role_mu);
    if (srv->role_ev) /* NULL once the loop is going away */
        event_active(srv->role_ev, 0, 0);
    pthread_mutex_unlock(&srv->role_mu);
}

int
server_cluster_start(struct server *srv)
{
    char err[512];
    const struct config *cfg = srv->cfg;
    if (config_parse_peers(cfg->peers, srv->cpeers, CONFIG_MAX_PEERS, &srv->ncpeers, err,
                           sizeof err) < 0) {
        log_error("%s", err);
        return -1;
    }
    struct replica_peer peers[CONFIG_MAX_PEERS];
    const char *self = NULL;
    for (size_t i = 0; i < srv->ncpeers; i++) {
        peers[i] = (struct replica_peer){.id = srv->cpeers[i].id, .address = srv->cpeers[i].raft};
        if (srv->cpeers[i].id == cfg->node_id)
            self = srv->cpeers[i].raft;
    }
    /* The journal first: it takes DATA/LOCK, so no other chanqd uses
     * DATA/raft/ too. It writes no segment in cluster mode. */
    struct journal_opts opts = {.replicator = &srv->replicator};
    if (!(srv->journal = journal_open_opts(cfg->data_dir, &opts, err, sizeof err))) {
        log_error("%s", err);
        return -1;
    }
    if (journal_bytes(srv->journal) > 0) {
        log_error("cluster: %s holds a single-node journal; a cluster node starts from a data "
                  "dir without one",
                  cfg->data_dir);
        return -1;
    }
    pthread_mutex_init(&srv->role_mu, NULL);
    srv->role_mu_init = true;
    if (!(srv->gate = cluster_gate_new(describe, srv)) ||
        !(srv->role_ev = event_new(srv->base, -1, 0, on_role_event, srv))) {
        log_error("cluster: out of memory");
        return -1;
    }
    struct replica_config rc = {
        .id = cfg->node_id,
        /* Peers answer the address this node gives in its handshakes:
         * the peers list's, whatever --raft-listen binds. */
        .address = self,
        .bind_address = cfg->raft_listen,
        .peers = peers,
        .npeers = srv->ncpeers,
        .data_dir = cfg->data_dir,
        .election_ms = (unsigned)cfg->raft_election_ms,
        .broker = server_broker_settings(cfg),
        .on_role = on_role,
        .role_arg = srv,
    };
    if (!(srv->replica = replica_start(&rc, err, sizeof err))) {
        log_error("cluster: %s", err);
        return -1;
    }
    cluster_gate_set_digest(srv->gate, standby_digest, srv->replica);
    broker_set_journal(srv->broker, srv->journal);
    cluster_replicator_init(&srv->replicator, srv->replica);
    if (journal_start(srv->journal, err, sizeof err) < 0) {
        log_error("cannot start the journal: %s", err);
        return -1;
    }
    log_info("cluster: node %" PRIu64 " of %zu, Raft on %s (listening on %s), data in %s/raft",
             cfg->node_id, srv->ncpeers, rc.address, rc.bind_address ? rc.bind_address : rc.address,
             cfg->data_dir);
    return 0;
}

void
server_cluster_stop(struct server *srv)
{
    /* The journal before the replica: closing waits for every batch in
     * flight, which only the replica can settle. */
    if (srv->journal && journal_close(srv->journal) < 0)
        log_warn("cluster: the last batches before stopping were not committed");
    srv->journal = NULL;
    if (srv->role_mu_init) {
        pthread_mutex_lock(&srv->role_mu);
        if (srv->role_ev)
            event_free(srv->role_ev);
        srv->role_ev = NULL;
        pthread_mutex_unlock(&srv->role_mu);
    }
}

void
server_cluster_free(struct server *srv)
{
    /* Only now: goroutines answering hello asked it (describe). */
    replica_stop(srv->replica);
    srv->replica = NULL;
    cluster_gate_free(srv->gate);
    srv->gate = NULL;
    if (srv->role_mu_init)
        pthread_mutex_destroy(&srv->role_mu);
    srv->role_mu_init = false;
}
