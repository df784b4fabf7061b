/* The replica thread (see replica.h). Its loop holds three handles of our
 * own besides libraft's: the mailbox's uv_async, a uv_check that runs
 * after every loop iteration to publish the status and notice role
 * changes (libraft 0.15 has no callback for those; every change happens
 * inside a callback of this loop, so checking after each iteration sees
 * them all), and the leader's contact check (contact.h): raft_uv's start
 * is wrapped so that each message received is seen on its way to
 * libraft. */
#include "chanq_config.h"

#include "daemon/cluster/replica.h"

#include "daemon/cluster/contact.h"
#include "daemon/cluster/fsm.h"
#include "daemon/cluster/nodelay.h"
#include "daemon/log.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <raft.h>
#include <raft/uv.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

enum request_kind {
    REQ_PROPOSE,
    REQ_ADD,      /* raft_add, then raft_assign as a voter */
    REQ_PROMOTE,  /* the second step of REQ_ADD */
    REQ_REMOVE,
    REQ_TRANSFER,
};

/* A request through the mailbox, from replica_propose (or a membership
 * call) to its answer. */
struct proposal {
    enum request_kind kind;
    struct replica *r;
    struct raft_apply req; /* REQ_PROPOSE; req.data = this */
    struct raft_buffer buf;
    struct raft_change change;     /* REQ_ADD, REQ_REMOVE; change.data = this */
    struct raft_transfer transfer; /* REQ_TRANSFER; transfer.data = this */
    uint64_t target;               /* the member added, removed or handed over to */
    uint64_t start_us;             /* REQ_PROPOSE: when it was proposed (monotonic) */
    char *address;                 /* REQ_ADD */
    replica_done_fn *done;
    void *arg;
    struct proposal *next; /* in the mailbox */
};

struct replica {
    /* Set by replica_start, read-only afterwards. */
    uint64_t id;
    char *address;
    char *bind_address; /* NULL: listen on address */
    char *dir; /* DATA/raft */
    struct raft_configuration conf;
    unsigned election_ms, snapshot_threshold;
    void (*on_role)(void *arg, const struct replica_status *s);
    void *role_arg;
    struct cluster_fsm *fsm;
    pthread_t thread;

    /* The mailbox and the published status: any thread, under mu. */
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* start-up result */
    bool started;           /* the thread has reported its start-up */
    int start_rc;           /* 0, or why it failed (start_err) */
    char start_err[256];
    bool stopping;          /* replica_stop has begun: no more proposals */
    struct proposal *head, *tail;
    struct replica_status status;

    /* The replica thread's own. */
    uv_loop_t loop;
    uv_async_t wake;
    uv_check_t check;
    struct nodelay_transport transport;
    struct raft_io io;
    struct raft raft;
    enum replica_role last_role;
    uint64_t last_term;
    bool last_ready;
    uint64_t ready_term; /* the term whose barrier this leader has applied */
    bool raft_closing;
    bool join; /* no bootstrap: the leader adds this node */
    _Atomic uint64_t fence; /* replica_fence's term; UNFENCED until set */
    /* The contact check: raft_uv's own start and libraft's receiver. */
    int (*uv_start)(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick,
                    raft_io_recv_cb recv);
    raft_io_recv_cb raft_recv;
    struct contact *contact;
    uv_timer_t contact_timer;
    uint64_t lead_term; /* the term contact_lead was last told of; 0 */
    uint64_t last_check_ms; /* when on_contact_check last ran (loop time) */
    uint64_t lost_term; /* a term whose leader lost its majority's contact; 0 */
};

#define UNFENCED UINT64_MAX

/* The barrier a new leader appends: once it is applied, every entry of
 * earlier terms is committed and applied to the standby (Raft commits
 * them only through an entry of the leader's own term). */
struct barrier {
    struct raft_barrier req; /* req.data = this */
    struct replica *r;
    uint64_t term;
};

int
replica_errno(int raft_status)
{
    switch (raft_status) {
    case 0:
        return 0;
    case RAFT_NOTLEADER:
        return -ENOTCONN;
    case RAFT_LEADERSHIPLOST:
        return -ECONNRESET;
    case RAFT_SHUTDOWN:
        return -ESHUTDOWN;
    case RAFT_MALFORMED:
        return -EBADMSG;
    case RAFT_NOMEM:
        return -ENOMEM;
    case RAFT_DUPLICATEID:
    case RAFT_DUPLICATEADDRESS:
        return -EEXIST;
    case RAFT_BADID:
    case RAFT_NOTFOUND:
        return -ENOENT;
    case RAFT_CANTCHANGE:
        return -EBUSY;
    default:
        return -EIO;
    }
}

static enum replica_role
role_of(int raft_state)
{
    switch (raft_state) {
    case RAFT_FOLLOWER:
        return REPLICA_FOLLOWER;
    case RAFT_CANDIDATE:
        return REPLICA_CANDIDATE;
    case RAFT_LEADER:
        return REPLICA_LEADER;
    default:
        return REPLICA_UNAVAILABLE;
    }
}

/* ---- on the replica thread ---- */

const uint64_t REPLICA_COMMIT_LE_US[REPLICA_COMMIT_BUCKETS - 1] = {
    250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000};

static uint64_t
now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void
count_commit(struct replica *r, uint64_t us)
{
    size_t i = 0;
    while (i < REPLICA_COMMIT_BUCKETS - 1 && us > REPLICA_COMMIT_LE_US[i])
        i++;
    pthread_mutex_lock(&r->mu);
    r->status.commits++;
    r->status.commit_us_sum += us;
    r->status.commit_hist[i]++;
    pthread_mutex_unlock(&r->mu);
}

static void
on_applied(struct raft_apply *req, int status, void *result)
{
    (void)result;
    struct proposal *p = req->data;
    if (status == 0)
        count_commit(p->r, now_us() - p->start_us);
    p->done(p->arg, replica_errno(status));
    free(p);
}

static void
finish(struct proposal *p, int status)
{
    p->done(p->arg, status);
    free(p->address);
    free(p);
}

static void start_request(struct replica *r, struct proposal *p);

static void
on_changed(struct raft_change *req, int status)
{
    struct proposal *p = req->data;
    if (status != 0)
        log_warn("cluster: changing the membership of node %llu: %s",
                 (unsigned long long)p->target, raft_strerror(status));
    if (status == 0 && p->kind == REQ_ADD && !p->r->raft_closing) {
        p->kind = REQ_PROMOTE; /* added as a spare: now make it vote */
        start_request(p->r, p);
        return;
    }
    finish(p, replica_errno(status));
}

/* libraft calls this once the target leads or the election timeout
 * passed; only the leader it now knows says which. */
static void
on_transferred(struct raft_transfer *req)
{
    struct proposal *p = req->data;
    struct replica *r = p->r;
    raft_id lid = 0;
    const char *laddr = NULL;
    raft_leader(&r->raft, &lid, &laddr);
    bool moved = p->target ? lid == p->target : lid != 0 && lid != r->id;
    finish(p, moved ? 0 : -ETIMEDOUT);
}

static int
raft_request(struct replica *r, struct proposal *p)
{
    switch (p->kind) {
    case REQ_PROPOSE: {
        uint64_t fence = atomic_load(&r->fence);
        if (r->lost_term == r->raft.current_term)
            return RAFT_NOTLEADER;
        if (fence != UNFENCED &&
            (raft_state(&r->raft) != RAFT_LEADER || r->raft.current_term != fence))
            return RAFT_NOTLEADER;
        return raft_apply(&r->raft, &p->req, &p->buf, 1, on_applied);
    }
    case REQ_ADD:
        return raft_add(&r->raft, &p->change, p->target, p->address, on_changed);
    case REQ_PROMOTE:
        return raft_assign(&r->raft, &p->change, p->target, RAFT_VOTER, on_changed);
    case REQ_REMOVE:
        return raft_remove(&r->raft, &p->change, p->target, on_changed);
    case REQ_TRANSFER:
        return raft_transfer(&r->raft, &p->transfer, p->target, on_transferred);
    }
    return RAFT_INVALID;
}

static void
start_request(struct replica *r, struct proposal *p)
{
    p->r = r;
    p->req.data = p->change.data = p->transfer.data = p;
    int rc = r->raft_closing ? RAFT_SHUTDOWN : raft_request(r, p);
    if (rc != 0 && p->kind != REQ_PROPOSE)
        log_warn("cluster: a membership change of node %llu: %s", (unsigned long long)p->target,
                 raft_strerror(rc));
    if (rc != 0) {
        /* Not taken: the buffer is still ours. */
        if (p->kind == REQ_PROPOSE)
            raft_free(p->buf.base);
        finish(p, replica_errno(rc));
    }
}

static void on_raft_closed(struct raft *raft);

static void
on_wake(uv_async_t *h)
{
    struct replica *r = h->data;
    pthread_mutex_lock(&r->mu);
    struct proposal *p = r->head;
    r->head = r->tail = NULL;
    bool stop = r->stopping;
    pthread_mutex_unlock(&r->mu);
    while (p) {
        struct proposal *next = p->next;
        start_request(r, p);
        p = next;
    }
    if (stop && !r->raft_closing) {
        r->raft_closing = true;
        raft_close(&r->raft, on_raft_closed);
    }
}

static void publish(struct replica *r);

static void
on_barrier(struct raft_barrier *req, int status)
{
    struct barrier *b = req->data;
    struct replica *r = b->r;
    if (status == 0 && raft_state(&r->raft) == RAFT_LEADER && r->raft.current_term == b->term)
        r->ready_term = b->term;
    else if (status != 0 && status != RAFT_SHUTDOWN)
        log_warn("cluster: the barrier of term %llu failed: %s", (unsigned long long)b->term,
                 raft_strerror(status));
    free(b);
    if (!r->raft_closing)
        publish(r);
}

/* A new leader's first act. On failure the node stays a leader that is not
 * ready; it will lose leadership or be retried at the next term. */
static void
start_barrier(struct replica *r)
{
    struct barrier *b = calloc(1, sizeof *b);
    if (!b) {
        log_error("cluster: out of memory for the leader's barrier");
        return;
    }
    b->req.data = b;
    b->r = r;
    b->term = r->raft.current_term;
    int rc = raft_barrier(&r->raft, &b->req, on_barrier);
    if (rc != 0) {
        log_error("cluster: the leader's barrier: %s", raft_strerror(rc));
        free(b);
    }
}

static const char *
role_name(enum replica_role role)
{
    static const char *const names[] = {[REPLICA_UNAVAILABLE] = "unavailable",
                                        [REPLICA_FOLLOWER] = "follower",
                                        [REPLICA_CANDIDATE] = "candidate",
                                        [REPLICA_LEADER] = "leader"};
    return names[role];
}

static void
publish(struct replica *r)
{
    struct replica_status s = {0};
    s.role = role_of(raft_state(&r->raft));
    s.term = r->raft.current_term;
    raft_id lid = 0;
    const char *laddr = NULL;
    raft_leader(&r->raft, &lid, &laddr);
    if (s.role == REPLICA_LEADER && r->lost_term == s.term) {
        /* Stepped down on our own (on_contact_check): libraft does not
         * know yet, nobody else may rely on it. */
        s.role = REPLICA_FOLLOWER;
        lid = 0;
        laddr = NULL;
    }
    s.leader_id = lid;
    if (laddr)
        snprintf(s.leader_address, sizeof s.leader_address, "%s", laddr);
    s.commit_index = r->raft.commit_index;
    s.last_applied = raft_last_applied(&r->raft);
    s.last_index = raft_last_index(&r->raft);
    s.ready = s.role == REPLICA_LEADER && r->ready_term == s.term;
    const struct raft_configuration *conf = &r->raft.configuration;
    for (unsigned i = 0; i < conf->n && s.nmembers < REPLICA_MAX_MEMBERS; i++) {
        struct replica_member *m = &s.members[s.nmembers++];
        m->id = conf->servers[i].id;
        snprintf(m->address, sizeof m->address, "%s", conf->servers[i].address);
        m->voter = conf->servers[i].role == RAFT_VOTER;
    }
    pthread_mutex_lock(&r->mu);
    s.commits = r->status.commits; /* count_commit's, kept across publishes */
    s.commit_us_sum = r->status.commit_us_sum;
    memcpy(s.commit_hist, r->status.commit_hist, sizeof s.commit_hist);
    r->status = s;
    pthread_mutex_unlock(&r->mu);
    bool became_leader = s.role == REPLICA_LEADER &&
                         (r->last_role != REPLICA_LEADER || r->last_term != s.term);
    if (s.role != r->last_role || s.term != r->last_term || s.ready != r->last_ready) {
        r->last_role = s.role;
        r->last_term = s.term;
        r->last_ready = s.ready;
        log_info("cluster: node %llu is %s%s in term %llu (leader: %llu)",
                 (unsigned long long)r->id, role_name(s.role), s.ready ? " (ready)" : "",
                 (unsigned long long)s.term, (unsigned long long)s.leader_id);
        if (became_leader)
            start_barrier(r);
        if (r->on_role)
            r->on_role(r->role_arg, &s);
    }
}

static void
on_check(uv_check_t *h)
{
    struct replica *r = h->data;
    if (!r->raft_closing)
        publish(r);
}

/* How long a leader may go without answers from a majority: below the
 * election timeout (the others wait at least that long before electing
 * another leader), above several heartbeats (election_ms / 10 apart). */
static uint64_t
contact_window_ms(const struct replica *r)
{
    return (uint64_t)r->election_ms * 7 / 10;
}

static void
on_contact_check(uv_timer_t *t)
{
    struct replica *r = t->data;
    uint64_t term = r->raft.current_term, now = uv_now(&r->loop);
    if (r->raft_closing || raft_state(&r->raft) != RAFT_LEADER || r->lost_term == term) {
        r->last_check_ms = now;
        return;
    }
    /* Answers that came while this loop was held up (a long apply) are
     * still unread: a stall of our own counts against nobody. */
    bool stalled = now - r->last_check_ms > contact_window_ms(r) / 2;
    r->last_check_ms = now;
    if (r->lead_term != term || stalled) {
        r->lead_term = term;
        contact_lead(r->contact, now);
    }
    uint64_t voters[REPLICA_MAX_MEMBERS];
    size_t n = 0;
    const struct raft_configuration *conf = &r->raft.configuration;
    for (unsigned i = 0; i < conf->n && n < REPLICA_MAX_MEMBERS; i++)
        if (conf->servers[i].role == RAFT_VOTER)
            voters[n++] = conf->servers[i].id;
    if (contact_quorum(r->contact, voters, n, r->id, now, contact_window_ms(r)))
        return;
    log_warn("cluster: node %llu, leader of term %llu, heard from no majority of its %zu voters "
             "in %llu ms: stepping down",
             (unsigned long long)r->id, (unsigned long long)term, n,
             (unsigned long long)contact_window_ms(r));
    r->lost_term = term;
    publish(r);
}

/* libraft's receiver, seen first: a voter's answer to the leader. */
static void
on_recv(struct raft_io *io, struct raft_message *msg)
{
    struct replica *r = ((struct raft *)io->data)->data;
    if (msg->type == RAFT_IO_APPEND_ENTRIES_RESULT)
        contact_heard(r->contact, msg->server_id, uv_now(&r->loop));
    r->raft_recv(io, msg);
}

static int
start_io(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv)
{
    struct replica *r = ((struct raft *)io->data)->data;
    r->raft_recv = recv;
    return r->uv_start(io, msecs, tick, on_recv);
}

static void
on_raft_closed_early(struct raft *raft)
{
    (void)raft;
}

static void
on_raft_closed(struct raft *raft)
{
    struct replica *r = raft->data;
    raft_uv_close(&r->io);
    nodelay_close(&r->transport);
    uv_close((uv_handle_t *)&r->wake, NULL);
    uv_close((uv_handle_t *)&r->check, NULL);
    uv_close((uv_handle_t *)&r->contact_timer, NULL);
    pthread_mutex_lock(&r->mu);
    r->status.role = REPLICA_UNAVAILABLE;
    pthread_mutex_unlock(&r->mu);
}

static int
fail(struct replica *r, int rc, const char *what, const char *msg)
{
    snprintf(r->start_err, sizeof r->start_err, "raft %.100s: %.140s", what, msg);
    return rc ? rc : -1;
}

/* Everything up to raft_start. On failure, what was set up is torn down
 * again and the reason is in r->start_err. */
static int
setup(struct replica *r)
{
    int rc = uv_loop_init(&r->loop);
    if (rc != 0)
        return fail(r, rc, "loop", uv_strerror(rc));
    if ((rc = nodelay_init(&r->transport, &r->loop)) != 0) {
        fail(r, rc, "transport", raft_strerror(rc));
        goto out_loop;
    }
    if (r->bind_address &&
        (rc = nodelay_set_bind_address(&r->transport, r->bind_address)) != 0) {
        fail(r, rc, r->bind_address, raft_strerror(rc));
        goto out_transport;
    }
    if ((rc = raft_uv_init(&r->io, &r->loop, r->dir, nodelay_transport(&r->transport))) != 0) {
        fail(r, rc, r->dir, r->io.errmsg[0] ? r->io.errmsg : raft_strerror(rc));
        goto out_transport;
    }
    r->uv_start = r->io.start;
    r->io.start = start_io;
    /* raft_uv 0.15 implements async_work (the thread pool the state
     * machine's asynchronous snapshot runs on) but leaves its version at
     * 1, which raft_init refuses with an asynchronous snapshot; the cowsql
     * fork says 2. */
    if (r->io.version < 2 && r->io.async_work)
        r->io.version = 2;
    if ((rc = raft_init(&r->raft, &r->io, cluster_fsm_raft(r->fsm), r->id, r->address)) != 0) {
        fail(r, rc, "init", raft_errmsg(&r->raft));
        goto out_io;
    }
    r->raft.data = r;
    raft_set_election_timeout(&r->raft, r->election_ms);
    raft_set_heartbeat_timeout(&r->raft, r->election_ms / 10 ? r->election_ms / 10 : 1);
    raft_set_snapshot_threshold(&r->raft, r->snapshot_threshold);
    raft_set_snapshot_trailing(&r->raft, r->snapshot_threshold / 8 + 1);
    /* A node that comes back (restarted, or started again after stepping
     * down) and has not heard from the leader yet must not depose it:
     * with pre-vote it first asks whether the others would vote, and they
     * do not while they hear from a leader. It also reconnects at the
     * heartbeat's pace instead of libuv's default 1 s, so it hears soon. */
    raft_set_pre_vote(&r->raft, true);
    raft_uv_set_connect_retry_delay(&r->io, r->election_ms / 10 > 10 ? r->election_ms / 10 : 10);
    rc = r->join ? 0 : raft_bootstrap(&r->raft, &r->conf);
    if (rc != 0 && rc != RAFT_CANTBOOTSTRAP) {
        fail(r, rc, "bootstrap", raft_errmsg(&r->raft));
        goto out_raft;
    }
    if ((rc = raft_start(&r->raft)) != 0) {
        fail(r, rc, "start", raft_errmsg(&r->raft));
        goto out_raft;
    }
    uv_async_init(&r->loop, &r->wake, on_wake);
    r->wake.data = r;
    uv_check_init(&r->loop, &r->check);
    r->check.data = r;
    uv_check_start(&r->check, on_check);
    uv_timer_init(&r->loop, &r->contact_timer);
    r->contact_timer.data = r;
    unsigned every = r->election_ms / 20 ? r->election_ms / 20 : 1;
    uv_timer_start(&r->contact_timer, on_contact_check, every, every);
    return 0;

    /* libraft tears down asynchronously: close it and run the loop dry. */
out_raft:
    raft_close(&r->raft, on_raft_closed_early);
    uv_run(&r->loop, UV_RUN_DEFAULT);
out_io:
    raft_uv_close(&r->io);
out_transport:
    nodelay_close(&r->transport);
    uv_run(&r->loop, UV_RUN_DEFAULT);
out_loop:
    uv_loop_close(&r->loop);
    return rc;
}

static void *
replica_main(void *arg)
{
    struct replica *r = arg;
    /* A peer that hangs up makes libuv's next write raise SIGPIPE in this
     * thread: blocked here, the write fails with EPIPE instead. */
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, NULL);
    int rc = setup(r);
    pthread_mutex_lock(&r->mu);
    r->started = true;
    r->start_rc = rc;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (rc != 0)
        return NULL;
    publish(r);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    /* Proposals that came in while closing: nobody will take them now. */
    pthread_mutex_lock(&r->mu);
    struct proposal *p = r->head;
    r->head = r->tail = NULL;
    pthread_mutex_unlock(&r->mu);
    while (p) {
        struct proposal *next = p->next;
        if (p->kind == REQ_PROPOSE)
            raft_free(p->buf.base);
        finish(p, -ESHUTDOWN);
        p = next;
    }
    if (uv_loop_close(&r->loop) != 0)
        log_warn("cluster: the replica loop closed with handles open");
    return NULL;
}

/* ---- any thread ---- */

static int
make_dir(const char *path)
{
    return mkdir(path, 0750) == 0 || errno == EEXIST ? 0 : -errno;
}

static void
replica_free(struct replica *r)
{
    raft_configuration_close(&r->conf);
    cluster_fsm_free(r->fsm);
    contact_free(r->contact);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r->address);
    free(r->bind_address);
    free(r->dir);
    free(r);
}

static int
build_conf(struct replica *r, const struct replica_config *cfg, char *err, size_t errlen)
{
    raft_configuration_init(&r->conf);
    bool self = false;
    for (size_t i = 0; i < cfg->npeers; i++) {
        int rc = raft_configuration_add(&r->conf, cfg->peers[i].id, cfg->peers[i].address,
                                        RAFT_VOTER);
        if (rc != 0) {
            snprintf(err, errlen, "peer %llu@%s: %s", (unsigned long long)cfg->peers[i].id,
                     cfg->peers[i].address, raft_strerror(rc));
            return -EINVAL;
        }
        self |= cfg->peers[i].id == cfg->id;
    }
    if (!self && !cfg->join) {
        snprintf(err, errlen, "node id %llu is not one of the peers", (unsigned long long)cfg->id);
        return -EINVAL;
    }
    return 0;
}

struct replica *
replica_start(const struct replica_config *cfg, char *err, size_t errlen)
{
    struct replica *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->id = cfg->id;
    r->election_ms = cfg->election_ms ? cfg->election_ms : 1000;
    r->snapshot_threshold = cfg->snapshot_threshold ? cfg->snapshot_threshold : 1024;
    r->join = cfg->join;
    atomic_init(&r->fence, UNFENCED);
    r->on_role = cfg->on_role;
    r->role_arg = cfg->role_arg;
    r->address = strdup(cfg->address);
    r->bind_address = cfg->bind_address ? strdup(cfg->bind_address) : NULL;
    size_t dl = strlen(cfg->data_dir) + sizeof "/raft";
    r->dir = malloc(dl);
    r->fsm = cluster_fsm_new(&cfg->broker);
    r->contact = contact_new(REPLICA_MAX_MEMBERS);
    if (!r->address || (cfg->bind_address && !r->bind_address) || !r->dir || !r->fsm ||
        !r->contact) {
        snprintf(err, errlen, "out of memory");
        goto out_free;
    }
    snprintf(r->dir, dl, "%s/raft", cfg->data_dir);
    if (build_conf(r, cfg, err, errlen) < 0)
        goto out_free;
    int rc = make_dir(cfg->data_dir);
    if (rc == 0)
        rc = make_dir(r->dir);
    if (rc < 0) {
        snprintf(err, errlen, "cannot create %s: %s", r->dir, strerror(-rc));
        goto out_free;
    }
    if ((rc = pthread_create(&r->thread, NULL, replica_main, r)) != 0) {
        snprintf(err, errlen, "cannot start the replica thread: %s", strerror(rc));
        goto out_free;
    }
    pthread_mutex_lock(&r->mu);
    while (!r->started)
        pthread_cond_wait(&r->cv, &r->mu);
    rc = r->start_rc;
    pthread_mutex_unlock(&r->mu);
    if (rc != 0) {
        snprintf(err, errlen, "%s", r->start_err);
        pthread_join(r->thread, NULL);
        goto out_free;
    }
    return r;

out_free:
    replica_free(r);
    return NULL;
}

/* Hands p to the replica thread; -ESHUTDOWN (p freed) once stopping. */
static int
enqueue(struct replica *r, struct proposal *p)
{
    pthread_mutex_lock(&r->mu);
    bool stopping = r->stopping;
    if (!stopping) {
        if (r->tail)
            r->tail->next = p;
        else
            r->head = p;
        r->tail = p;
    }
    pthread_mutex_unlock(&r->mu);
    if (stopping) {
        free(p->address);
        free(p);
        return -ESHUTDOWN;
    }
    uv_async_send(&r->wake);
    return 0;
}

int
replica_propose(struct replica *r, void *entry, size_t len, replica_done_fn *done, void *arg)
{
    if (len == 0) {
        raft_free(entry);
        return -EINVAL;
    }
    struct proposal *p = calloc(1, sizeof *p);
    if (!p) {
        raft_free(entry);
        return -ENOMEM;
    }
    p->kind = REQ_PROPOSE;
    p->start_us = now_us();
    p->buf.base = entry;
    p->buf.len = len;
    p->done = done;
    p->arg = arg;
    int rc = enqueue(r, p);
    if (rc < 0)
        raft_free(entry);
    return rc;
}

static int
request(struct replica *r, enum request_kind kind, uint64_t id, const char *address,
        replica_done_fn *done, void *arg)
{
    struct proposal *p = calloc(1, sizeof *p);
    if (!p || (address && !(p->address = strdup(address)))) {
        free(p);
        return -ENOMEM;
    }
    p->kind = kind;
    p->target = id;
    p->done = done;
    p->arg = arg;
    return enqueue(r, p);
}

int
replica_add(struct replica *r, uint64_t id, const char *address, replica_done_fn *done, void *arg)
{
    if (id == 0 || !address || !*address || strlen(address) >= sizeof((struct replica_member *)0)->address)
        return -EINVAL;
    return request(r, REQ_ADD, id, address, done, arg);
}

int
replica_remove(struct replica *r, uint64_t id, replica_done_fn *done, void *arg)
{
    return id == 0 ? -EINVAL : request(r, REQ_REMOVE, id, NULL, done, arg);
}

int
replica_transfer(struct replica *r, uint64_t id, replica_done_fn *done, void *arg)
{
    return request(r, REQ_TRANSFER, id, NULL, done, arg);
}

void
replica_fence(struct replica *r, uint64_t term)
{
    atomic_store(&r->fence, term);
}

void
replica_status(struct replica *r, struct replica_status *out)
{
    pthread_mutex_lock(&r->mu);
    *out = r->status;
    pthread_mutex_unlock(&r->mu);
}

struct cluster_fsm *
replica_fsm(struct replica *r)
{
    return r->fsm;
}

void
replica_stop(struct replica *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    r->stopping = true;
    pthread_mutex_unlock(&r->mu);
    uv_async_send(&r->wake);
    pthread_join(r->thread, NULL);
    replica_free(r);
}
