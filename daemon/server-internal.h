/* struct server's fields and the calls between its files (never installed,
 * never used outside daemon/server*.c):
 *   server.c         build, run and free: loop, runtime, broker, journal,
 *                    listeners, and the conn_env handed to connections
 *   server_accept.c  accepting connections (the limits) and the tick that
 *                    closes idle ones
 *   server_life.c    start, stop and reload: the one owner of SIGTERM,
 *                    SIGINT and SIGHUP, systemd's notifications, the
 *                    --http endpoint and its admin routes */
#ifndef CHANQ_DAEMON_SERVER_INTERNAL_H
#define CHANQ_DAEMON_SERVER_INTERNAL_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/util.h>

#include "daemon/broker.h"
#include "daemon/config.h"
#include "daemon/conn_env.h"
#include "daemon/journal/journal.h"
#include "daemon/server.h"
#include "daemon/stats.h"

struct sockaddr;

struct server {
    struct config *cfg;                  /* borrowed from main; SIGHUP changes it */
    int argc;                            /* the command line, parsed again on SIGHUP */
    char **argv;
    struct event_base *base;             /* the I/O loop (main thread) */
    struct evbridge *bridge;             /* goroutines -> loop calls */
    struct ctx *root;                    /* cancelled on stop: ends every wait */
    struct broker *broker;               /* queues and jobs */
    struct journal *journal;             /* durability; NULL with --memory */
    struct tokens *tokens;               /* --token-file; NULL: no auth */
    struct listener_set *listeners;      /* --listen, --unix or systemd's sockets */
    struct tls *tls;                     /* --tls-cert/--tls-key context; NULL without --tls-listen */
    struct closewatch *closewatch;       /* paused connections, watched for their peer's close */
    struct client_reg *clients;          /* open connections (`clients`) */
    struct peers *peers;                 /* per-address counts and failed hellos */
    struct event *tick;                  /* idle connections, per-address log lines */
    /* What connections, ops and the admin routes get: borrowed pointers to
     * the above, plus the stop flag and the live connections. */
    struct conn_env env;
    struct stats_src stats;              /* what the stats documents are built from */

    /* server_life.c */
    bool life_started;                   /* server_life_start ran (STOPPING=1 owed) */
    bool stopping_sent;                  /* STOPPING=1 went out */
    int sigfd;                           /* signalfd: SIGTERM, SIGINT, SIGHUP; -1 */
    struct event *sig_ev;                /* reads sigfd */
    sigset_t old_sigmask;                /* the mask before server_new: restored */
    struct event *stop_timer;            /* polls the drain during a stop */
    int64_t stop_deadline;               /* when the grace period ends (monotonic ms) */
    size_t idle_goroutines;              /* the server's own (journal writer...) */
    struct http *http;                   /* --http endpoint, or NULL */
    struct http_admin *admin;            /* --http-admin routes, or NULL */
    struct history *history;             /* --http's rate history, or NULL */
    struct sd_watchdog *wd;              /* systemd watchdog pings, or NULL */
    char health[256];                    /* /healthz's reason (loop thread) */

    /* server_cluster.c (cluster mode; all NULL/0 otherwise) */
    struct replica *replica;             /* this node's Raft member */
    struct cluster_gate *gate;           /* env.cluster: who serves */
    struct event *role_ev;               /* the replica's role changed (role_mu) */
    pthread_mutex_t role_mu;             /* the replica thread vs freeing role_ev */
    bool role_mu_init;
    struct journal_replicator replicator; /* the journal's batches -> replica */
    struct config_peer cpeers[CONFIG_MAX_PEERS]; /* --peers, parsed */
    size_t ncpeers;
    bool serving;                        /* promoted: the broker is the cluster's */
    uint64_t serving_term;               /* the term it was promoted in */
    bool stepped_down;                   /* leadership lost: server_run says so */
    uint64_t last_leader_id;             /* the leader last seen (loop thread) */
    _Atomic uint64_t leader_changes;     /* times a new leader was seen */
    bool handing_over;                   /* stopping: leadership transfer asked */
    _Atomic bool handed_over;            /* ...and answered (replica thread) */
};

/* server.c: the broker's settings from cfg, at start-up and on reload. */
struct broker_config server_broker_settings(const struct config *cfg);

/* server_accept.c: listener_accept_fn for plain and TLS listeners (arg is
 * the server), and the tick's callback; called with fd -1 once to arm it. */
void server_on_accept(evutil_socket_t fd, const struct sockaddr *peer, int peerlen, void *arg);
void server_on_accept_tls(evutil_socket_t fd, const struct sockaddr *peer, int peerlen,
                          void *arg);
void server_on_tick(evutil_socket_t fd, short what, void *arg);

/* server_life.c. The signals the server reads from its signalfd (stop:
 * SIGTERM and SIGINT; reload: SIGHUP). */
void server_life_signals(sigset_t *set);
/* Reads the signals above from a signalfd (they stay blocked in every thread), starts --http (and its admin
 * routes) and the watchdog, and schedules READY=1 for the loop's first
 * turn. Last step of server_new; 0, or -1 after logging why. */
int server_life_start(struct server *srv);
/* The graceful stop (SIGTERM's, also a cluster node's step-down): stops
 * accepting, answers `shutting_down` to new requests, ends waits, lets
 * each connection's requests be answered within grace_ms, then leaves the
 * loop. Marks the server stopping. Loop thread. */
void server_life_stop(struct server *srv, int64_t grace_ms);
/* Undoes server_life_start (sends STOPPING=1 if it was owed). Before the
 * rest of server_free: admin ops answer through the bridge. */
void server_life_free(struct server *srv);

/* server_cluster.c (built with the cluster code only). start: instead of
 * the single-node journal, the replica and the journal handing batches to
 * it; 0, or -1 after logging why. stop: closes that journal, then stops
 * the replica (before the loop is freed). free: what is left, after the
 * runtime ended. */
int server_cluster_start(struct server *srv);
void server_cluster_stop(struct server *srv);
void server_cluster_free(struct server *srv);
/* During a stop, once the connections are gone: a serving leader hands
 * its leadership to another voter, so the cluster does not wait an
 * election timeout for the next one. True while that is under way (the
 * caller polls again), false once done or not needed. Loop thread. */
bool server_cluster_handing_over(struct server *srv);

#endif
