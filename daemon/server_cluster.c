/* Cluster mode (docs/cluster.md), the server's side: the replica, the
 * journal handing every batch to it, and the node's role turned into
 * serving or not. Built only with the cluster code (configure).
 *
 * Until this node is the ready leader, the server's broker is empty and
 * not started: the gate (daemon/cluster/gate.h) keeps every op but hello,
 * ping and stats away from it. On becoming ready, the committed state is
 * copied into it and it starts serving.
 * Losing leadership steps the node down: the gate closes and the replica
 * is fenced (no record of the serving state reaches the log any more,
 * even of a later term this node leads), the connections are drained as
 * in a graceful stop, and server_run returns SERVER_STEPPED_DOWN, upon
 * which chanqd starts again in the same process (exec) as a follower: its
 * serving state may hold changes that never committed, and rebuilding it
 * from the replicated log is the one way that cannot get that wrong. */
#include "chanq_config.h"

#include "daemon/server-internal.h"

#include <event2/event.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "daemon/cluster/fsm.h"
#include "daemon/cluster/nodelay.h"
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

/* The client address of node id: the part after '/' of its address in
 * the replicated configuration (status), else what --peers gave, else
 * NULL. */
static const char *
client_address(const struct server *srv, const struct replica_status *s, uint64_t id)
{
    for (size_t i = 0; i < s->nmembers; i++) {
        const char *slash = strchr(s->members[i].address, '/');
        if (s->members[i].id == id && slash && slash[1])
            return slash + 1;
    }
    for (size_t i = 0; i < srv->ncpeers; i++)
        if (srv->cpeers[i].id == id && srv->cpeers[i].client[0])
            return srv->cpeers[i].client;
    return NULL;
}

/* "IPv4:port" of a member's address, into buf. */
static const char *
raft_address(const char *address, char *buf, size_t len)
{
    snprintf(buf, len, "%.*s", (int)strcspn(address, "/"), address);
    return buf;
}

static int
standby_digest(void *arg, char *hex)
{
    return cluster_fsm_digest(replica_fsm(arg), hex);
}

static void step_down(struct server *srv, const struct replica_status *s);

/* A node that lost its leadership answers what its connections had sent
 * within this many election timeouts, then closes them: by then another
 * node leads and the clients should go there. */
#define STEP_DOWN_GRACE_ELECTIONS 2

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
    replica_fence(srv->replica, s->term); /* before broker_start writes */
    broker_start(srv->broker); /* requeues the old leader's reservations, attempt counted */
    srv->serving = true;
    srv->serving_term = s->term;
    log_info("cluster: node %" PRIu64 " serves as the leader of term %" PRIu64
             " (log index %" PRIu64 ")",
             srv->cfg->node_id, s->term, s->last_applied);
}

/* Leadership lost: stop serving at once, then stop and start again as a
 * follower (see the top). During a stop (SIGTERM's handover) the stop
 * just goes on. */
static void
step_down(struct server *srv, const struct replica_status *s)
{
    cluster_gate_set(srv->gate, false);
    replica_fence(srv->replica, 0);
    srv->serving = false;
    if (conn_env_stopping(&srv->env)) {
        log_info("cluster: node %" PRIu64 " %s (term %" PRIu64 ")", srv->cfg->node_id,
                 srv->handing_over ? "handed its leadership over" : "stopped leading", s->term);
        return;
    }
    log_warn("cluster: node %" PRIu64 " lost its leadership (now %s, term %" PRIu64
             "): draining connections, then starting again as a follower",
             srv->cfg->node_id, role_name(s), s->term);
    srv->stepped_down = true;
    server_life_stop(srv, STEP_DOWN_GRACE_ELECTIONS * config_get(srv->cfg, raft_election_ms));
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
    if (s.leader_id && s.leader_id != srv->last_leader_id) {
        srv->last_leader_id = s.leader_id;
        atomic_fetch_add(&srv->leader_changes, 1);
    }
    bool lead = s.role == REPLICA_LEADER && s.ready;
    /* A term change while serving is a lost leadership too, even when this
     * node won the next election before this ran: entries the broker took
     * back as failed may commit in the new term. */
    if (srv->serving && (!lead || s.term != srv->serving_term))
        step_down(srv, &s);
    else if (lead && !srv->serving && !conn_env_stopping(&srv->env))
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
    const char *addr = s.leader_id ? client_address(srv, &s, s.leader_id) : NULL;
    /* What clients go by: "leader" only once it serves. Elected but not
     * yet serving (its barrier, then its state's promotion) it says so,
     * and names itself: a client comes back after a pause instead of
     * taking its not_leader answers as a leader's. */
    bool elected = s.role == REPLICA_LEADER && !cluster_gate_serving(srv->gate);
    snprintf(role, rolelen, "%s", elected ? "elected" : role_name(&s));
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

static const char *
member_role(const struct replica_status *s, const struct replica_member *m, uint64_t self)
{
    if (m->id == s->leader_id)
        return "leader";
    if (m->id == self)
        return role_name(s);
    return m->voter ? "follower" : "catching_up";
}

static json_t *
members_json(const struct server *srv, const struct replica_status *s)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < s->nmembers; i++) {
        const struct replica_member *m = &s->members[i];
        const char *client = client_address(srv, s, m->id);
        char raft[NODELAY_ADDRESS_MAX];
        json_array_append_new(
            a, json_pack("{s:I, s:s, s:o, s:b, s:s}", "id", (json_int_t)m->id, "raft",
                         raft_address(m->address, raft, sizeof raft), "client",
                         client ? json_string(client) : json_null(), "voter", m->voter, "role",
                         member_role(s, m, srv->cfg->node_id)));
    }
    return a;
}

static json_t *
commit_hist_json(const struct replica_status *s)
{
    /* Cumulative, as the journal's fsync histogram (and Prometheus) has it. */
    json_t *le = json_array(), *counts = json_array();
    uint64_t below = 0;
    for (size_t i = 0; le && counts && i < REPLICA_COMMIT_BUCKETS - 1; i++) {
        below += s->commit_hist[i];
        json_array_append_new(le, json_integer((json_int_t)REPLICA_COMMIT_LE_US[i]));
        json_array_append_new(counts, json_integer((json_int_t)below));
    }
    return json_pack("{s:o, s:o, s:I, s:I}", "le_us", le ? le : json_array(), "counts",
                     counts ? counts : json_array(), "sum_us", (json_int_t)s->commit_us_sum,
                     "count", (json_int_t)s->commits);
}

/* cluster_control.status: this node's view (any thread). */
static json_t *
cluster_status(void *arg)
{
    struct server *srv = arg;
    struct replica_status s;
    replica_status(srv->replica, &s);
    struct cluster_fsm_stats fs;
    cluster_fsm_stats(replica_fsm(srv->replica), &fs);
    char digest[BROKER_DIGEST_HEX];
    bool have_digest = cluster_fsm_digest(replica_fsm(srv->replica), digest) == 0;
    const char *leader = s.leader_id ? client_address(srv, &s, s.leader_id) : NULL;
    return json_pack("{s:I, s:s, s:b, s:I, s:o, s:o, s:I, s:I, s:I, s:o, s:o, s:I, s:o, s:{s:I, "
                     "s:I, s:I}}",
                     "node_id", (json_int_t)srv->cfg->node_id, "role", role_name(&s), "serving",
                     cluster_gate_serving(srv->gate), "term", (json_int_t)s.term, "leader_id",
                     s.leader_id ? json_integer((json_int_t)s.leader_id) : json_null(),
                     "leader", leader ? json_string(leader) : json_null(), "commit_index",
                     (json_int_t)s.commit_index, "applied_index", (json_int_t)s.last_applied,
                     "last_index", (json_int_t)s.last_index, "state_digest",
                     have_digest ? json_string(digest) : json_null(), "members",
                     members_json(srv, &s), "leader_changes",
                     (json_int_t)atomic_load(&srv->leader_changes), "commit",
                     commit_hist_json(&s), "snapshots", "taken", (json_int_t)fs.snapshots,
                     "restored", (json_int_t)fs.restores, "last_bytes",
                     (json_int_t)fs.snapshot_bytes);
}

/* cluster_control.change (a goroutine of the op). */
static int
cluster_change(void *arg, enum cluster_change kind, uint64_t id, const char *address,
               cluster_change_done_fn *done, void *done_arg)
{
    struct server *srv = arg;
    switch (kind) {
    case CLUSTER_ADD:
        return replica_add(srv->replica, id, address, done, done_arg);
    case CLUSTER_REMOVE:
        return replica_remove(srv->replica, id, done, done_arg);
    case CLUSTER_TRANSFER:
        return replica_transfer(srv->replica, id, done, done_arg);
    }
    return -EINVAL;
}

static void
handed_over(void *arg, int status)
{
    struct server *srv = arg;
    if (status != 0)
        log_warn("cluster: handing leadership over on stop: %s", strerror(-status));
    atomic_store(&srv->handed_over, true);
}

bool
server_cluster_handing_over(struct server *srv)
{
    if (!srv->replica)
        return false;
    if (!srv->handing_over) {
        if (!srv->serving)
            return false;
        srv->handing_over = true;
        log_info("cluster: stopping: handing leadership over to another voter");
        if (replica_transfer(srv->replica, 0, handed_over, srv) < 0)
            return false;
    }
    return !atomic_load(&srv->handed_over);
}

int
server_cluster_start(struct server *srv)
{
    char err[512];
    const struct config *cfg = srv->cfg;
    if (cfg->peers && config_parse_peers(cfg->peers, srv->cpeers, CONFIG_MAX_PEERS, &srv->ncpeers, err,
                           sizeof err) < 0) {
        log_error("%s", err);
        return -1;
    }
    /* The configuration bootstrapped on a fresh directory carries each
     * member's client address after its Raft one (replica.h). */
    struct replica_peer peers[CONFIG_MAX_PEERS];
    char addresses[CONFIG_MAX_PEERS][sizeof srv->cpeers[0].raft + sizeof srv->cpeers[0].client + 1];
    const char *self = NULL;
    for (size_t i = 0; i < srv->ncpeers; i++) {
        const struct config_peer *p = &srv->cpeers[i];
        snprintf(addresses[i], sizeof addresses[i], "%s%s%s", p->raft, p->client[0] ? "/" : "",
                 p->client);
        peers[i] = (struct replica_peer){.id = p->id, .address = addresses[i]};
        if (p->id == cfg->node_id)
            self = p->raft;
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
         * the peers list's, whatever --raft-listen binds. A joining node
         * the list leaves out gives its --raft-listen address. */
        .address = self ? self : cfg->raft_listen,
        .bind_address = cfg->raft_listen,
        .peers = peers,
        .npeers = srv->ncpeers,
        .data_dir = cfg->data_dir,
        .election_ms = (unsigned)cfg->raft_election_ms,
        .join = cfg->join,
        .broker = server_broker_settings(cfg),
        .on_role = on_role,
        .role_arg = srv,
    };
    if (!(srv->replica = replica_start(&rc, err, sizeof err))) {
        log_error("cluster: %s", err);
        return -1;
    }
    cluster_gate_set_digest(srv->gate, standby_digest, srv->replica);
    cluster_gate_set_control(srv->gate, &(struct cluster_control){.status = cluster_status,
                                                                  .change = cluster_change,
                                                                  .arg = srv});
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
